"""Candidate ``kind`` -> forecaster: the built-ins, plugins (``package.module:function``) and ``fit_window``.

``fit_window`` is handled in one place, :func:`build_forecaster`: built-in models take it as a
constructor argument (statistical models also size their stored serving tail with it); a plugin
forecaster is wrapped in :class:`FitWindow`, which trims each series to its last ``steps`` rows
before ``fit``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.durations import to_steps
from tidecast.errors import ModelError, PluginError, SpecError, TidecastError, closest
from tidecast.frames import quantile_column, tail_per_series
from tidecast.models._frames import finish
from tidecast.models.base import FitContext, Forecaster
from tidecast.models.baselines import Naive, SeasonalNaive, WindowAverage
from tidecast.models.intermittent import ADIDAModel, CrostonModel, IMAPAModel, TSBModel
from tidecast.models.ml import LightGBMModel
from tidecast.models.neural import MLPForecaster
from tidecast.models.plugins import add_search_path, load_object
from tidecast.models.regressors import SklearnModel
from tidecast.models.statistical import AutoARIMAModel, AutoETSModel, AutoThetaModel, MSTLModel

BUILTINS: dict[str, Callable[..., Forecaster]] = {
    "naive": Naive,
    "seasonal_naive": SeasonalNaive,
    "window_average": WindowAverage,
    "autoets": AutoETSModel,
    "autoarima": AutoARIMAModel,
    "autotheta": AutoThetaModel,
    "mstl": MSTLModel,
    "croston": CrostonModel,
    "adida": ADIDAModel,
    "imapa": IMAPAModel,
    "tsb": TSBModel,
    "lightgbm": LightGBMModel,
    "sklearn": SklearnModel,
    "mlp": MLPForecaster,
}


def kind_property(kind: str, name: str, default: Any = False) -> Any:
    """A class attribute of the built-in model class of ``kind`` (``per_series``, ``components``,
    ``shap``); ``default`` for a plugin or any other kind. Reads the class, builds nothing."""
    return getattr(BUILTINS.get(kind), name, default)


def fits_per_series(kind: str) -> bool:
    """Whether a candidate of ``kind`` is fit series by series (its backtest splits into series
    partitions x folds); every other kind (lightgbm, sklearn, mlp, plugins) is a global model,
    fit on all series at once."""
    return bool(kind_property(kind, "per_series"))


# common other names, used only for "did you mean"
_ALIASES = {
    "lgbm": "lightgbm", "lgb": "lightgbm", "gbm": "lightgbm", "ets": "autoets", "arima": "autoarima",
    "theta": "autotheta", "snaive": "seasonal_naive", "seasonalnaive": "seasonal_naive", "last": "naive",
    "mean": "window_average", "moving_average": "window_average", "ridge": "sklearn", "linear": "sklearn",
    "nn": "mlp", "neural": "mlp", "torch": "mlp",
}

#: Parameters holding durations (``"1d"`` or a step count, or a list of them), turned into steps.
DURATION_PARAMS = ("season_length", "window_size", "lags")
#: Parameters of ours for ML models built from a plugin regressor (not passed to the builder
#: unless its signature names them).
ML_PARAMS = ("strategy", "lags", "rolling")


def _did_you_mean(kind: str) -> str:
    key = kind.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    close = closest(key, [*BUILTINS, *_ALIASES])
    return _ALIASES.get(close, close) if close else ""


def convert_durations(params: dict[str, Any], freq: str, *, name: str) -> dict[str, Any]:
    """``params`` with the duration parameters (and ``rolling[].window``) in steps of ``freq``."""
    out = dict(params)

    def steps(value: Any, field: str) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int | str) and not isinstance(value, bool):
            try:
                return to_steps(value, freq, field=field)
            except SpecError as exc:
                raise ModelError(f"candidate '{name}': {exc.message}") from None
        raise ModelError(f"candidate '{name}': {field} must be a step count or a duration like '1d', got {value!r}")

    for key in DURATION_PARAMS:
        if key in out and out[key] is not None:
            value = out[key]
            if isinstance(value, list | tuple):
                out[key] = [steps(v, f"params.{key}[{i}]") for i, v in enumerate(value)]
            else:
                out[key] = steps(value, f"params.{key}")
    if isinstance(out.get("rolling"), list):
        rolled = []
        for i, item in enumerate(out["rolling"]):
            if isinstance(item, dict) and "window" in item:
                item = {**item, "window": steps(item["window"], f"params.rolling[{i}].window")}
            rolled.append(item)
        out["rolling"] = rolled
    return out


class FitWindow:
    """Wraps any forecaster: each series is cut to its last ``steps`` rows before ``fit``."""

    def __init__(self, inner: Forecaster, steps: int) -> None:
        if steps < 1:
            raise ModelError(f"candidate '{getattr(inner, 'name', '?')}': fit_window must be at least one step")
        self.inner = inner
        self.steps = int(steps)

    native_intervals = property(lambda self: bool(getattr(self.inner, "native_intervals", False)))

    @property
    def name(self) -> str:
        return self.inner.name

    @name.setter
    def name(self, value: str) -> None:
        self.inner.name = value

    def get_params(self) -> dict[str, Any]:
        return {**self.inner.get_params(), "fit_window": self.steps}

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> FitWindow:
        ordered = df.sort_values(["unique_id", "ds"], kind="stable")
        self.inner.fit(tail_per_series(ordered, self.steps), ctx)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        return self.inner.predict(h, history=history, X_future=X_future, quantiles=quantiles)


class PluginForecaster:
    """A plugin's forecaster behind the protocol's guarantees.

    Supplies ``name`` and ``get_params`` (the plugin's own when it has one), hands ``fit`` a
    frame sorted by ``unique_id, ds``, and checks and normalises what ``predict`` returns
    (columns ``unique_id, ds, yhat`` + the requested quantiles, sorted); a forecast that breaks
    the contract is a :class:`~tidecast.errors.PluginError`.
    """

    def __init__(self, inner: Any, name: str, params: dict[str, Any], path: str) -> None:
        self.inner, self.name, self.path, self._params = inner, name, path, dict(params)

    @property
    def native_intervals(self) -> bool:
        return bool(getattr(self.inner, "native_intervals", False))

    def get_params(self) -> dict[str, Any]:
        own = getattr(self.inner, "get_params", None)
        return dict(own()) if callable(own) else dict(self._params)

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> PluginForecaster:
        data = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
        try:
            self.inner.fit(data, ctx)
        except TidecastError:
            raise
        except Exception as exc:
            raise PluginError(f"candidate '{self.name}': '{self.path}' fit raised {type(exc).__name__}: {exc}") from exc
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        qs = [float(q) for q in quantiles]
        if history is not None:
            history = history.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
        try:
            out = self.inner.predict(h, history=history, X_future=X_future, quantiles=qs)
        except TidecastError:
            raise
        except Exception as exc:
            raise PluginError(f"candidate '{self.name}': '{self.path}' predict raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(out, pd.DataFrame):
            raise PluginError(f"candidate '{self.name}': '{self.path}' predict returned {type(out).__name__}, not a DataFrame")
        need = ["unique_id", "ds", "yhat", *(quantile_column(q) for q in qs)]
        missing = [c for c in need if c not in out.columns]
        if missing:
            raise PluginError(f"candidate '{self.name}': the forecast of '{self.path}' lacks column(s) {', '.join(missing)}")
        out = out[need].copy()
        out["ds"] = pd.to_datetime(out["ds"])
        return finish(out, qs)


def _looks_like_forecaster(obj: Any) -> bool:
    """A tidecast forecaster (fit(df, ctx) / predict(h, history=..., ...)) rather than a regressor."""
    if isinstance(obj, Forecaster):
        return True
    predict = getattr(obj, "predict", None)
    if predict is None or not callable(getattr(obj, "fit", None)):
        return False
    try:
        params = inspect.signature(predict).parameters
    except (TypeError, ValueError):
        return False
    return "history" in params or "quantiles" in params or "X_future" in params


def _build_plugin(name: str, kind: str, params: dict[str, Any], fit_window: int | None) -> Forecaster:
    builder = load_object(kind, what=f"candidate '{name}': kind")
    try:
        sig = inspect.signature(builder)
        named = set(sig.parameters)
    except (TypeError, ValueError):
        named = set()
    ours = {k: params[k] for k in ML_PARAMS if k in params and k not in named}
    theirs = {k: v for k, v in params.items() if k not in ours}
    try:
        obj = builder(**theirs)
    except TypeError as exc:
        raise PluginError(f"candidate '{name}': calling '{kind}' with parameters {sorted(theirs)} failed: {exc}") from exc
    except ModelError:
        raise
    except Exception as exc:
        raise PluginError(f"candidate '{name}': '{kind}' raised {type(exc).__name__}: {exc}") from exc
    if _looks_like_forecaster(obj):
        if ours:
            raise PluginError(
                f"candidate '{name}': parameter(s) {', '.join(sorted(ours))} are for regressors; "
                f"'{kind}' returned a forecaster and does not name them in its signature"
            )
        forecaster = PluginForecaster(obj, name, params, kind)
        return FitWindow(forecaster, fit_window) if fit_window else forecaster
    if callable(getattr(obj, "fit", None)) and callable(getattr(obj, "predict", None)):
        return SklearnModel(obj, name=name, fit_window=fit_window, **ours)
    raise PluginError(
        f"candidate '{name}': '{kind}' returned {type(obj).__name__}, which is neither a forecaster "
        "(fit(df, ctx) and predict(h, history=..., X_future=..., quantiles=...)) nor a regressor (fit(X, y) and predict(X))"
    )


def build_forecaster(
    name: str,
    kind: str,
    params: dict[str, Any] | None,
    *,
    freq: str,
    fit_window: int | str | None = None,
    search_path: str | Path | None = None,
) -> Forecaster:
    """The forecaster of one candidate.

    ``kind`` is a built-in (:data:`BUILTINS`) or an import path ``package.module:function`` whose
    function is called with ``params`` and returns either a forecaster or an sklearn-style
    regressor (wrapped like ``kind: sklearn``). Durations in ``season_length``, ``window_size``,
    ``lags`` and ``rolling[].window`` become steps of ``freq``, and so does ``fit_window``.
    ``search_path`` (the project folder) is put on ``sys.path`` for good (see
    :func:`~tidecast.models.plugins.add_search_path`), so plugins there import now and when the
    pickled model is loaded in this process.
    """
    params = convert_durations(dict(params or {}), freq, name=name)
    window: int | None = None
    if fit_window is not None:
        try:
            window = to_steps(fit_window, freq, field="fit_window")
        except SpecError as exc:
            raise ModelError(f"candidate '{name}': {exc.message}") from None
        if window < 1:
            raise ModelError(f"candidate '{name}': fit_window must be at least one step")
    if ":" in kind:
        add_search_path(search_path)
        return _build_plugin(name, kind, params, window)
    builder = BUILTINS.get(kind)
    if builder is None:
        guess = _did_you_mean(kind)
        hint = f"did you mean '{guess}'? " if guess else ""
        raise ModelError(
            f"candidate '{name}': unknown model kind '{kind}' ({hint}built-ins: {', '.join(BUILTINS)}; "
            "or an import path 'package.module:function')"
        )
    for key in ("name", "fit_window"):
        if key in params:
            raise ModelError(f"candidate '{name}': '{key}' is not a model parameter (it is set on the candidate)")
    accepted = inspect.signature(builder).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        for key in params:
            if key not in accepted:
                allowed = [p for p in accepted if p not in ("name", "fit_window")]
                raise ModelError(
                    f"candidate '{name}': {kind} does not accept parameter '{key}' "
                    f"(accepted: {', '.join(allowed) or 'none'})"
                )
    try:
        return builder(name=name, fit_window=window, **params)
    except ModelError:
        raise
    except TypeError as exc:
        raise ModelError(f"candidate '{name}': {kind} rejects its parameters: {exc}") from exc
