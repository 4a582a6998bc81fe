"""What the training steps pass on, typed: the ``backtest`` step's :class:`Backtested` (the
leaderboard, each candidate's :class:`~tidecast.evaluation.selection.CandidateResult`, the
selection metric and its direction), a per-series choice (:class:`PerSeriesChoice`) and the
``select`` step's :class:`Selection` (the winner, its scores and its refit model).

They are frozen dataclasses; each also reads as a read-only mapping of its field names
(``out["winner"]``, ``out.get("hierarchy")``, ``{**out}``), the shape callers written against
the former dict outputs (and hand-made test outputs) use. A field that is ``None`` reads as
absent to ``in``, iteration and ``get``; indexing returns it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from tidecast.evaluation.selection import CandidateResult, Ranking
from tidecast.models.base import FitContext

__all__ = ["Backtested", "PerSeriesChoice", "Selection"]


class _Fields(Mapping[str, Any]):
    """Read-only mapping view over a dataclass's fields (see the module docstring)."""

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._names() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._names() and getattr(self, key) is not None

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        value = getattr(self, key, None) if key in self._names() else None
        return default if value is None else value


class _Ranked(_Fields):
    """A step output that carries the selection metric: its ranking and direction, derived from it."""

    metric: str

    @property
    def ranking(self) -> Ranking:
        """The selection metric and its direction."""
        return Ranking(self.metric)

    @property
    def direction(self) -> str:
        return self.ranking.direction


@dataclass(frozen=True, eq=False)
class PerSeriesChoice(_Fields):
    """``selection.scope: per_series``: each series' best candidate in the backtest."""

    mapping: dict[str, str]
    """series id -> its winning candidate"""
    winners: pd.DataFrame
    """``unique_id, candidate, <metric>``"""
    fallback: str
    """the candidate of the series no backtest could judge (and of new series)"""
    unjudged: list[str]
    counts: dict[str, int]
    """candidate -> how many series it wins (the fallback's unjudged series included)"""
    aggregate: dict[str, float]
    """the aggregate metrics of the per-series choice"""
    global_winner: str
    global_aggregate: dict[str, float]


@dataclass(frozen=True, eq=False)
class Backtested(_Ranked):
    """The ``backtest`` step's output: every candidate backtested, ranked by ``metric``."""

    leaderboard: pd.DataFrame
    """best first (:func:`tidecast.evaluation.selection.leaderboard`)"""
    metric: str
    folds: list[dict[str, Any]]
    season_length: int
    results: dict[str, CandidateResult]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    """candidate -> its params, search trials, seconds and training mode"""
    hierarchy: dict[str, Any] | None = None
    """``hierarchy:``: the structure, the methods and the per-level scores"""
    ensembles: dict[str, Any] | None = None
    per_series: PerSeriesChoice | None = None


@dataclass(frozen=True, eq=False)
class Selection(_Ranked):
    """The ``select`` step's output: the winner, scored on the held-out stretch, refit on all data."""

    winner: str
    kind: str
    params: dict[str, Any]
    metric: str
    backtest_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    baseline: str | None
    baseline_holdout_metrics: dict[str, float] | None
    improvement_over_baseline: float | None
    refit_seconds: float
    horizon: int
    quantiles: list[float]
    context: FitContext
    model: Any
    trained_until: str
    n_series: int
    series_ids: list[str]
    training: str | None = None
    """single / per series / distributed (...): where the winner trained"""
    holdout_steps: int | None = None
    holdout_forecasts: dict[str, pd.DataFrame | None] | None = None
    """``winner`` and ``baseline``: the held-out forecasts, for the gate's significance test"""
    holdout_scales: pd.DataFrame | None = None
    ensembles: dict[str, Any] | None = None
    hierarchy: dict[str, Any] | None = None
    """a reconciled winner: the hierarchy its callers send every bottom series of"""
    per_series: dict[str, Any] | None = None
    """a per-series winner: its mapping, fallback, counts and the global winner's scores"""
