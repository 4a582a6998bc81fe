"""The one protocol every model speaks, and the data conventions it relies on.

Data frames are in long format, as in statsforecast/mlforecast:

* history: ``unique_id`` (str), ``ds`` (tz-naive UTC timestamps on the spec's frequency), ``y``
  (float), then exogenous columns;
* future exogenous (``X_future``): ``unique_id``, ``ds`` and the known-in-future columns for the
  ``h`` steps after each series' last timestamp;
* forecasts: ``unique_id``, ``ds``, ``yhat`` and one column per requested quantile named by
  :func:`quantile_column` (``q0.1``, ``q0.9``...).

Backtesting, tracking and serving speak only this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

ID, TIME, TARGET, POINT = "unique_id", "ds", "y", "yhat"


def quantile_column(q: float) -> str:
    """The forecast column holding quantile ``q``: ``quantile_column(0.1) == 'q0.1'``."""
    return f"q{q:g}"


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


def future_index(last: pd.DataFrame, h: int, freq: str) -> pd.DataFrame:
    """``unique_id, ds`` rows for the ``h`` steps after each series' last timestamp in ``last``."""
    ends = last.groupby(ID, observed=True)[TIME].max()
    from tidecast import calendar

    offset = calendar.offset_of(freq)
    if len(ends) and isinstance(offset, pd.offsets.Tick) and isinstance(ends.dtype, np.dtype) and ends.dtype.kind == "M":
        # fixed steps, tz-naive: every series' timestamps at once (a frame per series costs ~3 ms each)
        firsts = ends.to_numpy().astype("datetime64[ns]")
        steps = np.arange(1, h + 1, dtype=np.int64) * offset.nanos
        flat = (firsts.view(np.int64)[:, None] + steps[None, :]).reshape(-1).view("datetime64[ns]")
        return pd.DataFrame({ID: np.repeat(ends.index.to_numpy(), h), TIME: flat})
    frames = [
        pd.DataFrame({ID: uid, TIME: calendar.future_dates(end, h, freq)})
        for uid, end in ends.items()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({ID: [], TIME: []})
