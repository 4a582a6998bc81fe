"""Rolling-origin backtests of one model: fit on each fold's past, forecast its test window, join
the actuals.

>>> folds = make_folds(df, h=288, folds=3, holdout=288)                  # doctest: +SKIP
>>> result = backtest(lambda: SeasonalNaive(288), df, ctx, folds)        # doctest: +SKIP
>>> result.forecasts.columns                                             # doctest: +SKIP
['unique_id', 'ds', 'fold', 'cutoff', 'step', 'y', 'yhat', 'q0.1', 'q0.9']

Guarantees:

* every fold gets a fresh model from ``make_model()``;
* the model sees only rows at or before the fold's cut-off (and, for a sliding window, at or
  after its ``train_start``); ``X_future`` holds only ``unique_id, ds`` and the
  ``ctx.exog_future`` columns, never the target;
* with a ``gap`` the model forecasts ``gap + h`` steps (and ``ctx.horizon`` is raised to that if
  smaller); the first ``gap`` steps are dropped;
* a fold whose model raises, or returns no (or NaN) point forecast for a test row, is recorded in
  :attr:`BacktestResult.errors` and contributes no rows; the other folds go on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import BacktestError, ModelError, TidecastError
from tidecast.evaluation.folds import HOLDOUT_FOLD, Fold, folds_for_spec, holdout_fold, infer_step, make_folds
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column
from tidecast.models.base import FitContext, Forecaster

__all__ = [
    "HOLDOUT_FOLD",
    "BacktestResult",
    "Fold",
    "FoldError",
    "FoldResult",
    "backtest",
    "folds_for_spec",
    "holdout_fold",
    "holdout_forecast",
    "make_folds",
    "partition_series",
]

FORECAST_COLUMNS = (ID, TIME, "fold", "cutoff", "step", TARGET, POINT)


@dataclass(frozen=True)
class FoldError:
    """A fold that failed: which one, the one-line message, and the traceback (if any)."""

    fold: int
    cutoff: Any
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        where = f"fold {self.fold}" if self.fold != HOLDOUT_FOLD else "holdout"
        return f"{where} (cut-off {self.cutoff}): {self.message}"


@dataclass
class FoldResult:
    """One fold's outcome, handed to ``on_fold_done`` as soon as the fold is finished."""

    fold: Fold
    forecasts: pd.DataFrame | None
    fit_seconds: float
    predict_seconds: float
    n_series: int
    error: FoldError | None = None
    model: Any = None
    """The fold's fitted model, when the backtest was asked to keep it (``keep_last_model``)."""


@dataclass
class BacktestResult:
    """Forecasts of every fold joined with the actuals, timings and failures.

    ``forecasts``: ``unique_id, ds, fold, cutoff, step (1..h), y, yhat`` + quantile columns.
    ``timings``: one row per fold: ``fold, cutoff, n_series, n_excluded, fit_seconds,
    predict_seconds, status ('ok'/'failed'), error``. ``fit_seconds``/``predict_seconds``: totals
    over folds (CPU-side wall time inside the workers, so with parallel folds they can exceed the
    elapsed time).
    """

    forecasts: pd.DataFrame
    folds: list[Fold]
    timings: pd.DataFrame
    errors: list[FoldError] = field(default_factory=list)
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    calibration: pd.DataFrame | None = None
    """Residuals of the calibration windows before the first fold (``unique_id, ds, cutoff, step, y,
    yhat``; see :mod:`tidecast.evaluation.calibration`), when the intervals were calibrated."""
    models: dict[int, Any] = field(default_factory=dict)
    """Fold index -> the model fitted on that fold's training data, for the folds kept
    (``keep_last_model``: the last one, which the explain step reuses instead of refitting)."""

    @property
    def ok(self) -> bool:
        """True when every fold succeeded."""
        return not self.errors

    @property
    def fit_seconds_per_fold(self) -> dict[int, float]:
        return dict(zip(self.timings["fold"], self.timings["fit_seconds"], strict=True))

    @property
    def predict_seconds_per_fold(self) -> dict[int, float]:
        return dict(zip(self.timings["fold"], self.timings["predict_seconds"], strict=True))

    def error_summary(self) -> str | None:
        """``"fold 0 (cut-off ...): ValueError: ...; 2 more"``, or ``None`` when every fold succeeded."""
        if not self.errors:
            return None
        more = f"; {len(self.errors) - 1} more failed fold(s)" if len(self.errors) > 1 else ""
        return f"{self.errors[0]}{more}"

    def scales(self, df: pd.DataFrame, season_length: int) -> pd.DataFrame:
        """The MASE scale of every (fold, series) from each fold's own training window
        (see :func:`tidecast.evaluation.metrics.fold_scales`)."""
        from tidecast.evaluation.metrics import fold_scales

        return fold_scales(df, self.folds, season_length)


