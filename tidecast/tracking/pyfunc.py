"""A fitted tidecast forecaster as an MLflow pyfunc model, servable by ``mlflow models serve`` unchanged.

The logged model holds two artifacts: the pickled :class:`~tidecast.models.base.Forecaster` and a
JSON *model card* (frequency, input window, horizon, quantiles, the exogenous columns a caller
must supply, and the time-feature spec so the model computes calendar/Fourier columns itself).

Callers send the recent history (``ds``, ``y``, optional ``unique_id`` and exogenous columns) and,
for models with future exogenous inputs, the future rows with ``y`` left empty::

    model = mlflow.pyfunc.load_model("models:/power@champion")
    model.predict(history_df, params={"horizon": 24, "quantiles": [0.1, 0.9]})
    # -> unique_id, ds, yhat, q0.1, q0.9
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pandas as pd

try:  # mlflow is a hard dependency; the guard keeps this module importable for docs builds
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

from tidecast import __version__, calendar
from tidecast.data.features import add_time_features, time_feature_names
from tidecast.faults import fault_point
from tidecast.frames import ID, POINT, TARGET, TIME, future_index, quantile_column
from tidecast.models.base import FitContext
from tidecast.spec import FeatureSpec
from tidecast.training.reference import REFERENCE_FILE, reference_profile, write_reference

if TYPE_CHECKING:
    from tidecast.spec import Spec

log = logging.getLogger("tidecast.tracking")

MODEL_FILE = "forecaster.pkl"
CARD_FILE = "model_card.json"
CARD_VERSION = 1
DEFAULT_SERIES = "series"
# what a logged model needs besides tidecast; a library is listed when the pickled model refers to it
_OPTIONAL_REQUIREMENTS = {
    "statsforecast": "statsforecast",
    "mlforecast": "mlforecast",
    "utilsforecast": "utilsforecast",
    "lightgbm": "lightgbm",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "holidays": "holidays",
}


# ------------------------------------------------------------------------------------ the card
def model_card(select: dict[str, Any], spec: Spec | None = None) -> dict[str, Any]:
    """What a caller of the logged model needs to know, and what the model needs to build its inputs."""
    ctx: FitContext = select["context"]
    features = ctx.features if ctx.features is not None else (spec.features if spec is not None else FeatureSpec())
    features_dump = features.model_dump(mode="json") if hasattr(features, "model_dump") else dict(features or {})
    # ctx.exog_future holds the user's known-future columns; calendar/Fourier columns come from ds
    time_columns = _time_feature_names(features, ctx.freq)
    exog_future_declared = [c for c in ctx.exog_future if c not in time_columns]
    series = select.get("series_ids")
    routes = select.get("per_series") or {}
    return {
        "card_version": CARD_VERSION,
        "model": select.get("winner"),
        "kind": select.get("kind"),
        "params": _jsonable(select.get("params") or {}),
        "freq": ctx.freq,
        "input_window": int(ctx.input_window),
        "horizon": int(select.get("horizon") or ctx.horizon),
        "quantiles": [float(q) for q in (select.get("quantiles") or [])],
        "exog_future": exog_future_declared,
        "exog_past": list(ctx.exog_past),
        "static": list(ctx.static),
        "time_features": features_dump,
        "time_feature_columns": list(time_columns),
        "timezone": ctx.timezone,
        "holidays_country": ctx.holidays_country or features_dump.get("holidays_country"),
        "trained_until": select.get("trained_until"),
        "n_series": select.get("n_series"),
        # selection.scope per_series: which candidate forecasts each series (any other: the fallback)
        "per_series": (
            {"mapping": dict(routes.get("mapping") or {}), "fallback": routes.get("fallback")} if routes else None
        ),
        "series_ids": list(series) if series is not None else None,
        "hierarchy": select.get("hierarchy"),  # a reconciled model: callers send every bottom series
        "target_transform": spec.target.transform if spec is not None else None,
        "project": spec.project if spec is not None else None,
    }


def _time_feature_names(features: Any, freq: str) -> list[str]:
    if not _has_time_features(features):
        return []
    return list(time_feature_names(features, freq))


def _has_time_features(features: Any) -> bool:
    if features is None:
        return False
    dump = features.model_dump() if hasattr(features, "model_dump") else dict(features)
    return bool(dump.get("calendar") or dump.get("fourier"))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------ input handling
def _fail(message: str) -> NoReturn:
    raise ValueError(message)


def split_input(
    model_input: pd.DataFrame, card: dict[str, Any], horizon: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Validate the caller's frame and split it into (history, future exogenous rows).

    Rows after a series' last observed ``y`` whose ``y`` is missing are its future rows. Raises
    ``ValueError`` naming the series and the problem: unsorted or duplicated timestamps, a step
    off the model's frequency, fewer than ``input_window`` points, a missing ``y`` inside the
    history, or missing exogenous columns/values.
    """
    if not isinstance(model_input, pd.DataFrame):
        _fail(f"model input must be a pandas DataFrame, got {type(model_input).__name__}")
    df = model_input.copy()
    for column in (TIME, TARGET):
        if column not in df.columns:
            _fail(f"model input has no '{column}' column (columns: {', '.join(map(str, df.columns))})")
    if ID not in df.columns:
        ids = card.get("series_ids") or []
        if len(ids) > 1:
            _fail(f"model input has no '{ID}' column; this model was trained on {len(ids)} series, name them")
        df.insert(0, ID, ids[0] if ids else DEFAULT_SERIES)
    df[ID] = df[ID].astype(str)
    ds = pd.to_datetime(df[TIME], errors="coerce", utc=False)
    if ds.isna().any():
        bad = df.loc[ds.isna(), TIME].iloc[0]
        _fail(f"model input: column '{TIME}' has values that are not timestamps (e.g. {bad!r})")
    if getattr(ds.dt, "tz", None) is not None:
        ds = ds.dt.tz_convert("UTC").dt.tz_localize(None)
    df[TIME] = ds
    df[TARGET] = pd.to_numeric(df[TARGET], errors="coerce").astype(float)

    freq = card["freq"]
    window = int(card["input_window"])
    needs_future = list(card.get("exog_future") or [])
    past_cols = list(card.get("exog_past") or [])
    missing = [c for c in [*needs_future, *past_cols] if c not in df.columns]
    if missing:
        _fail(f"model input lacks the exogenous column(s) {', '.join(missing)} this model was trained with")

    histories, futures = [], []
    for uid, part in df.groupby(ID, sort=False, observed=True):
        times = part[TIME]
        if not times.is_monotonic_increasing:
            _fail(f"series '{uid}': '{TIME}' is not sorted ascending")
        if times.duplicated().any():
            _fail(f"series '{uid}': duplicated timestamp {times[times.duplicated()].iloc[0]}")
        off = calendar.first_irregular(times, freq)  # fixed steps, or the anchors of a calendar frequency
        if off is not None:
            at = times.iloc[off]
            _fail(f"series '{uid}': timestamps are not regular on '{freq}' (a step of {at - times.iloc[off - 1]} before {at})")
        observed = part[TARGET].notna().to_numpy()
        if not observed.any():
            _fail(f"series '{uid}': no observed '{TARGET}' values")
        last = int(np.flatnonzero(observed)[-1])
        history, future = part.iloc[: last + 1], part.iloc[last + 1 :]
        if history[TARGET].isna().any():
            at = history.loc[history[TARGET].isna(), TIME].iloc[0]
            _fail(f"series '{uid}': '{TARGET}' is missing at {at} inside the history (fill it or drop the gap)")
        if len(history) < window:
            _fail(f"series '{uid}': {len(history)} points of history, the model needs at least {window} (input_window)")
        history = history.iloc[-window:]
        for column in past_cols + needs_future:
            if history[column].isna().any():
                _fail(f"series '{uid}': exogenous column '{column}' has missing values in the history")
        if needs_future:
            if len(future) < horizon:
                _fail(
                    f"series '{uid}': {len(future)} future row(s) with {', '.join(needs_future)}, "
                    f"need {horizon} (horizon); append them with '{TARGET}' empty"
                )
            future = future.iloc[:horizon]
            for column in needs_future:
                if future[column].isna().any():
                    _fail(f"series '{uid}': future exogenous column '{column}' has missing values")
        histories.append(history)
        futures.append(future)
    history = pd.concat(histories, ignore_index=True)
    future = pd.concat(futures, ignore_index=True) if needs_future else None
    return history, future


