"""Evaluation: rolling-origin folds and backtests, metrics, the leaderboard, hyper-parameter search.

* :mod:`~tidecast.evaluation.folds` / :mod:`~tidecast.evaluation.backtest`: :func:`make_folds`,
  ``backtest`` (import it from :mod:`tidecast.evaluation.backtest`: it is not re-exported here, so
  that ``tidecast.evaluation.backtest`` stays the module), :func:`holdout_forecast`;
* :mod:`~tidecast.evaluation.metrics`: the metric functions and :func:`evaluate`;
* :mod:`~tidecast.evaluation.selection`: :func:`leaderboard`, :func:`select_winner`,
  :func:`improvement_over`;
* :mod:`~tidecast.evaluation.search`: :func:`grid`, :func:`optuna_search`.
"""

from __future__ import annotations

from tidecast.evaluation.backtest import (
    HOLDOUT_FOLD,
    BacktestResult,
    FoldError,
    FoldResult,
    holdout_forecast,
)
from tidecast.evaluation.folds import Fold, folds_for_spec, holdout_fold, make_folds
from tidecast.evaluation.metrics import Evaluation, evaluate, fold_scales, series_scales
from tidecast.evaluation.search import SearchResult, TrialRecord, grid, is_searched, optuna_search
from tidecast.evaluation.selection import CandidateResult, improvement_over, leaderboard, select_winner

__all__ = [
    "HOLDOUT_FOLD",
    "BacktestResult",
    "CandidateResult",
    "Evaluation",
    "Fold",
    "FoldError",
    "FoldResult",
    "SearchResult",
    "TrialRecord",
    "evaluate",
    "fold_scales",
    "folds_for_spec",
    "grid",
    "holdout_fold",
    "holdout_forecast",
    "improvement_over",
    "is_searched",
    "leaderboard",
    "make_folds",
    "optuna_search",
    "select_winner",
    "series_scales",
]
