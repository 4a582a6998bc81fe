"""Calibrated prediction intervals: conformal quantiles fit without look-ahead.

A backtest has few folds (three days for ``examples/power``), too few residuals to estimate an
80 % interval by horizon step: quantiles taken from the *other* folds covered 62 % there. Here:

* **calibration windows** (:func:`calibration_windows`, :func:`calibration_forecasts`): before the
  first fold, ``n_windows`` more forecast origins, one horizon apart, forecast *without refitting*
  (as mlforecast's ``PredictionIntervals(n_windows)``): one model is fit on the data before the
  earliest window, then each window is forecast from its own cut-off with the actuals up to it
  as ``history``. One extra fit per candidate, ``n_windows`` predictions;
* **no look-ahead** (:func:`calibrate_folds`): fold ``k``'s quantiles come from the residuals
  whose actual was known at its cut-off (the calibration windows and the folds before it), the
  held-out stretch's from the windows and every fold, the served model's from the same;
* **finite-sample correction** (:func:`conformal_quantile`): the ``ceil((n + 1) q)``-th smallest
  residual for an upper quantile (the ``floor((n + 1) q)``-th for a lower one), which holds the
  nominal level for exchangeable residuals where the plain empirical quantile under-covers;
* residuals are pooled over neighbouring horizon steps until each step has ``min_samples``, per
  series where a series has enough, scaled across series otherwise (see
  :class:`tidecast.models.conformal.ConformalForecaster`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.evaluation.backtest import located_partitions
from tidecast.evaluation.fold_work import (
    _actuals,
    _assemble,
    _error_text,
    _FoldOutput,
    _future_slice,
    _read_source,
    _sorted,
    _train_slice,
    _unit,
)
from tidecast.evaluation.folds import Fold
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column
from tidecast.models.base import FitContext, Forecaster
from tidecast.models.conformal import ConformalForecaster, conformal_quantile
from tidecast.pipeline.executors import SequentialExecutor

__all__ = [
    "RESIDUAL_COLUMNS",
    "calibrate_folds",
    "calibration_forecasts",
    "calibration_groups",
    "calibration_windows",
    "conformal_quantile",
    "cross_fold_intervals",
    "interval_residuals",
]

MAX_SPAN = 0.1
"""``calibration_fits: auto``: the windows of one calibration model span at most this share of the
steps the oldest model is fit on (a model forecasting far past its training data errs more than
the served one, refit on everything, will)."""

RESIDUAL_COLUMNS = [ID, TIME, "cutoff", "step", TARGET, POINT]


# ------------------------------------------------------------------------------------- windows
def _shift(ts: Any, steps: int, unit: Any) -> Any:
    if isinstance(unit, str):
        return calendar.shift(ts, steps, unit)
    return ts + steps * unit


def calibration_windows(
    folds: Sequence[Fold], df: pd.DataFrame, ctx: FitContext, n_windows: int, *, min_train: int = 1
) -> list[Fold]:
    """Up to ``n_windows`` forecast origins before the first fold, one horizon apart (oldest first).

    Fewer when the history is short: the model that forecasts them is fit on the data before
    the oldest, which keeps at least ``max(min_train, half the first fold's training rows)``
    steps. Their indices are ``-2, -3...`` (``-1`` is the held-out fold)."""
    if n_windows <= 0 or not folds:
        return []
    first = min(folds, key=lambda f: f.cutoff)
    unit = _unit(df, ctx)
    times = pd.unique(df.loc[df[TIME] <= first.cutoff, TIME])
    n0 = len(times)
    keep = max(int(min_train), n0 // 2)
    stride = first.h
    n = min(int(n_windows), max(0, (n0 - keep - first.gap) // stride))
    out = []
    for j in range(n, 0, -1):
        cutoff = _shift(first.cutoff, -j * stride, unit)
        out.append(
            replace(
                first,
                index=-1 - j,
                cutoff=cutoff,
                test_start=_shift(cutoff, first.gap + 1, unit),
                test_end=_shift(cutoff, first.gap + first.h, unit),
                train_start=None if first.train_start is None else _shift(first.train_start, -j * stride, unit),
            )
        )
    return out


@dataclass
class _WindowsTask:
    windows: list[Fold]
    frame: pd.DataFrame | None
    make_model: Callable[[], Forecaster]
    ctx: FitContext
    unit: Any
    partial: bool = False
    source: tuple[Any, tuple[Any, ...] | None] | None = None


@dataclass
class _WindowsOutput:
    forecasts: pd.DataFrame | None
    errors: list[str]


def _run_windows(task: _WindowsTask) -> _WindowsOutput:
    """Fit once before the oldest window, forecast every window from its cut-off (in a worker)."""
    try:
        frame = task.frame
        if task.source is not None:
            files, ids = task.source
            frame = _read_source(files, ids, until=task.windows[-1].test_end if isinstance(files, tuple) else None)
        assert frame is not None
        frame = _sorted(frame)
        first = task.windows[0]
        train = _train_slice(frame, first)
        if train.empty:
            if task.partial:
                return _WindowsOutput(None, [])
            return _WindowsOutput(None, ["no training rows before the calibration windows"])
        model = task.make_model()
        model.fit(train, task.ctx)
    except Exception as exc:
        return _WindowsOutput(None, [_error_text(exc) + "\n" + traceback.format_exc()])
    exog = tuple(task.ctx.exog_future)
    start = _shift(first.cutoff, -max(int(task.ctx.input_window), 1), task.unit)
    columns = [c for c in frame.columns if c not in {"fold", "cutoff", "step"}]
    pieces, errors = [], []
    for window in task.windows:
        try:
            ds = frame[TIME]
            mask = (ds > start) & (ds <= window.cutoff)
            if window.series is not None:
                mask &= frame[ID].isin(window.series)
            history = frame.loc[mask, columns].reset_index(drop=True)
            pred = model.predict(window.gap + window.h, history=history, X_future=_future_slice(frame, window, exog))
            actuals = _actuals(frame, window)
            if actuals.empty:
                continue
            pieces.append(_assemble(window, _FoldOutput(pred, 0.0, 0.0), actuals, task.unit, ()))
        except Exception as exc:  # a window that cannot be forecast is left out; the others count
            errors.append(f"window cut-off {window.cutoff}: {_error_text(exc)}")
    return _WindowsOutput(pd.concat(pieces, ignore_index=True) if pieces else None, errors)


def calibration_groups(windows: Sequence[Fold], df: pd.DataFrame, fits: int | str = "auto") -> list[list[Fold]]:
    """The calibration ``windows`` cut into ``fits`` consecutive groups (oldest first), each to be
    forecast by a model fit before its oldest window.

    ``fits="auto"``: the fewest groups such that one group's windows span at most
    :data:`MAX_SPAN` of the steps (timestamps of ``df``) the oldest model is trained on: one on a
    long 5-minute series (20 days of windows after a year), one every few windows on a short
    monthly or weekly one (20 years of windows after 35). Never more groups than windows."""
    windows = sorted(windows, key=lambda w: w.cutoff)
    if not windows:
        return []
    if fits == "auto":
        first = windows[0]
        ds = df[TIME]
        mask = ds <= first.cutoff
        if first.train_start is not None:
            mask &= ds >= first.train_start
        trained = max(1, int(pd.unique(ds[mask]).size))
        span = sum(int(w.h) for w in windows)  # the windows lie one horizon apart
        n = int(np.ceil(span / max(1.0, MAX_SPAN * trained)))
    else:
        n = int(fits)
    n = max(1, min(n, len(windows)))
    return [list(g) for g in np.array_split(np.array(windows, dtype=object), n)]


def calibration_forecasts(
    make_model: Callable[[], Forecaster],
    df: Any,
    ctx: FitContext,
    windows: Sequence[Fold],
    *,
    executor: Any = None,
    partitions: Sequence[Sequence[Any]] | None = None,
    shared_storage: bool = True,
    fits: int | str = 1,
) -> tuple[pd.DataFrame, list[str]]:
    """Forecasts of the calibration ``windows`` joined with the actuals (``unique_id, ds, cutoff,
    step, y, yhat``) and the errors of the windows (or partitions) that failed.

    ``fits`` models share the windows (or ``"auto"``, :func:`calibration_groups`): the windows are
    cut into that many consecutive groups (oldest first), and each group is forecast by a model fit
    before its oldest window (statsforecast's ``refit`` every few windows), so no model forecasts
    far past its training data and the residuals hold more than one fit's draw.

    ``df``, ``partitions``, ``executor`` and ``shared_storage`` as for
    :func:`tidecast.evaluation.backtest.backtest`: a per-series model runs partition by partition,
    a global model on every series at once."""
    windows = sorted(windows, key=lambda w: w.cutoff)
    if not windows:
        return pd.DataFrame(columns=RESIDUAL_COLUMNS), []
    longest = max(w.h + w.gap for w in windows)
    ctx = replace(ctx, horizon=longest) if longest > ctx.horizon else ctx
    source = df if type(df).__name__ == "PartitionedFrame" else None
    light = source.to_pandas([ID, TIME]) if source is not None else df
    groups = calibration_groups(windows, light, fits)
    unit = _unit(light, ctx)

    def tasks() -> Iterator[_WindowsTask]:
        if source is not None and shared_storage:
            if partitions is None:
                for group in groups:
                    yield _WindowsTask(group, None, make_model, ctx, unit, source=(tuple(source.paths), None))
                return
            for part, ids in located_partitions(source, partitions):
                for group in groups:
                    yield _WindowsTask(
                        group, None, make_model, ctx, unit, partial=True, source=(source.part_path(part), ids)
                    )
            return
        frame = source.to_pandas() if source is not None else df
        if partitions is None:
            for group in groups:
                yield _WindowsTask(group, frame, make_model, ctx, unit)
            return
        for ids in partitions:
            piece = frame.loc[frame[ID].isin(list(ids))].reset_index(drop=True)
            for group in groups:
                yield _WindowsTask(group, piece, make_model, ctx, unit, partial=True)

    if executor is None:
        executor = SequentialExecutor()
    desc = f"calibration windows ({len(windows)}" + (f", {len(groups)} fits)" if len(groups) > 1 else ")")
    outputs = executor.map(_run_windows, tasks(), desc=desc)
    frames = [o.forecasts for o in outputs if o.forecasts is not None and len(o.forecasts)]
    errors = [e for o in outputs for e in o.errors]
    if not frames:
        return pd.DataFrame(columns=RESIDUAL_COLUMNS), errors
    out = pd.concat(frames, ignore_index=True)
    return out[RESIDUAL_COLUMNS], errors


# --------------------------------------------------------------------------------- calibration
class _NoModel:
    """A placeholder inner model: only the residual arithmetic of ConformalForecaster is used."""

    name = "residuals"


def interval_residuals(forecasts: pd.DataFrame, calibration: pd.DataFrame | None) -> pd.DataFrame:
    """The residual table a served model calibrates on: the calibration windows and every fold
    (``unique_id, ds, cutoff, step, y, yhat``)."""
    parts = [forecasts[[c for c in RESIDUAL_COLUMNS if c in forecasts.columns]]]
    if calibration is not None and len(calibration):
        parts.insert(0, calibration[[c for c in RESIDUAL_COLUMNS if c in calibration.columns]])
    return pd.concat(parts, ignore_index=True)


def calibrate_folds(
    forecasts: pd.DataFrame,
    calibration: pd.DataFrame | None,
    quantiles: Sequence[float],
    **conformal: Any,
) -> tuple[pd.DataFrame, list[int]]:
    """``forecasts`` (a backtest's, point only) with quantile columns fit without look-ahead.

    Fold ``k``'s quantiles come from the residuals whose actual is at or before its cut-off: the
    ``calibration`` windows and the earlier folds. A fold with none (the first, without
    calibration windows) falls back to the other folds' residuals, as before; those folds are
    returned as the second element. ``conformal``: options of ``ConformalForecaster``."""
    quantiles = sorted(float(q) for q in quantiles)
    pool = interval_residuals(forecasts, calibration)
    res_ds = pool[TIME]
    out, fallback = [], []
    for fold in sorted(pd.unique(forecasts["fold"])):
        part = forecasts[forecasts["fold"] == fold].copy()
        cutoff = part["cutoff"].iloc[0]
        known = pool[(res_ds <= cutoff).to_numpy()]
        if known.empty:
            fallback.append(int(fold))
            known = forecasts[forecasts["fold"] != fold]
            if known.empty:
                known = part
        calibrator = ConformalForecaster(_NoModel(), known, **conformal)  # type: ignore[arg-type]
        values = np.empty((len(part), len(quantiles)))
        ids = part[ID].astype(str).to_numpy()
        steps = part["step"].to_numpy(int)
        factors = calibrator.row_factors(part[TIME].to_numpy())  # every row at once (many series)
        point = part[POINT].to_numpy(float)
        for uid, rows in pd.Series(np.arange(len(part))).groupby(ids, sort=False).indices.items():
            offsets = calibrator.scaled_offsets(quantiles, str(uid), steps[rows], factors=factors[rows])
            values[rows] = point[rows, None] + offsets
        for j, q in enumerate(quantiles):
            part[quantile_column(q)] = values[:, j]
        out.append(part)
    return pd.concat(out, ignore_index=True), fallback


def cross_fold_intervals(forecasts: pd.DataFrame, quantiles: list[float]) -> pd.DataFrame:
    """tidecast's intervals before the calibration windows (``bench/intervals.py`` scores them as
    "before"): each fold's quantiles from the *other* folds' residuals at the same horizon step,
    pooled over series. They use later folds, so they are not how folds are scored."""
    out = []
    for fold in sorted(forecasts["fold"].unique()):
        part = forecasts[forecasts["fold"] == fold].copy()
        others = forecasts[forecasts["fold"] != fold]
        if others.empty:  # a single fold: calibrating in-sample is the only option
            others = part
        # pooled over series (per_series=False): one id for all rows spares the per-series tables the
        # calibrator would otherwise build and never use (minutes at 10,000 series)
        pooled = others[["step", TARGET, POINT]].assign(**{ID: "*"})
        calibrator = ConformalForecaster(_NoModel(), pooled, per_series=False)  # type: ignore[arg-type]
        offsets = calibrator.offsets(quantiles)
        rows = np.minimum(part["step"].to_numpy(int), calibrator.horizon) - 1
        for j, q in enumerate(quantiles):
            part[quantile_column(q)] = part[POINT].to_numpy(float) + offsets[rows, j]
        out.append(part)
    return pd.concat(out, ignore_index=True)
