"""The leaderboard of candidates and the choice of the winner.

Ranking: candidates that succeeded are ordered by the selection metric (lower is better; for
``bias`` the smaller absolute value: :class:`Ranking`, the one place that decides), ties broken
by the cheaper candidate (fit + predict seconds), then by the order of the spec. Candidates that
failed, or whose metric is not a finite number, come after them, without a rank, and never win.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import BacktestError
from tidecast.frames import ID

__all__ = [
    "METRIC_ORDER",
    "CandidateResult",
    "Ranking",
    "improvement_over",
    "leaderboard",
    "params_json",
    "per_series_winners",
    "select_winner",
]

METRIC_ORDER = (
    "mase", "mae", "rmse", "mape", "smape", "wape", "bias", "pinball", "coverage", "interval_width", "interval_score",
)
"""Leaderboard column order of the usual metrics; any other metric follows, sorted by name."""


@dataclass(frozen=True)
class Ranking:
    """A selection metric and its direction: which of two values is better. Every ranking of
    candidates (the leaderboard, the winner, each series' winner, a parameter search, the
    improvement over the baseline) asks it; none decides on its own."""

    metric: str

    @property
    def direction(self) -> str:
        """``"lower"``, or ``"lower absolute"`` for ``bias`` (a signed error: 0 is best)."""
        return "lower absolute" if self.metric == "bias" else "lower"

    def key(self, value: float) -> float:
        """What is compared: smaller is better."""
        return abs(value) if self.metric == "bias" else value

    def keys(self, values: pd.Series) -> pd.Series:
        return values.abs() if self.metric == "bias" else values

    def better(self, value: float, than: float) -> bool:
        return self.key(value) < self.key(than)

    def improvement(self, baseline: Any, value: Any) -> float | None:
        """``(baseline - value) / |baseline|`` on the compared keys (0.25: 25 % lower error);
        ``None`` when either is not a finite number or the baseline's key is 0."""
        if not (_finite(baseline) and _finite(value)):
            return None
        base, win = self.key(float(baseline)), self.key(float(value))
        return None if base == 0 else (base - win) / abs(base)

    def check(self) -> None:
        """Raise :class:`BacktestError` for a metric that cannot rank (coverage and widths: lower is not better)."""
        if self.metric.startswith(("coverage", "width", "interval_width")):
            raise BacktestError(f"selection.metric: '{self.metric}' cannot rank candidates (lower is not better)")


@dataclass(frozen=True)
class CandidateResult:
    """What backtesting one candidate produced (``evaluation``/``backtest`` are None when it failed)."""

    name: str
    kind: str
    params: dict[str, Any]
    evaluation: Any = None  # tidecast.evaluation.metrics.Evaluation
    backtest: Any = None  # tidecast.evaluation.backtest.BacktestResult
    error: str | None = None
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    trials: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and self.evaluation is not None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "failed"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def params_json(params: dict[str, Any]) -> str:
    """Parameters as a compact, key-sorted JSON string (ranges as ``{"low":..,"high":..}``)."""
    return json.dumps(params, sort_keys=True, default=_jsonable, separators=(", ", ": "))


