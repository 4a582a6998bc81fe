"""Cron expressions: parsing and checking, for the spec's ``schedule`` section and the scheduler.

``minute hour day month weekday`` (weekday 0 or 7 = Sunday as in crontab; month and weekday
names such as ``jan`` or ``mon`` are accepted); a sixth, leading *seconds* field is accepted for
tests. A leaf: it imports nothing of tidecast but :mod:`tidecast.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidecast.errors import SpecError

FIELDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "day_of_week": (0, 7),
}
"""Each cron field's name and its allowed range (weekday 7 is Sunday, like 0)."""
FIELD_HELP = "5 fields: minute hour day month weekday, e.g. '0 2 * * *' (daily at 02:00); a 6th leading field is seconds"
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


class CronError(ValueError):
    """A cron field that does not parse (turned into a :class:`SpecError` by :func:`parse_cron`)."""


def _value(token: str, field: str) -> int:
    names = _MONTHS if field == "month" else _DAYS if field == "day_of_week" else {}
    low = token.lower()
    if low in names:
        return names[low]
    if not token.isdigit():
        raise CronError(f"'{token}' is not a value of the {field.replace('_', ' ')} field")
    value = int(token)
    lo, hi = FIELDS[field]
    if not lo <= value <= hi:
        raise CronError(f"{value} is out of range for the {field.replace('_', ' ')} field ({lo}-{hi})")
    return value


def expand_field(text: str, field: str) -> list[int] | None:
    """The values a cron field selects (None for ``*``/``?``); day of week 7 becomes 0 (Sunday)."""
    lo, hi = FIELDS[field]
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"empty item in '{text}'")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"step '{step_text}' in '{part}' is not a positive number")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = lo, (6 if field == "day_of_week" else hi)
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, field), _value(b, field)
            if start > end:
                raise CronError(f"range '{base}' runs backwards")
        else:
            start = _value(base, field)
            end = (6 if field == "day_of_week" else hi) if step_text else start
        for value in range(start, end + 1, step):
            values.add(0 if field == "day_of_week" and value == 7 else value)
    return sorted(values)


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: its fields as written and as value lists."""

    expr: str
    fields: dict[str, str]
    values: dict[str, list[int] | None]

    @property
    def has_seconds(self) -> bool:
        return "second" in self.fields


def parse_cron(expr: str, *, field: str = "schedule") -> CronSpec:
    """Parse a 5-field (or 6-field, seconds first) cron expression; SpecError naming ``field`` otherwise."""
    parts = str(expr or "").split()
    names = ["minute", "hour", "day", "month", "day_of_week"]
    if len(parts) == 6:
        names = ["second", *names]
    elif len(parts) != 5:
        raise SpecError(f"{field}: {expr!r} is not a cron expression: {len(parts)} fields ({FIELD_HELP})")
    fields = dict(zip(names, parts, strict=True))
    try:
        values = {name: expand_field(text, name) for name, text in fields.items()}
    except CronError as exc:
        raise SpecError(f"{field}: {expr!r} is not a cron expression: {exc} ({FIELD_HELP})") from None
    return CronSpec(str(expr), fields, values)
