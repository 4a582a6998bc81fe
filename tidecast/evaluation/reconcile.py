"""Reconciled candidates: every base candidate's backtest forecasts, reconciled per fold by each of
``hierarchy.methods``, scored like any candidate (on every node of every level) and ranked on the
same leaderboard as ``<candidate>/<method>``.

Each fold is reconciled on its own; ``min_trace_shrink`` estimates the error covariance of fold
``k`` from the base candidate's errors on the *other* folds, so no fold sees its own actuals.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from tidecast.data.hierarchy import Hierarchy
from tidecast.errors import TidecastError
from tidecast.frames import ID, TIME
from tidecast.models.reconciled import NEEDS_ERRORS, projection, reconcile_forecasts, residual_matrix

__all__ = ["coherence_error", "per_level_table", "reconcile_backtest", "reconciled_entries", "split_name"]

SEPARATOR = "/"


def split_name(name: str) -> tuple[str, str] | None:
    """``'autoets/min_trace_ols'`` -> ``('autoets', 'min_trace_ols')``; ``None`` for a base candidate."""
    if SEPARATOR not in name:
        return None
    base, method = name.rsplit(SEPARATOR, 1)
    return base, method


def reconcile_backtest(forecasts: pd.DataFrame, hierarchy: Hierarchy, method: str) -> pd.DataFrame:
    """A base candidate's backtest forecasts (all folds) reconciled fold by fold."""
    S = hierarchy.summing_matrix()
    folds = sorted(pd.unique(forecasts["fold"]))
    shared = None if method in NEEDS_ERRORS else projection(method, S)
    parts = []
    for fold in folds:
        part = forecasts[forecasts["fold"] == fold]
        if shared is None:
            others = forecasts[forecasts["fold"] != fold]
            P = projection(method, S, residual_matrix(others, hierarchy) if len(others) else None)
        else:
            P = shared
        parts.append(reconcile_forecasts(part, hierarchy, P))
    return pd.concat(parts).sort_index(kind="stable")


def coherence_error(forecasts: pd.DataFrame, hierarchy: Hierarchy, column: str = "yhat") -> float:
    """The largest ``|node - sum of its bottom series|`` over nodes and times (per fold when the
    frame has a ``fold`` column), relative to ``max(1, |node|)``: 0 for coherent forecasts."""
    keys = [c for c in ("fold", TIME) if c in forecasts.columns]
    table = forecasts.pivot_table(index=forecasts[ID].astype(str), columns=keys, values=column, aggfunc="first")
    table = table.reindex(hierarchy.nodes)
    values = table.to_numpy(dtype=np.float64)
    S = hierarchy.summing_matrix()
    bottom = values[len(hierarchy.aggregates):]
    gap = np.abs(values - S @ bottom) / np.maximum(1.0, np.abs(values))
    return float(np.nanmax(gap)) if gap.size else 0.0


def reconciled_entries(
    entries: list[Any], frame: pd.DataFrame, hierarchy: Hierarchy, methods: list[str], *, season_length: int,
    quantiles: list[float],
) -> list[Any]:
    """One :class:`~tidecast.evaluation.selection.CandidateResult` per (successful base candidate,
    method); a reconciliation that fails is recorded as a failed candidate with its reason."""
    from tidecast.evaluation.metrics import evaluate
    from tidecast.evaluation.selection import CandidateResult

    out = []
    for entry in entries:
        if not entry.ok:
            continue
        for method in methods:
            name = f"{entry.name}{SEPARATOR}{method}"
            started = time.perf_counter()
            try:
                forecasts = reconcile_backtest(entry.backtest.forecasts, hierarchy, method)
                result = replace(entry.backtest, forecasts=forecasts)
                evaluation = evaluate(
                    forecasts, result.scales(frame, season_length), season_length=season_length, quantiles=quantiles
                )
            except TidecastError as exc:
                out.append(CandidateResult(name=name, kind=f"{entry.kind}{SEPARATOR}{method}", params=entry.params,
                                           error=str(exc), trials=entry.trials))
                continue
            seconds = time.perf_counter() - started
            out.append(
                CandidateResult(
                    name=name, kind=f"{entry.kind}{SEPARATOR}{method}", params=entry.params, evaluation=evaluation,
                    backtest=result, fit_seconds=entry.fit_seconds + seconds, predict_seconds=entry.predict_seconds,
                    trials=entry.trials,
                )
            )
    return out


def per_level_table(
    entries: list[Any], frame: pd.DataFrame, hierarchy: Hierarchy, *, season_length: int, quantiles: list[float],
    metrics: tuple[str, ...] = ("mase", "mae", "rmse", "wape"),
) -> pd.DataFrame:
    """Each successful candidate's metrics on each level alone: columns ``candidate, level,
    n_series`` and ``metrics`` (levels top down, ``bottom`` last)."""
    from tidecast.evaluation.metrics import evaluate

    rows = []
    for entry in entries:
        if not entry.ok:
            continue
        forecasts = entry.backtest.forecasts
        scales = entry.backtest.scales(frame, season_length)
        ids = forecasts[ID].astype(str)
        for level, nodes in hierarchy.tags.items():
            part = forecasts[ids.isin(set(nodes)).to_numpy()]
            if part.empty:
                continue
            aggregate = evaluate(part, scales, season_length=season_length, quantiles=quantiles).aggregate
            rows.append({
                "candidate": entry.name, "level": level, "n_series": len(nodes),
                **{m: float(aggregate.get(m, float("nan"))) for m in metrics},
            })
    return pd.DataFrame(rows, columns=["candidate", "level", "n_series", *metrics])
