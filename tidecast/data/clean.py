"""Clean canonical long data: duplicates, a regular time grid, gaps, outliers; with a change log.

>>> result = clean(df, spec.clean, "5min", min_length=576)     # doctest: +SKIP
>>> result.summary["gaps_filled"], result.summary["outliers"]   # doctest: +SKIP
(583, 10)

Each series is cleaned on its own, in this order: sort; resolve duplicated timestamps
(``clean.duplicates``); check the spacing against the frequency; put off-grid readings into
frequency bins (``clean.regularize_agg``); drop leading/trailing rows without a target (never
extrapolate); find outliers among the observed values (``clean.outliers``); lay out the full
regular grid and fill the gaps (``clean.gaps``, at most ``max_gap`` long); fill exogenous gaps.
The returned frame never holds NaN in ``y``.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from tidecast import calendar
from tidecast.durations import freq_timedelta, to_steps
from tidecast.errors import DataError, SpecError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import CleanSpec

__all__ = [
    "CHANGE_KINDS", "CleanPart", "CleanResult", "check_anchors", "check_duplicates", "clean", "clean_part", "resolve_min_length", "summarize",
    "too_short_series",
]

CHANGE_KINDS = ("filled", "outlier", "duplicate")
_MAX_LISTED = 50
_MAD_SCALE = 1.4826


@dataclass(frozen=True)
class CleanResult:
    """What :func:`clean` returns.

    ``frame``: the cleaned data (same columns and dtypes as the input, no NaN in ``y``);
    ``changes``: one row per changed value (``unique_id, ds, kind, original``; ``kind`` is
    ``filled``, ``outlier`` or ``duplicate``; ``original`` is NaN for filled values);
    ``summary``: JSON-able counts (see :func:`clean`).
    """

    frame: pd.DataFrame
    changes: pd.DataFrame
    summary: dict[str, Any]


@dataclass(frozen=True)
class _Settings:
    spec: CleanSpec
    freq: str
    step: pd.Timedelta  # exact for fixed frequencies, the average step for calendar ones
    fixed: bool
    max_gap: int | None
    season: int
    window: int
    numeric: tuple[str, ...]
    other: tuple[str, ...]


def _human(delta: pd.Timedelta) -> str:
    """``1h``, ``5min``, ``2d``, ``30s``: the largest unit that divides ``delta`` exactly."""
    seconds = round(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{delta.total_seconds():g}s"


def _max_gap(spec: CleanSpec, freq: str) -> int | None:
    """``clean.gaps.max_gap`` in steps; its default (``1h``) where it does not fit the frequency (monthly
    data) is the frequency's natural one, as :class:`tidecast.spec.Spec` sets it."""
    value = spec.gaps.max_gap
    if value is None:
        return None
    try:
        return to_steps(value, freq, field="clean.gaps.max_gap")
    except SpecError:
        if "max_gap" in spec.gaps.model_fields_set:
            raise
        return calendar.natural_max_gap(freq)


def _span(steps: int, s: _Settings) -> str:
    """``2h`` for fixed frequencies, ``3 x MS`` for calendar ones."""
    return _human(steps * s.step) if s.fixed else f"{steps} x {s.freq}"


def _anchored(uid: str, ds: pd.Series, freq: str) -> pd.Series:
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


def _when(ts: Any) -> str:
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


