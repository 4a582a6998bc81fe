"""The monitor's steps: a DAG of the same engine as training (driven by :mod:`tidecast.monitoring.run`).

::

    monitor_ingest ─┬─ monitor_clean ── monitor_features ─┬─ data_drift ──┐
                    │                                     │               ├─ monitor_checks
                    ├─ monitor_actuals ── model_drift ────┼───────────────┘
                    └─────────────────────────────────────┴─ monitor_predict

``monitor_ingest``, ``monitor_clean`` and ``monitor_features`` are cached (their key holds the
data's fingerprint, ``as_of`` and ``--input``); the other steps talk to the registry or the
prediction store and run every time. The runner runs independent steps side by side (``monitor_actuals``
beside ``monitor_clean``...); the ones that point MLflow's process-wide settings at the store take
turns inside :func:`tidecast.tracking.store.active_uris` (a lock), so never two at once.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.data.clean import check_spacing
from tidecast.data.clean import clean as clean_frame
from tidecast.data.features import add_time_features
from tidecast.data.long_format import to_long
from tidecast.data.sources import content_fingerprint, read_source, source_label
from tidecast.errors import DataError, TidecastError, TrackingError
from tidecast.frames import ID, TARGET, TIME
from tidecast.monitoring import verdicts
from tidecast.monitoring.drift import detect_drift, load_reference
from tidecast.monitoring.model_drift import baseline_from_tags
from tidecast.monitoring.model_drift import model_drift as score
from tidecast.monitoring.run_spec import lookback_steps, resolve_as_of, run_of, step_of
from tidecast.pipeline.dag import Pipeline, step
from tidecast.pipeline.hashing import source_hash
from tidecast.serving.future import future_rows, read_future
from tidecast.serving.store import store_for
from tidecast.spec import Spec
from tidecast.tracking.registry import CHAMPION, champion_version
from tidecast.tracking.store import active_uris

_DATA_CODE = source_hash("data", "monitoring/steps.py", "monitoring/run_spec.py")


def _ingest_fingerprint(spec: Spec) -> str:
    return content_fingerprint(spec.data)


@step(spec=("data", "target", "forecast", "run"), fingerprint=_ingest_fingerprint, version=_DATA_CODE)
def monitor_ingest(spec: Spec, ctx: Any) -> pd.DataFrame:
    """The data as known at ``as_of``: rows before it, and the next horizon's rows with ``y`` blanked
    (they carry known-in-future exogenous values); canonical long format, as the training's ingest."""
    ctx.progress(0, 2, "reading")
    raw = read_source(spec.data)
    frame = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))
    as_of = resolve_as_of(frame, spec)
    _, horizon = spec.forecast_steps()
    step_ = step_of(spec)
    before = frame[frame[TIME] < as_of]
    if before.empty or before[TARGET].notna().sum() == 0:
        first = frame[TIME].min()
        raise DataError(f"{source_label(spec.data.source)}: no data before as_of {as_of} (the data starts at {first})")
    future = frame[(frame[TIME] >= as_of) & (frame[TIME] < as_of + horizon * step_)].copy()
    future[TARGET] = np.nan
    out = pd.concat([before, future], ignore_index=True).sort_values([ID, TIME], kind="stable").reset_index(drop=True)
    check_spacing(out, step_, spec.data.frequency)
    ctx.progress(2, 2, f"{len(before):,} rows before {as_of}, {len(future):,} future rows")
    return out


