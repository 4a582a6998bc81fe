"""Baselines computed with numpy straight from the history: naive, seasonal naive, window average.

Quantiles are normal intervals around the point forecast, with the standard deviation of the
in-sample residuals of the same rule, learned per series at fit time:

* ``Naive``: residual ``y[t] - y[t-1]``; the ``k``-step spread is ``sigma * sqrt(k)``;
* ``SeasonalNaive``: residual ``y[t] - y[t-m]``; spread ``sigma * sqrt(floor((k-1)/m) + 1)``
  (as statsforecast does);
* ``WindowAverage``: residual ``y[t] - mean(y[t-w:t])``; constant spread ``sigma``.

A series met only in ``history`` (not seen in fit) gets the median ``sigma`` of the fitted series.
``season_length`` and ``window_size`` default to one day of steps (7 for daily data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column, stitch, tail_per_series
from tidecast.models._frames import check_frame, check_quantiles, default_season_length, finish, future_frame, z_of
from tidecast.models.base import FitContext


class _Baseline:
    """Shared machinery; subclasses define ``_needed``, ``_forecast`` and ``_residuals``."""

    native_intervals: ClassVar[bool] = True
    kind: ClassVar[str] = ""
    #: fit series by series (its backtest splits into series partitions x folds)
    per_series: ClassVar[bool] = True
    #: the libraries it computes with beside numpy and pandas (the step cache keys record their versions)
    libraries: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, name: str | None = None, fit_window: int | None = None) -> None:
        self.name = name or self.kind
        self.fit_window = fit_window
        self._freq: str | None = None
        self._tail: pd.DataFrame | None = None
        self._sigma: dict[str, float] = {}

    # -- rule ---------------------------------------------------------------------------------
    def _resolve(self, freq: str) -> None:
        """Fill defaults that depend on the frequency."""

    def _needed(self) -> int:
        raise NotImplementedError

    def _forecast(self, y: np.ndarray, h: int) -> np.ndarray:
        raise NotImplementedError

    def _residuals(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _spread(self, h: int) -> np.ndarray:
        return np.ones(h)

    # -- protocol -----------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {"fit_window": self.fit_window}

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> _Baseline:
        data = tail_per_series(check_frame(df, self.name)[[ID, TIME, TARGET]], self.fit_window)
        self._freq = ctx.freq
        self._resolve(ctx.freq)
        self._sigma = {}
        for uid, g in data.groupby(ID, sort=False):
            y = g[TARGET].to_numpy(float)
            self._check_length(len(y), str(uid), "history")
            res = self._residuals(y)
            res = res[np.isfinite(res)]
            self._sigma[str(uid)] = float(np.std(res, ddof=1)) if len(res) > 1 else float("nan")
        self._tail = tail_per_series(data, self._needed())
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
            raise ModelError(f"candidate '{self.name}': predict called before fit")
        qs = check_quantiles(quantiles, self.name)
        if history is not None:
            hist = check_frame(history, self.name, what="history")[[ID, TIME, TARGET]]
            data = stitch(self._tail, hist, self._freq, self._needed())
        else:
            data = self._tail
        fallback = float(np.nanmedian(list(self._sigma.values()))) if self._sigma else float("nan")
        spread = self._spread(h)
        frames = []
        for uid, g in data.groupby(ID, sort=False):
            y = g[TARGET].to_numpy(float)
            self._check_length(len(y), str(uid), "history")
            point = self._forecast(y, h)
            out = future_frame(g[[ID, TIME]].tail(1), h, self._freq)
            out[POINT] = point
            sigma = self._sigma.get(str(uid), fallback)
            for q in qs:
                out[quantile_column(q)] = point + z_of(q) * sigma * spread
            frames.append(out)
        return finish(pd.concat(frames, ignore_index=True), qs)

    def _check_length(self, n: int, uid: str, what: str) -> None:
        need = self._needed()
        if n < need:
            raise ModelError(
                f"candidate '{self.name}': needs at least {need} readings of {what} per series, "
                f"got {n} for series '{uid}'"
            )


class Naive(_Baseline):
    """The last value, repeated."""

    kind = "naive"

    def _needed(self) -> int:
        return 1

    def _forecast(self, y: np.ndarray, h: int) -> np.ndarray:
        return np.full(h, y[-1])

    def _residuals(self, y: np.ndarray) -> np.ndarray:
        return np.diff(y)

    def _spread(self, h: int) -> np.ndarray:
        return np.sqrt(np.arange(1, h + 1))


class SeasonalNaive(_Baseline):
    """The value one season earlier: the last ``season_length`` readings, repeated."""

    kind = "seasonal_naive"

    def __init__(self, season_length: int | None = None, *, name: str | None = None, fit_window: int | None = None) -> None:
        super().__init__(name=name, fit_window=fit_window)
        if season_length is not None and (
            not isinstance(season_length, int | np.integer) or isinstance(season_length, bool) or season_length < 1
        ):
            raise ModelError(f"candidate '{self.name}': season_length must be a positive step count, got {season_length!r}")
        self.season_length = None if season_length is None else int(season_length)
        self._steps = self.season_length or 1

    def _resolve(self, freq: str) -> None:
        self._steps = self.season_length or default_season_length(freq)

    def get_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, **super().get_params()}

    def _needed(self) -> int:
        return self._steps

    def _forecast(self, y: np.ndarray, h: int) -> np.ndarray:
        m = self._steps
        return np.resize(y[-m:], h) if h else np.empty(0)

    def _residuals(self, y: np.ndarray) -> np.ndarray:
        m = self._steps
        return y[m:] - y[:-m]

    def _spread(self, h: int) -> np.ndarray:
        k = np.arange(1, h + 1)
        return np.sqrt(np.floor((k - 1) / self._steps) + 1)

    def _check_length(self, n: int, uid: str, what: str) -> None:
        if n < self._steps:
            raise ModelError(
                f"candidate '{self.name}': season_length {self._steps} is longer than the {what} "
                f"({n} steps) of series '{uid}'"
            )


class WindowAverage(_Baseline):
    """The mean of the last ``window_size`` readings."""

    kind = "window_average"

    def __init__(self, window_size: int | None = None, *, name: str | None = None, fit_window: int | None = None) -> None:
        super().__init__(name=name, fit_window=fit_window)
        if window_size is not None and (
            not isinstance(window_size, int | np.integer) or isinstance(window_size, bool) or window_size < 1
        ):
            raise ModelError(f"candidate '{self.name}': window_size must be a positive step count, got {window_size!r}")
        self.window_size = None if window_size is None else int(window_size)
        self._steps = self.window_size or 1

    def _resolve(self, freq: str) -> None:
        self._steps = self.window_size or default_season_length(freq)

    def get_params(self) -> dict[str, Any]:
        return {"window_size": self.window_size, **super().get_params()}

    def _needed(self) -> int:
        return self._steps

    def _forecast(self, y: np.ndarray, h: int) -> np.ndarray:
        return np.full(h, float(np.mean(y[-self._steps :])))

    def _residuals(self, y: np.ndarray) -> np.ndarray:
        w = self._steps
        if len(y) <= w:
            return np.empty(0)
        csum = np.concatenate([[0.0], np.cumsum(y)])
        means = (csum[w:-1] - csum[: -w - 1]) / w  # mean of y[t-w:t] for t = w .. n-1
        return y[w:] - means