# --------------------------------------------------------------------------------------- workers
@dataclass
class _FoldTask:
    fold: Fold
    train: pd.DataFrame | None
    X_future: pd.DataFrame | None
    make_model: Callable[[], Forecaster]
    ctx: FitContext
    quantiles: tuple[float, ...]
    partial: bool = False  # one series partition of the fold: no training rows is no work, not an error
    keep_model: bool = False  # send the fitted model back with the forecasts
    source: tuple[Any, tuple[Any, ...] | None] | None = None
    """``(partition file, series ids)``, or ``(every partition file, None)`` for a global model: the
    worker reads its rows there (``train``/``X_future`` are then None)."""


_LAST_READ: list[Any] = []  # [(file, ids), frame]: a worker's partition, kept for the next fold of the same one


def _read_source(files: Any, ids: tuple[Any, ...] | None, until: Any = None) -> pd.DataFrame:
    """The rows of ``ids`` in a partition file (the same rows again for the next fold: one read),
    or, for a global model (``files`` a tuple of every partition, ``ids`` None), every series'
    rows up to ``until``."""
    from tidecast.data.partitions import _read, release_arrow_memory

    if isinstance(files, tuple):
        import pyarrow.parquet as pq

        frames = []
        for file in files:  # one at a time: partitions may differ in type (a column all null in one of them)
            try:
                table = pq.read_table(str(file), filters=[(TIME, "<=", until)] if until is not None else None)
            except Exception as exc:
                raise BacktestError(f"backtest: partition {file} cannot be read ({type(exc).__name__}: {exc})") from exc
            frames.append(table.to_pandas())
            del table
            release_arrow_memory()
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    key = (str(files), ids)
    if _LAST_READ and _LAST_READ[0] == key:
        return _LAST_READ[1]
    _LAST_READ.clear()  # one partition per worker at a time
    frame = _read(files, None)
    if ids is not None and frame[ID].nunique() != len(ids):
        frame = frame[frame[ID].isin(list(ids))].reset_index(drop=True)
    _LAST_READ.extend([key, frame])
    return frame


def _materialize(task: _FoldTask) -> _FoldTask:
    if task.source is None:
        return task
    files, ids = task.source
    frame = _read_source(files, ids, until=task.fold.test_end if isinstance(files, tuple) else None)
    exog = tuple(task.ctx.exog_future)
    return replace(task, train=_train_slice(frame, task.fold), X_future=_future_slice(frame, task.fold, exog), source=None)


@dataclass
class _FoldOutput:
    predictions: pd.DataFrame | None
    fit_seconds: float
    predict_seconds: float
    error: str | None = None
    traceback: str = ""
    model: Any = None


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TidecastError) else f"{type(exc).__name__}: {exc}"


