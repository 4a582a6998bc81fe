"""Forecasting models behind one protocol (:class:`~tidecast.models.base.Forecaster`).

Build a candidate's model with :func:`build_forecaster`; every model fits on long-format
history and forecasts ``unique_id, ds, yhat`` plus quantile columns.
"""

from __future__ import annotations

import importlib
from typing import Any

from tidecast.frames import future_index, quantile_column
from tidecast.models.base import FitContext, Forecaster

# The model modules are imported on first use (PEP 562): importing tidecast.models.base, as the
# pipeline's keys and a no-op run do, then loads none of them (issue 19: CLI start-up time).
_LAZY = {
    "Naive": "baselines", "SeasonalNaive": "baselines", "WindowAverage": "baselines",
    "ConformalForecaster": "conformal", "needs_conformal": "conformal",
    "LightGBMModel": "ml", "SklearnModel": "regressors",
    "MLPForecaster": "neural",
    "load_object": "plugins",
    "BUILTINS": "registry", "FitWindow": "registry", "build_forecaster": "registry",
    "AutoARIMAModel": "statistical", "AutoETSModel": "statistical", "AutoThetaModel": "statistical",
    "MSTLModel": "statistical",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tidecast.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tidecast.models.{module}"), name)
    globals()[name] = value
    return value

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
