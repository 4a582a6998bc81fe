"""Backtest every candidate of a spec (searching its parameters) and rank them: the work behind
the ``backtest`` step. Everything here speaks the Forecaster protocol only."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from tidecast.errors import ModelError, TidecastError
from tidecast.evaluation.backtest import backtest as run_backtest
from tidecast.evaluation.backtest import make_folds
from tidecast.evaluation.calibration import (
    RESIDUAL_COLUMNS,
    calibrate_folds,
    calibration_forecasts,
    calibration_groups,
    calibration_windows,
)
from tidecast.evaluation.metrics import evaluate
from tidecast.evaluation.search import grid, is_searched, optuna_search
from tidecast.evaluation.selection import CandidateResult, Ranking, leaderboard
from tidecast.models.base import FitContext
from tidecast.models.registry import fits_per_series, kind_property
from tidecast.pipeline.executors import LocalExecutor, SequentialExecutor, make_executor
from tidecast.spec import CandidateSpec, Spec
from tidecast.training.backtest_data import BacktestData as _Data
from tidecast.training.backtest_data import series_partitions
from tidecast.training.distributed import backtest_distributed, dask_client, plan_training, source_for
from tidecast.training.ensembles import ensemble_entries
from tidecast.training.factories import ModelFactory, factory_for, interval_day_kinds, validate_candidates
from tidecast.training.hierarchy import _with_reconciled
from tidecast.training.results import Backtested
from tidecast.training.selection import per_series_selection
from tidecast.training.settings import Progress, _noop, fit_context, season_length, side_by_side


def _backtest_one(
    factory: ModelFactory, data: _Data | pd.DataFrame, ctx: FitContext, folds: list[Any], spec: Spec, executor: Any,
    *, calibrate: bool = True,
) -> tuple[Any, Any]:
    if not isinstance(data, _Data):
        data = _Data(data, spec)
    frame = data.light
    quantiles = list(spec.forecast.quantiles)
    conformal = bool(quantiles)  # every candidate's intervals are calibrated (tidecast.evaluation.calibration)
    partitions = (
        series_partitions(frame, int(getattr(executor, "n_workers", 1) or 1))
        if fits_per_series(factory.candidate.kind)
        else None
    )
    on_cluster = plan_training(spec, factory.candidate.kind, factory.params, executor).distributed
    if on_cluster:
        client = dask_client(executor)
        result = backtest_distributed(
            factory, source_for(data, ctx, client), ctx, folds, client=client,
            quantiles=() if conformal else quantiles,
        )
    else:
        result = run_backtest(
            factory, data.for_kind(factory.candidate.kind), ctx, folds, quantiles=() if conformal else quantiles,
            executor=executor, partitions=partitions, shared_storage=data.shared_storage,
            keep_last_model=True,  # the explain step reuses it instead of refitting (tidecast.reporting.explain)
        )
    if result.errors:
        raise ModelError(f"candidate '{factory.candidate.name}': {result.errors[0]}")
    if conformal and calibrate:  # else the caller calibrates (see _finish_split)
        _calibrate(result, factory, data, ctx, folds, spec, executor, partitions, distributed=on_cluster)
    m = season_length(spec)
    scored = quantiles if calibrate or not conformal else []  # uncalibrated: no quantiles to score yet
    evaluation = evaluate(result.forecasts, result.scales(frame, m), season_length=m, quantiles=scored)
    return result, evaluation


def _calibrate(
    result: Any, factory: ModelFactory, data: _Data, ctx: FitContext, folds: list[Any], spec: Spec, executor: Any,
    partitions: Any, *, distributed: bool = False,
) -> None:
    """Calibrated quantiles on ``result``'s folds, fit without look-ahead (calibration windows
    before the first fold, then each earlier fold); the windows' residuals kept on ``result``."""
    calibration = _calibration(factory, data, ctx, folds, spec, executor, partitions, distributed=distributed)
    result.calibration = calibration
    result.forecasts, _fallback = calibrate_folds(
        result.forecasts, calibration, list(spec.forecast.quantiles), day_kinds=interval_day_kinds(spec)
    )


def _calibration(
    factory: ModelFactory, data: _Data, ctx: FitContext, folds: list[Any], spec: Spec, executor: Any,
    partitions: Any, *, distributed: bool = False,
) -> pd.DataFrame:
    """The forecasts of the calibration windows before the first fold (independent of the folds')."""
    calibration, _errors = calibration_forecasts(
        factory, data.for_kind(factory.candidate.kind), ctx, _windows(data, ctx, folds, spec, distributed=distributed),
        executor=executor, partitions=partitions, shared_storage=data.shared_storage,
        fits=spec.backtest.calibration_fits,
    )
    return calibration