def _run_fold(task: _FoldTask) -> _FoldOutput:
    """Fit a fresh model on the fold's training slice and forecast ``gap + h`` steps (in a worker)."""
    fit_s = predict_s = 0.0
    try:
        task = _materialize(task)
    except Exception as exc:
        return _FoldOutput(None, 0.0, 0.0, _error_text(exc), traceback.format_exc())
    assert task.train is not None
    if task.partial and task.train.empty:
        return _FoldOutput(pd.DataFrame({ID: [], TIME: [], POINT: []}), 0.0, 0.0)
    try:
        started = time.perf_counter()
        model = task.make_model()
        model.fit(task.train, task.ctx)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        predictions = model.predict(
            task.fold.gap + task.fold.h, X_future=task.X_future, quantiles=list(task.quantiles)
        )
        predict_s = time.perf_counter() - started
    except Exception as exc:
        return _FoldOutput(None, fit_s, predict_s, _error_text(exc), traceback.format_exc())
    return _FoldOutput(predictions, fit_s, predict_s, model=model if task.keep_model else None)


# ---------------------------------------------------------------------------------------- parent
def _is_sorted(df: pd.DataFrame) -> bool:
    """Whether the rows already run by ``unique_id`` then ``ds`` (non-decreasing), cheaply."""
    if len(df) < 2:
        return True
    ids = df[ID]
    kind = ids.dtype.kind if isinstance(ids.dtype, np.dtype) else ""
    if kind not in ("O", "i", "u", "f"):  # categorical, string and other extension ids: let pandas sort
        return False
    values = ids.to_numpy()
    try:
        if kind == "O":  # compare ids only where they change (pandas' object check is slower)
            new = values[1:] != values[:-1]
            if new.any() and not np.all(values[1:][new] > values[:-1][new]):
                return False
        else:
            if not ids.is_monotonic_increasing:
                return False
            new = values[1:] != values[:-1]
        ds = df[TIME].to_numpy()
        later = ds[1:] >= ds[:-1]  # False at NaN/NaT: then sort
    except TypeError:  # mixed types: let sort_values decide
        return False
    return bool(np.all(later | new))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (ID, TIME, TARGET) if c not in df.columns]
    if missing:
        raise BacktestError(f"backtest: the data has no column(s) {', '.join(missing)}")
    if _is_sorted(df):  # a stable sort would keep every row where it is: skip it (df is only read)
        index = df.index
        if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
            return df
        return df.reset_index(drop=True)
    return df.sort_values([ID, TIME], kind="stable", ignore_index=True)


def _series_mask(df: pd.DataFrame, fold: Fold) -> pd.Series | bool:
    return df[ID].isin(fold.series) if fold.series is not None else True


