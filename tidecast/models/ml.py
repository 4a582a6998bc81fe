"""Machine-learning regressors over lag features, through mlforecast: ``lightgbm`` here, ``sklearn`` in
:mod:`tidecast.models.regressors` (the lag settings in :mod:`tidecast.models._lags`).

Features
--------
* ``lags`` (steps): default ``ctx.features.lags``; without any, ``[1, 2, 3]`` plus one day of steps
  when that fits the input window.
* ``rolling``: a list of ``{window, stats}`` (stats among mean, std, min, max), computed on lag 1;
  default ``ctx.features.rolling``.
* Time features: the calendar parts and Fourier terms of ``ctx.features``, computed by
  :func:`tidecast.data.features.add_time_features` from ``ds`` for the training rows and for the
  forecast steps, and passed to mlforecast as dynamic exogenous columns (``X_df``), so training
  and serving compute identical columns.
* Known-future exogenous columns (``ctx.exog_future``) are dynamic features too: ``X_future``
  must hold them for the forecast steps. Past-only exogenous columns (``ctx.exog_past``) are
  dropped: their future is unknown and the recursive strategy has no way to roll them forward.
* Numeric static columns (``ctx.static``) are mlforecast static features; others are dropped.

The longest lag (and ``window`` of a rolling statistic) must fit ``ctx.input_window``: serving
only receives that many readings, so a longer look-back is a :class:`~tidecast.errors.ModelError`.

Strategy
--------
``strategy: recursive`` (default) trains one model for the next step and feeds its forecasts back
as lags. ``strategy: direct`` trains one model per horizon step (mlforecast ``max_horizon =
ctx.horizon``): ``h`` models (288 for a day of 5-minute steps), so ``h`` times the training cost
and the pickle size; it cannot forecast past ``ctx.horizon``.

Scaling
-------
``scaling: per_series`` standardises each series (by the mean and standard deviation of its
training rows) before the lags are computed and undoes it on the forecasts, so that one model fits
series of very different levels (a household meter and a substation). ``auto`` (default) does so
when the training data holds several series; ``none`` never does. The statistics are kept with
the model: a series seen in training is scaled the same way whatever history a request sends (so
serving and the backtest agree); a series new at serving time is scaled by its own history.

Intervals
---------
These models have no native intervals (``native_intervals = False``): asking for quantiles is a
ModelError; wrap the model in :class:`tidecast.models.conformal.ConformalForecaster`.

``fit_window`` (steps) trims each series to its last ``fit_window`` rows before fitting.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, contiguous_runs, series_bounds, stitch, tail_per_series
from tidecast.models._frames import (
    check_frame,
    check_quantiles,
    finish,
    future_frame,
    no_intervals,
    regular_grid,
    require_future_exog,
)
from tidecast.models._lags import Runs, canonical_starts, mlforecast_freq, model_steps, natural_lag, norm_rolling
from tidecast.models._lightgbm import BoosterPredict, lightgbm_param_names
from tidecast.models._time import add_time
from tidecast.models.base import FitContext

SCALINGS = ("auto", "none", "per_series")


class MLForecastModel:
    """A regressor over lag/rolling/time/exogenous features (see the module docstring)."""

    native_intervals: ClassVar[bool] = False
    kind: ClassVar[str] = ""
    #: How long a backtest's fits take, and a forecast's recursion, relative to the other kinds (higher:
    #: longer; measured on examples/power): the order in which work runs side by side, longest first.
    fit_cost: ClassVar[int] = 0
    forecast_cost: ClassVar[int] = 0
    #: a global model: fit on all series at once
    per_series: ClassVar[bool] = False
    #: the libraries it computes with beside numpy and pandas (the step cache keys record their versions)
    libraries: ClassVar[tuple[str, ...]] = ("mlforecast", "scikit-learn")
    #: the explain step computes SHAP values of its regressor
    shap: ClassVar[bool] = True

    def __init__(
        self,
        *,
        name: str | None = None,
        fit_window: int | None = None,
        strategy: str = "recursive",
        lags: Sequence[int] | None = None,
        rolling: list[Any] | None = None,
        scaling: str = "auto",
    ) -> None:
        self.name = name or self.kind
        self.fit_window = fit_window
        if strategy not in ("recursive", "direct"):
            raise ModelError(f"candidate '{self.name}': strategy must be 'recursive' or 'direct', got {strategy!r}")
        self.strategy = strategy
        if scaling not in SCALINGS:
            raise ModelError(f"candidate '{self.name}': scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
        self.scaling = scaling
        self._scaled = scaling != "none"  # resolved in fit: 'auto' scales when there are several series
        self._stats: pd.DataFrame | None = None
        self.lags = list(lags) if lags is not None else None
        if self.lags is not None:
            for lag in self.lags:
                if isinstance(lag, bool) or not isinstance(lag, int | np.integer) or lag < 1:
                    raise ModelError(f"candidate '{self.name}': lags must be positive step counts, got {lag!r}")
        self.rolling = rolling
        self._fcst: Any = None
        self._ctx: FitContext | None = None
        self._tail: pd.DataFrame | None = None
        self._exog: list[str] = []
        self._static: list[str] = []
        self._time: list[str] = []
        self._lags: list[int] = []
        self._rolling: list[tuple[int, tuple[str, ...]]] = []
        self._max_h: int | None = None

    # -- subclass hooks --------------------------------------------------------------------------
    def _estimator(self, ctx: FitContext) -> Any:
        raise NotImplementedError

    def _estimator_params(self) -> dict[str, Any]:
        return {}

    def get_params(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "scaling": getattr(self, "scaling", "none"),  # models pickled before it existed did not scale
            "lags": self.lags,
            "rolling": self.rolling if self.rolling is None else [
                r if isinstance(r, dict) else getattr(r, "model_dump", lambda r=r: r)() for r in self.rolling
            ],
            "fit_window": self.fit_window,
            **self._estimator_params(),
        }

    # -- fit -------------------------------------------------------------------------------------
    def _resolve_features(self, ctx: FitContext) -> None:
        spec = ctx.features
        if self.lags is not None:
            lags = [int(v) for v in self.lags]
        elif spec is not None and getattr(spec, "lags", None):
            lags = [model_steps(v, ctx.freq, f"features.lags[{i}]", self.name) for i, v in enumerate(spec.lags)]
        else:
            lags = [1, 2, 3] + [m for m in [natural_lag(ctx.freq)] if 3 < m <= ctx.input_window]
        lags = sorted({lag for lag in lags if lag >= 1})
        rolling_src = self.rolling if self.rolling is not None else (getattr(spec, "rolling", None) if spec else None)
        rolling = norm_rolling(rolling_src, ctx.freq, self.name)
        if not lags and not rolling:
            raise ModelError(f"candidate '{self.name}': needs at least one lag or rolling window")
        for lag in lags:
            if lag > ctx.input_window:
                raise ModelError(
                    f"candidate '{self.name}': lag {lag} is longer than the input window ({ctx.input_window} steps); "
                    "serving only receives the input window"
                )
        for w, _ in rolling:
            if w > ctx.input_window:
                raise ModelError(
                    f"candidate '{self.name}': rolling window {w} is longer than the input window "
                    f"({ctx.input_window} steps); serving only receives the input window"
                )
        self._lags, self._rolling = lags, rolling

    def _needed(self) -> int:
        return max([*self._lags, *(w for w, _ in self._rolling)])

    def _lag_transforms(self) -> dict[int, list[Any]] | None:
        if not self._rolling:
            return None
        from mlforecast.lag_transforms import RollingMax, RollingMean, RollingMin, RollingStd

        cls = {"mean": RollingMean, "std": RollingStd, "min": RollingMin, "max": RollingMax}
        return {1: [cls[s](window_size=w) for w, stats in self._rolling for s in stats]}

    # The steps of ``fit``, also used by :mod:`tidecast.training.distributed` to train the same model
    # through mlforecast's Dask path (the same features, columns and settings).
    @staticmethod
    def _used_columns(columns: Sequence[str], ctx: FitContext) -> list[str]:
        """The columns of the data the model reads (the time features are recomputed from ``ds``)."""
        return [c for c in dict.fromkeys((ID, TIME, TARGET, *ctx.exog_future, *ctx.static)) if c in columns]

    def _setup(self, dtypes: pd.Series, ctx: FitContext) -> None:
        """Resolve the lags and rolling windows and the feature columns, from the data's ``dtypes``."""
        self._resolve_features(ctx)
        self._ctx = ctx
        self._exog = [c for c in ctx.exog_future if c in dtypes.index]
        self._static = [c for c in ctx.static if c in dtypes.index and pd.api.types.is_numeric_dtype(dtypes[c])]
        self._max_h = ctx.horizon if self.strategy == "direct" else None

    def _trimmed(self, data: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of ``data`` (checked and sorted), each series cut to ``fit_window``."""
        return tail_per_series(data[[ID, TIME, TARGET, *self._exog, *self._static]], self.fit_window)

    def _with_time(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` with the time feature columns (their names are kept in ``_time``)."""
        ctx = self._ctx
        assert ctx is not None
        train, self._time = add_time(data, ctx.features, timezone=ctx.timezone, freq=ctx.freq, name=self.name)
        return train

    def _mlforecast_args(self) -> dict[str, Any]:
        """Keyword arguments of ``MLForecast`` (and ``DistributedMLForecast``) besides the models."""
        assert self._ctx is not None
        args: dict[str, Any] = {
            "freq": mlforecast_freq(self._ctx.freq), "lags": self._lags or None, "lag_transforms": self._lag_transforms(), "num_threads": 1,
        }
        return args

    def _fit_args(self) -> dict[str, Any]:
        """Keyword arguments of ``MLForecast.fit`` besides the data."""
        return {"static_features": list(self._static), "max_horizon": self._max_h, "keep_last_n": self._needed(), "dropna": True}

    def _series_stats(self, data: pd.DataFrame, runs: Runs | None = None) -> pd.DataFrame | None:
        """Each series' mean and standard deviation of ``y`` in ``data`` (sorted by series; index
        ``unique_id``), what ``scaling`` standardises with; ``None`` when the model does not scale.
        A constant series gets a standard deviation of 1. ``runs``: the series' rows, when known."""
        if not getattr(self, "_scaled", False):
            return None
        ids = data[ID].to_numpy()
        if runs is None:
            runs = contiguous_runs(ids) if len(ids) else None
        if runs is None:  # rows of a series apart (or none at all)
            grouped = data.groupby(ID, sort=False)[TARGET]
            stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0)})
        else:
            starts, stops = runs
            y = data[TARGET].to_numpy(float)
            n = (stops - starts).astype(float)
            mean = np.add.reduceat(y, starts) / n
            sq = np.add.reduceat((y - np.repeat(mean, stops - starts)) ** 2, starts) / n
            stats = pd.DataFrame({"mean": mean, "std": np.sqrt(sq)}, index=pd.Index(ids[starts], name=ID))
        stats["std"] = stats["std"].where(stats["std"] > 1e-12, 1.0).fillna(1.0)
        return stats

    def _scaled_frame(
        self, data: pd.DataFrame, stats: pd.DataFrame | None, *, inverse: bool = False, column: str = TARGET,
        runs: Runs | None = None,
    ) -> pd.DataFrame:
        """``data`` with ``column`` standardised by its series' ``stats`` (or restored, ``inverse``);
        ``runs``: the series' rows when ``stats`` holds the series of ``data`` in their order."""
        if stats is None:
            return data
        if runs is not None and len(stats) == len(runs[0]):  # repeated by position, no lookup per row
            lengths = runs[1] - runs[0]
            mean = np.repeat(stats["mean"].to_numpy(float), lengths)
            std = np.repeat(stats["std"].to_numpy(float), lengths)
        else:
            mean = data[ID].map(stats["mean"]).to_numpy(float)
            std = data[ID].map(stats["std"]).to_numpy(float)
        values = data[column].to_numpy(float)
        out = data.copy()
        out[column] = values * std + mean if inverse else (values - mean) / std
        return out

    def _adopt(self, fcst: Any, tail: pd.DataFrame) -> None:
        """Become the fitted model of ``fcst`` (a local ``MLForecast``), ``tail`` the last readings."""
        self._fcst = fcst
        self._tail = tail

    def _checked(self, df: pd.DataFrame, ctx: FitContext) -> tuple[pd.DataFrame, np.ndarray]:
        """``check_frame`` of the columns used (the time features are recomputed from ``ds``) and
        the first row of each series. A frame already in that form (a backtest fold, the clean
        step's output) is taken as it is: no copy, sort or conversion of its millions of rows."""
        used = self._used_columns(df.columns, ctx)
        data = df if list(df.columns) == used else df[used]
        starts = canonical_starts(data)
        if starts is None:
            data = check_frame(data, self.name)
            return data, series_bounds(data[ID].to_numpy())[0]
        if data[TARGET].dtype != np.float64:
            data = data.assign(**{TARGET: data[TARGET].astype(float)})
        index = data.index
        if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
            data = data.reset_index(drop=True)
        return data, starts

    def _fit_rows(self, data: pd.DataFrame, starts: np.ndarray) -> tuple[pd.DataFrame, Runs]:
        """What :meth:`_trimmed` gives (the model's columns, each series cut to ``fit_window``), by
        position from the series' first rows ``starts``, and the series' rows in the result."""
        columns = [ID, TIME, TARGET, *self._exog, *self._static]
        if list(data.columns) != columns:
            data = data[columns]
        stops = np.append(starts[1:], len(data))
        if self.fit_window is not None and bool((stops - starts > self.fit_window).any()):
            data = tail_per_series(data, self.fit_window, runs=(starts, stops))
            lengths = np.minimum(stops - starts, int(self.fit_window))
            stops = np.cumsum(lengths)
            starts = stops - lengths
        return data, (starts, stops)

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> MLForecastModel:
        from mlforecast import MLForecast

        data, starts = self._checked(df, ctx)
        self._setup(data.dtypes, ctx)
        self._scaled = self.scaling == "per_series" or (self.scaling == "auto" and len(starts) > 1)
        data, runs = self._fit_rows(data, starts)
        self._stats = self._series_stats(data, runs)
        train = self._with_time(self._scaled_frame(data, self._stats, runs=runs))
        fcst = MLForecast(models={"model": self._estimator(ctx)}, **self._mlforecast_args())
        try:
            # on a regular grid (what the clean step gives) mlforecast's own check, a groupby over every
            # row costing seconds on millions of rows, has nothing to find
            fcst.fit(train, validate_data=not regular_grid(data, ctx.freq, self.name, runs=runs), **self._fit_args())
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"candidate '{self.name}': fitting {self.kind} failed: {type(exc).__name__}: {exc}") from exc
        self._adopt(fcst, tail_per_series(data, self._needed(), runs=runs))
        return self

    # -- predict ---------------------------------------------------------------------------------
    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        if self._fcst is None or self._ctx is None or self._tail is None:
            raise ModelError(f"candidate '{self.name}': predict called before fit")
        no_intervals(self.name, check_quantiles(quantiles, self.name))
        if self._max_h is not None and h > self._max_h:
            raise ModelError(
                f"candidate '{self.name}': the direct strategy was trained for {self._max_h} steps, asked for {h}"
            )
        ctx = self._ctx
        cols = [ID, TIME, TARGET, *self._exog, *self._static]
        if history is not None:
            hist = check_frame(history, self.name, what="history")
            missing = [c for c in cols if c not in hist.columns]
            if missing:
                raise ModelError(f"candidate '{self.name}': the history lacks column(s) {', '.join(missing)}")
            data = stitch(self._tail, hist[cols], ctx.freq, None)
        else:
            data = self._tail
        need = self._needed()
        runs = contiguous_runs(data[ID].to_numpy())  # the rows of each series are together (stitched or kept)
        if runs is None:
            counts = data.groupby(ID, sort=False).size()
            ends = data.groupby(ID, sort=False).tail(1)[[ID, TIME]]
        else:
            counts = pd.Series(runs[1] - runs[0], index=data[ID].to_numpy()[runs[0]])
            ends = data[[ID, TIME]].iloc[runs[1] - 1]
        short = counts[counts < need]
        if len(short):
            raise ModelError(
                f"candidate '{self.name}': needs at least {need} readings of history, got {int(short.iloc[0])} "
                f"for series '{short.index[0]}'"
            )
        if data[TARGET].isna().any():
            raise ModelError(f"candidate '{self.name}': the history has missing values in '{TARGET}'")
        stats = self._stats_for(data)
        new_df, _ = add_time(self._scaled_frame(data, stats), ctx.features, timezone=ctx.timezone, freq=ctx.freq, name=self.name)
        fut = require_future_exog(self.name, future_frame(ends, h, ctx.freq), X_future, self._exog)
        X_df = None
        if self._exog or self._time:
            X_df, _ = add_time(fut, ctx.features, timezone=ctx.timezone, freq=ctx.freq, name=self.name)
            X_df = X_df[[ID, TIME, *self._exog, *self._time]]
        try:
            preds = self._forecaster().predict(h, new_df=new_df, X_df=X_df)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"candidate '{self.name}': {self.kind} failed to forecast: {type(exc).__name__}: {exc}") from exc
        preds = preds.rename(columns={"model": POINT})
        preds[ID] = preds[ID].astype(str)
        preds = self._scaled_frame(preds, stats, inverse=True, column=POINT)
        return finish(preds, ())

    def _forecaster(self) -> Any:
        """The fitted ``MLForecast`` that :meth:`predict` calls (a subclass may swap its models)."""
        return self._fcst

    def _stats_for(self, data: pd.DataFrame) -> pd.DataFrame | None:
        """The scaling statistics of the series of ``data``: those of the training for a series seen
        there (so that a forecast does not depend on how much history is sent), else its own."""
        stored = getattr(self, "_stats", None)
        if stored is None:
            return None
        unseen = ~data[ID].isin(stored.index)
        if not unseen.any():
            return stored
        return pd.concat([stored, self._series_stats(data[unseen.to_numpy()])])