def clean(df: pd.DataFrame, spec: CleanSpec, freq: str, *, min_length: int | None = None) -> CleanResult:
    """Clean every series of a canonical long frame (``unique_id, ds, y`` + extra columns).

    Numeric extra columns (exogenous) are interpolated, then forward/back filled; other extra
    columns (static) are carried along. ``min_length`` (steps; default ``clean.min_length``):
    shorter series are listed in ``summary["series_too_short"]`` (and kept); if every series is
    too short, that is a :class:`DataError`.

    The summary holds ``rows_in``, ``rows_out``, ``series``, ``duplicates``, ``regularized``
    (readings moved onto the grid), ``trimmed`` (leading/trailing rows without a target),
    ``gaps_filled``, ``longest_gap_steps``, ``outliers``, ``series_too_short`` and, for more than
    one series, ``per_series`` (at most 50, those with the most changes first).

    >>> raw = pd.DataFrame({"unique_id": "a", "ds": pd.to_datetime(["2024-01-01 00:00",
    ...     "2024-01-01 02:00", "2024-01-01 03:00"]), "y": [1.0, 3.0, 4.0]})
    >>> res = clean(raw, CleanSpec(), "h")
    >>> res.frame["y"].tolist(), res.summary["gaps_filled"]
    ([1.0, 2.0, 3.0, 4.0], 1)
    """
    length = resolve_min_length(spec, freq, min_length)
    part = clean_part(df, spec, freq)
    summary = summarize([part], length, from_spec=min_length is None and spec.min_length is not None)
    if part.frame is None:  # pragma: no cover - summarize raised
        raise DataError("clean: no data rows")
    return CleanResult(frame=part.frame, changes=part.changes, summary=summary)


def resolve_min_length(spec: CleanSpec, freq: str, min_length: int | None) -> int | None:
    """``min_length`` (steps) if given, else ``clean.min_length`` in steps (or ``None``)."""
    if min_length is None and spec.min_length is not None:
        return to_steps(spec.min_length, freq, field="clean.min_length")
    return min_length


@dataclass(frozen=True)
class CleanPart:
    """What :func:`clean_part` returns for some whole series: the cleaned rows (``None``: no
    series had a value), the change log, one stats dict per series, the series without any value."""

    frame: pd.DataFrame | None
    changes: pd.DataFrame
    stats: list[dict[str, Any]]
    empty_series: list[str]
    rows_in: int
    rows_out: int

    def light(self) -> CleanPart:
        """The same without its rows (what a worker sends back for the summary)."""
        return CleanPart(None, self.changes, self.stats, self.empty_series, self.rows_in, self.rows_out)

    def without(self, drop: set[str]) -> pd.DataFrame | None:
        """The cleaned rows without the series ``drop`` (the too-short ones)."""
        if self.frame is None or not drop:
            return self.frame
        return self.frame[~self.frame[ID].astype(str).isin(drop)].reset_index(drop=True)


def too_short_series(stats: list[dict[str, Any]], min_length: int | None) -> list[dict[str, Any]]:
    """The stats of the series with values but fewer than ``min_length`` rows."""
    return [s for s in stats if s["rows_out"] and min_length is not None and s["rows_out"] < min_length]


