"""What every section of the spec is built on: the strict pydantic base and the time-zone check."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    """Base for every spec section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _check_zone(value: str) -> str:
    """``value`` if it names an IANA time zone, else a ValueError (pydantic turns it into a field error)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use e.g. 'UTC' or 'Europe/Paris')") from None
    return value