def _future_frame(
    history: pd.DataFrame, supplied: pd.DataFrame | None, card: dict[str, Any], horizon: int
) -> pd.DataFrame | None:
    """The ``X_future`` the forecaster sees: the supplied exogenous rows or the future index, plus time features."""
    needs_future = list(card.get("exog_future") or [])
    time_cols = list(card.get("time_feature_columns") or [])
    if not needs_future and not time_cols:
        return None
    if supplied is not None:
        future = supplied[[ID, TIME, *needs_future]].reset_index(drop=True)
    else:
        future = future_index(history[[ID, TIME]], horizon, card["freq"])
    return future


def add_card_time_features(frame: pd.DataFrame, card: dict[str, Any]) -> pd.DataFrame:
    """Recompute the calendar/holiday/Fourier columns of the card's feature spec on ``frame``."""
    if not card.get("time_feature_columns"):
        return frame
    features = FeatureSpec.model_validate(card["time_features"])
    stale = [c for c in card["time_feature_columns"] if c in frame.columns]
    return add_time_features(frame.drop(columns=stale), features, timezone=card.get("timezone"), freq=card["freq"])


def _check_params(params: dict[str, Any] | None, card: dict[str, Any]) -> tuple[int, list[float]]:
    params = dict(params or {})
    horizon = params.get("horizon")
    horizon = int(card["horizon"]) if horizon is None else horizon
    if isinstance(horizon, float) and horizon.is_integer():
        horizon = int(horizon)
    if not isinstance(horizon, int | np.integer) or isinstance(horizon, bool) or horizon < 1:
        _fail(f"params.horizon must be a positive integer, got {horizon!r}")
    quantiles = params.get("quantiles")
    quantiles = list(card.get("quantiles") or []) if quantiles is None else quantiles
    if isinstance(quantiles, str | float | int):
        quantiles = [quantiles]
    try:
        quantiles = sorted({float(q) for q in quantiles})
    except (TypeError, ValueError):
        _fail(f"params.quantiles must be a list of numbers, got {quantiles!r}")
    bad = [q for q in quantiles if not (0 < q < 1) or math.isnan(q)]
    if bad:
        _fail(f"params.quantiles must lie strictly between 0 and 1, got {bad}")
    return int(horizon), quantiles


