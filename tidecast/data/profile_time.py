"""The time axis of a profiled table (:mod:`tidecast.data.profile`): its frequency, gaps and seasons.

Works on the canonical long frame (``unique_id, ds, y``). A frequency is fixed (``5min``, ``h``,
``D``; weekly data is a fixed ``7D``) or, where ``data.frequency`` accepts it, a calendar one
(``MS``, ``B``...). A calendar frequency the spec refuses is one clear :class:`DataError`.

>>> long = pd.DataFrame({ID: "a", TIME: pd.date_range("2024-01-01", periods=96, freq="h"), TARGET: 1.0})
>>> infer_grid(long, "x.csv").freq, candidate_periods(infer_grid(long, "x.csv"))
('h', [24, 168])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries import offsets
from pandas.tseries.frequencies import to_offset
from pydantic import ValidationError

from tidecast.errors import DataError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import DataSpec

_ACF_SERIES = 8  # series whose autocorrelation is averaged
_PEAK = 0.2  # the least autocorrelation of a seasonal peak
_PROMINENCE = 0.1  # how far the peak rises above the lowest point of the half period before it
_MARGIN = 0.03  # how far a multiple of a kept season must rise above that season's neighbouring peaks


@dataclass(frozen=True)
class Grid:
    """A frequency: its text for the spec, the length of one step (the average for calendar ones) and
    what ``pd.date_range`` steps by."""

    freq: str
    step: pd.Timedelta
    stride: pd.Timedelta | pd.DateOffset

    @property
    def fixed(self) -> bool:
        return isinstance(self.stride, pd.Timedelta)


def _spec_accepts(freq: str) -> str | None:
    """``None`` when ``data.frequency`` takes ``freq``, else why not."""
    try:
        DataSpec(source="x.csv", frequency=freq)
    except ValidationError as exc:
        return str(exc.errors()[0].get("msg", "refused")).removeprefix("Value error, ")
    return None


def grid_of(freq: str, label: str, *, flag: str = "--frequency") -> Grid:
    """The :class:`Grid` of a frequency the spec accepts (a :class:`DataError` naming ``flag`` else)."""
    why = _spec_accepts(freq)
    if why is not None:
        raise DataError(f"{label}: {flag} {freq}: {why}")
    offset = to_offset(freq)
    if isinstance(offset, offsets.Tick):
        step = pd.Timedelta(offset)
        return Grid(offset.freqstr, step, step)
    start = pd.Timestamp("2001-01-01")
    nominal = (pd.date_range(start, periods=13, freq=offset)[-1] - pd.date_range(start, periods=1, freq=offset)[0]) / 12
    return Grid(freq, nominal, offset)


def _family(freq: str) -> str:
    offset = to_offset(freq)
    for kinds, name in (
        ((offsets.BusinessDay, offsets.CustomBusinessDay), "business-daily"),
        ((offsets.Week,), "weekly"),
        ((offsets.MonthBegin, offsets.MonthEnd, offsets.BusinessMonthBegin, offsets.BusinessMonthEnd), "monthly"),
        ((offsets.QuarterBegin, offsets.QuarterEnd), "quarterly"),
        ((offsets.YearBegin, offsets.YearEnd), "yearly"),
    ):
        if isinstance(offset, kinds):
            return name
    return "calendar"


def _calendar(freq: str, label: str) -> Grid:
    """The grid of a calendar frequency found in the data: weekly data is a fixed 7-day step where the
    spec takes no weekly frequency; another one the spec refuses is one clear error."""
    if _spec_accepts(freq) is None:
        return grid_of(freq, label)
    if isinstance(to_offset(freq), offsets.Week):
        return grid_of("7D", label)
    raise DataError(
        f"{label}: the data is {_family(freq)} (pandas frequency '{freq}'), a calendar frequency that "
        "data.frequency does not accept today (it takes fixed steps such as 5min, 15min, h or D)"
    )


def infer_grid(long: pd.DataFrame, label: str) -> Grid:
    """The frequency of a long frame: ``pd.infer_freq`` on the median series, else the most common
    distance between consecutive readings, which must separate (a multiple of) at least 90 % of them."""
    unique = long.drop_duplicates([ID, TIME])
    diffs = unique.groupby(ID, sort=False)[TIME].diff().dropna()
    if diffs.empty:
        raise DataError(f"{label}: every series has a single timestamp: no frequency to infer")
    sizes = unique.groupby(ID, sort=False).size().sort_values(kind="stable")
    times = pd.DatetimeIndex(unique.loc[unique[ID] == sizes.index[len(sizes) // 2], TIME].sort_values())
    inferred = None
    if len(times) >= 3:
        try:
            inferred = pd.infer_freq(times)
        except (TypeError, ValueError):
            inferred = None
    if inferred is not None:
        return grid_of(inferred, label) if isinstance(to_offset(inferred), offsets.Tick) else _calendar(inferred, label)
    step = pd.Timedelta(diffs.value_counts().index[0])
    day = pd.Timedelta(days=1)
    if 28 * day <= step <= 31 * day and diffs.between(28 * day, 31 * day).mean() >= 0.9:
        stamps = pd.DatetimeIndex(unique[TIME])
        if stamps.is_month_start.all() or stamps.is_month_end.all():
            return _calendar("MS" if stamps.is_month_start.all() else "ME", label)
    on_grid = float((diffs % step == pd.Timedelta(0)).mean())
    if on_grid < 0.9:
        raise DataError(
            f"{label}: irregular timestamps: the most common interval ({to_offset(step).freqstr}) separates only "
            f"{on_grid:.0%} of consecutive readings; give the grid to put them on with --frequency (e.g. --frequency 1h)"
        )
    return grid_of(to_offset(step).freqstr, label)


# ------------------------------------------------------------------------------------- gaps
def gaps(long: pd.DataFrame, grid: Grid) -> tuple[pd.Series, int, int, int]:
    """(steps per series from its first to its last timestamp, missing steps, the longest gap in
    steps, rows off the grid)."""
    unique = long.drop_duplicates([ID, TIME])
    if grid.fixed:
        first = unique.groupby(ID, sort=False)[TIME].transform("min")
        offset = unique[TIME] - first
        position = pd.Series(
            np.where(offset % grid.step == pd.Timedelta(0), offset // grid.step, -1), index=unique.index
        )
    else:
        position = pd.Series(-1, index=unique.index)
        for _uid, times in unique.groupby(ID, sort=False)[TIME]:
            axis = pd.date_range(times.min(), times.max(), freq=grid.stride)
            position[times.index] = axis.get_indexer(pd.DatetimeIndex(times))
    keep = position >= 0
    on = pd.DataFrame({ID: unique[ID][keep], "p": position[keep]}).sort_values([ID, "p"])
    span = on.groupby(ID, sort=False)["p"].max() + 1
    missing = int((span - on.groupby(ID, sort=False).size()).clip(lower=0).sum())
    jumps = on.groupby(ID, sort=False)["p"].diff().dropna() - 1
    return span.astype(int), missing, int(max(jumps.max(), 0)) if len(jumps) else 0, int((~keep).sum())


# ---------------------------------------------------------------------------------- seasons
def candidate_periods(grid: Grid) -> list[int]:
    """Seasonal periods worth testing: a day and a week below a day (24/168 hourly, 288/2016 at 5
    minutes), a week and a year for daily data, a year for weekly, monthly and quarterly data, a week
    for business days."""
    day, week = pd.Timedelta(days=1), pd.Timedelta(days=7)
    if grid.fixed:
        if grid.step < day and day % grid.step == pd.Timedelta(0):
            return [int(day // grid.step), int(week // grid.step)]
        return {day: [7, 365], week: [52]}.get(grid.step, [])
    family = _family(grid.freq)
    per = {"business-daily": 5, "weekly": 52, "monthly": 12, "quarterly": 4}.get(family, 1)
    n = int(to_offset(grid.freq).n)
    return [per // n] if per % n == 0 and per // n > 1 else []


def _acf(x: np.ndarray, nlags: int) -> np.ndarray:
    """The autocorrelation of ``x`` at lags 0..nlags, each lag's sum divided by its number of pairs
    (unbiased: a pure cycle peaks exactly at its period)."""
    x = x - x.mean()
    n = len(x)
    spectrum = np.fft.rfft(x, n=2 ** int(np.ceil(np.log2(2 * n))))
    corr = np.fft.irfft(spectrum * np.conj(spectrum))[: nlags + 1] / (n - np.arange(nlags + 1))
    return corr / corr[0] if corr[0] > 0 else np.zeros(nlags + 1)


def _series_on_grid(part: pd.DataFrame, grid: Grid) -> np.ndarray:
    series = pd.Series(part[TARGET].to_numpy(dtype="float64"), index=pd.DatetimeIndex(part[TIME]))
    series = series.groupby(level=0).mean()
    axis = pd.date_range(series.index[0], series.index[-1], freq=grid.stride)
    return series.reindex(axis).interpolate(limit_direction="both").to_numpy()


def seasonal_periods(long: pd.DataFrame, grid: Grid) -> tuple[list[int], dict[int, float]]:
    """(periods with a clear autocorrelation peak, the autocorrelation at each period tried), averaged
    over the longest series after removing a linear trend. A period needs two full cycles of data; its
    peak must reach 0.2, top its neighbourhood (a quarter period either side) and rise 0.1 above the
    lowest point of the half period before it; a multiple of a kept season must also top that season's
    peaks one season before and after it."""
    ids = long.groupby(ID, sort=False).size().sort_values(ascending=False, kind="stable").index[:_ACF_SERIES]
    arrays = []
    for uid in ids:
        part = long[long[ID] == uid].dropna(subset=[TARGET])
        if len(part) >= 4:
            y = _series_on_grid(part, grid)
            if np.isfinite(y).all() and np.ptp(y) > 0:
                t = np.arange(len(y), dtype="float64")
                arrays.append(y - np.polyval(np.polyfit(t, y, 1), t))
    n = min((len(a) for a in arrays), default=0)
    periods = [p for p in candidate_periods(grid) if p >= 2 and n >= 2 * p + 1]
    if not periods:
        return [], {}
    nlags = min(n - 1, max(periods) + max(periods) // 2)
    acf = np.mean([_acf(a[-n:], nlags) for a in arrays], axis=0)
    kept: list[int] = []
    tried: dict[int, float] = {}
    for p in periods:
        tried[p] = round(float(acf[p]), 3)
        w = max(1, p // 4)
        clear = acf[p] >= _PEAK and acf[p] >= acf[max(1, p - w) : min(nlags, p + w) + 1].max() - 0.02
        clear = clear and acf[p] - acf[max(1, p // 2) : p + 1].min() >= _PROMINENCE
        for s in (s for s in kept if p % s == 0):
            clear = clear and all(acf[p] > acf[q] + _MARGIN for q in (p - s, p + s) if 0 < q <= nlags)
        if clear:
            kept.append(p)
    return kept, tried


__all__ = ["Grid", "candidate_periods", "gaps", "grid_of", "infer_grid", "seasonal_periods"]