def _windows(data: _Data, ctx: FitContext, folds: list[Any], spec: Spec, *, distributed: bool = False) -> list[Any]:
    """The calibration windows before the first fold, the same for every candidate (none on a cluster)."""
    window, _ = spec.forecast_steps()
    n_windows = 0 if distributed else int(spec.backtest.calibration_windows)
    return calibration_windows(folds, data.light, ctx, n_windows, min_train=window)


def _run_candidate(
    candidate: CandidateSpec, data: _Data, ctx: FitContext, folds: list[Any], spec: Spec, executor: Any,
    *, calibrate: bool = True,
) -> tuple[Any, dict[str, Any] | None]:
    """One candidate's backtest (searching its parameters): its leaderboard entry, and its details
    (parameters, trials, seconds) unless it failed."""
    metric = spec.selection.metric
    ranking = Ranking(metric)
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []

    def score(params: dict[str, Any]) -> tuple[float, Any, Any]:
        factory = factory_for(candidate, params, spec)
        result, evaluation = _backtest_one(factory, data, ctx, folds, spec, executor, calibrate=calibrate)
        # deferred calibration: a quantile metric is scored once calibrated (_finish_split)
        value = float(evaluation.aggregate[metric]) if calibrate or metric in evaluation.aggregate else float("nan")
        return value, result, evaluation

    best: tuple[float, dict[str, Any], Any, Any] | None = None
    error: str | None = None
    try:
        if candidate.search is not None:
            cache: dict[str, tuple[Any, Any]] = {}

            def objective(params: dict[str, Any], cache: dict = cache) -> float:  # type: ignore[type-arg]
                value, result, evaluation = score(params)
                cache[repr(sorted(params.items()))] = (result, evaluation)
                return ranking.key(value)  # the search minimizes

            search = optuna_search(objective, candidate.params, candidate.search)
            trials = [
                {"params": t.params, "value": t.value, "seconds": t.seconds, "error": t.error}
                for t in search.trials
            ]
            result, evaluation = cache[repr(sorted(search.best_params.items()))]
            best = (search.best_value, search.best_params, result, evaluation)
        else:
            combos = grid(candidate.params) if is_searched(candidate.params) else [dict(candidate.params)]
            for params in combos:
                try:
                    value, result, evaluation = score(params)
                except TidecastError as exc:
                    trials.append({"params": params, "value": None, "seconds": None, "error": str(exc)})
                    if len(combos) == 1:
                        raise
                    continue
                trials.append({"params": params, "value": value, "seconds": None, "error": None})
                if best is None or ranking.better(value, best[0]):
                    best = (value, params, result, evaluation)
            if best is None:
                raise ModelError(f"candidate '{candidate.name}': every parameter combination failed")
    except (TidecastError, Exception) as exc:  # a candidate that fails is recorded, the others go on
        error = str(exc) if isinstance(exc, TidecastError) else f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    if best is None:
        return CandidateResult(
            name=candidate.name, kind=candidate.kind, params=dict(candidate.params), evaluation=None,
            backtest=None, error=error, fit_seconds=seconds, predict_seconds=0.0, trials=len(trials),
        ), None
    _, params, result, evaluation = best
    entry = CandidateResult(
        name=candidate.name, kind=candidate.kind, params=params, evaluation=evaluation, backtest=result,
        error=None, fit_seconds=result.fit_seconds, predict_seconds=result.predict_seconds,
        trials=len(trials),
    )
    return entry, {
        "params": params, "trials": trials, "seconds": seconds,
        "training": plan_training(spec, candidate.kind, params, executor).label,
    }


def _cost_rank(kind: str) -> int:
    """How long a kind's backtest takes (its model class's ``fit_cost``; 0 for the fast ones and plugins)."""
    return int(kind_property(kind, "fit_cost", 0))


def _candidate_workers(spec: Spec, executor: Any, candidates: list[tuple[int, CandidateSpec]], data: _Data) -> int:
    """How many processes run candidates side by side: with the default in-process backtest
    (``n_jobs: 1``, local) on a machine of several cores, up to one per core for two or more
    candidates of which one takes long, on neither tiny nor large data; else 1 (one after the other).
    ``TIDECAST_PARALLEL_CANDIDATES=0`` turns it off."""
    if int(getattr(executor, "n_workers", 1) or 1) > 1 or getattr(spec.executor, "kind", "local") != "local":
        return 1  # folds (or partitions) already run in parallel, or on a cluster
    if not any(_cost_rank(c.kind) for _, c in candidates):
        return 1
    return side_by_side(len(data.light), len(candidates))