def check_finite(out: pd.DataFrame, columns: list[str]) -> None:
    """Raise ``ValueError`` when a forecast value is NaN or infinite, naming the series, the time and the
    column: a model fed inputs far outside what it was trained on (a temperature of 1e150, say) can
    overflow, and a forecast of nulls must not pass for an answer."""
    values = out[columns].to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row, col = (int(i[0]) for i in np.nonzero(bad))
    raise ValueError(
        f"series '{out[ID].iloc[row]}': the model's forecast is not finite ({columns[col]} at {out[TIME].iloc[row]}; "
        f"{int(bad.any(axis=1).sum())} of {len(out)} row(s)): an input lies far outside what it was trained on"
    )


def forecast_with(
    forecaster: Any, card: dict[str, Any], model_input: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The pyfunc's prediction, usable without MLflow: validate, build features, forecast."""
    horizon, quantiles = _check_params(params, card)
    history, supplied = split_input(model_input, card, horizon)
    future = _future_frame(history, supplied, card, horizon)
    if card.get("time_feature_columns"):
        history = add_card_time_features(history, card)
        if future is not None:
            future = add_card_time_features(future, card)
    out = forecaster.predict(horizon, history=history, X_future=future, quantiles=quantiles)
    columns = [ID, TIME, POINT, *(quantile_column(q) for q in quantiles)]
    missing = [c for c in columns if c not in out.columns]
    if missing:
        raise ValueError(f"the forecaster returned no column(s) {', '.join(missing)}")
    out = out[columns].reset_index(drop=True)
    out[ID] = out[ID].astype(str)
    check_finite(out, columns[2:])
    return out


# ------------------------------------------------------------------------------- the pyfunc
class TidecastModel(PythonModel):
    """MLflow pyfunc wrapper around a pickled tidecast forecaster and its model card."""

    def load_context(self, context: Any) -> None:
        import cloudpickle

        fault_point("pyfunc.load")
        with open(context.artifacts["forecaster"], "rb") as handle:
            self.forecaster = cloudpickle.load(handle)
        self.card = json.loads(Path(context.artifacts["model_card"]).read_text(encoding="utf-8"))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecast ``params['horizon']`` steps (default: the trained horizon) from the end of each series' history."""
        if not hasattr(self, "forecaster"):
            self.load_context(context)
        return forecast_with(self.forecaster, self.card, model_input, params)


# ------------------------------------------------------------------------------- input example
def input_example(features: pd.DataFrame, card: dict[str, Any], *, max_series: int = 1) -> pd.DataFrame:
    """A valid model input built from the training frame: the last input_window rows of a series
    (of every bottom series for a reconciled hierarchical model), plus ``horizon`` future rows
    (with ``y`` empty) when the model needs future exogenous values."""
    window, horizon = int(card["input_window"]), int(card["horizon"])
    exog = [*card.get("exog_past", []), *card.get("exog_future", [])]
    columns = [ID, TIME, TARGET, *[c for c in exog if c in features.columns]]
    frames = []
    groups = list(features.groupby(ID, sort=False, observed=True))
    bottom = set((card.get("hierarchy") or {}).get("parents") or ())
    for _, part in [g for g in groups if str(g[0]) in bottom] if bottom else groups[:max_series]:
        part = part.sort_values(TIME)
        if card.get("exog_future"):
            history = part.iloc[-(window + horizon) : -horizon][columns]
            future = part.iloc[-horizon:][columns].copy()
            future[TARGET] = np.nan
            frames.append(pd.concat([history, future], ignore_index=True))
        else:
            frames.append(part.iloc[-window:][columns])
    example = pd.concat(frames, ignore_index=True)
    example[ID] = example[ID].astype(str)
    # numbers as doubles in the signature: a caller's 3 and 3.0 both fit, and so does a missing value
    for column in example.columns[2:]:
        if pd.api.types.is_numeric_dtype(example[column]) and not pd.api.types.is_bool_dtype(example[column]):
            example[column] = example[column].astype(float)
    return example


def requirements(model_bytes: bytes) -> list[str]:
    """pip requirements of the logged model: tidecast, mlflow, pandas, numpy, cloudpickle and the
    model libraries the pickled forecaster refers to, pinned to the installed versions."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["mlflow", "pandas", "numpy", "cloudpickle", "pyarrow", "pydantic"]
    names += [dist for module, dist in _OPTIONAL_REQUIREMENTS.items() if module.encode() in model_bytes]
    out = [f"tidecast=={__version__}"]
    for name in dict.fromkeys(names):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return out


def log_forecaster(
    select_output: dict[str, Any],
    spec: Spec,
    *,
    features: pd.DataFrame | None = None,
    name: str = "model",
    run_id: str | None = None,
) -> str:
    """Log the selected, refitted forecaster as a pyfunc model in the active MLflow run; returns its model URI.

    Uses the fluent API, so the caller points MLflow at the store first
    (:func:`tidecast.tracking.store.active_uris`) and starts (or resumes) the run; with ``run_id``
    this function resumes that run itself. The signature carries the ``horizon`` and ``quantiles``
    params; the input example is the last window of ``features`` when given.

    >>> with active_uris(spec), mlflow.start_run():       # doctest: +SKIP
    ...     uri = log_forecaster(select, spec, features=frame)
    """
    import cloudpickle
    import mlflow
    from mlflow.models import infer_signature

    card = model_card(select_output, spec)
    if card["series_ids"] is None and features is not None:
        ids = features[ID].astype(str).unique()
        card["series_ids"] = [str(i) for i in ids[:1000]] if len(ids) <= 1000 else None
    model_bytes = cloudpickle.dumps(select_output["model"])
    with tempfile.TemporaryDirectory(prefix="tidecast-model-") as tmp:
        model_path = Path(tmp) / MODEL_FILE
        model_path.write_bytes(model_bytes)
        card_path = Path(tmp) / CARD_FILE
        card_path.write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
        artifacts = {"forecaster": str(model_path), "model_card": str(card_path)}
        reference = _reference_file(features, spec, Path(tmp))
        if reference is not None:
            artifacts["reference_profile"] = str(reference)
        params = {"horizon": int(card["horizon"]), "quantiles": [float(q) for q in card["quantiles"]]}
        example = signature = None
        if features is not None and len(features):
            example = input_example(features, card)
            output = forecast_with(select_output["model"], card, example, params)
            signature = _optional_id(infer_signature(example, output, params=params))
        kwargs: dict[str, Any] = {
            "name": name,
            "python_model": str(Path(__file__).with_name("_pyfunc_entry.py")),
            "artifacts": artifacts,
            "signature": signature,
            "input_example": (example, params) if example is not None else None,
            "pip_requirements": requirements(model_bytes),
            "metadata": {"tidecast_card_version": CARD_VERSION, "freq": card["freq"], "horizon": card["horizon"]},
        }
        if run_id is not None and (mlflow.active_run() is None or mlflow.active_run().info.run_id != run_id):
            with mlflow.start_run(run_id=run_id):
                info = mlflow.pyfunc.log_model(**kwargs)
        else:
            info = mlflow.pyfunc.log_model(**kwargs)
    return info.model_uri


def _reference_file(features: pd.DataFrame | None, spec: Spec, folder: Path) -> Path | None:
    """``reference_profile.json`` (the training data's summary that data drift is measured against) in
    ``folder``; None without features, or when it cannot be computed (the model is logged without it,
    and the monitor asks for a retrain)."""
    if features is None or not len(features):
        return None
    try:
        return write_reference(reference_profile(features, spec), folder / REFERENCE_FILE)
    except Exception as exc:  # monitoring must never block a training
        log.warning("no reference profile logged: %s: %s", type(exc).__name__, exc)
        return None


def _optional_id(signature: Any) -> Any:
    """Single-series callers may leave out ``unique_id``; ``y`` is optional too (future rows leave it empty)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    columns = [
        ColSpec(c.type, c.name, required=False) if c.name in (ID, TARGET) else c for c in signature.inputs.inputs
    ]
    return ModelSignature(inputs=Schema(columns), outputs=signature.outputs, params=signature.params)