def _rows(df: pd.DataFrame, mask: pd.Series, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``df.loc[mask, columns].reset_index(drop=True)`` (a copy); a contiguous block of rows, as
    one series of a sorted frame gives, is copied as a slice, several times faster than a take."""
    keep = np.flatnonzero(mask.to_numpy(dtype=bool))
    if len(keep) and keep[-1] - keep[0] + 1 == len(keep):
        block = df.iloc[keep[0] : keep[-1] + 1]
        out = (block if columns is None else block[list(columns)]).copy()
        out.index = pd.RangeIndex(len(out))
        return out
    picked = df.loc[mask] if columns is None else df.loc[mask, list(columns)]
    return picked.reset_index(drop=True)


def _train_slice(df: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    ds = df[TIME]
    mask = (ds <= fold.cutoff) & _series_mask(df, fold)
    if fold.train_start is not None:
        mask &= ds >= fold.train_start
    return _rows(df, mask)


def _future_slice(df: pd.DataFrame, fold: Fold, exog: Sequence[str]) -> pd.DataFrame | None:
    if not exog:
        return None
    ds = df[TIME]
    mask = (ds > fold.cutoff) & (ds <= fold.test_end) & _series_mask(df, fold)
    return _rows(df, mask, [ID, TIME, *exog])


def _actuals(df: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    ds = df[TIME]
    mask = (ds >= fold.test_start) & (ds <= fold.test_end) & _series_mask(df, fold)
    return _rows(df, mask, [ID, TIME, TARGET])


def _unit(df: pd.DataFrame, ctx: FitContext) -> Any:
    if not pd.api.types.is_datetime64_any_dtype(df[TIME]):
        return 1
    try:
        from tidecast import calendar
        from tidecast.durations import freq_timedelta

        return freq_timedelta(ctx.freq) if calendar.is_fixed(ctx.freq) else ctx.freq
    except Exception:
        return infer_step(df[TIME])


def _assemble(
    fold: Fold, output: _FoldOutput, actuals: pd.DataFrame, unit: Any, quantiles: Sequence[float]
) -> pd.DataFrame:
    """Check the model's forecasts for the fold's test rows and join them with the actuals."""
    pred = output.predictions
    if not isinstance(pred, pd.DataFrame):
        raise ModelError(f"predict returned a {type(pred).__name__}, not a DataFrame")
    missing = [c for c in (ID, TIME, POINT) if c not in pred.columns]
    if missing:
        raise ModelError(f"predict returned no column(s) {', '.join(missing)}")
    qcols = [quantile_column(q) for q in quantiles if quantile_column(q) in pred.columns]
    pred = pred[[ID, TIME, POINT, *qcols]]
    if pred[TIME].dtype != actuals[TIME].dtype:
        pred = pred.assign(**{TIME: pred[TIME].astype(actuals[TIME].dtype)})
    if pred[ID].dtype != actuals[ID].dtype:
        pred = pred.assign(**{ID: pred[ID].astype(actuals[ID].dtype)})
    pred = pred[(pred[TIME] >= fold.test_start) & (pred[TIME] <= fold.test_end)]
    if _same_keys(actuals, pred):  # the usual case (unique keys, in order): the join is a column copy
        out = actuals.copy()
        for col in (POINT, *qcols):
            out[col] = pred[col].to_numpy()
    else:
        if pred.duplicated([ID, TIME]).any():
            raise ModelError("predict returned several forecasts for the same series and timestamp")
        out = actuals.merge(pred, on=[ID, TIME], how="left", validate="one_to_one")
    bad = out[POINT].isna().to_numpy()
    if bad.any():
        series = pd.unique(out.loc[bad, ID].astype(str))
        shown = ", ".join(series[:3]) + (f" and {len(series) - 3} more" if len(series) > 3 else "")
        raise ModelError(
            f"predict returned no (or NaN) forecast for {int(bad.sum())} of {len(out)} test points (series {shown})"
        )
    if isinstance(unit, str):  # a calendar frequency: steps along its anchors
        from tidecast import calendar

        step = calendar.positions(fold.test_start, out[TIME], unit) + 1
    else:
        offset = out[TIME] - fold.test_start
        step = (offset // unit if isinstance(unit, pd.Timedelta) else offset).to_numpy(dtype=np.int64) + 1
    out.insert(2, "fold", fold.index)
    out.insert(3, "cutoff", fold.cutoff)
    out.insert(4, "step", step)
    return out


def _same_keys(actuals: pd.DataFrame, pred: pd.DataFrame) -> bool:
    """Whether ``pred`` has exactly the (unique) ``unique_id, ds`` rows of ``actuals``, in its order."""
    if len(actuals) != len(pred) or len(actuals) == 0:
        return False
    ids, ds = actuals[ID].to_numpy(), actuals[TIME].to_numpy()
    try:
        if not (np.array_equal(ds, pred[TIME].to_numpy()) and bool(np.all(ids == pred[ID].to_numpy()))):
            return False
        if len(ids) < 2:
            return True
        new = ids[1:] != ids[:-1]  # strictly increasing keys, so unique
        return bool(np.all(new | (ds[1:] > ds[:-1]))) and (not new.any() or bool(np.all(ids[1:][new] > ids[:-1][new])))
    except TypeError:
        return False


def _empty_forecasts(df: pd.DataFrame, quantiles: Sequence[float]) -> pd.DataFrame:
    cols: dict[str, Any] = {
        ID: pd.Series([], dtype=df[ID].dtype),
        TIME: pd.Series([], dtype=df[TIME].dtype),
        "fold": pd.Series([], dtype=np.int64),
        "cutoff": pd.Series([], dtype=df[TIME].dtype),
        "step": pd.Series([], dtype=np.int64),
        TARGET: pd.Series([], dtype=float),
        POINT: pd.Series([], dtype=float),
    }
    cols.update({quantile_column(q): pd.Series([], dtype=float) for q in quantiles})
    return pd.DataFrame(cols)


def backtest(
    make_model: Callable[[], Forecaster],
    df: pd.DataFrame,
    ctx: FitContext,
    folds: Sequence[Fold],
    *,
    quantiles: Sequence[float] = (),
    executor: Any = None,
    on_fold_done: Callable[[FoldResult], None] | None = None,
    partitions: Sequence[Sequence[Any]] | None = None,
    shared_storage: bool = True,
    keep_last_model: bool = False,
) -> BacktestResult:
    """Backtest the model built by ``make_model()`` on ``folds`` (from :func:`make_folds`).

    ``executor`` (a :class:`tidecast.pipeline.executors.Executor`) runs the folds, in parallel if
    it can (default: in-process, one after the other); ``make_model`` must then be picklable.
    ``on_fold_done(FoldResult)`` is called in this process as each fold finishes.

    ``partitions`` (lists of series ids, see :func:`partition_series`) splits the work into
    series partitions x folds: a fresh model is fit on each partition's series of each fold. Use
    it for models fitted per series (statistical models, baselines), whose forecasts do not depend
    on which other series share their partition; a global model (one fit on all series) must be
    backtested unpartitioned. Series of no partition are left out.

    ``df`` may be a :class:`~tidecast.data.partitions.PartitionedFrame`: with ``partitions``, each
    task then reads its series from their partition file in the worker (this process reads only
    ``unique_id, ds, y`` for the actuals); ``shared_storage=False`` (workers without this file
    system) reads each partition here, one at a time, and ships the rows. Without ``partitions``
    every series is read into one frame (a global model needs them all).

    ``keep_last_model``: the last fold's fitted model comes back in ``BacktestResult.models``
    (unpartitioned runs only: a partitioned fold has one model per partition), so that explaining
    the candidate later needs no refit.
    """
    if not folds:
        raise BacktestError("backtest: no folds to run")
    quantiles = tuple(quantiles)
    source = df if type(df).__name__ == "PartitionedFrame" else None
    if source is not None:
        columns = source.columns
        # the workers read the rows they fit on; this process, the actuals (and every row only
        # when it ships them itself: a global model's folds without shared storage)
        df = source.to_pandas([ID, TIME, TARGET] if partitions is not None or shared_storage else None)
    else:
        df = _sorted(df)
        columns = list(df.columns)
    exog = tuple(ctx.exog_future)
    absent = [c for c in exog if c not in columns]
    if absent:
        raise BacktestError(f"backtest: future exogenous column(s) {', '.join(absent)} are not in the data")
    longest = max(f.h + f.gap for f in folds)
    fold_ctx = replace(ctx, horizon=longest) if longest > ctx.horizon else ctx
    unit = _unit(df, ctx)
    n_all = int(df[ID].nunique())

    if partitions is not None and not partitions:
        raise BacktestError("backtest: no series partitions to run")
    located: list[tuple[int, tuple[Any, ...]]] = []  # (data partition, ids) of each task partition
    if source is not None and partitions is not None:
        located = located_partitions(source, partitions)
        partitions = [list(ids) for _, ids in located]
    n_parts = 1 if partitions is None else len(partitions)
    threads = fold_threads(int(getattr(executor, "n_workers", 1) or 1), n_parts * len(folds))
    if threads is not None and fold_ctx.threads is None:
        fold_ctx = replace(fold_ctx, threads=threads)

    def piece(p: int) -> pd.DataFrame:
        if partitions is None:
            return df
        return df.loc[df[ID].isin(list(partitions[p]))].reset_index(drop=True)

    def tasks() -> Iterator[_FoldTask]:
        if source is not None and partitions is None and shared_storage:  # a global model: every partition
            every = (tuple(source.paths), None)
            for fold in folds:
                yield _FoldTask(fold, None, None, make_model, fold_ctx, quantiles, source=every)
            return
        # partition-major: one partition's rows at a time in this process (or in the worker)
        for p in range(n_parts):
            if located and shared_storage:
                ref = (source.part_path(located[p][0]), located[p][1])  # type: ignore[union-attr]
                for fold in folds:
                    yield _FoldTask(fold, None, None, make_model, fold_ctx, quantiles, partial=True, source=ref)
                continue
            part = source.read(located[p][0], ids=located[p][1]) if located else piece(p)  # type: ignore[union-attr]
            for fold in folds:
                yield _FoldTask(
                    fold, _train_slice(part, fold), _future_slice(part, fold, exog), make_model, fold_ctx, quantiles,
                    partial=partitions is not None,
                )

    results: list[FoldResult | None] = [None] * len(folds)
    outputs: list[list[_FoldOutput | None]] = [[None] * n_parts for _ in folds]

    def merge(index: int) -> _FoldOutput:
        done = [o for o in outputs[index] if o is not None]
        outputs[index] = [None] * n_parts  # free
        if len(done) == 1:
            return done[0]
        fit_s = sum(o.fit_seconds for o in done)
        predict_s = sum(o.predict_seconds for o in done)
        failed = next((o for o in done if o.error is not None), None)
        if failed is not None:
            return _FoldOutput(None, fit_s, predict_s, failed.error, failed.traceback)
        frames = [o.predictions for o in done if isinstance(o.predictions, pd.DataFrame) and len(o.predictions)]
        if not all(isinstance(o.predictions, pd.DataFrame) for o in done):
            bad = next(o.predictions for o in done if not isinstance(o.predictions, pd.DataFrame))
            return _FoldOutput(bad, fit_s, predict_s)
        merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({ID: [], TIME: [], POINT: []})
        return _FoldOutput(merged, fit_s, predict_s)

    def collect(task_index: int, output: _FoldOutput) -> None:
        index = task_index % len(folds)
        outputs[index][task_index // len(folds)] = output
        if any(o is None for o in outputs[index]):
            return
        output = merge(index)
        fold = folds[index]
        n_series = len(fold.series) if fold.series is not None else n_all
        frame, error = None, None
        if output.error is not None:
            error = FoldError(fold.index, fold.cutoff, output.error, output.traceback)
        else:
            try:
                actuals = _actuals(df, fold)
                if partitions is not None:
                    actuals = actuals[actuals[ID].isin(_members(partitions))].reset_index(drop=True)
                frame = _assemble(fold, output, actuals, unit, quantiles)
            except Exception as exc:
                error = FoldError(fold.index, fold.cutoff, _error_text(exc), traceback.format_exc())
        result = FoldResult(fold, frame, output.fit_seconds, output.predict_seconds, n_series, error, output.model)
        results[index] = result
        if on_fold_done is not None:
            on_fold_done(result)

    if executor is None:
        from tidecast.pipeline.executors import SequentialExecutor

        executor = SequentialExecutor()
    name = getattr(make_model, "__name__", None) or type(make_model).__name__
    what = f"backtest {name}" + (f" ({n_parts} series partitions x {len(folds)} folds)" if n_parts > 1 else "")
    keep = keep_last_model and n_parts == 1

    def kept(items: Iterator[_FoldTask]) -> Iterator[_FoldTask]:
        for task in items:
            yield replace(task, keep_model=True) if keep and task.fold is folds[-1] else task

    executor.map(_run_fold, kept(tasks()), desc=what, on_result=collect)
    return _result(list(folds), [r for r in results if r is not None], df, quantiles)


def fold_threads(n_workers: int, n_tasks: int) -> int | None:
    """Native threads for each model of a parallel backtest: the executor's workers shared among the
    tasks that run at once (3 folds on 16 workers: 5 threads each), or ``None`` (the library's
    default, every core) when the work runs in-process.

    Without it a multi-threaded model (LightGBM takes every physical core by default, whatever
    ``OMP_NUM_THREADS`` the worker has) starts a thread per core in each of the parallel folds:
    3 folds on 16 cores run 48 spinning threads.

    >>> fold_threads(16, 3), fold_threads(16, 96), fold_threads(1, 3)
    (5, 1, None)
    """
    if n_workers <= 1:
        return None
    return max(1, n_workers // max(1, min(n_workers, n_tasks)))


def located_partitions(source: Any, partitions: Sequence[Sequence[Any]]) -> list[tuple[int, tuple[Any, ...]]]:
    """``partitions`` cut where they cross a data partition of ``source``, so that each task reads
    one file: ``(data partition, ids)`` of each piece, in order."""
    index = source.index()
    part_of = dict(zip(index[ID].tolist(), index["part"].tolist(), strict=True))
    located: list[tuple[int, tuple[Any, ...]]] = []
    for ids in partitions:
        pieces: dict[int, list[Any]] = {}
        for uid in ids:
            if uid in part_of:
                pieces.setdefault(int(part_of[uid]), []).append(uid)
        located.extend((k, tuple(pieces[k])) for k in sorted(pieces))
    if not located:
        raise BacktestError("backtest: none of the partitions' series are in the data")
    return located


def _members(partitions: Sequence[Sequence[Any]]) -> set[Any]:
    return {uid for part in partitions for uid in part}


def partition_series(ids: Sequence[Any], n_partitions: int) -> list[list[Any]]:
    """Split series ids (sorted) into at most ``n_partitions`` contiguous chunks of near-equal size.

    >>> partition_series(["c", "a", "b", "d", "e"], 2)
    [['a', 'b', 'c'], ['d', 'e']]
    """
    ordered = sorted(pd.unique(pd.Series(list(ids))).tolist(), key=str)
    if not ordered:
        return []
    n = max(1, min(int(n_partitions), len(ordered)))
    size = -(-len(ordered) // n)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _result(folds: list[Fold], results: list[FoldResult], df: pd.DataFrame, quantiles: Sequence[float]) -> BacktestResult:
    frames = [r.forecasts for r in results if r.forecasts is not None]
    forecasts = pd.concat(frames, ignore_index=True) if frames else _empty_forecasts(df, quantiles)
    timings = pd.DataFrame(
        {
            "fold": [r.fold.index for r in results],
            "cutoff": [r.fold.cutoff for r in results],
            "n_series": [r.n_series for r in results],
            "n_excluded": [r.fold.n_excluded for r in results],
            "fit_seconds": [r.fit_seconds for r in results],
            "predict_seconds": [r.predict_seconds for r in results],
            "status": ["ok" if r.error is None else "failed" for r in results],
            "error": [None if r.error is None else r.error.message for r in results],
        }
    )
    return BacktestResult(
        forecasts=forecasts,
        folds=folds,
        timings=timings,
        errors=[r.error for r in results if r.error is not None],
        fit_seconds=float(timings["fit_seconds"].sum()),
        predict_seconds=float(timings["predict_seconds"].sum()),
        models={r.fold.index: r.model for r in results if r.model is not None},
    )


def holdout_forecast(
    make_model: Callable[[], Forecaster],
    df: pd.DataFrame,
    ctx: FitContext,
    holdout_h: int,
    *,
    quantiles: Sequence[float] = (),
    train_window: int | None = None,
    min_train: int = 1,
    on_fold_done: Callable[[FoldResult], None] | None = None,
) -> BacktestResult:
    """Fit on everything before the final ``holdout_h`` steps and forecast them (in-process).

    The result is a one-fold :class:`BacktestResult` whose fold index is :data:`HOLDOUT_FOLD`
    (``-1``); evaluate it with :func:`tidecast.evaluation.metrics.evaluate` as any backtest.
    """
    fold = holdout_fold(
        df, holdout_h, freq=_unit(df, ctx) if pd.api.types.is_datetime64_any_dtype(df[TIME]) else None,
        train_window=train_window, min_train=min_train,
    )
    return backtest(make_model, df, ctx, [fold], quantiles=quantiles, on_fold_done=on_fold_done)
