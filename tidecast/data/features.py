"""Features from the canonical frame: calendar and Fourier terms (from ``ds`` only, so they are
known for future timestamps) and per-series lags and rolling statistics (from past ``y`` only).

>>> feats = build_features(df, spec.features, timezone="Europe/Paris", freq="5min")   # doctest: +SKIP

No feature at row ``t`` depends on ``y`` at ``t`` or later: lags are ``y[t-k]`` with ``k >= 1``,
rolling statistics cover ``y[t-w] .. y[t-1]``, past-only exogenous columns become ``{col}_lag1``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from tidecast import calendar
from tidecast.durations import Duration, freq_timedelta, to_steps
from tidecast.errors import DataError, SpecError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import FeatureSpec

__all__ = [
    "add_lag_features",
    "add_time_features",
    "build_features",
    "lag_feature_names",
    "off_days",
    "time_feature_columns",
    "time_feature_names",
]


# ------------------------------------------------------------------------------ time features
def _fourier_period(value: Duration, freq: str, field: str) -> int | float:
    """A Fourier period in steps: a whole number, or on weekly data a year of 52.18 weeks."""
    try:
        return to_steps(value, freq, field=field)
    except SpecError:
        fi = calendar.info(freq)
        if fi.family == "weekly" and isinstance(value, str) and value.strip().lower().endswith(("y", "year", "years")):
            years = float(value.strip().lower().rstrip("years").strip() or 1)
            return round(years * 365.2425 / fi.nominal.days, 4)
        raise


def _fourier_terms(spec: FeatureSpec, freq: str) -> list[tuple[int | float, int]]:
    """(period in steps, order) of every Fourier spec."""
    terms = []
    for i, fourier in enumerate(spec.fourier):
        period = _fourier_period(fourier.period, freq, f"features.fourier[{i}].period")
        if period < 2:
            raise SpecError(f"features.fourier[{i}].period: must be at least 2 steps of {freq}, got {fourier.period!r}")
        terms.append((period, fourier.order))
    return terms


def time_feature_names(spec: FeatureSpec, freq: str) -> list[str]:
    """The columns :func:`add_time_features` adds, in order.

    >>> from tidecast.spec import FourierSpec
    >>> time_feature_names(FeatureSpec(calendar=["hour"], fourier=[FourierSpec(period="1d", order=1)]), "h")
    ['hour', 'fourier_24_sin1', 'fourier_24_cos1']
    """
    names = list(dict.fromkeys(spec.calendar))
    for period, order in _fourier_terms(spec, freq):
        for k in range(1, order + 1):
            names += [f"fourier_{period}_sin{k}", f"fourier_{period}_cos{k}"]
    return names


def _utc_naive(ds: pd.Series) -> pd.Series:
    if isinstance(ds.dtype, pd.DatetimeTZDtype):
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    elif not pd.api.types.is_datetime64_dtype(ds):
        try:
            ds = pd.to_datetime(ds)
        except (ValueError, TypeError) as exc:
            raise DataError(f"features: column '{TIME}' does not hold timestamps ({exc})") from None
        return _utc_naive(ds)
    return ds.astype("datetime64[ns]")


@functools.lru_cache(maxsize=64)
def _holiday_days(country: str, first_year: int, last_year: int) -> np.ndarray:
    """The sorted holiday dates of ``country`` in the years given, as ``datetime64[D]`` (cached: building a
    calendar costs milliseconds, and serving asks for the same years on every request)."""
    import holidays

    try:
        calendar = holidays.country_holidays(country, years=range(first_year, last_year + 1))
    except NotImplementedError:
        raise SpecError(f"features.holidays_country: unknown country code '{country}' (use e.g. FR, US, DE)") from None
    days = np.array(sorted(calendar), dtype="datetime64[D]")
    days.setflags(write=False)
    return days


def _holidays(local: pd.DatetimeIndex, country: str | None) -> np.ndarray:
    if not country:
        raise SpecError("features.holidays_country: needed for the 'holiday' calendar part (e.g. FR, US, DE)")
    if not len(local):
        return np.zeros(0, dtype=bool)
    day = local.to_numpy().astype("datetime64[D]")
    years = local.year
    return np.isin(day, _holiday_days(country, int(years.min()), int(years.max())))


def off_days(ds: pd.DatetimeIndex, *, timezone: str | None, country: str | None) -> np.ndarray:
    """Whether each UTC-naive timestamp of ``ds`` falls on a day off on the local clock of
    ``timezone``: a Saturday, a Sunday or (``country`` given) one of its public holidays."""
    local = ds
    if timezone:
        try:
            local = ds.tz_localize("UTC").tz_convert(timezone).tz_localize(None)
        except Exception as exc:  # zoneinfo/pytz raise several types for unknown zones
            raise SpecError(f"data.timezone: unknown time zone '{timezone}' ({exc})") from None
    out = np.asarray(local.weekday >= 5)
    if country and len(local):
        out = out | _holidays(local, country)
    return out


def time_feature_columns(ds: pd.DatetimeIndex, spec: FeatureSpec, *, timezone: str | None, freq: str) -> dict[str, np.ndarray]:
    """The calendar and Fourier columns of :func:`add_time_features` for the UTC-naive timestamps ``ds``
    (arrays, in the order of :func:`time_feature_names`): the array form serving uses on its hot path."""
    out: dict[str, np.ndarray] = {}
    parts = list(dict.fromkeys(spec.calendar))
    if parts:
        local = ds
        if timezone and calendar.is_fixed(freq):  # calendar series are dates, read as they are
            try:
                local = ds.tz_localize("UTC").tz_convert(timezone).tz_localize(None)
            except Exception as exc:  # zoneinfo/pytz raise several types for unknown zones
                raise SpecError(f"data.timezone: unknown time zone '{timezone}' ({exc})") from None
        accessors = {
            "minute": lambda: local.minute,
            "hour": lambda: local.hour,
            "weekday": lambda: local.weekday,
            "day": lambda: local.day,
            "month": lambda: local.month,
            "dayofyear": lambda: local.dayofyear,
            "weekend": lambda: local.weekday >= 5,
            "holiday": lambda: _holidays(local, spec.holidays_country),
            "week": lambda: local.isocalendar().week.to_numpy(),
            "quarter": lambda: local.quarter,
            "days_in_month": lambda: local.days_in_month,
            "trading_days": lambda: _trading_days(local, freq, spec.holidays_country),
        }
        for part in parts:
            out[part] = np.asarray(accessors[part](), dtype="int64")
    terms = _fourier_terms(spec, freq)
    if terms:
        fixed = calendar.is_fixed(freq)
        step_ns = freq_timedelta(freq).value
        # fixed: nanoseconds since the epoch; calendar: steps since the first anchor of 1970
        ns = ds.to_numpy().astype("int64") if fixed else _calendar_steps(ds, freq)
        for period, order in terms:
            span = period * step_ns if fixed else period
            phase = np.mod(ns, span).astype("float64") / span  # exact modulo in integers (52.18 weeks: in floats)
            for k in range(1, order + 1):
                angle = 2.0 * np.pi * k * phase
                out[f"fourier_{period}_sin{k}"] = np.sin(angle)
                out[f"fourier_{period}_cos{k}"] = np.cos(angle)
    return out


def _calendar_steps(ds: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """Steps of the calendar frequency ``freq`` from its first anchor in 1970 to each of ``ds``."""
    epoch = calendar.offset_of(freq).rollforward(pd.Timestamp("1970-01-01"))
    steps = calendar.positions(epoch, ds.normalize(), freq)
    if len(steps) and (steps < 0).any():
        bad = ds[int(np.flatnonzero(steps < 0)[0])]
        raise DataError(f"features: timestamp {bad} is not a {freq} date (clean the data first)")
    return steps


def _trading_days(local: pd.DatetimeIndex, freq: str, country: str | None) -> np.ndarray:
    """Business days in each timestamp's calendar period (less ``country``'s holidays when given)."""
    if not len(local):
        return np.zeros(0, dtype="int64")
    days = _holiday_days(country, int(local.year.min()) - 1, int(local.year.max()) + 1) if country else None
    return calendar.trading_days(local, freq, days)


def add_time_features(df: pd.DataFrame, spec: FeatureSpec, *, timezone: str | None, freq: str) -> pd.DataFrame:
    """``df`` with calendar and Fourier columns computed from ``ds`` (UTC) only.

    Calendar parts (``minute, hour, weekday`` (Monday=0), ``day, month, dayofyear``,
    ``weekend`` and ``holiday`` (0/1)) are read on the local clock of ``timezone`` when given.
    Fourier terms ``fourier_{P}_sin{k}`` / ``_cos{k}`` (P: the period in steps) take their phase
    from absolute time, so training rows and future rows agree.

    >>> df = pd.DataFrame({"ds": pd.to_datetime(["2024-07-14 10:00"])})
    >>> add_time_features(df, FeatureSpec(calendar=["hour", "holiday"], holidays_country="FR"),
    ...                   timezone="Europe/Paris", freq="h")[["hour", "holiday"]].to_dict("records")
    [{'hour': 12, 'holiday': 1}]
    """
    if TIME not in df.columns:
        raise DataError(f"features: the frame has no column '{TIME}'")
    out = df.copy()
    ds = pd.DatetimeIndex(_utc_naive(out[TIME]))
    for name, values in time_feature_columns(ds, spec, timezone=timezone, freq=freq).items():
        out[name] = values
    return out


# ------------------------------------------------------------------------------- lag features
def _lag_steps(spec: FeatureSpec, freq: str) -> list[int]:
    lags = []
    for i, lag in enumerate(spec.lags):
        steps = to_steps(lag, freq, field=f"features.lags[{i}]")
        if steps < 1:
            raise SpecError(f"features.lags[{i}]: a lag must be at least one step (lag 0 is the value being forecast)")
        lags.append(steps)
    return list(dict.fromkeys(lags))


def _rolling_steps(spec: FeatureSpec, freq: str) -> list[tuple[int, list[str]]]:
    out = []
    for i, rolling in enumerate(spec.rolling):
        window = to_steps(rolling.window, freq, field=f"features.rolling[{i}].window")
        if window < 1:
            raise SpecError(f"features.rolling[{i}].window: must be at least one step")
        out.append((window, list(dict.fromkeys(rolling.stats))))
    return out


def lag_feature_names(spec: FeatureSpec, freq: str, past_only: Sequence[str] = ()) -> list[str]:
    """The columns :func:`add_lag_features` adds, in order.

    >>> from tidecast.spec import RollingSpec
    >>> lag_feature_names(FeatureSpec(lags=[1, "1h"], rolling=[RollingSpec(window=3, stats=["mean"])]), "15min")
    ['lag_1', 'lag_4', 'roll_3_mean']
    """
    names = [f"lag_{k}" for k in _lag_steps(spec, freq)]
    for window, stats in _rolling_steps(spec, freq):
        names += [f"roll_{window}_{stat}" for stat in stats]
    names += [f"{col}_lag1" for col in past_only]
    return names


def add_lag_features(
    df: pd.DataFrame, spec: FeatureSpec, freq: str, *, past_only: Sequence[str] = ()
) -> pd.DataFrame:
    """``df`` with per-series lags ``lag_{k}`` and rolling statistics ``roll_{w}_{stat}`` of ``y``.

    Steps are counted on the time grid of ``freq`` (a missing row is a missing value, not a
    shorter lag). ``roll_{w}_{stat}`` at row ``t`` covers ``y[t-w] .. y[t-1]`` and is NaN until
    ``w`` past values exist. Each column of ``past_only`` is replaced by ``{col}_lag1``.
    Rows keep their order and index.

    >>> df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=4, freq="h"),
    ...                    "y": [1.0, 2.0, 3.0, 4.0]})
    >>> add_lag_features(df, FeatureSpec(lags=[1]), "h")["lag_1"].tolist()
    [nan, 1.0, 2.0, 3.0]
    """
    for col in (TIME, TARGET, *past_only):
        if col not in df.columns:
            raise DataError(f"features: the frame has no column '{col}' (columns: {', '.join(map(str, df.columns))})")
    lags = _lag_steps(spec, freq)
    rollings = _rolling_steps(spec, freq)
    out = df.copy()
    if not lags and not rollings and not past_only:
        return out

    ids = out[ID].astype(str).to_numpy() if ID in out.columns else np.full(len(out), "series", dtype=object)
    ds = _utc_naive(out[TIME]).to_numpy().astype("int64")
    codes, uniques = pd.factorize(ids, sort=True)

    # position of every row on its series' grid
    first = pd.Series(ds).groupby(codes).transform("min").to_numpy()
    if calendar.is_fixed(freq):
        offset, remainder = np.divmod(ds - first, freq_timedelta(freq).value)
    else:  # steps along the calendar from the earliest timestamp; off the grid: -1
        origin = pd.Timestamp(ds.min())
        steps = calendar.positions(origin, pd.DatetimeIndex(ds), freq)
        starts = pd.Series(steps).groupby(codes).transform("min").to_numpy()
        offset, remainder = steps - starts, (steps < 0).astype("int64")
    if remainder.any():
        bad = int(np.flatnonzero(remainder)[0])
        raise DataError(
            f"features: series '{ids[bad]}' has timestamp {pd.Timestamp(ds[bad])} off the {freq} grid (clean the data first)"
        )
    keys = pd.MultiIndex.from_arrays([codes, offset])
    if keys.has_duplicates:
        bad = int(np.flatnonzero(keys.duplicated())[0])
        raise DataError(
            f"features: series '{ids[bad]}' has timestamp {pd.Timestamp(ds[bad])} more than once (clean the data first)"
        )

    # the full grid of every series, one block after the other
    length = pd.Series(offset).groupby(codes).max().reindex(range(len(uniques))).fillna(-1).to_numpy(dtype=int) + 1
    start = np.concatenate([[0], np.cumsum(length)[:-1]])
    total = int(length.sum())
    row_in_grid = start[codes] + offset
    position = np.arange(total) - np.repeat(start, length)  # steps since the series' first row

    def on_grid(values: np.ndarray) -> np.ndarray:
        grid = np.full(total, np.nan)
        grid[row_in_grid] = values
        return grid

    def shifted(grid: np.ndarray, k: int) -> np.ndarray:
        result = np.full(total, np.nan)
        if k < total:
            result[k:] = grid[:-k]
        result[position < k] = np.nan  # never reach into the previous series
        return result

    y = on_grid(out[TARGET].to_numpy(dtype="float64"))
    new: dict[str, np.ndarray] = {}
    for k in lags:
        new[f"lag_{k}"] = shifted(y, k)[row_in_grid]
    if rollings:
        previous = shifted(y, 1)
        for window, stats in rollings:
            for stat, values in _rolling(previous, window, stats).items():
                values[position < window] = np.nan  # windows that would straddle two series
                new[f"roll_{window}_{stat}"] = values[row_in_grid]
    for col in past_only:
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype="float64")
        new[f"{col}_lag1"] = shifted(on_grid(values), 1)[row_in_grid]
    out = out.drop(columns=list(past_only))
    for name, values in new.items():
        out[name] = values
    return out


def _rolling(values: np.ndarray, window: int, stats: Sequence[str]) -> dict[str, np.ndarray]:
    """Statistics of ``values[t-window+1 .. t]`` for every ``t``; NaN unless the window is full.

    Each window is computed on its own (not with running sums), so no value outside a window,
    earlier or later, can leak into it even through rounding.
    """
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    windows = sliding_window_view(padded, window)
    funcs = {"mean": np.mean, "std": lambda w, axis: np.std(w, axis=axis, ddof=1), "min": np.min, "max": np.max}
    out = {stat: np.empty(len(values)) for stat in stats}
    chunk = max(1, 2_000_000 // window)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # std of a single value
        for start in range(0, len(values), chunk):
            block = windows[start:start + chunk]
            for stat in stats:
                out[stat][start:start + chunk] = funcs[stat](block, axis=1)
    return out


def build_features(
    df: pd.DataFrame, spec: FeatureSpec, *, timezone: str | None, freq: str, past_only: Sequence[str] = ()
) -> pd.DataFrame:
    """:func:`add_time_features` then :func:`add_lag_features`.

    >>> build_features(df, spec.features, timezone="Europe/Paris", freq="5min")   # doctest: +SKIP
    """
    with_time = add_time_features(df, spec, timezone=timezone, freq=freq)
    return add_lag_features(with_time, spec, freq, past_only=past_only)
