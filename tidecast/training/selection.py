"""Select the winner of the backtest (or each series' winner), score it on the held-out stretch
and refit it on all data: the work behind the ``select`` step."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tidecast.errors import ModelError
from tidecast.evaluation.metrics import evaluate
from tidecast.evaluation.selection import CandidateResult, improvement_over, per_series_winners, select_winner
from tidecast.frames import ID, TIME
from tidecast.models.base import Forecaster
from tidecast.pipeline.executors import LocalExecutor
from tidecast.spec import Spec
from tidecast.training.distributed import RefitCluster, fit_distributed
from tidecast.training.ensembles import ensemble_factory
from tidecast.training.factories import PerSeriesFactory, _with_intervals, factory_for, interval_day_kinds
from tidecast.training.hierarchy import _reconciled_factory, with_aggregates
from tidecast.training.holdout import holdout_predictions, holdout_run, holdout_scores
from tidecast.training.results import Backtested, PerSeriesChoice, Selection
from tidecast.training.settings import Progress, _noop, fit_context, season_length, side_by_side


def per_series_selection(entries: list[CandidateResult], board: pd.DataFrame, frame: pd.DataFrame, spec: Spec) -> PerSeriesChoice:
    """``selection.scope: per_series``: each series' best candidate, the fallback for the series no
    backtest could judge, how many series each candidate wins, and the aggregate metrics of the
    per-series choice (next to those of the global winner)."""
    metric = spec.selection.metric
    names = [e.name for e in entries]
    fallback = spec.selection.fallback or select_winner(board, metric)
    if fallback not in names:
        raise ModelError(f"selection.fallback: no candidate named '{fallback}' (candidates: {', '.join(names)})")
    if not next(e for e in entries if e.name == fallback).ok:
        raise ModelError(f"selection.fallback: candidate '{fallback}' failed its backtest")
    winners = per_series_winners(entries, metric)
    mapping = {str(u): str(c) for u, c in zip(winners[ID], winners["candidate"], strict=True)}
    unjudged = sorted({str(u) for u in pd.unique(frame[ID])} - set(mapping))
    counts = {name: 0 for name in names}
    for name in mapping.values():
        counts[name] += 1
    counts[fallback] += len(unjudged)
    by_name = {e.name: e for e in entries}
    pieces = []
    for name in sorted(set(mapping.values())):
        ids = [u for u, c in mapping.items() if c == name]
        fc = by_name[name].backtest.forecasts
        pieces.append(fc[fc[ID].astype(str).isin(ids)])
    combined = pd.concat(pieces, ignore_index=True).sort_values(["fold", ID, TIME], kind="stable", ignore_index=True)
    m = season_length(spec)
    some = next(e for e in entries if e.ok)
    evaluation = evaluate(combined, some.backtest.scales(frame, m), season_length=m, quantiles=list(spec.forecast.quantiles))
    global_winner = select_winner(board, metric)
    return PerSeriesChoice(
        mapping=mapping,
        winners=winners,
        fallback=fallback,
        unjudged=unjudged,
        counts=counts,
        aggregate={k: float(v) for k, v in evaluation.aggregate.items()},
        global_winner=global_winner,
        global_aggregate=dict(by_name[global_winner].evaluation.aggregate),
    )


def _baseline_name(spec: Spec, board: pd.DataFrame) -> str | None:
    if spec.selection.baseline:
        return spec.selection.baseline
    ok = board[board["status"] == "ok"]
    for name, kind in zip(ok["candidate"], ok["kind"], strict=False):
        if kind == "seasonal_naive":
            return str(name)
    return None


def _refit(
    factory: Callable[[], Forecaster], frame: pd.DataFrame, ctx: Any, entry: Any, spec: Spec, *, client: Any = None
) -> tuple[Any, float]:
    """The winner fit on all data (over the cluster's workers with ``client``), and its seconds."""
    started = time.perf_counter()
    model = _with_intervals(factory, entry, list(spec.forecast.quantiles), interval_day_kinds(spec))()
    # over the workers with a client (then an ordinary local LightGBMModel), else in this process
    model = fit_distributed(model, frame, ctx, client=client) if client is not None else model.fit(frame, ctx)
    return model, time.perf_counter() - started


@dataclass(frozen=True)
class _SelectJob:
    what: str  # "holdout" (the winner's, then the baseline's) or "refit"
    factory: Any
    base_factory: Any
    frame: pd.DataFrame
    ctx: Any
    spec: Spec
    entry: Any
    base_entry: Any


def _select_job(job: _SelectJob) -> tuple[Any, Any]:
    """A worker process's share of :func:`select_and_refit`: (the winner's and the baseline's
    held-out runs, None), or (None, (the refit model, its seconds))."""
    if job.what == "refit":
        return None, _refit(job.factory, job.frame, job.ctx, job.entry, job.spec)
    winner = holdout_run(job.factory, job.frame, job.ctx, job.spec, job.entry)
    base = holdout_run(job.base_factory, job.frame, job.ctx, job.spec, job.base_entry) if job.base_factory is not None else None
    return (winner, base), None


def select_and_refit(backtested: Backtested, frame: pd.DataFrame, spec: Spec, *, progress: Progress = _noop) -> Selection:
    """The winner, scored on the held-out last horizon (trained on what precedes it), then refit on all data."""
    board, metric = backtested.leaderboard, backtested.metric
    if backtested.per_series is not None:
        return _select_per_series(backtested, backtested.per_series, frame, spec, progress=progress)
    frame = with_aggregates(frame, spec)
    winner = select_winner(board, metric)
    entry = backtested.results[winner]
    reconciled = _reconciled_factory(winner, backtested, frame, spec)
    combined = ensemble_factory(winner, backtested, spec)
    if reconciled is not None:
        factory, kind = reconciled
    elif combined is not None:
        factory, kind = combined, "ensemble"
    else:
        candidate = next(c for c in spec.models if c.name == winner)
        factory, kind = factory_for(candidate, entry.params, spec), candidate.kind
    ctx = fit_context(spec, frame)
    _, horizon = spec.forecast_steps()
    quantiles = list(spec.forecast.quantiles)

    cluster = RefitCluster(spec, kind, entry.params)  # a client when the winner trains distributed
    try:
        baseline = _baseline_name(spec, board)
        base_factory, base_entry = None, None
        if baseline and baseline != winner:
            base_entry = backtested.results[baseline]
            base_candidate = next(c for c in spec.models if c.name == baseline)
            base_factory = factory_for(base_candidate, base_entry.params, spec)
        side = cluster.client is None and reconciled is None and combined is None and spec.executor.kind == "local"
        workers = side_by_side(len(frame), 2) if side else 1
        if workers > 1:  # the held-out fits in one worker process, the refit in the other: the same numbers
            progress(0, 3, f"holdout score and refit of {winner} (in parallel, 2 processes)")
            # the context as in turn (the refit keeps it): each worker process has one thread (loky's limit)
            jobs = [_SelectJob("holdout", factory, base_factory, frame, ctx, spec, entry, base_entry),
                    _SelectJob("refit", factory, None, frame, ctx, spec, entry, None)]
            (held_out, _), (_, refit) = LocalExecutor(workers).map(_select_job, jobs, desc="select")
            (holdout, held, held_scales), based = held_out
            model, refit_seconds = refit
        else:
            progress(0, 3, f"holdout score of {winner}")
            holdout, held, held_scales = holdout_run(factory, frame, ctx, spec, entry, client=cluster.client)
            based = holdout_run(base_factory, frame, ctx, spec, base_entry) if base_factory is not None else None
            progress(1, 3, f"refitting {winner} on all data")
            model, refit_seconds = _refit(factory, frame, ctx, entry, spec, client=cluster.client)
        baseline_holdout, base_held = (based[0], based[1]) if based is not None else (None, None)
        if baseline == winner:
            baseline_holdout, base_held = holdout, held
    finally:
        cluster.close()
    progress(3, 3, f"{winner} refit in {refit_seconds:.1f} s")
    hierarchy = None
    if reconciled is not None:  # the model card tells callers to send every bottom series
        inner = getattr(model, "inner", model)  # under the interval calibration's wrapper
        hierarchy = {**inner.hierarchy.to_dict(), "method": inner.method}
    return Selection(
        winner=winner,
        kind=kind,
        training=cluster.label,
        params=entry.params,
        metric=metric,
        backtest_metrics=dict(entry.evaluation.aggregate),
        holdout_metrics=holdout,
        baseline=baseline,
        baseline_holdout_metrics=baseline_holdout,
        improvement_over_baseline=improvement_over(board, winner, baseline, metric) if baseline else None,
        refit_seconds=refit_seconds,
        horizon=horizon,
        quantiles=quantiles,
        context=ctx,
        model=model,
        **_trained_on(frame),
        # the held-out forecasts, for the gate's significance test (tidecast.evaluation.significance)
        holdout_steps=spec.holdout_steps(),
        holdout_forecasts={"winner": held, "baseline": base_held},
        holdout_scales=held_scales,
        ensembles=backtested.ensembles,  # weights, and where each beats the best single candidate
        hierarchy=hierarchy,
    )


def _trained_on(frame: pd.DataFrame) -> dict[str, Any]:
    """What a selection records of the data its model was refit on: the last time and the series."""
    return {
        "trained_until": str(frame[TIME].max()),
        "n_series": int(frame[ID].nunique()),
        "series_ids": sorted(str(u) for u in pd.unique(frame[ID])),
    }


def _select_per_series(
    backtested: Backtested, chosen: PerSeriesChoice, frame: pd.DataFrame, spec: Spec, *, progress: Progress = _noop
) -> Selection:
    """``selection.scope: per_series``: one model holding every series' winner (and the fallback),
    scored on the held-out stretch, then refit on all data."""
    board, metric = backtested.leaderboard, backtested.metric
    quantiles = list(spec.forecast.quantiles)
    _, horizon = spec.forecast_steps()
    ctx = fit_context(spec, frame)
    needed = sorted({*chosen.mapping.values(), chosen.fallback})
    factories: dict[str, Callable[[], Forecaster]] = {}
    for name in needed:
        entry = backtested.results[name]
        candidate = next(c for c in spec.models if c.name == name)
        factories[name] = _with_intervals(factory_for(candidate, entry.params, spec), entry, quantiles, interval_day_kinds(spec))
    factory = PerSeriesFactory(factories, dict(chosen.mapping), chosen.fallback)

    progress(0, 3, f"holdout score of the per-series choice ({len(needed)} candidates)")
    forecasts, scales = holdout_predictions(factory, frame, ctx, spec)
    m = season_length(spec)
    holdout = {k: float(v) for k, v in evaluate(forecasts, scales, season_length=m, quantiles=quantiles).aggregate.items()}
    baseline = _baseline_name(spec, board)
    baseline_holdout = None
    if baseline:
        base_entry = backtested.results[baseline]
        base_candidate = next(c for c in spec.models if c.name == baseline)
        baseline_holdout = holdout_scores(factory_for(base_candidate, base_entry.params, spec), frame, ctx, spec, base_entry)
    improvement = None  # as for a global winner: on the backtest metric
    base_row = board[board["candidate"] == baseline] if baseline else board.iloc[0:0]
    if len(base_row) and base_row["status"].iloc[0] == "ok" and metric in chosen.aggregate:
        improvement = backtested.ranking.improvement(base_row[metric].iloc[0], chosen.aggregate[metric])

    progress(1, 3, "refitting the per-series winners on all data")
    started = time.perf_counter()
    model = factory().fit(frame, ctx)
    refit_seconds = time.perf_counter() - started
    progress(3, 3, f"per-series model refit in {refit_seconds:.1f} s")
    return Selection(
        winner="per_series",
        kind="per_series",
        params={"fallback": chosen.fallback, "candidates": needed},
        metric=metric,
        backtest_metrics=dict(chosen.aggregate),
        holdout_metrics=holdout,
        baseline=baseline,
        baseline_holdout_metrics=baseline_holdout,
        improvement_over_baseline=improvement,
        refit_seconds=refit_seconds,
        horizon=horizon,
        quantiles=quantiles,
        context=ctx,
        model=model,
        **_trained_on(frame),
        per_series={
            "mapping": dict(chosen.mapping),
            "fallback": chosen.fallback,
            "counts": model.winner_counts(),  # type: ignore[attr-defined]
            "global_winner": chosen.global_winner,
            "global_backtest_metrics": chosen.global_aggregate,
        },
    )