def _history(ingested: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """Rows before ``as_of`` without each series' trailing rows that lack ``y`` (those are future rows)."""
    as_of = resolve_as_of(ingested, spec)
    history = ingested[ingested[TIME] < as_of]
    observed = history[TARGET].notna()
    last = history[observed].groupby(ID, observed=True)[TIME].max()
    keep = history[TIME] <= history[ID].map(last)
    return history[keep.fillna(False).to_numpy(dtype=bool)]


@step(spec=("data", "clean", "forecast", "monitoring", "run"), version=_DATA_CODE)
def monitor_clean(monitor_ingest: pd.DataFrame, spec: Spec, ctx: Any) -> pd.DataFrame:
    """The recent history cleaned as the training's clean step does (duplicates, gaps, outliers)."""
    history = _history(monitor_ingest, spec)
    history = history.groupby(ID, observed=True, sort=False).tail(lookback_steps(spec))
    window, _ = spec.forecast_steps()
    result = clean_frame(history, spec.clean, spec.data.frequency, min_length=window)
    (ctx.artifact_dir / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
    too_short = set(result.summary.get("series_too_short") or [])
    frame = result.frame
    if too_short:
        frame = frame[~frame[ID].isin(too_short)].reset_index(drop=True)
    ctx.progress(1, 1, f"{result.summary.get('gaps_filled', 0)} gaps filled, {result.summary.get('outliers', 0)} outliers")
    return frame


@step(spec=("data", "features", "run"), version=_DATA_CODE)
def monitor_features(monitor_clean: pd.DataFrame, spec: Spec, ctx: Any) -> pd.DataFrame:
    """The time features of the training's features step, on the recent history."""
    return add_time_features(monitor_clean, spec.features, timezone=spec.data.timezone, freq=spec.data.frequency)


def champion(spec: Spec) -> Any:
    """The champion version of the project's registered model (TrackingError when there is none)."""
    found = champion_version(spec)
    if found is None:
        raise TrackingError(
            f"registered model '{spec.model_name}' has no champion yet: train one first (tidecast run)"
        )
    return found


@step(cache=False)
def data_drift(monitor_features: pd.DataFrame, monitor_ingest: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """The recent window of the target and exogenous columns against the champion's reference profile
    (on the values that arrived: those the cleaning filled in do not count)."""
    mv = champion(spec)
    label = f"{spec.model_name} v{mv.version}"
    reference = load_reference(f"models:/{spec.model_name}/{mv.version}", spec=spec, label=label)
    as_of = pd.Timestamp(run_of(spec).as_of) if run_of(spec).as_of else None
    if as_of is None:
        as_of = pd.Timestamp(monitor_features[TIME].max()) + step_of(spec)
    observed = verdicts.observed_only(monitor_features, monitor_ingest, reference.get("columns") or [TARGET])
    report = detect_drift(observed, reference, spec.monitoring.data_drift, as_of=as_of)
    ctx.progress(1, 1, report.summary())
    return {"version": str(mv.version), "report": report}


@step(cache=False)
def monitor_actuals(monitor_ingest: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """Log the observed target values of the recent windows to the prediction store (duplicates averaged);
    values that arrive late are logged by a later run, whose windows are recomputed."""
    as_of = resolve_as_of(monitor_ingest, spec)
    ms = spec.monitoring.model_drift
    window = spec.steps(ms.window, "monitoring.model_drift.window") * step_of(spec)
    since = as_of - (ms.windows + 1) * window
    rows = monitor_ingest[(monitor_ingest[TIME] >= since) & (monitor_ingest[TIME] < as_of)]
    rows = rows[rows[TARGET].notna()]
    actuals = rows.groupby([ID, TIME], observed=True, sort=True)[TARGET].mean().reset_index()
    count = store_for(spec).log_actuals(actuals) if len(actuals) else 0
    ctx.progress(1, 1, f"{count} actuals logged")
    return {"logged": int(count), "since": str(since), "until": str(as_of)}


@step(cache=False)
def model_drift(monitor_actuals: dict[str, Any], spec: Spec, ctx: Any) -> dict[str, Any]:
    """The champion's logged forecasts joined with the actuals, window by window, against its baseline."""
    mv = champion(spec)
    baseline = baseline_from_tags(dict(mv.tags or {}), folds=spec.backtest.folds)
    scales = None
    with contextlib.suppress(TidecastError):
        scales = load_reference(f"models:/{spec.model_name}/{mv.version}", spec=spec).get("mase_scale")
    report = score(
        store_for(spec),
        spec,
        model_name=spec.model_name,
        version=str(mv.version),
        baseline=baseline,
        as_of=pd.Timestamp(monitor_actuals["until"]),
        scales=scales,
    )
    ctx.progress(1, 1, report.summary())
    return {"version": str(mv.version), "report": report}


@step(cache=False)
def monitor_checks(
    data_drift: dict[str, Any], model_drift: dict[str, Any], monitor_ingest: pd.DataFrame,
    monitor_features: pd.DataFrame, spec: Spec, ctx: Any,
) -> dict[str, Any]:
    """Both checks, for the decision to retrain, and every check's state (:mod:`tidecast.monitoring.verdicts`):
    whether the feed still arrives (against ``as_of``, or now), and the series the cleaning dropped."""
    as_of = pd.Timestamp(run_of(spec).as_of) if run_of(spec).as_of else None
    window = spec.monitoring.data_drift.window
    feed = verdicts.feed_check(
        monitor_ingest, as_of=as_of, now=pd.Timestamp.now(tz="UTC").tz_localize(None),
        window=spec.steps(window, "monitoring.data_drift.window") * step_of(spec), window_label=str(window),
    )
    checks = [
        feed,
        *verdicts.data_checks(data_drift["report"]),
        *verdicts.dropped_series(monitor_ingest, monitor_features, as_of),
        verdicts.model_check(model_drift["report"]),
    ]
    ctx.progress(1, 1, f"{verdicts.overall(checks)}")
    return {"data_drift": data_drift, "model_drift": model_drift, "checks": checks}


def future_exogenous(
    ingested: pd.DataFrame, history: pd.DataFrame, columns: list[str], horizon: int, spec: Spec
) -> pd.DataFrame:
    """The known-in-future values of ``columns`` for the ``horizon`` steps after each series' history, on
    the regular grid: duplicated readings averaged, inner gaps of up to ``clean.gaps.max_gap`` interpolated.
    A DataError names the series and how many values it lacks."""
    max_gap = spec.clean.gaps.max_gap
    limit = None if max_gap is None else max(1, spec.steps(max_gap, "clean.gaps.max_gap"))
    last = history.groupby(ID, observed=True)[TIME].max()
    frames = []
    for uid, end in last.items():
        grid = calendar.future_dates(end, horizon, spec.data.frequency)  # on the frequency's anchors
        part = ingested[(ingested[ID] == uid) & (ingested[TIME] > end) & (ingested[TIME] <= grid[-1])]
        values = part.groupby(TIME)[columns].mean().reindex(grid)
        found = int(values.notna().all(axis=1).sum())
        if len(part) and limit is not None:
            values = values.interpolate(limit=limit, limit_area="inside")
        if values.isna().any().any():
            raise DataError(
                f"series '{uid}': the forecast needs the next {horizon} values of {', '.join(columns)} after {end}; "
                f"the data has {found} (append future rows with the target empty)"
            )
        frames.append(values.rename_axis(TIME).reset_index().assign(**{ID: uid}))
    return pd.concat(frames, ignore_index=True)


def _future_values(
    ingested: pd.DataFrame, history: pd.DataFrame, columns: list[str], horizon: int, spec: Spec
) -> pd.DataFrame:
    """The horizon's known-in-future values: the data's own rows after the history (``--as-of``, or
    future rows appended with the target empty), else the spec's ``serving.future`` file (a weather
    forecast), as ``tidecast predict`` does; the data's error when neither covers the horizon."""
    try:
        return future_exogenous(ingested, history, columns, horizon, spec)
    except DataError:
        if not spec.serving.future:
            raise
    path = spec.resolve_path(spec.serving.future)
    values = read_future(spec, path, columns, what="serving.future")
    rows = future_rows(
        history, values, horizon, spec.data.frequency, columns, label=f"serving.future {spec.serving.future}"
    )
    return rows[[ID, TIME, *columns]]


@step(cache=False)
def monitor_predict(monitor_features: pd.DataFrame, monitor_ingest: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """Forecast the next horizon from the last input window with the champion; log it to the prediction store."""
    import mlflow  # lazy: mlflow is heavy, and only this step loads a model

    mv = champion(spec)
    uri = f"models:/{spec.model_name}/{mv.version}"
    with active_uris(spec):
        try:
            model = mlflow.pyfunc.load_model(uri)
        except Exception as exc:
            raise TrackingError(f"cannot load the champion {uri}: {type(exc).__name__}: {exc}") from None
    card = getattr(model.unwrap_python_model(), "card", None) or {}
    window = int(card.get("input_window") or spec.forecast_steps()[0])
    horizon = int(card.get("horizon") or spec.forecast_steps()[1])
    exog = [*card.get("exog_past", []), *card.get("exog_future", [])]
    missing = [c for c in exog if c not in monitor_features.columns]
    if missing:
        raise DataError(f"the champion v{mv.version} needs column(s) {', '.join(missing)} that the data lacks")
    columns = [ID, TIME, TARGET, *exog]
    history = monitor_features.sort_values([ID, TIME]).groupby(ID, observed=True).tail(window)[columns]
    frame = history
    if card.get("exog_future"):
        future = _future_values(monitor_ingest, history, list(card["exog_future"]), horizon, spec)
        future = future.assign(**{c: np.nan for c in columns if c not in future.columns})[columns]
        frame = pd.concat([history, future], ignore_index=True)
        frame = frame.sort_values([ID, TIME], kind="stable").reset_index(drop=True)
    params = {"horizon": horizon, "quantiles": list(card.get("quantiles") or spec.forecast.quantiles)}
    try:
        forecast = model.predict(frame, params=params)
    except ValueError as exc:
        raise DataError(f"the champion v{mv.version} cannot forecast from the recent data: {exc}") from None
    batch = store_for(spec).log_forecast(
        forecast, model_name=spec.model_name, model_version=str(mv.version), alias=CHAMPION, source="monitor"
    )
    ctx.progress(1, 1, f"{len(forecast)} forecast rows logged")
    return {
        "version": str(mv.version),
        "batch_id": batch,
        "rows": len(forecast),
        "start": str(forecast[TIME].min()),
        "end": str(forecast[TIME].max()),
        "forecast": forecast,
    }


MONITOR_STEPS = (
    monitor_ingest,
    monitor_clean,
    monitor_features,
    monitor_actuals,
    data_drift,
    model_drift,
    monitor_checks,
    monitor_predict,
)
CACHED_STEPS = ("monitor_ingest", "monitor_clean", "monitor_features")


def monitor_pipeline() -> Pipeline:
    """The monitoring DAG (see the module docstring)."""
    return Pipeline(MONITOR_STEPS)


__all__ = [
    "CACHED_STEPS",
    "MONITOR_STEPS",
    "champion",
    "future_exogenous",
    "monitor_pipeline",
]
