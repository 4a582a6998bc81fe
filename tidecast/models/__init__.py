"""Forecasting models behind one protocol (:class:`~tidecast.models.base.Forecaster`).

Build a candidate's model with :func:`build_forecaster`; every model fits on long-format
history and forecasts ``unique_id, ds, yhat`` plus quantile columns.
"""

from __future__ import annotations

from tidecast.models.base import FitContext, Forecaster, future_index, quantile_column
from tidecast.models.baselines import Naive, SeasonalNaive, WindowAverage
from tidecast.models.conformal import ConformalForecaster, needs_conformal
from tidecast.models.ml import LightGBMModel, SklearnModel
from tidecast.models.neural import MLPForecaster
from tidecast.models.plugins import load_object
from tidecast.models.registry import BUILTINS, FitWindow, build_forecaster
from tidecast.models.statistical import AutoARIMAModel, AutoETSModel, AutoThetaModel, MSTLModel

__all__ = [
    "BUILTINS",
    "AutoARIMAModel",
    "AutoETSModel",
    "AutoThetaModel",
    "ConformalForecaster",
    "FitContext",
    "FitWindow",
    "Forecaster",
    "LightGBMModel",
    "MLPForecaster",
    "MSTLModel",
    "Naive",
    "SeasonalNaive",
    "SklearnModel",
    "WindowAverage",
    "build_forecaster",
    "future_index",
    "load_object",
    "needs_conformal",
    "quantile_column",
]
