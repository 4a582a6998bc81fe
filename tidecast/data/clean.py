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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.data.clean_series import SeriesSettings, anchored, clean_series, when
from tidecast.durations import format_delta, freq_timedelta, to_steps
from tidecast.errors import DataError, SpecError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import CleanSpec

__all__ = [
    "CHANGE_KINDS", "CleanPart", "CleanResult", "check_anchors", "check_duplicates", "clean", "clean_part", "resolve_min_length", "summarize",
    "too_short_series",
]

CHANGE_KINDS = ("filled", "outlier", "duplicate")
_MAX_LISTED = 50


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
    settings = SeriesSettings(
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
        frame, change, stat = clean_series(str(uid), part, settings)
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
        f"{prefix}series '{uid}': timestamp {when(ts)} appears {times} times; {int(repeated.sum())} duplicated "
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
            f"data.frequency is '{freq}' but readings in series '{uid}' are typically {format_delta(typical[uid])} apart"
        )


def check_anchors(ordered: pd.DataFrame, freq: str) -> None:
    """For a calendar frequency: every reading must lie on, or be movable onto, one of its anchors
    (a date of a month for ``MS``; a weekday for ``B``); a :class:`DataError` names the first that cannot."""
    if calendar.is_fixed(freq) or ordered.empty:
        return
    for uid, part in ordered.groupby(ID, sort=False, observed=True):
        anchored(str(uid), part[TIME], freq)


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


