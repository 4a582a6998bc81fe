"""What a fitted model shows of itself, for the explain step (:mod:`tidecast.reporting.explain`):
the innermost forecaster under the wrappers, the group of each of its features, SHAP values of
tree models and the fitted components (trend, seasons) of statistical ones."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast.data.features import time_feature_names
from tidecast.frames import ID, TARGET, TIME
from tidecast.models._time import add_time

#: Rows of the feature matrix SHAP explains.
SHAP_ROWS = 2000
#: Trailing stretch of the fitted components kept for the report (enough to see a weekly season twice).
COMPONENT_DAYS = 21
@dataclass
class ShapResult:
    """SHAP values of a sample of rows: ``values[i, j]`` is feature ``j``'s contribution to row ``i``."""

    values: np.ndarray
    data: pd.DataFrame
    base_value: float
    importance: pd.DataFrame
    """``feature, group, mean_abs_shap``, largest first."""
    model: str
    """Which fit was explained ("the production refit" or "fit up to <cutoff>")."""



# ----------------------------------------------------------------------------------- helpers
def unwrap(model: Any) -> Any:
    """The innermost forecaster under the conformal and target-transform wrappers."""
    seen = 0
    while hasattr(model, "inner") and seen < 10:
        model = model.inner
        seen += 1
    return model


def feature_groups(names: list[str], spec: Any) -> dict[str, str]:
    """``feature -> group`` (lags, calendar, exogenous, static, other) for a model's feature names."""
    try:
        calendar = set(time_feature_names(spec.features, spec.data.frequency))
    except Exception:
        calendar = set()
    calendar |= {"minute", "hour", "weekday", "day", "month", "dayofyear", "weekend", "holiday"}
    exog = {c.name for c in spec.data.exogenous_columns}
    static = set(spec.data.static_columns)
    out = {}
    for name in names:
        if name.startswith(("lag", "rolling_", "expanding_", "ewm_")) or name.endswith("_lag1"):
            out[name] = "lags"
        elif name in calendar or name.startswith("fourier_"):
            out[name] = "calendar"
        elif name in exog:
            out[name] = "exogenous"
        elif name in static:
            out[name] = "static"
        else:
            out[name] = "other"
    return out


# ------------------------------------------------------------------------------------- SHAP
def mlforecast_parts(model: Any) -> tuple[Any, Any] | None:
    """(the MLForecast object, its fitted estimator) of a tidecast ML model, else None."""
    inner = unwrap(model)
    fcst = getattr(inner, "_fcst", None)
    if fcst is None or not hasattr(fcst, "models_"):
        return None
    estimator = fcst.models_.get("model") if isinstance(fcst.models_, dict) else None
    if isinstance(estimator, list):  # the direct strategy: one model per step; explain step 1
        estimator = estimator[0] if estimator else None
    return (fcst, estimator) if estimator is not None else None


def is_tree_model(model: Any) -> bool:
    """Whether ``model`` is an ML model whose estimator SHAP's TreeExplainer can read."""
    parts = mlforecast_parts(model)
    if parts is None:
        return False
    estimator = parts[1]
    module = type(estimator).__module__
    name = type(estimator).__name__
    if module.startswith(("lightgbm", "xgboost", "catboost")):
        return True
    return module.startswith("sklearn.ensemble") or name.startswith(("DecisionTree", "ExtraTree"))


def feature_matrix(model: Any, data: pd.DataFrame, *, rows: int = SHAP_ROWS, seed: int = 0) -> pd.DataFrame:
    """The features the ML model's estimator sees for a sample of ``rows`` rows of ``data``
    (built by a copy of the model's own MLForecast, so the columns are exactly the trained ones)."""
    parts = mlforecast_parts(model)
    if parts is None:
        raise ValueError("not an mlforecast-based model")
    fcst, estimator = parts
    inner = unwrap(model)
    ctx = inner._ctx
    exog = list(getattr(inner, "_exog", []))
    static = list(getattr(inner, "_static", []))
    n_series = max(1, data[ID].nunique())
    need = int(inner._needed()) if hasattr(inner, "_needed") else 0
    per_series = need + int(np.ceil(4 * rows / n_series)) + 1
    cols = [ID, TIME, TARGET, *[c for c in [*exog, *static] if c in data.columns]]
    recent = data[cols].groupby(ID, sort=False, observed=True).tail(per_series).reset_index(drop=True)
    frame, _ = add_time(recent, ctx.features, timezone=ctx.timezone, freq=ctx.freq, name=inner.name)
    prepared = copy.deepcopy(fcst).preprocess(frame, static_features=static, dropna=True)
    names = list(getattr(fcst.ts, "features_order_", None) or getattr(estimator, "feature_name_", []))
    matrix = prepared[names]
    if len(matrix) > rows:
        matrix = matrix.sample(rows, random_state=seed).sort_index()
    return matrix.reset_index(drop=True)


def shap_values(
    model: Any, data: pd.DataFrame, spec: Any, *, rows: int = SHAP_ROWS, seed: int = 0, label: str = ""
) -> ShapResult:
    """SHAP values of a tree model on a sample of its feature matrix built from ``data``."""
    import shap

    _, estimator = mlforecast_parts(model)  # type: ignore[misc]
    matrix = feature_matrix(model, data, rows=rows, seed=seed)
    explainer = shap.TreeExplainer(estimator)
    values = np.asarray(explainer.shap_values(matrix, check_additivity=False), dtype=float)
    if values.ndim == 3:  # some explainers return one matrix per output
        values = values[0]
    base = explainer.expected_value
    base_value = float(np.ravel(base)[0]) if np.ndim(base) else float(base)
    groups = feature_groups(list(matrix.columns), spec)
    importance = (
        pd.DataFrame(
            {
                "feature": list(matrix.columns),
                "group": [groups[c] for c in matrix.columns],
                "mean_abs_shap": np.abs(values).mean(axis=0),
            }
        )
        .sort_values("mean_abs_shap", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    return ShapResult(values=values, data=matrix, base_value=base_value, importance=importance, model=label)


# ----------------------------------------------------------------------------- components
def fitted_components(model: Any, *, max_series: int = 3, days: int = COMPONENT_DAYS) -> pd.DataFrame | None:
    """Trend/seasonal/remainder of the fitted series where the statistical library exposes them
    (statsforecast MSTL, also under deseasonalised ETS/ARIMA), else None."""
    inner = unwrap(model)
    fitted = getattr(inner, "_fitted", None)
    tail = getattr(inner, "_tail", None)
    if not isinstance(fitted, dict) or not isinstance(tail, pd.DataFrame):
        return None
    frames = []
    for uid, fit in list(fitted.items())[:max_series]:
        parts = getattr(fit, "model_", None)
        if not isinstance(parts, pd.DataFrame) or "trend" not in parts.columns:
            continue
        stamps = tail.loc[tail[ID].astype(str) == str(uid), TIME].to_numpy()
        if len(stamps) != len(parts):
            continue
        frame = parts.reset_index(drop=True).copy()
        frame.insert(0, TIME, stamps)
        frame.insert(0, ID, str(uid))
        frames.append(frame[frame[TIME] > frame[TIME].max() - pd.Timedelta(days=days)])
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)
