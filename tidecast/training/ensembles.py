"""The ensemble candidates of a backtest, and the model of an ensemble winner.

Glue between :mod:`tidecast.evaluation.ensembles` (the method, on backtest forecasts) and the
pipeline's backtest and select steps: after every single candidate's backtest, each ensemble of
the spec is computed from its members' stored fold forecasts (no refit), scored like any
candidate and put on the leaderboard; with the ensemble as the winner, its members are refit on
all data inside one :class:`~tidecast.models.ensemble.EnsembleForecaster`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from tidecast.errors import ModelError
from tidecast.evaluation.backtest import BacktestResult
from tidecast.evaluation.ensembles import beats_best_single, ensemble_backtest, recalibrate
from tidecast.evaluation.metrics import evaluate
from tidecast.evaluation.selection import CandidateResult, leaderboard, select_winner
from tidecast.models.base import Forecaster
from tidecast.models.ensemble import KIND, EnsembleFactory, EnsembleSpec, ensemble_specs
from tidecast.training.factories import factory_for, interval_day_kinds
from tidecast.training.settings import season_length

__all__ = ["ensemble_entries", "ensemble_factory", "ensemble_names"]


def ensemble_names(spec: Any) -> set[str]:
    """The names of the spec's ensemble candidates (``selection.ensemble: auto``'s included)."""
    return {e.name for e in ensemble_specs(spec)}


def _members_of(ens: EnsembleSpec, entries: list[Any], spec: Any) -> list[Any]:
    """The member entries: the named ones (each must have succeeded), else every single candidate that did."""
    by_name = {e.name: e for e in entries}
    field = f"models ({ens.name}).params.members" if ens.explicit else "selection.ensemble"
    if ens.members is None:
        ok = [e for e in entries if e.ok and e.kind != KIND]
        if not ok:
            raise ModelError(f"{field}: every candidate failed its backtest; nothing to combine")
        return ok
    chosen = []
    for name in ens.members:
        entry = by_name.get(name)
        if entry is None:
            raise ModelError(f"{field}: no candidate named '{name}'")
        if not entry.ok:
            reason = (entry.error or "no evaluation").splitlines()[0][:200]
            raise ModelError(f"{field}: member '{name}' failed its backtest ({reason})")
        chosen.append(entry)
    return chosen


def ensemble_entries(
    entries: list[Any], frame: pd.DataFrame, spec: Any, folds: list[Any]
) -> tuple[list[Any], dict[str, Any]]:
    """One :class:`~tidecast.evaluation.selection.CandidateResult` per ensemble of the spec (after the
    single candidates' backtests), and a summary per ensemble: final weights, each fold's weights,
    and where it beats the best single candidate (per fold, horizon step, series)."""
    specs = ensemble_specs(spec)
    if not specs:
        return [], {}
    metric = spec.selection.metric
    quantiles = list(spec.forecast.quantiles)
    m = season_length(spec)
    out: list[Any] = []
    summaries: dict[str, Any] = {}
    for ens in specs:
        members = _members_of(ens, entries, spec)
        scales = members[0].backtest.scales(frame, m)
        built = ensemble_backtest(
            {e.name: e.backtest.forecasts for e in members},
            metric=metric,
            quantiles=quantiles,
            scales=scales,
            max_iterations=ens.max_iterations,
        )
        forecasts, calibration = built.forecasts, None
        if quantiles:  # the ensemble's own intervals, as any candidate's (evaluation.ensembles.recalibrate)
            calibrations = {e.name: getattr(e.backtest, "calibration", None) for e in members}
            forecasts, calibration = recalibrate(built, calibrations, quantiles, day_kinds=interval_day_kinds(spec))
        evaluation = evaluate(forecasts, scales, season_length=m, quantiles=quantiles)
        used = [e for e in members if built.weights.get(e.name, 0) > 0]
        result = BacktestResult(
            forecasts=forecasts,
            calibration=calibration,
            folds=list(members[0].backtest.folds),
            timings=members[0].backtest.timings.assign(fit_seconds=0.0, predict_seconds=0.0),
            fit_seconds=float(sum(e.fit_seconds for e in used)),
            predict_seconds=float(sum(e.predict_seconds for e in used)),
        )
        params = {
            "members": [e.name for e in members],
            "max_iterations": ens.max_iterations,
            "weights": {k: round(v, 6) for k, v in built.weights.items() if v > 0},
        }
        out.append(
            CandidateResult(
                name=ens.name,
                kind=KIND,
                params=params,
                evaluation=evaluation,
                backtest=result,
                error=None,
                fit_seconds=result.fit_seconds,
                predict_seconds=result.predict_seconds,
                trials=1,
            )
        )
        singles = [e for e in entries if e.ok and e.kind != KIND]
        best = select_winner(leaderboard(singles, metric), metric) if singles else None
        comparison: dict[str, Any] = {}
        if best is not None:
            best_entry = next(e for e in singles if e.name == best)
            comparison = beats_best_single(forecasts, best_entry.backtest.forecasts, metric, scales)
            comparison.update(
                {
                    "single": best,
                    "single_value": float(best_entry.evaluation.aggregate.get(metric, float("nan"))),
                    "ensemble_value": float(evaluation.aggregate.get(metric, float("nan"))),
                }
            )
        summaries[ens.name] = {
            "weights": dict(built.weights),
            "fold_weights": {str(k): v for k, v in built.fold_weights.items()},
            "members": [e.name for e in members],
            "max_iterations": ens.max_iterations,
            "fold0": "equal weights (no earlier fold to fit on)",
            "versus_best_single": comparison,
        }
    return out, summaries


def ensemble_factory(winner: str, backtested: dict[str, Any], spec: Any) -> Callable[[], Forecaster] | None:
    """For an ensemble winner: the factory of its model (members of positive weight, point forecasts;
    the caller wraps it in the ensemble's own conformal intervals, from its entry's residuals, as any
    candidate: :func:`tidecast.training.factories._with_intervals`); ``None`` for any other winner."""
    summary = (backtested.get("ensembles") or {}).get(winner)
    if summary is None:
        return None
    factories: dict[str, Callable[[], Forecaster]] = {}
    weights = {k: float(v) for k, v in summary["weights"].items() if float(v) > 0}
    for name in weights:
        entry = backtested["results"][name]
        candidate = next(c for c in spec.models if c.name == name)
        factories[name] = factory_for(candidate, entry.params, spec)
    return EnsembleFactory(factories, weights, name=winner)
