"""Invertible target transforms (``target.transform`` in the spec) as a Forecaster wrapper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from tidecast.data.target import apply_transform, invert_transform
from tidecast.frames import POINT, TARGET, quantile_column
from tidecast.models.base import FitContext, Forecaster


class TransformedForecaster:
    """Fits ``inner`` on ``transform(y)`` and maps its forecasts back with the inverse.

    Quantiles stay quantiles because the transforms are monotonic.
    """

    def __init__(self, inner: Forecaster, transform: str) -> None:
        self.inner = inner
        self.transform = transform
        self.name = inner.name
        self.native_intervals = getattr(inner, "native_intervals", False)

    def _forward(self, df: pd.DataFrame | None) -> pd.DataFrame | None:
        if df is None:
            return None
        out = df.copy()
        out[TARGET] = apply_transform(out[TARGET], self.transform)
        return out

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> TransformedForecaster:
        self.inner.fit(self._forward(df), ctx)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        out = self.inner.predict(h, history=self._forward(history), X_future=X_future, quantiles=quantiles)
        for column in [POINT, *(quantile_column(q) for q in quantiles)]:
            if column in out:
                out[column] = invert_transform(out[column], self.transform)
        return out

    def get_params(self) -> dict[str, Any]:
        return {**self.inner.get_params(), "target_transform": self.transform}
