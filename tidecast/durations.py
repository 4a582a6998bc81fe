"""Durations written as ``24h``/``5min``/``7d``, in calendar units (``12 months``, ``8 weeks``,
``2 quarters``, ``1 year``) or as step counts, converted to steps of a frequency.

>>> to_steps("24h", "5min")
288
>>> to_steps(12, "5min")
12
>>> to_steps("2 years", "QS")
8
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any

import pandas as pd
from pydantic import BeforeValidator

from tidecast import calendar
from tidecast.errors import SpecError


def _check_duration(value: Any) -> Any:
    """A spec field's duration, checked when the spec is read (its fit to the frequency is checked where
    it is used): a step count that is not negative, or text such as ``24h``. Other types go on to
    pydantic's own type check."""
    if isinstance(value, bool):
        raise ValueError(f"expected a step count or a duration, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            _parse(str(value), field="\0")
        except SpecError as exc:
            raise ValueError(exc.message.removeprefix("\0: ")) from None
    return value


Duration = Annotated[int | str, BeforeValidator(_check_duration)]

_UNIT_ALIASES = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "m": "min", "min": "min", "mins": "min", "minute": "min", "minutes": "min", "t": "min",
    "h": "h", "hr": "h", "hour": "h", "hours": "h",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "wk": "W", "wks": "W", "week": "W", "weeks": "W",
    "bd": "B", "bday": "B", "bdays": "B", "businessday": "B", "businessdays": "B",
    "mo": "M", "mon": "M", "mons": "M", "month": "M", "months": "M",
    "q": "Q", "qtr": "Q", "qtrs": "Q", "quarter": "Q", "quarters": "Q",
    "y": "Y", "yr": "Y", "yrs": "Y", "year": "Y", "years": "Y",
}
_CALENDAR_UNITS = {"B": "business days", "M": "months", "Q": "quarters", "Y": "years"}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z ]+?)\s*$")


def _parse(value: str, *, field: str) -> tuple[str, str]:
    """(number, normalised unit) of a duration's text."""
    match = _DURATION_RE.match(str(value))
    if not match:
        raise SpecError(
            f"{field}: cannot read {value!r} as a duration (write e.g. '24h', '5min', '7d', '12 months' or a step count)"
        )
    number, unit = match.groups()
    unit_norm = _UNIT_ALIASES.get(unit.lower().replace(" ", ""))
    if unit_norm is None:
        raise SpecError(f"{field}: unknown unit {unit!r} in {value!r} (use s, min, h, d, w, months, quarters or years)")
    return number, unit_norm


def to_timedelta(value: str, *, field: str = "duration") -> pd.Timedelta:
    """Parse ``"24h"``, ``"5min"``, ``"7d"``, ``"2w"`` into a Timedelta, naming ``field`` on error
    (calendar units such as months have no fixed length: an error here)."""
    number, unit_norm = _parse(value, field=field)
    if unit_norm in _CALENDAR_UNITS:
        raise SpecError(f"{field}: {_CALENDAR_UNITS[unit_norm]} have no fixed length (write {value!r} in d or w)")
    try:
        if unit_norm == "W":
            return pd.Timedelta(days=7 * float(number))
        return pd.Timedelta(float(number), unit=unit_norm)
    except (OverflowError, ValueError):  # pandas' OutOfBoundsTimedelta is a ValueError
        raise SpecError(f"{field}: {value!r} is too long (durations reach at most about 292 years)") from None


def freq_timedelta(freq: str, *, field: str = "data.frequency") -> pd.Timedelta:
    """The length of one step of a pandas frequency: exact for fixed ones (``5min``, ``h``, ``D``...),
    the average for calendar ones (a month: 30.44 days; a business day: 1.4 days), for windows and
    thresholds that need only a length. Timestamps of a calendar frequency come from
    :mod:`tidecast.calendar`, never from multiples of this."""
    try:
        return calendar.info(freq).nominal
    except SpecError as exc:
        raise SpecError(f"{field}: {exc.message.removeprefix('data.frequency: ')}") from None


def to_steps(value: Duration, freq: str, *, field: str = "duration") -> int:
    """Steps of ``freq`` in ``value``; ints pass through. The duration must be a whole number of steps."""
    if isinstance(value, bool):
        raise SpecError(f"{field}: expected a step count or a duration, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise SpecError(f"{field}: must not be negative, got {value}")
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    fi = calendar.info(freq)
    if fi.fixed:
        step = fi.nominal
        total = to_timedelta(text, field=field)
        steps, remainder = divmod(total, step)
        if remainder != pd.Timedelta(0):
            raise SpecError(f"{field}: {value!r} is not a whole number of {freq} steps")
        return int(steps)
    number, unit = _parse(text, field=field)
    per = calendar.unit_steps(unit, freq)
    if per is None:
        raise SpecError(
            f"{field}: {value!r} does not fit {fi.describe()} data: write {calendar.unit_hint(freq)}"
        )
    exact = Fraction(number) * per
    if exact.denominator != 1:
        raise SpecError(f"{field}: {value!r} is not a whole number of {freq} steps (write {calendar.unit_hint(freq)})")
    return int(exact)


def format_delta(delta: pd.Timedelta) -> str:
    """``1h``, ``5min``, ``2d``, ``30s``: the largest unit that divides ``delta`` exactly."""
    seconds = round(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{delta.total_seconds():g}s"
