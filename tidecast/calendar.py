"""What tidecast needs to know about a data frequency, fixed (``5min``, ``h``, ``D``) or calendar
(``W-MON``, ``B``, ``C``, ``MS``/``ME``, ``QS``/``QE``, ``YS``/``YE``): a leaf module (pandas only).

>>> info("MS").family, info("MS").season, info("W").season, info("B").season
('monthly', 12, 52, 5)
>>> future_dates(pd.Timestamp("2024-01-31"), 3, "ME").strftime("%Y-%m-%d").tolist()
['2024-02-29', '2024-03-31', '2024-04-30']

Fixed frequencies step by a constant length. Calendar frequencies step along their anchors
(``pd.date_range(start, freq=offset)``): month starts, Mondays, business days... Their series are
dates: timestamps at midnight, tz-naive (read as UTC).

``C`` is pandas' custom business day; ``C:US`` (any country code of the ``holidays`` package)
skips that country's public holidays as well as weekends.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from pandas.tseries import offsets as po
from pandas.tseries.frequencies import to_offset

from tidecast.errors import SpecError

__all__ = [
    "FreqInfo",
    "anchor",
    "future_dates",
    "grid",
    "info",
    "is_fixed",
    "natural_calendar",
    "offset_of",
    "positions",
    "season_length",
    "unit_steps",
]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY = pd.Timedelta(days=1)
_YEAR_DAYS = 365.2425
_HOLIDAY_YEARS = (1950, 2100)

#: the calendar units a duration may be written in, per frequency family: steps of one ``n=1`` offset per unit
_UNITS: dict[str, dict[str, Fraction]] = {
    "business": {"D": Fraction(1), "B": Fraction(1), "W": Fraction(5)},
    "weekly": {"D": Fraction(1, 7), "W": Fraction(1)},
    "semimonthly": {"M": Fraction(2), "Q": Fraction(6), "Y": Fraction(24)},
    "monthly": {"M": Fraction(1), "Q": Fraction(3), "Y": Fraction(12)},
    "quarterly": {"M": Fraction(1, 3), "Q": Fraction(1), "Y": Fraction(4)},
    "yearly": {"M": Fraction(1, 12), "Q": Fraction(1, 4), "Y": Fraction(1)},
}
_UNIT_WORDS = {"D": "days", "B": "business days", "W": "weeks", "M": "months", "Q": "quarters", "Y": "years"}
_SEASON = {"business": 5, "weekly": 52, "semimonthly": 24, "monthly": 12, "quarterly": 4, "yearly": 1}
_NOMINAL_DAYS = {
    "business": 7 / 5,
    "weekly": 7.0,
    "semimonthly": _YEAR_DAYS / 24,
    "monthly": _YEAR_DAYS / 12,
    "quarterly": _YEAR_DAYS / 4,
    "yearly": _YEAR_DAYS,
}


@dataclass(frozen=True)
class FreqInfo:
    """One frequency: its offset, family (``fixed`` or a calendar family), natural season (steps)
    and the length of one step (exact when fixed, the average otherwise)."""

    text: str
    offset: pd.DateOffset
    family: str
    season: int
    nominal: pd.Timedelta

    @property
    def fixed(self) -> bool:
        return self.family == "fixed"

    def describe(self) -> str:
        return "fixed-length" if self.fixed else f"{self.family} ({self.text})"


def _holiday_offset(country: str) -> pd.DateOffset:
    import holidays

    try:
        days = holidays.country_holidays(country, years=range(*_HOLIDAY_YEARS))
    except NotImplementedError:
        raise SpecError(
            f"data.frequency: unknown holiday country '{country}' in 'C:{country}' (use e.g. C:US, C:FR)"
        ) from None
    return po.CustomBusinessDay(holidays=sorted(days))


@functools.lru_cache(maxsize=128)
def offset_of(freq: str) -> pd.DateOffset:
    """The pandas offset of ``freq`` (``C:US``: business days without US holidays); a :class:`SpecError`
    naming ``data.frequency`` when pandas does not know it."""
    text = str(freq).strip()
    if text.upper().startswith("C:"):
        return _holiday_offset(text[2:].strip().upper())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # 'M', 'Q', 'A': still understood
            offset = to_offset(text)
    except (ValueError, TypeError):
        offset = None
    if offset is None or offset.n < 1:
        raise SpecError(
            f"data.frequency: {freq!r} is not a pandas frequency (use e.g. '5min', 'h', 'D', 'B', 'W-MON', 'MS', 'QS', 'YS')"
        )
    return offset


def _family(offset: pd.DateOffset) -> str:
    if isinstance(offset, po.Tick):
        return "fixed"
    if isinstance(offset, po.BusinessDay | po.CustomBusinessDay):
        return "business"
    if isinstance(offset, po.Week) and offset.weekday is not None:
        return "weekly"
    if isinstance(offset, po.SemiMonthBegin | po.SemiMonthEnd):
        return "semimonthly"
    if isinstance(offset, po.MonthBegin | po.MonthEnd | po.BusinessMonthBegin | po.BusinessMonthEnd):
        return "monthly"
    if isinstance(offset, po.QuarterBegin | po.QuarterEnd | po.BQuarterBegin | po.BQuarterEnd):
        return "quarterly"
    if isinstance(offset, po.YearBegin | po.YearEnd | po.BYearBegin | po.BYearEnd):
        return "yearly"
    return "other"


@functools.lru_cache(maxsize=128)
def info(freq: str) -> FreqInfo:
    """The :class:`FreqInfo` of ``freq``."""
    offset = offset_of(freq)
    family = _family(offset)
    n = int(offset.n)
    if family == "fixed":
        step = pd.Timedelta(offset)
        season = max(1, int(_DAY // step)) if step < _DAY else 7 if step == _DAY else 1
        return FreqInfo(str(freq), offset, family, season, step)
    if family == "other":  # an exotic offset (Easter, week of month...): its first step from 2000 as its length
        start = pd.Timestamp("2000-01-01")
        return FreqInfo(str(freq), offset, family, 1, (start + offset) - start)
    base = _SEASON[family]
    season = base // n if base % n == 0 else 1
    return FreqInfo(str(freq), offset, family, max(1, season), pd.Timedelta(days=_NOMINAL_DAYS[family] * n))


def is_fixed(freq: str) -> bool:
    return info(freq).fixed


def season_length(freq: str) -> int:
    """The natural season in steps: a day for sub-daily data, 7 for daily, 5 for business days, 52 for
    weekly, 12 for monthly, 4 for quarterly, 1 for yearly (divided by the frequency's multiple)."""
    return info(freq).season


def natural_max_gap(freq: str) -> int:
    """The longest gap (steps) filled by default: a week of business days, a month of weeks, a quarter of
    months, one quarter or year; a quarter of the season for fixed frequencies."""
    fi = info(freq)
    per = {"business": 5, "weekly": 4, "semimonthly": 2, "monthly": 3}.get(fi.family)
    return max(1, per // int(fi.offset.n)) if per else max(1, fi.season // 4)


def unit_steps(unit: str, freq: str) -> Fraction | None:
    """Steps of ``freq`` in one ``unit`` (``D``, ``B``, ``W``, ``M``, ``Q``, ``Y``) for a calendar frequency,
    ``None`` when the unit does not fit it (days on monthly data)."""
    fi = info(freq)
    per = _UNITS.get(fi.family, {}).get(unit)
    return None if per is None else per / int(fi.offset.n)


def unit_hint(freq: str) -> str:
    """The units that fit a calendar frequency, for messages."""
    units = _UNITS.get(info(freq).family, {})
    words = [_UNIT_WORDS[u] for u in units if u != "B"]
    return ", ".join([*words, "or a step count"]) if words else "a step count"


def grid(start: pd.Timestamp, end: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    """Every timestamp of ``freq`` from ``start`` to ``end`` (both on the grid)."""
    fi = info(freq)
    return pd.date_range(start, end, freq=fi.nominal if fi.fixed else fi.offset)


def future_dates(last: pd.Timestamp, h: int, freq: str) -> pd.DatetimeIndex:
    """The ``h`` timestamps of ``freq`` after ``last``."""
    fi = info(freq)
    if fi.fixed:
        return pd.date_range(pd.Timestamp(last) + fi.nominal, periods=h, freq=fi.nominal)
    return pd.date_range(pd.Timestamp(last) + fi.offset, periods=h, freq=fi.offset)


def shift(ts: pd.Timestamp, steps: int, freq: str) -> pd.Timestamp:
    """``ts`` moved ``steps`` steps of ``freq`` (an anchor of ``freq`` for calendar frequencies)."""
    fi = info(freq)
    if fi.fixed:
        return pd.Timestamp(ts) + steps * fi.nominal
    return pd.Timestamp(ts) + int(steps) * fi.offset


def positions(origin: pd.Timestamp, ds: pd.Series | pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Steps of ``freq`` from ``origin`` to each of ``ds`` (all on the grid, none before ``origin``
    for calendar frequencies); ``-1`` for a calendar timestamp off the grid."""
    fi = info(freq)
    values = pd.DatetimeIndex(ds)
    if fi.fixed:
        return np.asarray((values - pd.Timestamp(origin)) // fi.nominal, dtype=np.int64)
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    axis = grid(pd.Timestamp(origin), values.max(), freq)
    pos = axis.get_indexer(values)
    return np.asarray(pos, dtype=np.int64)


def _period_code(offset: pd.DateOffset, family: str) -> str | None:
    """The pandas period whose start (begin offsets) or end (end offsets) is ``offset``'s anchor."""
    if family == "monthly":
        return "M"
    if family == "quarterly":
        month = int(offset.startingMonth)
        begin = isinstance(offset, po.QuarterBegin | po.BQuarterBegin)
        return f"Q-{_MONTHS[(month - 2) % 12] if begin else _MONTHS[month - 1]}"
    if family == "yearly":
        month = int(offset.month)
        begin = isinstance(offset, po.YearBegin | po.BYearBegin)
        return f"Y-{_MONTHS[(month - 2) % 12] if begin else _MONTHS[month - 1]}"
    if family == "weekly":
        return f"W-{('MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN')[offset.weekday]}"
    return None


def anchor(ds: pd.Series, freq: str) -> pd.Series:
    """Each timestamp of ``ds`` on the anchor of ``freq`` it belongs to: a date in a month goes to that
    month's start (``MS``) or end (``ME``), a date in a week to the week's anchor day (the same
    calendar week, ending on the anchor day), a quarter/year likewise. Timestamps already on an anchor
    stay; business days only drop their time of day; ``NaT`` marks a timestamp that cannot be
    regularised (a weekend or holiday for ``B``/``C``). Fixed frequencies are not handled here."""
    fi = info(freq)
    offset = fi.offset
    day = ds.dt.normalize()
    if fi.family == "fixed":
        raise ValueError("anchor() is for calendar frequencies")
    if fi.family in ("business", "semimonthly", "other") or int(offset.n) != 1:
        on = day.map(lambda t: pd.NaT if pd.isna(t) else (t if offset.is_on_offset(t) else pd.NaT))
        return pd.to_datetime(on)
    code = _period_code(offset, fi.family)
    periods = day.dt.to_period(code)
    begin = isinstance(
        offset,
        po.MonthBegin | po.BusinessMonthBegin | po.QuarterBegin | po.BQuarterBegin | po.YearBegin | po.BYearBegin,
    )
    if begin:
        out = periods.dt.start_time
        business = isinstance(offset, po.BusinessMonthBegin | po.BQuarterBegin | po.BYearBegin)
        return out.map(offset.rollforward) if business else out
    out = periods.dt.end_time.dt.normalize()
    if isinstance(offset, po.BusinessMonthEnd | po.BQuarterEnd | po.BYearEnd):
        return out.map(offset.rollback)
    return out


def natural_calendar(freq: str) -> list[str]:
    """The calendar feature parts that suit ``freq`` when a spec names none (for ML models)."""
    return {
        "business": ["weekday", "month"],
        "weekly": ["week", "month"],
        "semimonthly": ["month"],
        "monthly": ["month", "days_in_month", "trading_days"],
        "quarterly": ["quarter", "trading_days"],
    }.get(info(freq).family, [])


def trading_days(ds: pd.DatetimeIndex, freq: str, holidays: np.ndarray | None = None) -> np.ndarray:
    """Business days (Monday-Friday, less ``holidays``) in the calendar period of each timestamp: its
    month for monthly and finer data, its week, quarter or year for those frequencies."""
    fi = info(freq)
    code = {"quarterly": "Q", "yearly": "Y"}.get(fi.family, "M")
    if fi.family == "weekly":
        code = _period_code(fi.offset, "weekly") or "W"
    periods = ds.to_period(code)
    start = periods.start_time.to_numpy().astype("datetime64[D]")
    stop = (periods.end_time.normalize() + _DAY).to_numpy().astype("datetime64[D]")
    kwargs = {} if holidays is None else {"holidays": holidays}
    return np.busday_count(start, stop, **kwargs).astype("int64")


def first_irregular(times: pd.Series | pd.DatetimeIndex, freq: str) -> int | None:
    """The position of the first timestamp of sorted ``times`` that is not one step of ``freq`` after
    the previous one (``None``: all regular)."""
    values = pd.DatetimeIndex(times)
    if len(values) < 2:
        return None
    fi = info(freq)
    if fi.fixed:
        ok = np.diff(values.as_unit("ns").asi8) == fi.nominal.value
    else:
        pos = positions(values[0], values, freq)
        ok = (np.diff(pos) == 1) & (pos[1:] >= 0)
    bad = np.flatnonzero(~np.asarray(ok))
    return int(bad[0]) + 1 if len(bad) else None


def past_dates(last: pd.Timestamp, n: int, freq: str) -> pd.DatetimeIndex:
    """The ``n`` timestamps of ``freq`` ending at ``last`` (rolled back onto an anchor when it is not one)."""
    fi = info(freq)
    if fi.fixed:
        return pd.date_range(end=pd.Timestamp(last), periods=n, freq=fi.nominal)
    return pd.date_range(end=fi.offset.rollback(pd.Timestamp(last).normalize()), periods=n, freq=fi.offset)