@dataclass(frozen=True)
class _CandidateTask:
    index: int
    candidate: CandidateSpec
    data: _Data
    ctx: FitContext
    folds: list[Any]
    spec: Spec
    part: str = "all"  # or "folds" (the calibration left out) and "calibration" (one fit's windows only)
    windows: tuple[Any, ...] = ()  # for "calibration": the windows of one calibration model


def _run_candidate_task(task: _CandidateTask) -> tuple[int, str, Any, dict[str, Any] | None]:
    """:func:`_run_candidate` in a worker process (its folds one after the other), or one part of it:
    ``(index, part, entry, details)``; for ``"calibration"``, ``(index, part, the forecasts of
    ``task.windows`` (one model fit before the oldest) or None when they failed, None)``."""
    if task.part == "calibration":
        factory = factory_for(task.candidate, dict(task.candidate.params), task.spec)
        try:
            calibration, _errors = calibration_forecasts(  # failed windows are left out, as whole
                factory, task.data.for_kind(task.candidate.kind), task.ctx, list(task.windows), fits=1,
                shared_storage=task.data.shared_storage,
            )
        except Exception:  # the candidate is then run whole, which records the failure as it words it
            calibration = None
        return task.index, task.part, calibration, None
    entry, detail = _run_candidate(
        task.candidate, task.data, task.ctx, task.folds, task.spec, SequentialExecutor(), calibrate=task.part == "all"
    )
    return task.index, task.part, entry, detail


def _splits(candidate: CandidateSpec, spec: Spec) -> bool:
    """Whether a candidate's backtest (one parameter set) runs as several tasks side by side: its
    folds' fits, and each calibration model's fit and windows (independent of the folds'), so that
    the workers stay balanced (examples/power: the MLP's folds on one worker while the others'
    calibration windows run on the other). Only for candidates whose fits or forecasts take time."""
    return (
        bool(spec.forecast.quantiles) and candidate.search is None and not is_searched(candidate.params)
        and _cost_rank(candidate.kind) > 0
    )


def _calibration_tasks(
    split: list[tuple[int, CandidateSpec]], data: _Data, ctx: FitContext, folds: list[Any], spec: Spec
) -> list[_CandidateTask]:
    """One task per calibration model of each split candidate: the groups of
    :func:`calibration_groups`, the same for every candidate (computed once)."""
    if not split:
        return []
    groups = calibration_groups(_windows(data, ctx, folds, spec), data.light, spec.backtest.calibration_fits)
    return [_CandidateTask(index, c, data, ctx, folds, spec, "calibration", tuple(g)) for index, c in split for g in groups]


def _finish_split(entry: Any, detail: dict[str, Any] | None, calibration: pd.DataFrame, data: _Data, spec: Spec) -> Any:
    """A split candidate's entry as :func:`_run_candidate` would have made it whole: its folds'
    forecasts calibrated with the windows' forecasts, then scored."""
    result = entry.backtest
    result.calibration = calibration
    quantiles = list(spec.forecast.quantiles)
    result.forecasts, _fallback = calibrate_folds(result.forecasts, calibration, quantiles, day_kinds=interval_day_kinds(spec))
    m = season_length(spec)
    evaluation = evaluate(result.forecasts, result.scales(data.light, m), season_length=m, quantiles=quantiles)
    if detail is not None:
        for trial in detail["trials"]:
            trial["value"] = float(evaluation.aggregate[spec.selection.metric])
    return replace(entry, evaluation=evaluation)


def _side_by_side_tasks(
    order: list[tuple[int, CandidateSpec]], data: _Data, ctx: FitContext, folds: list[Any], spec: Spec
) -> tuple[list[_CandidateTask], set[int]]:
    """The tasks of the candidates run side by side, and the indices of the split ones. Order: the
    longest candidate's folds (the longest single task), then every split candidate's calibration
    models, then the other folds and whole candidates, the costliest kinds first (a task left alone
    at the end keeps a worker idle)."""
    split = {index for index, candidate in order if _splits(candidate, spec)}
    whole = [
        _CandidateTask(index, candidate, data, ctx, folds, spec, "folds" if index in split else "all")
        for index, candidate in order
    ]
    calibrations = _calibration_tasks([(index, c) for index, c in order if index in split], data, ctx, folds, spec)
    return [*whole[:1], *calibrations, *whole[1:]], split


