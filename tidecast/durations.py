"""Durations written as ``24h``/``5min``/``7d`` or as step counts, converted to steps of a frequency.

>>> to_steps("24h", "5min")
288
>>> to_steps(12, "5min")
12
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pandas as pd
from pydantic import BeforeValidator

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
            to_timedelta(str(value), field="\0")
        except SpecError as exc:
            raise ValueError(exc.message.removeprefix("\0: ")) from None
    return value


Duration = Annotated[int | str, BeforeValidator(_check_duration)]

_UNIT_ALIASES = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "m": "min", "min": "min", "mins": "min", "minute": "min", "minutes": "min", "t": "min",
    "h": "h", "hr": "h", "hour": "h", "hours": "h",
    "d": "D", "day": "D", "days": "D",
    "w": "W", "week": "W", "weeks": "W",
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def to_timedelta(value: str, *, field: str = "duration") -> pd.Timedelta:
    """Parse ``"24h"``, ``"5min"``, ``"7d"``, ``"2w"`` into a Timedelta, naming ``field`` on error."""
    match = _DURATION_RE.match(str(value))
    if not match:
        raise SpecError(f"{field}: cannot read {value!r} as a duration (write e.g. '24h', '5min', '7d' or a step count)")
    number, unit = match.groups()
    unit_norm = _UNIT_ALIASES.get(unit.lower())
    if unit_norm is None:
        raise SpecError(f"{field}: unknown unit {unit!r} in {value!r} (use s, min, h, d or w)")
    try:
        if unit_norm == "W":
            return pd.Timedelta(days=7 * float(number))
        return pd.Timedelta(float(number), unit=unit_norm)
    except (OverflowError, ValueError):  # pandas' OutOfBoundsTimedelta is a ValueError
        raise SpecError(f"{field}: {value!r} is too long (durations reach at most about 292 years)") from None


def freq_timedelta(freq: str, *, field: str = "data.frequency") -> pd.Timedelta:
    """The length of one step of a fixed pandas frequency (``5min``, ``h``, ``D``...)."""
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        return pd.Timedelta(offset)
    except (ValueError, TypeError) as exc:
        raise SpecError(
            f"{field}: {freq!r} is not a fixed frequency (use e.g. '5min', '15min', 'h', 'D')"
        ) from exc


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
    step = freq_timedelta(freq)
    total = to_timedelta(text, field=field)
    steps, remainder = divmod(total, step)
    if remainder != pd.Timedelta(0):
        raise SpecError(f"{field}: {value!r} is not a whole number of {freq} steps")
    return int(steps)