def _check_metric(metric: str) -> None:
    Ranking(metric).check()


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def leaderboard(entries: list[CandidateResult], metric: str) -> pd.DataFrame:
    """One row per candidate, best first.

    Columns: ``rank`` (1 = best; <NA> for candidates that cannot win), ``candidate``, ``kind``,
    ``params`` (JSON), the aggregate metrics (``mase, mae, rmse, mape, smape, wape, bias,
    pinball, coverage, interval_width, interval_score`` where computed, then the others), ``fit_seconds``,
    ``predict_seconds``, ``trials``, ``status`` (``ok``/``failed``), ``error``.
    """
    ranking = Ranking(metric)
    ranking.check()
    ok = [e for e in entries if e.ok]
    names = {name for e in ok for name in e.evaluation.aggregate}
    if ok and metric not in names:
        raise BacktestError(
            f"selection.metric: '{metric}' was not computed for any candidate (computed: {', '.join(sorted(names))})",
            hint="MASE needs the training scales" if metric == "mase" else None,
        )
    columns = [m for m in METRIC_ORDER if m in names or m == metric] + sorted(names - set(METRIC_ORDER))
    rows = []
    for order, entry in enumerate(entries):
        aggregate = entry.evaluation.aggregate if entry.ok else {}
        value = aggregate.get(metric, float("nan"))
        rankable = entry.ok and _finite(value)
        if entry.ok and not rankable:
            error = f"{metric} is not a finite number ({value})"
        else:
            error = entry.error if not entry.ok else None
        if not entry.ok and error is None:
            error = "no evaluation"
        rows.append(
            {
                "candidate": entry.name,
                "kind": entry.kind,
                "params": params_json(entry.params),
                **{c: float(aggregate[c]) if c in aggregate else float("nan") for c in columns},
                "fit_seconds": float(entry.fit_seconds),
                "predict_seconds": float(entry.predict_seconds),
                "trials": int(entry.trials),
                "status": entry.status,
                "error": error,
                "_group": 0 if rankable else (1 if entry.ok else 2),
                "_key": ranking.key(float(value)) if rankable else math.inf,
                "_cost": float(entry.fit_seconds) + float(entry.predict_seconds),
                "_order": order,
            }
        )
    board = pd.DataFrame(rows, columns=[
        "candidate", "kind", "params", *columns, "fit_seconds", "predict_seconds", "trials", "status", "error",
        "_group", "_key", "_cost", "_order",
    ])
    board = board.sort_values(["_group", "_key", "_cost", "_order"], kind="stable", ignore_index=True)
    ranks = pd.array([i + 1 if g == 0 else pd.NA for i, g in enumerate(board["_group"])], dtype="Int64")
    board.insert(0, "rank", ranks)
    return board.drop(columns=["_group", "_key", "_cost", "_order"])


def select_winner(board: pd.DataFrame, metric: str) -> str:
    """The name of the best candidate on ``board`` by ``metric``.

    Raises :class:`BacktestError` when no candidate can win: ``"every candidate failed: x: ..., y: ..."``.
    """
    _check_metric(metric)
    if board.empty:
        raise BacktestError("selection: there are no candidates to choose from")
    values = board[metric] if metric in board else pd.Series(np.nan, index=board.index)
    usable = (board["status"] == "ok") & values.map(_finite)
    if not usable.any():
        reasons = ", ".join(f"{c}: {e}" for c, e in zip(board["candidate"], board["error"], strict=True))
        if (board["status"] != "ok").all():
            raise BacktestError(f"every candidate failed: {reasons}")
        raise BacktestError(f"no candidate has a finite {metric}: {reasons}")
    keys = Ranking(metric).keys(values[usable].astype(float))
    return str(board.loc[keys.idxmin(), "candidate"])  # idxmin keeps the first of ties: board order


def improvement_over(board: pd.DataFrame, winner: str, baseline: str, metric: str) -> float | None:
    """Relative improvement of ``winner`` over ``baseline``: ``(baseline - winner) / baseline`` on
    ``metric`` (0.25: the winner's error is 25 % lower; for ``bias``, on absolute values).

    ``None`` when the baseline failed or its metric is 0 or not finite. Raises
    :class:`BacktestError` when either name is not on the board.
    """
    names = list(board["candidate"])
    for role, name in (("winner", winner), ("baseline", baseline)):
        if name not in names:
            raise BacktestError(f"selection.baseline: no candidate named '{name}' ({role}; candidates: {', '.join(names)})")
    rows = board.set_index("candidate")
    if metric not in rows.columns or rows.loc[baseline, "status"] != "ok" or rows.loc[winner, "status"] != "ok":
        return None
    return Ranking(metric).improvement(rows.loc[baseline, metric], rows.loc[winner, metric])


def per_series_winners(entries: list[CandidateResult], metric: str) -> pd.DataFrame:
    """For ``selection.scope: per_series``: the best candidate of each series.

    Columns ``unique_id, candidate, <metric>``; per-series values are pooled over folds; ties go
    to the earlier candidate. Series without a finite value for any candidate are left out.
    """
    _check_metric(metric)
    frames = []
    for order, entry in enumerate(entries):
        if not entry.ok or metric not in entry.evaluation.per_series:
            continue
        values = entry.evaluation.per_series[metric].astype(float)
        frames.append(pd.DataFrame({ID: values.index, "candidate": entry.name, metric: values.to_numpy(), "_o": order}))
    if not frames:
        raise BacktestError(f"every candidate failed or has no per-series {metric}")
    table = pd.concat(frames, ignore_index=True)
    table = table[np.isfinite(table[metric])]
    table["_k"] = Ranking(metric).keys(table[metric])
    table = table.sort_values([ID, "_k", "_o"], kind="stable").drop_duplicates(ID)
    return table[[ID, "candidate", metric]].reset_index(drop=True)
