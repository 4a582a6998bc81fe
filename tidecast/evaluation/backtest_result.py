"""What a backtest produces: each fold's outcome (:class:`FoldResult`, :class:`FoldError`) and the
whole run's :class:`BacktestResult` (forecasts joined with the actuals, timings, failures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tidecast.evaluation.folds import HOLDOUT_FOLD, Fold
from tidecast.evaluation.metrics import fold_scales
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column

__all__ = ["FORECAST_COLUMNS", "BacktestResult", "FoldError", "FoldResult"]

FORECAST_COLUMNS = (ID, TIME, "fold", "cutoff", "step", TARGET, POINT)


@dataclass(frozen=True)
class FoldError:
    """A fold that failed: which one, the one-line message, and the traceback (if any)."""

    fold: int
    cutoff: Any
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        where = f"fold {self.fold}" if self.fold != HOLDOUT_FOLD else "holdout"
        return f"{where} (cut-off {self.cutoff}): {self.message}"


@dataclass
class FoldResult:
    """One fold's outcome, handed to ``on_fold_done`` as soon as the fold is finished."""

    fold: Fold
    forecasts: pd.DataFrame | None
    fit_seconds: float
    predict_seconds: float
    n_series: int
    error: FoldError | None = None
    model: Any = None
    """The fold's fitted model, when the backtest was asked to keep it (``keep_last_model``)."""


@dataclass
class BacktestResult:
    """Forecasts of every fold joined with the actuals, timings and failures.

    ``forecasts``: ``unique_id, ds, fold, cutoff, step (1..h), y, yhat`` + quantile columns.
    ``timings``: one row per fold: ``fold, cutoff, n_series, n_excluded, fit_seconds,
    predict_seconds, status ('ok'/'failed'), error``. ``fit_seconds``/``predict_seconds``: totals
    over folds (CPU-side wall time inside the workers, so with parallel folds they can exceed the
    elapsed time).
    """

    forecasts: pd.DataFrame
    folds: list[Fold]
    timings: pd.DataFrame
    errors: list[FoldError] = field(default_factory=list)
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    calibration: pd.DataFrame | None = None
    """Residuals of the calibration windows before the first fold (``unique_id, ds, cutoff, step, y,
    yhat``; see :mod:`tidecast.evaluation.calibration`), when the intervals were calibrated."""
    models: dict[int, Any] = field(default_factory=dict)
    """Fold index -> the model fitted on that fold's training data, for the folds kept
    (``keep_last_model``: the last one, which the explain step reuses instead of refitting)."""

    @property
    def ok(self) -> bool:
        """True when every fold succeeded."""
        return not self.errors

    @property
    def fit_seconds_per_fold(self) -> dict[int, float]:
        return dict(zip(self.timings["fold"], self.timings["fit_seconds"], strict=True))

    @property
    def predict_seconds_per_fold(self) -> dict[int, float]:
        return dict(zip(self.timings["fold"], self.timings["predict_seconds"], strict=True))

    def error_summary(self) -> str | None:
        """``"fold 0 (cut-off ...): ValueError: ...; 2 more"``, or ``None`` when every fold succeeded."""
        if not self.errors:
            return None
        more = f"; {len(self.errors) - 1} more failed fold(s)" if len(self.errors) > 1 else ""
        return f"{self.errors[0]}{more}"

    def scales(self, df: pd.DataFrame, season_length: int) -> pd.DataFrame:
        """The MASE scale of every (fold, series) from each fold's own training window
        (see :func:`tidecast.evaluation.metrics.fold_scales`)."""
        return fold_scales(df, self.folds, season_length)


def _empty_forecasts(df: pd.DataFrame, quantiles: Sequence[float]) -> pd.DataFrame:
    cols: dict[str, Any] = {
        ID: pd.Series([], dtype=df[ID].dtype),
        TIME: pd.Series([], dtype=df[TIME].dtype),
        "fold": pd.Series([], dtype=np.int64),
        "cutoff": pd.Series([], dtype=df[TIME].dtype),
        "step": pd.Series([], dtype=np.int64),
        TARGET: pd.Series([], dtype=float),
        POINT: pd.Series([], dtype=float),
    }
    cols.update({quantile_column(q): pd.Series([], dtype=float) for q in quantiles})
    return pd.DataFrame(cols)


def _result(folds: list[Fold], results: list[FoldResult], df: pd.DataFrame, quantiles: Sequence[float]) -> BacktestResult:
    frames = [r.forecasts for r in results if r.forecasts is not None]
    forecasts = pd.concat(frames, ignore_index=True) if frames else _empty_forecasts(df, quantiles)
    timings = pd.DataFrame(
        {
            "fold": [r.fold.index for r in results],
            "cutoff": [r.fold.cutoff for r in results],
            "n_series": [r.n_series for r in results],
            "n_excluded": [r.fold.n_excluded for r in results],
            "fit_seconds": [r.fit_seconds for r in results],
            "predict_seconds": [r.predict_seconds for r in results],
            "status": ["ok" if r.error is None else "failed" for r in results],
            "error": [None if r.error is None else r.error.message for r in results],
        }
    )
    return BacktestResult(
        forecasts=forecasts,
        folds=folds,
        timings=timings,
        errors=[r.error for r in results if r.error is not None],
        fit_seconds=float(timings["fit_seconds"].sum()),
        predict_seconds=float(timings["predict_seconds"].sum()),
        models={r.fold.index: r.model for r in results if r.model is not None},
    )
