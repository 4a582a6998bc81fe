"""One series' cleaning, the work of :func:`tidecast.data.clean.clean_part`: duplicates merged, readings
put into frequency bins, leading/trailing rows without a target dropped, outliers found, the regular
grid laid out and its gaps filled; each change logged."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from tidecast import calendar
from tidecast.durations import format_delta
from tidecast.errors import DataError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import CleanSpec

_MAD_SCALE = 1.4826


@dataclass(frozen=True)
class SeriesSettings:
    spec: CleanSpec
    freq: str
    step: pd.Timedelta  # exact for fixed frequencies, the average step for calendar ones
    fixed: bool
    max_gap: int | None
    season: int
    window: int
    numeric: tuple[str, ...]
    other: tuple[str, ...]

def _span(steps: int, s: SeriesSettings) -> str:
    """``2h`` for fixed frequencies, ``3 x MS`` for calendar ones."""
    return format_delta(steps * s.step) if s.fixed else f"{steps} x {s.freq}"

def anchored(uid: str, ds: pd.Series, freq: str) -> pd.Series:
    """``ds`` on the anchors of the calendar frequency ``freq``; a :class:`DataError` for a reading that
    has none (a weekend for business days)."""
    out = calendar.anchor(ds, freq)
    bad = out.isna() & ds.notna()
    if bad.any():
        first = pd.Timestamp(ds[bad].iloc[0])
        raise DataError(
            f"data.frequency is '{freq}' but series '{uid}' has a reading on {first:%Y-%m-%d} ({first:%A}), which is "
            f"not a {freq} date and cannot be moved onto one ({int(bad.sum())} such reading(s))"
        )
    return out

def when(ts: Any) -> str:
    return f"{pd.Timestamp(ts)} UTC"

def _runs(missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start positions, lengths) of the runs of True in ``missing``."""
    if not missing.any():
        return np.array([], dtype=int), np.array([], dtype=int)
    padded = np.concatenate([[False], missing, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return starts, ends - starts

def _change_rows(uid: str, ds: Any, kind: str, original: Any) -> pd.DataFrame:
    ds_index = pd.DatetimeIndex(ds)
    return pd.DataFrame({
        ID: np.full(len(ds_index), uid, dtype=object),
        TIME: ds_index,
        "kind": kind,
        "original": np.asarray(original, dtype="float64"),
    })

def _aggregate(part: pd.DataFrame, key: pd.Series, how: str, settings: SeriesSettings) -> pd.DataFrame:
    """Collapse rows with the same ``key`` (a timestamp): ``how`` on numbers, first of the rest."""
    numeric = [TARGET, *settings.numeric]
    grouped = part.groupby(key.rename(TIME), sort=True)
    values = grouped[numeric]
    result = values.sum(min_count=1) if how == "sum" else getattr(values, how)()
    if settings.other:
        result = result.join(grouped[list(settings.other)].first())
    result = result.reset_index()
    result.insert(0, ID, part[ID].iloc[0])
    return result[[ID, TIME, TARGET, *settings.numeric, *settings.other]]

def clean_series(uid: str, part: pd.DataFrame, s: SeriesSettings) -> tuple[pd.DataFrame | None, pd.DataFrame, dict[str, Any]]:
    spec = s.spec
    stat: dict[str, Any] = {
        "unique_id": uid, "rows_in": len(part), "rows_out": 0, "duplicates": 0, "regularized": 0, "trimmed": 0,
        "gaps_filled": 0, "longest_gap_steps": 0, "outliers": 0,
    }
    changes: list[pd.DataFrame] = []
    part = part[[ID, TIME, TARGET, *s.numeric, *s.other]].reset_index(drop=True)

    # 1. duplicated timestamps
    dup_any = part[TIME].duplicated(keep=False)
    if dup_any.any():
        first_dup = part.loc[dup_any, TIME].iloc[0]
        if spec.duplicates == "error":
            raise DataError(
                f"series '{uid}': timestamp {when(first_dup)} appears {int((part[TIME] == first_dup).sum())} times "
                "(clean.duplicates is 'error'; use mean, first or last to merge them)"
            )
        dropped = part[TIME].duplicated(keep="last" if spec.duplicates == "last" else "first")
        changes.append(_change_rows(uid, part.loc[dropped, TIME], "duplicate", part.loc[dropped, TARGET]))
        stat["duplicates"] = int(dropped.sum())
        if spec.duplicates == "mean":
            part = _aggregate(part, part[TIME], "mean", s)
        else:
            part = part[~dropped].reset_index(drop=True)

    # 2. (the spacing was checked against the frequency up front, see _check_spacing)
    # 3. off-grid readings into frequency bins (calendar frequencies: onto their anchors)
    binned = part[TIME].dt.floor(s.step) if s.fixed else anchored(uid, part[TIME], s.freq)
    moved = binned.ne(part[TIME])
    if moved.any():
        stat["regularized"] = int(moved.sum())
        if not s.fixed:
            stat["regularized_note"] = (
                f"{int(moved.sum())} reading(s) of series '{uid}' moved onto the {s.freq} anchors (e.g. "
                f"{pd.Timestamp(part[TIME][moved].iloc[0]):%Y-%m-%d} -> {pd.Timestamp(binned[moved].iloc[0]):%Y-%m-%d})"
            )
        part = _aggregate(part, binned, spec.regularize_agg, s)

    # 4. no target before the first / after the last observed value: drop, never extrapolate
    observed = part[TARGET].notna().to_numpy()
    if not observed.any():
        stat["trimmed"] = len(part)
        return None, _change_rows(uid, [], "filled", []), stat
    first, last = int(np.argmax(observed)), len(observed) - 1 - int(np.argmax(observed[::-1]))
    stat["trimmed"] = first + (len(part) - 1 - last)
    part = part.iloc[first:last + 1]

    # 5. the full regular grid
    grid = calendar.grid(part[TIME].iloc[0], part[TIME].iloc[-1], s.freq)
    frame = part.set_index(TIME).reindex(grid)
    frame.index.name = TIME
    frame[ID] = uid
    y = frame[TARGET].to_numpy(dtype="float64", copy=True)

    # 6. outliers among the observed values
    flagged, lower, upper = _outliers(y, spec.outliers.method, spec.outliers.threshold, s.window)
    if flagged.any():
        stat["outliers"] = int(flagged.sum())
        changes.append(_change_rows(uid, grid[flagged], "outlier", y[flagged]))
        if spec.outliers.action == "clip":
            y[flagged] = np.clip(y[flagged], lower[flagged], upper[flagged])

    # 7. gaps
    missing = np.isnan(y)
    starts, lengths = _runs(missing)
    if len(starts):
        if spec.gaps.method == "error":
            raise DataError(
                f"series '{uid}': no reading at {when(grid[starts[0]])} ({int(missing.sum())} missing in all; "
                "clean.gaps.method is 'error')"
            )
        if s.max_gap is not None and lengths.max() > s.max_gap:
            i = int(np.argmax(lengths > s.max_gap))
            raise DataError(
                f"series '{uid}': a gap of {lengths[i]} steps ({_span(int(lengths[i]), s)}) starting at "
                f"{when(grid[starts[i]])} is longer than clean.gaps.max_gap "
                f"({spec.gaps.max_gap}, {s.max_gap} step{'' if s.max_gap == 1 else 's'})"
            )
        source = y.copy()
        if flagged.any() and spec.outliers.action == "interpolate":
            source[flagged] = np.nan
        y = _fill(source, missing, spec.gaps.method, s.season)
        if flagged.any() and spec.outliers.action == "interpolate":
            y[flagged] = source[flagged]  # still NaN: interpolated below with the filled gaps as anchors
        stat["gaps_filled"] = int(missing.sum())
        stat["longest_gap_steps"] = int(lengths.max())
        changes.append(_change_rows(uid, grid[missing], "filled", np.full(int(missing.sum()), np.nan)))
    if flagged.any() and spec.outliers.action == "interpolate":
        y[flagged] = np.nan
        y = _interpolate(y)
    frame[TARGET] = y

    # 8. exogenous and static columns
    for col in s.numeric:
        values = frame[col]
        if values.isna().all():
            raise DataError(f"series '{uid}': exogenous column '{col}' has no values")
        if values.isna().any():
            frame[col] = values.interpolate(limit_area="inside").ffill().bfill()
    for col in s.other:
        if frame[col].isna().any():
            frame[col] = frame[col].ffill().bfill()

    frame = frame.reset_index()[[ID, TIME, TARGET, *s.numeric, *s.other]]
    stat["rows_out"] = len(frame)
    change = pd.concat(changes, ignore_index=True) if changes else _change_rows(uid, [], "filled", [])
    return frame, change, stat

def _interpolate(y: np.ndarray) -> np.ndarray:
    """Linear in position (= in time on a regular grid); the ends take the nearest value."""
    series = pd.Series(y)
    return series.interpolate(method="linear", limit_area="inside").ffill().bfill().to_numpy(dtype="float64")

def _fill(y: np.ndarray, missing: np.ndarray, method: str, season: int) -> np.ndarray:
    out = y.copy()
    if method == "ffill":
        filled = pd.Series(out).ffill().to_numpy(dtype="float64")
        out[missing] = filled[missing]
    elif method == "seasonal":
        positions = np.flatnonzero(missing)
        earlier = positions - season
        ok = earlier >= 0
        ok[ok] = ~np.isnan(y[earlier[ok]])
        out[positions[ok]] = y[earlier[ok]]
    # interpolate, and whatever 'seasonal' could not fill
    if np.isnan(out[missing]).any():
        interpolated = _interpolate(out)
        still = missing & np.isnan(out)
        out[still] = interpolated[still]
    return out

def _outliers(y: np.ndarray, method: str, k: float, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flags, lower bounds, upper bounds) for the observed values of ``y``.

    A series without spread (IQR, standard deviation or local MAD of 0) flags nothing there. The
    Hampel filter's local MAD is floored at the typical step-to-step change of the series.
    """
    n = len(y)
    none = np.zeros(n, dtype=bool)
    observed = ~np.isnan(y)
    if method == "none" or observed.sum() < 4:
        return none, np.full(n, -np.inf), np.full(n, np.inf)
    if method == "iqr":
        q1, q3 = np.nanpercentile(y, [25, 75])
        spread = q3 - q1
        lower, upper = np.full(n, q1 - k * spread), np.full(n, q3 + k * spread)
        flags = observed & ((y < lower) | (y > upper)) if spread > 0 else none
    elif method == "zscore":
        mean, std = float(np.nanmean(y)), float(np.nanstd(y, ddof=1))
        lower, upper = np.full(n, mean - k * std), np.full(n, mean + k * std)
        flags = observed & (np.abs(y - mean) > k * std) if std > 0 else none
    else:  # hampel
        median, mad = _rolling_median_mad(y, window)
        # floor the local MAD at the series' step-to-step noise, so that a flat stretch does not
        # turn ordinary noise into outliers (a short window's MAD is often tiny by chance)
        steps = np.abs(np.diff(y))
        steps = steps[~np.isnan(steps)]
        if len(steps):
            mad = np.fmax(mad, float(np.median(steps)) / np.sqrt(2.0))
        scale = k * _MAD_SCALE * mad
        lower, upper = median - scale, median + scale
        with np.errstate(invalid="ignore"):
            flags = observed & (mad > 0) & (np.abs(y - median) > scale)
    return flags, lower, upper

def _rolling_median_mad(y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred rolling median and MAD over ``window`` steps (an odd number: ``window // 2`` each side)."""
    half = max(1, window // 2)
    width = 2 * half + 1
    padded = np.pad(y, half, constant_values=np.nan)
    view = sliding_window_view(padded, width)
    median = np.empty(len(y))
    mad = np.empty(len(y))
    chunk = max(1, 2_000_000 // width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows inside long gaps
        for start in range(0, len(y), chunk):
            block = view[start:start + chunk]
            med = np.nanmedian(block, axis=1)
            median[start:start + chunk] = med
            mad[start:start + chunk] = np.nanmedian(np.abs(block - med[:, None]), axis=1)
    return median, mad
