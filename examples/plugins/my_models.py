"""Example tidecast plugins: a custom forecaster and a custom regressor.

Use them from a tidecast.yaml that sits next to this file (the spec's folder is importable):

    models:
      - {name: seasonal_median, kind: "my_models:build", params: {season_length: 1d, seasons: 4}}
      - {name: ridge, kind: "my_models:ridge", params: {alpha: 0.5, lags: [1, 2, 288]}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


class SeasonalMedian:
    """Forecast each step as the median of the same step in the last ``seasons`` seasons.

    Quantiles are the empirical quantiles of those same values (``native_intervals = True``).
    """

    native_intervals = True

    def __init__(self, season_length: int = 24, seasons: int = 4) -> None:
        if season_length < 1 or seasons < 1:
            raise ValueError("season_length and seasons must be at least 1")
        self.name = "seasonal_median"  # tidecast sets it to the candidate's name
        self.season_length = int(season_length)
        self.seasons = int(seasons)
        self._freq: str | None = None
        self._tail: pd.DataFrame | None = None

    def get_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, "seasons": self.seasons}

    def fit(self, df: pd.DataFrame, ctx: Any) -> SeasonalMedian:
        # df: unique_id, ds, y (+ exogenous columns); ctx: tidecast.models.base.FitContext
        self._freq = ctx.freq
        keep = self.season_length * self.seasons
        self._tail = df.sort_values(["unique_id", "ds"]).groupby("unique_id").tail(keep)[["unique_id", "ds", "y"]]
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        data = self._tail if history is None else history.sort_values(["unique_id", "ds"])
        m, k = self.season_length, self.seasons
        step = pd.tseries.frequencies.to_offset(self._freq)
        frames = []
        for uid, g in data.groupby("unique_id", sort=True):
            y = g["y"].to_numpy(float)[-m * k :]
            n_seasons = len(y) // m
            if n_seasons == 0:
                raise ValueError(f"series {uid!r}: needs at least {m} readings of history, got {len(y)}")
            table = y[len(y) - n_seasons * m :].reshape(n_seasons, m)  # one row per past season
            idx = np.arange(h) % m
            out = pd.DataFrame(
                {"unique_id": uid, "ds": pd.date_range(g["ds"].max() + step, periods=h, freq=self._freq)}
            )
            out["yhat"] = np.median(table[:, idx], axis=0)
            for q in quantiles:
                out[f"q{q:g}"] = np.quantile(table[:, idx], q, axis=0)
            frames.append(out)
        return pd.concat(frames, ignore_index=True)


def build(season_length: int = 24, seasons: int = 4) -> SeasonalMedian:
    """``kind: my_models:build``: durations in ``season_length`` arrive as steps."""
    return SeasonalMedian(season_length=season_length, seasons=seasons)


def ridge(**params: Any) -> Any:
    """``kind: my_models:ridge``: an sklearn regressor; tidecast feeds it lag features.

    ``lags``, ``rolling`` and ``strategy`` are tidecast's (not passed here); the rest (``alpha``...)
    are Ridge's.
    """
    from sklearn.linear_model import Ridge

    return Ridge(**params)
