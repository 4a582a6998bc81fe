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

import itertools
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from tidecast.errors import BacktestError
from tidecast.evaluation.backtest_result import BacktestResult, FoldError, FoldResult, _result
from tidecast.evaluation.fold_work import (
    _actuals,
    _assemble,
    _error_text,
    _FoldOutput,
    _FoldTask,
    _future_slice,
    _run_fold,
    _sorted,
    _train_slice,
    _unit,
)
from tidecast.evaluation.folds import HOLDOUT_FOLD, Fold, folds_for_spec, holdout_fold, make_folds
from tidecast.frames import ID, POINT, TARGET, TIME
from tidecast.models.base import FitContext, Forecaster
from tidecast.pipeline.executors import SequentialExecutor

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
    n_workers = int(getattr(executor, "n_workers", 1) or 1)
    threads = fold_threads(n_workers, n_parts * len(folds))
    last_ctx = fold_ctx  # the tasks of the last, incomplete round of the workers (see tail_threads)
    first_of_tail = n_parts * len(folds)
    if threads is not None and fold_ctx.threads is None:
        fold_ctx = replace(fold_ctx, threads=threads)
        if partitions is None:  # a global model's folds take about as long as each other
            last_ctx = replace(fold_ctx, threads=tail_threads(n_workers, len(folds)))
            first_of_tail = len(folds) - _tail_size(n_workers, len(folds))
    counter = itertools.count()

    def ctx_of_next() -> FitContext:
        return fold_ctx if next(counter) < first_of_tail else last_ctx

    def piece(p: int) -> pd.DataFrame:
        if partitions is None:
            return df
        return df.loc[df[ID].isin(list(partitions[p]))].reset_index(drop=True)

    def tasks() -> Iterator[_FoldTask]:
        if source is not None and partitions is None and shared_storage:  # a global model: every partition
            every = (tuple(source.paths), None)
            for fold in folds:
                yield _FoldTask(fold, None, None, make_model, ctx_of_next(), quantiles, source=every)
            return
        # partition-major: one partition's rows at a time in this process (or in the worker)
        for p in range(n_parts):
            if located and shared_storage:
                ref = (source.part_path(located[p][0]), located[p][1])  # type: ignore[union-attr]
                for fold in folds:
                    yield _FoldTask(fold, None, None, make_model, ctx_of_next(), quantiles, partial=True, source=ref)
                continue
            part = source.read(located[p][0], ids=located[p][1]) if located else piece(p)  # type: ignore[union-attr]
            for fold in folds:
                yield _FoldTask(
                    fold, _train_slice(part, fold), _future_slice(part, fold, exog), make_model, ctx_of_next(), quantiles,
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


def _tail_size(n_workers: int, n_tasks: int) -> int:
    """How many tasks run in the workers' last round when it is incomplete (0 when every round is full)."""
    if n_workers <= 1 or n_tasks <= n_workers:
        return 0
    return n_tasks % n_workers


def tail_threads(n_workers: int, n_tasks: int) -> int | None:
    """Native threads for the tasks of the last round of a parallel backtest when that round leaves
    workers idle: the workers shared among those tasks (3 folds on 2 workers: the first two run
    with one thread each, the third alone with two), else :func:`fold_threads`. Folds of one
    candidate take about the same time, so the last round starts when the others end and would
    otherwise run on one core while the other idles (the ~1.2x of tidecast over mlforecast's own
    sequential, multi-threaded cross-validation at 10,000 series on 2 cores; bench/RESULTS.md).

    >>> tail_threads(2, 3), tail_threads(2, 4), tail_threads(16, 3), tail_threads(4, 9)
    (2, 1, 5, 4)
    """
    rest = _tail_size(n_workers, n_tasks)
    if rest == 0:
        return fold_threads(n_workers, n_tasks)
    return max(1, n_workers // rest)


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
