"""Statistical models from statsforecast, one model per series: ``autoets``, ``autoarima``,
``autotheta`` and ``mstl``.

Common behaviour
----------------
* Parameters pass through to the statsforecast constructor; a parameter it does not accept, or a
  value it rejects, is a :class:`~tidecast.errors.ModelError` naming the candidate and parameter.
* ``season_length`` (steps) defaults to one day of the data frequency (24 for hourly data, 288
  for 5-minute data); 7 for daily data; 1 (no season) for coarser data. A series with less than
  two of its longest season (in ``fit``, or in the window used by ``predict(history=...)``) is a
  ``ModelError``: statsforecast would silently drop the season.
* ``fit_window`` (steps): each series is fitted on at most its last ``fit_window`` readings, and
  that trailing window (``y`` and the exogenous columns) is stored with the model.
* ``predict(h, history=...)``: the stored tail and ``history`` are joined (``history`` wins on
  overlapping timestamps; after a gap ``history`` alone is used), the last ``fit_window``
  readings are kept, and statsforecast's ``forward`` re-runs the model with the parameters
  learned in ``fit`` on that window. A series never seen in ``fit`` is fitted on its window.
* Quantiles come from statsforecast's ``level``: ``q < 0.5`` is the lower bound of the
  ``(1 - 2q)·100`` % interval, ``q > 0.5`` the upper bound of ``(2q - 1)·100`` %, 0.5 the point.
* Known-future exogenous columns (``ctx.exog_future``) are passed as ``X`` to the models that use
  them: ``autoarima`` (and ``mstl`` with an ``autoarima`` trend). The others ignore them; past-only
  exogenous columns are always ignored.

Long seasons
------------
ETS keeps one state per seasonal period and the seasonal ARIMA search grows with the season, so
with long seasons (5-minute data: 288 steps a day) both become very slow and unreliable (R's
``forecast::ets`` refuses seasons above 24; statsforecast 2.1 accepts them but needs ~20 s to
fit 14 days of 5-minute data). ``autoets`` and ``autoarima`` therefore take ``deseasonalize``:

* ``None`` (default): deseasonalise when ``season_length`` is above 24 for ``autoets``, above
  12 for ``autoarima`` (the seasonal ARIMA search with ``m = 24`` takes about a minute per series
  of 720 hourly points);
* ``True``: always (when ``season_length > 1``); ``False``: never (the native seasonal model).

Deseasonalising means ``MSTL(season_length, trend_forecaster=<the model without season>)``: an STL
decomposition removes the season, the non-seasonal ETS (``model`` with its season letter set to
``N``) or ARIMA (``seasonal=False``) forecasts the adjusted series, and the last season is added
back. ``autotheta`` uses statsforecast's classical decomposition, which copes with any season.

Every STL decomposition (``mstl`` and deseasonalised models) evaluates its trend and low-pass
LOESS smoothers every ``ceil(season / 10)`` points as R's ``stl`` does, instead of statsmodels'
every point: 14x faster on 28 days of 5-minute data, same forecasts (``stl_kwargs`` overrides).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column, stitch, tail_per_series
from tidecast.models._frames import (
    check_frame,
    check_quantiles,
    default_season_length,
    finish,
    future_frame,
    level_of,
    require_future_exog,
)
from tidecast.models._statsforecast import (
    check_ets_model,
    check_params,
    checked_tail,
    fast_stl_kwargs,
    season_list,
    sf_class,
)
from tidecast.models.base import FitContext


class StatsForecastModel:
    """A statsforecast model fitted per series (see the module docstring for the behaviour)."""

    native_intervals: ClassVar[bool] = True
    kind: ClassVar[str] = ""
    #: How long a backtest's fits take, and a forecast's recursion, relative to the other kinds (higher:
    #: longer; measured on examples/power): the order in which work runs side by side, longest first.
    fit_cost: ClassVar[int] = 0
    forecast_cost: ClassVar[int] = 0
    #: fit series by series (its backtest splits into series partitions x folds)
    per_series: ClassVar[bool] = True
    #: the libraries it computes with beside numpy and pandas (the step cache keys record their versions)
    libraries: ClassVar[tuple[str, ...]] = ("statsforecast",)
    #: the explain step shows its fitted components (trend, seasons)
    components: ClassVar[bool] = True
    #: forecasts from new history refit the model on it (models without statsforecast's ``forward``)
    refit_on_history: ClassVar[bool] = False

    def __init__(
        self,
        season_length: int | list[int] | None = None,
        *,
        name: str | None = None,
        fit_window: int | None = None,
        **params: Any,
    ) -> None:
        self.name = name or self.kind
        self.fit_window = fit_window
        self.season_length = season_length
        self.params = dict(params)
        self._validate()
        self._probe()
        self._freq: str | None = None
        self._season: list[int] = [1]
        self._exog: list[str] = []
        self._tail: pd.DataFrame | None = None
        self._fitted: dict[str, Any] = {}

    # -- construction ---------------------------------------------------------------------------
    def _validate(self) -> None:
        check_params(self.name, self.kind, self.params)
        if self.season_length is not None:
            for m in season_list(self.season_length):
                if m < 1:
                    raise ModelError(f"candidate '{self.name}': season_length must be at least 1, got {m}")

    def _probe(self) -> None:
        """Build once with a placeholder season so that rejected values fail now, not at fit."""
        try:
            self._build([int(season_list(self.season_length)[0]) if self.season_length else 2])
        except ModelError:
            raise
        except (TypeError, ValueError) as exc:
            raise ModelError(f"candidate '{self.name}': {self.kind} rejects its parameters: {exc}") from exc

    def _build(self, season: list[int]) -> Any:
        return sf_class(self.kind)(season_length=season[0], **self.params)

    def _uses_exog(self) -> bool:
        return False

    def get_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, "fit_window": self.fit_window, **self.params}

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, ctx: FitContext) -> StatsForecastModel:
        self._exog = [c for c in ctx.exog_future if c in df.columns] if self._uses_exog() else []
        used = [c for c in (ID, TIME, TARGET, *self._exog) if c in df.columns]
        # a backtest fold hands over the whole history in canonical order: keep just the fit window
        # of the columns used instead of checking, copying and sorting everything (same rows)
        data = checked_tail(df, used, self.fit_window)
        if data is None:
            data = tail_per_series(check_frame(df[used], self.name)[[ID, TIME, TARGET, *self._exog]], self.fit_window)
        self._freq = ctx.freq
        self._season = (
            season_list(self.season_length) if self.season_length is not None else [default_season_length(ctx.freq)]
        )
        self._fitted = {}
        for uid, g in data.groupby(ID, sort=False):
            y, X = self._arrays(g, str(uid), "history")
            model = self._build(self._season)
            try:
                self._fitted[str(uid)] = model.fit(y, X) if X is not None else model.fit(y)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"candidate '{self.name}': {self.kind} failed to fit series '{uid}': {exc}") from exc
        self._tail = data
        return self

    def _arrays(self, g: pd.DataFrame, uid: str, what: str) -> tuple[np.ndarray, np.ndarray | None]:
        y = g[TARGET].to_numpy(float)
        if np.isnan(y).any():
            raise ModelError(f"candidate '{self.name}': series '{uid}' has missing values in its {what}")
        longest = max(self._season)
        where = f" of series '{uid}'" if uid else ""
        if longest > len(y):
            raise ModelError(
                f"candidate '{self.name}': season_length {longest} is longer than the {what} ({len(y)} steps){where}"
            )
        if longest > 1 and len(y) < 2 * longest:
            # statsforecast/statsmodels silently drop a season seen less than twice
            raise ModelError(
                f"candidate '{self.name}': season_length {longest} needs at least two seasons of {what} "
                f"({2 * longest} steps), got {len(y)} steps{where}"
            )
        if not self._exog:
            return y, None
        missing = [c for c in self._exog if c not in g.columns]
        if missing:
            raise ModelError(f"candidate '{self.name}': the {what} lacks exogenous column(s) {', '.join(missing)}")
        X = g[self._exog].to_numpy(float)
        if np.isnan(X).any():
            raise ModelError(f"candidate '{self.name}': series '{uid}' has missing exogenous values in its {what}")
        return y, X

    # -- predict -----------------------------------------------------------------------------------
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
        levels = sorted({level_of(q) for q in qs if q != 0.5})
        if history is not None:
            hist = check_frame(history, self.name, what="history")
            missing = [c for c in self._exog if c not in hist.columns]
            if missing:
                raise ModelError(f"candidate '{self.name}': the history lacks exogenous column(s) {', '.join(missing)}")
            data = stitch(self._tail, hist[[ID, TIME, TARGET, *self._exog]], self._freq, self.fit_window)
        else:
            data = self._tail
        ends = data.groupby(ID, sort=False).tail(1)[[ID, TIME]]
        fut = require_future_exog(self.name, future_frame(ends, h, self._freq), X_future, self._exog)
        # the forecast rows of every series, filled column-wise (cheaper than a frame per series)
        rows = {str(uid): pos for uid, pos in fut.groupby(ID, sort=False).indices.items()}
        X_all = fut[self._exog].to_numpy(float) if self._exog else None
        names = {POINT: "mean"} | {
            quantile_column(q): "mean" if q == 0.5 else f"{'lo' if q < 0.5 else 'hi'}-{level_of(q)}" for q in qs
        }
        taken: list[np.ndarray] = []
        columns: dict[str, list[np.ndarray]] = {col: [] for col in names}
        series = data.groupby(ID, sort=False) if history is not None else ((uid, None) for uid in pd.unique(data[ID]))
        for uid, g in series:
            uid = str(uid)
            pos = rows.get(uid, np.empty(0, dtype=np.intp))
            Xf = X_all[pos] if X_all is not None else None
            kwargs: dict[str, Any] = {"h": h}
            if levels:
                kwargs["level"] = levels
            try:
                if history is None:
                    res = self._fitted[uid].predict(X=Xf, **kwargs)
                else:
                    y, X = self._arrays(g, uid, "history")
                    if uid in self._fitted and not self.refit_on_history:
                        res = self._fitted[uid].forward(y=y, X=X, X_future=Xf, **kwargs)
                    else:
                        model = self._build(self._season)
                        model = model.fit(y, X) if X is not None else model.fit(y)
                        res = model.predict(X=Xf, **kwargs)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"candidate '{self.name}': {self.kind} failed to forecast series '{uid}': {exc}") from exc
            taken.append(pos)
            for col, key in names.items():
                values = np.asarray(res[key])
                if len(values) != len(pos):
                    raise ValueError(f"Length of values ({len(values)}) does not match length of index ({len(pos)})")
                columns[col].append(values)
        out = fut.iloc[np.concatenate(taken)].reset_index(drop=True)
        for col, parts in columns.items():
            out[col] = np.concatenate(parts)
        return finish(out, qs)


class _Deseasonalizing(StatsForecastModel):
    """``autoets``/``autoarima``: native season up to ``max_native_season`` steps, STL above."""

    #: Seasons above this are deseasonalised with STL by default.
    max_native_season: ClassVar[int] = 24

    def __init__(
        self,
        season_length: int | None = None,
        *,
        deseasonalize: bool | None = None,
        stl_kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        fit_window: int | None = None,
        **params: Any,
    ) -> None:
        if isinstance(season_length, list | tuple):
            raise ModelError(
                f"candidate '{name or self.kind}': {self.kind} takes one season_length; "
                "use kind 'mstl' for several seasons"
            )
        self.deseasonalize = deseasonalize
        self.stl_kwargs = stl_kwargs
        super().__init__(season_length, name=name, fit_window=fit_window, **params)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "deseasonalize": self.deseasonalize, "stl_kwargs": self.stl_kwargs}

    def _stl(self, m: int) -> bool:
        if m <= 1:
            return False
        return m > self.max_native_season if self.deseasonalize is None else bool(self.deseasonalize)

    def _nonseasonal(self) -> Any:
        raise NotImplementedError

    def _build(self, season: list[int]) -> Any:
        m = season[0]
        if self._stl(m):
            from statsforecast.models import MSTL

            return MSTL(
                season_length=m, trend_forecaster=self._nonseasonal(), stl_kwargs=fast_stl_kwargs([m], self.stl_kwargs)
            )
        return sf_class(self.kind)(season_length=m, **self.params)


class AutoETSModel(_Deseasonalizing):
    """statsforecast ``AutoETS`` (``kind: autoets``).

    ``season_length`` defaults to one day of steps. Above 24 steps (e.g. 288 for 5-minute data)
    the series is deseasonalised with STL and a non-seasonal ETS (``model`` with its season letter
    set to ``N``) forecasts the rest, unless ``deseasonalize: false``. Other parameters (``model``,
    ``damped``, ``phi``...) pass through to ``AutoETS``.
    """

    kind = "autoets"
    fit_cost, forecast_cost = 2, 3

    def _validate(self) -> None:
        super()._validate()
        if "model" in self.params:
            check_ets_model(self.name, self.kind, self.params["model"])

    def _nonseasonal(self) -> Any:
        from statsforecast.models import AutoETS

        model = str(self.params.get("model", "ZZZ"))
        return AutoETS(season_length=1, **{**self.params, "model": model[:2] + "N"})


class AutoARIMAModel(_Deseasonalizing):
    """statsforecast ``AutoARIMA`` (``kind: autoarima``), with known-future exogenous columns as ``X``.

    ``season_length`` defaults to one day of steps. Above 12 steps (so already for hourly data)
    the series is deseasonalised with STL and a non-seasonal ARIMA (``seasonal=False``) forecasts
    the rest, unless ``deseasonalize: false``. Other parameters pass through to ``AutoARIMA``.
    """

    kind = "autoarima"
    fit_cost, forecast_cost = 3, 4
    max_native_season = 12

    def _uses_exog(self) -> bool:
        return True

    def _nonseasonal(self) -> Any:
        from statsforecast.models import AutoARIMA

        return AutoARIMA(season_length=1, **{**self.params, "seasonal": False})


class AutoThetaModel(StatsForecastModel):
    """statsforecast ``AutoTheta`` (``kind: autotheta``); any season via classical decomposition.

    ``season_length`` defaults to one day of steps; other parameters pass through.
    """

    kind = "autotheta"
    fit_cost, forecast_cost = 1, 2

    def _validate(self) -> None:
        super()._validate()
        if isinstance(self.season_length, list | tuple):
            raise ModelError(f"candidate '{self.name}': autotheta takes one season_length; use kind 'mstl' for several")


_TREND_KINDS = {"autoets": "AutoETS", "autoarima": "AutoARIMA", "autotheta": "AutoTheta"}


class MSTLModel(StatsForecastModel):
    """statsforecast ``MSTL`` (``kind: mstl``): STL with one or several seasons, and a trend model.

    ``season_length`` is a step count or a list (``[288, 2016]``: daily and weekly for 5-minute
    data); default one day. ``trend_forecaster`` is ``autoets`` (default, with
    ``trend_params: {model: ZZN}``), ``autoarima`` or ``autotheta`` (or a statsforecast model
    object, from Python); ``trend_params`` go to its constructor. With an ``autoarima`` trend the
    known-future exogenous columns are used. ``stl_kwargs`` pass through to MSTL, over R-like
    LOESS jumps (see :func:`fast_stl_kwargs`).
    """

    kind = "mstl"
    fit_cost, forecast_cost = 4, 5

    def __init__(
        self,
        season_length: int | list[int] | None = None,
        *,
        trend_forecaster: Any = "autoets",
        trend_params: dict[str, Any] | None = None,
        name: str | None = None,
        fit_window: int | None = None,
        **params: Any,
    ) -> None:
        self.trend_forecaster = trend_forecaster
        self.trend_params = trend_params
        super().__init__(season_length, name=name, fit_window=fit_window, **params)

    def get_params(self) -> dict[str, Any]:
        trend = self.trend_forecaster if isinstance(self.trend_forecaster, str) else repr(self.trend_forecaster)
        return {**super().get_params(), "trend_forecaster": trend, "trend_params": self.trend_params}

    def _validate(self) -> None:
        check_params(self.name, self.kind, self.params)
        if isinstance(self.trend_forecaster, str):
            key = self.trend_forecaster.lower()
            if key not in _TREND_KINDS:
                raise ModelError(
                    f"candidate '{self.name}': parameter 'trend_forecaster' must be one of "
                    f"{', '.join(_TREND_KINDS)}, got {self.trend_forecaster!r}"
                )
            tp = self._trend_params()
            check_params(self.name, key, {k: v for k, v in tp.items() if k != "season_length"})
            if key == "autoets" and "model" in tp:
                check_ets_model(self.name, "the mstl trend (autoets)", tp["model"])
        if self.season_length is not None:
            for m in season_list(self.season_length):
                if m < 1:
                    raise ModelError(f"candidate '{self.name}': season_length must be at least 1, got {m}")

    def _trend_params(self) -> dict[str, Any]:
        if self.trend_params is not None:
            return dict(self.trend_params)
        return {"model": "ZZN"} if str(self.trend_forecaster).lower() == "autoets" else {}

    def _trend(self) -> Any:
        if not isinstance(self.trend_forecaster, str):
            return self.trend_forecaster.new() if hasattr(self.trend_forecaster, "new") else self.trend_forecaster
        import statsforecast.models as sfm

        key = self.trend_forecaster.lower()
        tp = self._trend_params()
        if key == "autoarima":
            tp.setdefault("seasonal", False)
        return getattr(sfm, _TREND_KINDS[key])(**tp)

    def _uses_exog(self) -> bool:
        return isinstance(self.trend_forecaster, str) and self.trend_forecaster.lower() == "autoarima"

    def _build(self, season: list[int]) -> Any:
        from statsforecast.models import MSTL

        s: int | list[int] = season[0] if len(season) == 1 else list(season)
        params = dict(self.params)
        params["stl_kwargs"] = fast_stl_kwargs(season, params.get("stl_kwargs"))
        return MSTL(season_length=s, trend_forecaster=self._trend(), **params)