def _joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The calibration models' window forecasts as :func:`calibration_forecasts` joins them (oldest first)."""
    frames = [p for p in parts if len(p)]
    if not frames:  # no window (a short history) or none forecast
        return pd.DataFrame(columns=RESIDUAL_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def candidate_results(frame: pd.DataFrame, spec: Spec, *, progress: Progress = _noop) -> Backtested:
    """Backtest every candidate (grid or Optuna search where params ask for it) and build the leaderboard."""

    validate_candidates(spec)
    data = _Data(frame, spec)
    frame = data.light  # unique_id, ds, y (every column without partitions on disk)
    ctx = fit_context(spec, frame)
    window, horizon = spec.forecast_steps()
    bt = spec.backtest
    folds = make_folds(
        frame,
        h=horizon,
        folds=bt.folds,
        step=spec.steps(bt.step, "backtest.step") if bt.step is not None else horizon,
        window=bt.window,
        train_window=spec.steps(bt.train_window, "backtest.train_window") if bt.train_window is not None else None,
        gap=spec.steps(bt.gap, "backtest.gap"),
        holdout=spec.holdout_steps(),
        freq=spec.data.frequency,
        min_train=window,
    )
    executor = make_executor(spec.executor, bt.n_jobs)
    metric = spec.selection.metric
    entries: list[Any] = []
    details: dict[str, Any] = {}
    total = len(spec.models)
    candidates = [(index, c) for index, c in enumerate(spec.models) if c.kind != "ensemble"]  # ensembles: after
    workers = _candidate_workers(spec, executor, candidates, data)
    outcomes: dict[int, tuple[Any, dict[str, Any] | None]] = {}
    try:
        if workers > 1:
            # independent candidates side by side, one process each, the cores shared among them (the
            # folds of each run in turn, as with n_jobs: 1): the same numbers as one after the other
            order = sorted(candidates, key=lambda item: -_cost_rank(item[1].kind))  # the longest first
            pool_ctx = replace(ctx, threads=max(1, (os.cpu_count() or 1) // workers)) if ctx.threads is None else ctx
            tasks, split = _side_by_side_tasks(order, data, pool_ctx, folds, spec)
            for index, candidate in order:
                progress(index, total, f"backtesting {candidate.name} (in parallel, {workers} processes)")
            pieces: dict[int, list[Any]] = {index: [] for index in split}
            for index, part, entry, detail in LocalExecutor(workers).map(_run_candidate_task, tasks, desc="candidates"):
                if part == "calibration":
                    pieces[index].append(entry)
                else:
                    outcomes[index] = (entry, detail)
            for index, candidate in order:
                if index not in split:
                    continue
                entry, detail = outcomes[index]
                parts = pieces[index]
                if entry.ok and all(p is not None for p in parts):
                    calibration = _joined(parts)
                    outcomes[index] = (_finish_split(entry, detail, calibration, data, spec), detail)
                else:  # a part failed: the candidate whole, in turn, which words its failure as ever
                    outcomes[index] = _run_candidate(candidate, data, pool_ctx, folds, spec, SequentialExecutor())
        else:
            for index, candidate in candidates:
                progress(index, total, f"backtesting {candidate.name}")
                outcomes[index] = _run_candidate(candidate, data, ctx, folds, spec, executor)
    finally:
        executor.close()
    for index, _candidate in candidates:
        entry, detail = outcomes[index]
        entries.append(entry)
        if detail is not None:
            details[entry.name] = detail

    combined, ensembles = ensemble_entries(entries, frame, spec, folds)  # from the stored fold forecasts
    entries = [*entries, *combined]
    reconciled = None
    if spec.hierarchy is not None:
        progress(total, total, "reconciling")
        entries, reconciled = _with_reconciled(entries, data.full, spec)
    progress(total, total, "ranked")
    board = leaderboard(entries, metric)
    per_series = None
    if spec.selection.scope == "per_series":
        per_series = per_series_selection(entries, board, frame, spec)
        counts = per_series.counts
        board.insert(board.columns.get_loc("fit_seconds"), "series_won", [int(counts.get(c, 0)) for c in board["candidate"]])
    return Backtested(
        leaderboard=board,
        metric=metric,
        folds=[f.__dict__ for f in folds],
        season_length=season_length(spec),
        results={e.name: e for e in entries},
        details=details,
        hierarchy=reconciled,
        ensembles=ensembles or None,
        per_series=per_series,
    )