def clean_part(df: pd.DataFrame, spec: CleanSpec, freq: str) -> CleanPart:
    """Clean some whole series of a canonical long frame, with nothing that depends on the other
    series (so partitions of the data can be cleaned apart); :func:`summarize` then judges them together."""
    missing = [c for c in (ID, TIME, TARGET) if c not in df.columns]
    if missing:
        raise DataError(f"clean: the frame has no column '{missing[0]}' (columns: {', '.join(map(str, df.columns))})")
    if df.empty:
        raise DataError("clean: no data rows")
    if not pd.api.types.is_datetime64_any_dtype(df[TIME]):
        raise DataError(f"clean: column '{TIME}' must hold timestamps, not {df[TIME].dtype}")
    step = freq_timedelta(freq)
    fixed = calendar.is_fixed(freq)
    if spec.duplicates == "error":
        check_duplicates(df)
    ordered = df.sort_values([ID, TIME], kind="stable")
    check_spacing(ordered, step, freq)
    extra = [c for c in df.columns if c not in (ID, TIME, TARGET)]
    numeric = [c for c in extra if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    settings = _Settings(
        spec=spec,
        freq=freq,
        step=step,
        fixed=fixed,
        max_gap=_max_gap(spec, freq),
        season=(
            to_steps(spec.gaps.season_length, freq, field="clean.gaps.season_length")
            if spec.gaps.season_length is not None
            else max(1, int(pd.Timedelta("1D") // step)) if fixed else calendar.season_length(freq)
        ),
        window=max(1, to_steps(spec.outliers.window, freq, field="clean.outliers.window")),
        numeric=tuple(numeric),
        other=tuple(c for c in extra if c not in numeric),
    )

    frames: list[pd.DataFrame] = []
    changes: list[pd.DataFrame] = []
    stats: list[dict[str, Any]] = []
    empty_series: list[str] = []
    for uid, part in ordered.groupby(ID, sort=True, observed=True):
        frame, change, stat = _clean_series(str(uid), part, settings)
        stats.append(stat)
        if frame is None:
            empty_series.append(str(uid))
            continue
        frames.append(frame)
        changes.append(change)
    if not frames:
        return CleanPart(None, _change_frame([]), stats, empty_series, len(df), 0)
    out = _restore_dtypes(pd.concat(frames, ignore_index=True), df)
    if out[TARGET].isna().any():  # pragma: no cover - a bug, not a data problem
        raise DataError("clean: y still holds NaN after cleaning")
    return CleanPart(out, _change_frame(changes), stats, empty_series, len(df), len(out))


def _change_frame(changes: list[pd.DataFrame]) -> pd.DataFrame:
    if not changes:
        changes = [pd.DataFrame({ID: [], TIME: [], "kind": [], "original": []})]
    change_frame = (
        pd.concat(changes, ignore_index=True)
        .sort_values([ID, TIME, "kind"], kind="stable")
        .reset_index(drop=True)
    )
    change_frame[ID] = change_frame[ID].astype(object)
    change_frame[TIME] = change_frame[TIME].astype("datetime64[ns]")
    change_frame["original"] = change_frame["original"].astype("float64")
    return change_frame


def summarize(parts: list[CleanPart], min_length: int | None, *, from_spec: bool = False) -> dict[str, Any]:
    """The summary of every part's cleaning (see :func:`clean`); a :class:`DataError` when no
    series has a value or every series is shorter than ``min_length``."""
    stats = [s for p in parts for s in p.stats]
    empty_series = [u for p in parts for u in p.empty_series]
    if not any(p.rows_out for p in parts):
        raise DataError(f"clean: no series has any target value (series: {', '.join(empty_series[:10])})")
    too_short = too_short_series(stats, min_length)
    summary = _summary(sum(p.rows_in for p in parts), sum(p.rows_out for p in parts), stats, too_short, empty_series, min_length)
    if min_length is not None and len(too_short) == sum(1 for s in stats if s["rows_out"]):
        best = max(too_short, key=lambda s: s["rows_out"])
        need = "clean.min_length needs" if from_spec else "input window + horizon need"
        raise DataError(
            f"history has {best['rows_out']} steps but {need} {min_length} (series '{best['unique_id']}')"
        )
    return summary


def check_duplicates(df: pd.DataFrame, *, label: str | None = None) -> None:
    """For ``clean.duplicates: error``: a :class:`DataError` naming the first repeated (series, time)
    pair (in series, then time order), how often it appears and how many rows repeat a pair in all."""
    repeated = df.duplicated([ID, TIME], keep="first")
    if not repeated.any():
        return
    extra = df.loc[repeated, [ID, TIME]]
    order = np.lexsort((extra[TIME].to_numpy(), extra[ID].astype(str).to_numpy()))
    uid, ts = extra.iloc[int(order[0])]
    times = int(((df[ID] == uid) & (df[TIME] == ts)).sum())
    pairs = len(extra.drop_duplicates())
    prefix = f"{label}: " if label else ""
    raise DataError(
        f"{prefix}series '{uid}': timestamp {_when(ts)} appears {times} times; {int(repeated.sum())} duplicated "
        f"row(s) over {pairs} (series, time) pair(s) in all (clean.duplicates is 'error'; "
        "use mean, first or last to merge them)"
    )


def check_spacing(ordered: pd.DataFrame, step: pd.Timedelta, freq: str) -> None:
    """The typical (median) spacing of every series must be about one step of ``freq``.

    Repeated timestamps do not count; series with fewer than two spacings are not checked.
    """
    same = ordered[ID].eq(ordered[ID].shift())
    gaps = ordered[TIME].diff()
    keep = same & gaps.gt(pd.Timedelta(0))
    if not keep.any():
        return
    spacing = gaps[keep].groupby(ordered.loc[keep, ID], sort=False, observed=True)
    typical = spacing.median()[spacing.size() >= 2]
    ratio = typical / step
    bad = ratio[(ratio < 2 / 3) | (ratio > 1.5)]
    if len(bad):
        uid = bad.index[0]
        raise DataError(
            f"data.frequency is '{freq}' but readings in series '{uid}' are typically {_human(typical[uid])} apart"
        )


def check_anchors(ordered: pd.DataFrame, freq: str) -> None:
    """For a calendar frequency: every reading must lie on, or be movable onto, one of its anchors
    (a date of a month for ``MS``; a weekday for ``B``); a :class:`DataError` names the first that cannot."""
    if calendar.is_fixed(freq) or ordered.empty:
        return
    for uid, part in ordered.groupby(ID, sort=False, observed=True):
        _anchored(str(uid), part[TIME], freq)


def _restore_dtypes(out: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    out[ID] = out[ID].astype(original[ID].dtype if original[ID].dtype != "category" else object)
    out[TIME] = out[TIME].astype(original[TIME].dtype)
    out[TARGET] = out[TARGET].astype("float64")
    for col in original.columns:
        if col in (ID, TIME, TARGET) or out[col].dtype == original[col].dtype:
            continue
        if out[col].isna().any() and not pd.api.types.is_float_dtype(original[col]):
            continue
        with contextlib.suppress(TypeError, ValueError):
            out[col] = out[col].astype(original[col].dtype)
    return out[list(original.columns)]


def _summary(
    rows_in: int, rows_out: int, stats: list[dict[str, Any]], too_short: list[dict[str, Any]],
    empty_series: list[str], min_length: int | None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "series": len(stats),
        "duplicates": sum(s["duplicates"] for s in stats),
        "regularized": sum(s["regularized"] for s in stats),
        "trimmed": sum(s["trimmed"] for s in stats),
        "gaps_filled": sum(s["gaps_filled"] for s in stats),
        "longest_gap_steps": max((s["longest_gap_steps"] for s in stats), default=0),
        "outliers": sum(s["outliers"] for s in stats),
        "regularized_note": next((s["regularized_note"] for s in stats if s.get("regularized_note")), None),
        "min_length": min_length,
        "series_too_short": [s["unique_id"] for s in too_short],  # complete: callers drop these
        "series_too_short_count": len(too_short),
        "series_without_values": list(empty_series),
        "series_without_values_count": len(empty_series),
    }
    if len(stats) > 1:
        ranked = sorted(
            stats, key=lambda s: -(s["duplicates"] + s["gaps_filled"] + s["outliers"] + s["regularized"] + s["trimmed"])
        )
        summary["per_series"] = ranked[:_MAX_LISTED]
        summary["per_series_omitted"] = max(0, len(stats) - _MAX_LISTED)
    return summary


def _change_rows(uid: str, ds: Any, kind: str, original: Any) -> pd.DataFrame:
    ds_index = pd.DatetimeIndex(ds)
    return pd.DataFrame({
        ID: np.full(len(ds_index), uid, dtype=object),
        TIME: ds_index,
        "kind": kind,
        "original": np.asarray(original, dtype="float64"),
    })


def _aggregate(part: pd.DataFrame, key: pd.Series, how: str, settings: _Settings) -> pd.DataFrame:
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


def _clean_series(uid: str, part: pd.DataFrame, s: _Settings) -> tuple[pd.DataFrame | None, pd.DataFrame, dict[str, Any]]:
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
                f"series '{uid}': timestamp {_when(first_dup)} appears {int((part[TIME] == first_dup).sum())} times "
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
    binned = part[TIME].dt.floor(s.step) if s.fixed else _anchored(uid, part[TIME], s.freq)
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
                f"series '{uid}': no reading at {_when(grid[starts[0]])} ({int(missing.sum())} missing in all; "
                "clean.gaps.method is 'error')"
            )
        if s.max_gap is not None and lengths.max() > s.max_gap:
            i = int(np.argmax(lengths > s.max_gap))
            raise DataError(
                f"series '{uid}': a gap of {lengths[i]} steps ({_span(int(lengths[i]), s)}) starting at "
                f"{_when(grid[starts[i]])} is longer than clean.gaps.max_gap "
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

