"""Training: candidates -> backtest -> select -> refit.

* :mod:`~tidecast.training.settings`: what the steps derive from the spec (season, history, fit context, preflight);
* :mod:`~tidecast.training.factories`: how a candidate's models are built;
* :mod:`~tidecast.training.candidates`: every candidate backtested (and searched), then ranked;
* :mod:`~tidecast.training.selection`: the winner, its held-out score (:mod:`~tidecast.training.holdout`), its refit;
* :mod:`~tidecast.training.hierarchy`: ``hierarchy:`` glue (aggregates, reconciled candidates);
* :mod:`~tidecast.training.distributed`: global LightGBM trained through mlforecast's Dask path;
* :mod:`~tidecast.training.steps`: the pipeline steps (ingest, clean, features, backtest, select).

The training pipeline itself is assembled in :mod:`tidecast.flows`.
"""

from __future__ import annotations

from tidecast.training.candidates import candidate_results
from tidecast.training.factories import ModelFactory, factory_for
from tidecast.training.holdout import holdout_scores
from tidecast.training.selection import select_and_refit
from tidecast.training.settings import fit_context, min_history, preflight, season_length, validate_history

__all__ = [
    "ModelFactory",
    "candidate_results",
    "factory_for",
    "fit_context",
    "holdout_scores",
    "min_history",
    "preflight",
    "season_length",
    "select_and_refit",
    "validate_history",
]