_THREAD_PARAMS = frozenset({"n_jobs", "num_threads", "num_thread", "nthread", "nthreads"})
"""LightGBM's names for its thread count: one given by the user wins over ``ctx.threads``."""


class LightGBMModel(MLForecastModel):
    """``lightgbm.LGBMRegressor`` over lag features (``kind: lightgbm``).

    Parameters other than ``strategy``, ``lags``, ``rolling`` and ``fit_window`` go to
    ``LGBMRegressor`` (``verbose=-1`` and ``random_state=ctx.seed`` unless given); an unknown
    parameter is a ModelError.
    """

    kind = "lightgbm"
    fit_cost, forecast_cost = 6, 7
    libraries = ("lightgbm", "mlforecast", "scikit-learn")

    def __init__(
        self,
        *,
        name: str | None = None,
        fit_window: int | None = None,
        strategy: str = "recursive",
        lags: Sequence[int] | None = None,
        rolling: list[Any] | None = None,
        scaling: str = "auto",
        **params: Any,
    ) -> None:
        super().__init__(
            name=name, fit_window=fit_window, strategy=strategy, lags=lags, rolling=rolling, scaling=scaling
        )
        from lightgbm import LGBMRegressor

        accepted = set(inspect.signature(LGBMRegressor).parameters) - {"kwargs"}
        known = lightgbm_param_names()
        for key in params:
            if key not in accepted and known is not None and key not in known:
                raise ModelError(
                    f"candidate '{self.name}': lightgbm does not accept parameter '{key}' "
                    f"(see LGBMRegressor and the LightGBM parameters)"
                )
        try:
            LGBMRegressor(**params)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"candidate '{self.name}': lightgbm rejects its parameters: {exc}") from exc
        self.params = dict(params)

    def _estimator_params(self) -> dict[str, Any]:
        return dict(self.params)

    def _estimator(self, ctx: FitContext) -> Any:
        from lightgbm import LGBMRegressor

        kwargs = {"verbose": -1, "random_state": ctx.seed, **self.params}
        if ctx.threads is not None and not _THREAD_PARAMS & set(self.params):
            # a parallel backtest's share of the cores (LightGBM's default is every physical core,
            # in each of the folds running side by side), at most this machine's cores
            kwargs["n_jobs"] = max(1, min(int(ctx.threads), os.cpu_count() or 1))
        return LGBMRegressor(**kwargs)

    def _forecaster(self) -> Any:
        """The fitted ``MLForecast`` with its LightGBM regressor called through the booster (see
        :class:`tidecast.models._lightgbm.BoosterPredict`): a recursive forecast calls it once per step."""
        models = getattr(self._fcst, "models_", None)
        if self.strategy != "recursive" or not isinstance(models, dict) or set(models) != {"model"}:
            return self._fcst
        estimator = models["model"]
        if getattr(estimator, "_Booster", None) is None or getattr(estimator, "_n_features", None) is None:
            return self._fcst
        fcst = copy.copy(self._fcst)  # predict(new_df=...) builds its own series state: the copy shares nothing it changes
        fcst.models_ = {"model": BoosterPredict(estimator)}
        return fcst
