"""A plugin model of this project: the contract every tidecast forecaster follows, in one small class.

tidecast imports it from the spec (``kind: "custom_models:build"``): the project folder is on the
import path, so this file is the module ``custom_models``. ``build`` receives the candidate's
``params`` as keyword arguments; durations such as ``season_length: 1d`` arrive as step counts.

The contract (see also ``tidecast.models.base.Forecaster``):

* ``name`` (str): tidecast sets it to the candidate's name;
* ``native_intervals`` (bool): True when ``predict`` computes its own quantiles; otherwise tidecast
  calibrates quantiles from the backtest residuals (conformal intervals);
* ``fit(df, ctx) -> self``: ``df`` is long format sorted by ``unique_id, ds``: ``unique_id`` (str),
  ``ds`` (UTC timestamps on the data frequency), ``y`` (float), then the exogenous columns; ``ctx``
  is a ``tidecast.models.base.FitContext`` (``freq``, ``horizon``, ``input_window``, ``seed``...);
* ``predict(h, *, history=None, X_future=None, quantiles=()) -> DataFrame``: ``h`` steps after the
  training data, or after ``history`` when it is given (serving sends the last ``input_window``
  readings of each series); one row per series and step: ``unique_id, ds, yhat`` and a ``q0.1``,
  ``q0.9``... column per requested quantile;
* ``get_params() -> dict``: logged with the run;
* picklable: the fitted object is logged to MLflow and loaded by ``tidecast serve``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


class SeasonalProfile:
    """Forecast each step as the average of the same step over the last ``seasons`` seasons.

    With ``season_length`` one day of steps this is "the average day of the last weeks"; its
    quantiles are the empirical quantiles of those past values, shifted onto the average.
    """

    native_intervals = True

    def __init__(self, season_length: int = 24, seasons: int = 4) -> None:
        if season_length < 1 or seasons < 1:
            raise ValueError("season_length and seasons must be at least 1")
        self.name = "seasonal_profile"
        self.season_length = int(season_length)
        self.seasons = int(seasons)
        self._freq: str | None = None
        self._tail: pd.DataFrame | None = None

    def get_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, "seasons": self.seasons}

    def fit(self, df: pd.DataFrame, ctx: Any) -> SeasonalProfile:
        self._freq = ctx.freq
        keep = self.season_length * self.seasons
        self._tail = df.groupby("unique_id", sort=False).tail(keep)[["unique_id", "ds", "y"]].reset_index(drop=True)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        if self._tail is None or self._freq is None:
            raise RuntimeError("predict called before fit")
        data = self._tail if history is None else history.sort_values(["unique_id", "ds"])
        m = self.season_length
        step = pd.tseries.frequencies.to_offset(self._freq)
        frames = []
        for uid, group in data.groupby("unique_id", sort=True):
            y = group["y"].to_numpy(float)[-m * self.seasons :]
            n = len(y) // m
            if n == 0:
                raise ValueError(f"series {uid!r}: needs at least {m} readings of history, got {len(y)}")
            table = y[len(y) - n * m :].reshape(n, m)  # one row per past season
            columns = table[:, np.arange(h) % m]  # the past values of each forecast step
            out = pd.DataFrame(
                {"unique_id": str(uid), "ds": pd.date_range(group["ds"].max() + step, periods=h, freq=self._freq)}
            )
            out["yhat"] = columns.mean(axis=0)
            spread = columns - columns.mean(axis=0)
            for q in quantiles:
                out[f"q{q:g}"] = out["yhat"].to_numpy() + np.quantile(spread, q, axis=0)
            frames.append(out)
        return pd.concat(frames, ignore_index=True)


def build(season_length: int = 24, seasons: int = 4) -> SeasonalProfile:
    """``kind: "custom_models:build"`` in tidecast.yaml."""
    return SeasonalProfile(season_length=season_length, seasons=seasons)
