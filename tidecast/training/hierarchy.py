"""``hierarchy:`` glue of the training steps: the aggregate nodes, the reconciled candidates and
the factory of a reconciled winner."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tidecast.data.hierarchy import Hierarchy
from tidecast.evaluation.reconcile import per_level_table, reconciled_entries, split_name
from tidecast.frames import ID, POINT, TARGET, TIME
from tidecast.models.reconciled import ReconciledFactory
from tidecast.spec import Spec
from tidecast.training.factories import _with_intervals, factory_for, interval_day_kinds
from tidecast.training.results import Backtested
from tidecast.training.settings import season_length


def hierarchy_of(frame: pd.DataFrame, spec: Spec) -> Any:
    """The :class:`~tidecast.data.hierarchy.Hierarchy` of a frame with the spec's level columns."""
    assert spec.hierarchy is not None
    return Hierarchy.from_frame(frame, spec.hierarchy.levels, spec.hierarchy.total)


def with_aggregates(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """With ``hierarchy:``, ``frame`` holding every aggregate node (the clean step adds them; a frame
    of bottom series only, as a caller may pass, gets them summed here). Unchanged otherwise."""
    if spec.hierarchy is None:
        return frame
    structure = hierarchy_of(frame, spec)
    if set(structure.aggregates) <= set(pd.unique(frame[ID].astype(str))):
        return frame
    return structure.expand(frame)


def _with_reconciled(entries: list[Any], frame: pd.DataFrame, spec: Spec) -> tuple[list[Any], dict[str, Any]]:
    """``hierarchy:``: the base candidates plus each one reconciled by every method, and the
    per-level scores of all of them (see :mod:`tidecast.evaluation.reconcile`)."""
    assert spec.hierarchy is not None
    structure = hierarchy_of(frame, spec)
    m, quantiles = season_length(spec), list(spec.forecast.quantiles)
    entries = [*entries, *reconciled_entries(
        entries, frame, structure, list(spec.hierarchy.methods), season_length=m, quantiles=quantiles
    )]
    table = per_level_table(entries, frame, structure, season_length=m, quantiles=quantiles)
    return entries, {"structure": structure.to_dict(), "methods": list(spec.hierarchy.methods), "per_level": table}


def _reconciled_factory(winner: str, backtested: Backtested, frame: pd.DataFrame, spec: Spec) -> tuple[Any, str] | None:
    """For a reconciled winner (``<candidate>/<method>``): the factory of its model and its kind."""
    parts = split_name(winner) if spec.hierarchy is not None else None
    if parts is None:
        return None
    base, method = parts
    entry = backtested.results[base]
    candidate = next(c for c in spec.models if c.name == base)
    make_base = _with_intervals(
        factory_for(candidate, entry.params, spec), entry, list(spec.forecast.quantiles), interval_day_kinds(spec)
    )
    errors = entry.backtest.forecasts[[ID, "fold", TIME, TARGET, POINT]].copy()
    factory = ReconciledFactory(make_base, hierarchy_of(frame, spec), method, errors=errors, name=winner)
    return factory, f"{candidate.kind}/{method}"
