"""The one protocol every model speaks (:class:`Forecaster`) and what a fit is told (:class:`FitContext`).

The frames it takes and returns follow the schema of :mod:`tidecast.frames` (long format:
``unique_id, ds, y`` in, ``unique_id, ds, yhat`` and quantile columns out). Backtesting,
tracking and serving speak only this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd


@dataclass(frozen=True)
class FitContext:
    """What a model may need to know besides the data itself."""

    freq: str
    horizon: int
    input_window: int
    exog_future: tuple[str, ...] = ()
    exog_past: tuple[str, ...] = ()
    static: tuple[str, ...] = ()
    seed: int = 0
    features: Any = None  # tidecast.spec.FeatureSpec for models that build features
    holidays_country: str | None = None
    timezone: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None
    """Native threads a model may use (LightGBM's ``n_jobs``); ``None``: the library's default (every
    core). A parallel backtest sets it to its share of the cores, so that folds running side by side
    do not each start a thread per core."""


@runtime_checkable
class Forecaster(Protocol):
    """Fit on history, forecast ``h`` steps with quantiles.

    ``predict(h, history=None)`` forecasts from the end of the training data. With ``history``
    (for serving: the last ``input_window`` readings of each series) it forecasts from the end of
    ``history`` using the parameters learned in ``fit``.
    """

    name: str

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> Forecaster:
        """Learn from ``df`` (long format). Returns ``self``."""
        ...

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        """Forecast ``h`` steps per series: ``unique_id, ds, yhat`` + quantile columns."""
        ...

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters this instance was built with (for tracking)."""
        ...
