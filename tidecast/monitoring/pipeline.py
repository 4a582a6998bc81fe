"""The prediction/monitoring pipeline: steps of the same DAG engine as training, and the run that drives them.

::

    monitor_ingest ─┬─ monitor_clean ── monitor_features ─┬─ data_drift ──┐
                    │                                     │               ├─ monitor_checks
                    ├─ monitor_actuals ── model_drift ────┼───────────────┘
                    └─────────────────────────────────────┴─ monitor_predict

:func:`monitor` runs it in two passes under one project lock:

1. up to ``monitor_checks``: read the data as it is known at ``as_of`` (the spec's source, re-read
   because it grows, or ``--input``), clean it and add the time features with the training code,
   log the observed values to the prediction store as actuals, then check data drift (the recent
   window against the champion's reference profile) and model drift (the champion's logged
   forecasts against those actuals);
2. on drift (and when :func:`retrain_policy` allows it) retrain through the training pipeline and
   its promotion gate (:func:`retrain`); then ``monitor_predict``: forecast the next horizon with
   the champion (the new one after a promotion) and log it to the prediction store.

``monitor_ingest``, ``monitor_clean`` and ``monitor_features`` are cached (their key holds the
data's fingerprint, ``as_of`` and ``--input``), so the second pass does not redo them; older
entries of these steps are removed after each run. The other steps talk to the registry or the
store and run every time.

Every run is an MLflow run of the experiment ``<experiment>-monitor`` (drift metrics, the
verdict as a tag, ``monitor_report.json``) and a line of ``.tidecast/monitor-history.jsonl``.

``as_of`` simulates time: the monitor only sees rows strictly before it (future rows of
known-in-future exogenous columns excepted, with ``y`` blanked), and a retrain trains on a copy of
the source's rows before ``as_of`` written under ``.tidecast/monitor/data/`` (the data spec
otherwise unchanged, so time zones, sums and resampling apply as in training).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tidecast.durations import freq_timedelta
from tidecast.errors import DataError, PipelineError, TidecastError, TrackingError
from tidecast.frames import ID, TARGET, TIME
from tidecast.pipeline.dag import Pipeline, step
from tidecast.pipeline.hashing import source_hash
from tidecast.spec import ExogenousColumn, Spec

MONITOR_DIRNAME = "monitor"
HISTORY_FILENAME = "monitor-history.jsonl"
EXPERIMENT_SUFFIX = "-monitor"
SNAPSHOTS_KEPT = 3
_ROW = "__tidecast_row__"
_DATA_CODE = source_hash("data", "monitoring/pipeline.py")


# ------------------------------------------------------------------------------- the run's spec
class MonitorRun(BaseModel):
    """What one monitor run is asked: the simulated time and the data file (the ``run`` section)."""

    model_config = ConfigDict(extra="forbid")

    as_of: str | None = Field(None, description="Only data strictly before this instant (UTC) is seen.")
    input: str | None = Field(None, description="A data file read instead of data.source.")


class MonitorSpec(Spec):
    """A project's spec plus the ``run`` section of one monitor run (it enters the steps' cache keys)."""

    run: MonitorRun = Field(default_factory=MonitorRun)

    def base(self) -> Spec:
        """The project's spec without the run section (with ``--input`` as its data source)."""
        data = self.model_dump(mode="python", exclude={"run"})
        spec = Spec.model_validate(data)
        spec.root = self.root
        spec.source_file = self.source_file
        return spec


def parse_as_of(value: Any, spec: Spec | None = None) -> pd.Timestamp | None:
    """A timestamp as naive UTC. Naive input is read in ``data.timezone`` (like the data), aware input is converted."""
    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"--as-of: cannot read {value!r} as a timestamp (write e.g. '2024-03-01 00:00')") from None
    if ts is pd.NaT:
        raise DataError(f"--as-of: cannot read {value!r} as a timestamp")
    if ts.tzinfo is None:
        tz = spec.data.timezone if spec is not None else None
        if tz:
            ts = ts.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
        else:
            return ts
    return ts.tz_convert("UTC").tz_localize(None)


def monitor_spec(spec: Spec, *, as_of: Any = None, input: str | os.PathLike[str] | None = None) -> MonitorSpec:
    """The spec of one monitor run: ``as_of`` (naive values in ``data.timezone``) and ``input`` (read
    instead of ``data.source``, resolved against the working folder)."""
    data = spec.model_dump(mode="python")
    ts = parse_as_of(as_of, spec)
    source = None
    if input is not None:
        path = Path(input).expanduser()
        source = str(path if path.is_absolute() else (Path.cwd() / path).resolve())
        if not Path(source).exists():
            raise DataError(f"--input: no such file '{input}'")
        data["data"]["source"] = source
        data["data"]["format"] = None
        data["data"]["query"] = data["data"]["table"] = None
    data["run"] = {"as_of": ts.isoformat() if ts is not None else None, "input": source}
    out = MonitorSpec.model_validate(data)
    out.root = spec.root
    out.source_file = spec.source_file
    return out


def _run_of(spec: Spec) -> MonitorRun:
    return getattr(spec, "run", None) or MonitorRun()


def _step(spec: Spec) -> pd.Timedelta:
    return freq_timedelta(spec.data.frequency)


def resolve_as_of(frame: pd.DataFrame, spec: Spec) -> pd.Timestamp:
    """The run's ``as_of``, else one step after the last observed target value."""
    run = _run_of(spec)
    if run.as_of:
        return pd.Timestamp(run.as_of)
    observed = frame.loc[frame[TARGET].notna(), TIME]
    if observed.empty:
        raise DataError(f"{spec.data.source}: no observed '{spec.data.target_column}' value")
    return pd.Timestamp(observed.max()) + _step(spec)


def _lookback_steps(spec: Spec) -> int:
    """History the monitor works on: three times the longest of the drift window and the input window, plus a day."""
    window, _ = spec.forecast_steps()
    drift = spec.steps(spec.monitoring.data_drift.window, "monitoring.data_drift.window")
    day = max(1, int(pd.Timedelta(days=1) / _step(spec)))
    return 3 * max(window, drift) + day


# ----------------------------------------------------------------------------------- the steps
def _ingest_fingerprint(spec: Spec) -> str:
    from tidecast.data.sources import content_fingerprint

    return content_fingerprint(spec.data)


@step(spec=("data", "target", "forecast", "run"), fingerprint=_ingest_fingerprint, version=_DATA_CODE)
def monitor_ingest(spec: Spec, ctx: Any) -> pd.DataFrame:
    """The data as known at ``as_of``: rows before it, and the next horizon's rows with ``y`` blanked
    (they carry known-in-future exogenous values); canonical long format, as the training's ingest."""
    from tidecast.data.clean import check_spacing
    from tidecast.data.sources import read_source, source_label, to_long

    ctx.progress(0, 2, "reading")
    raw = read_source(spec.data)
    frame = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))
    as_of = resolve_as_of(frame, spec)
    _, horizon = spec.forecast_steps()
    step_ = _step(spec)
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
    from tidecast.data.clean import clean as clean_frame

    history = _history(monitor_ingest, spec)
    history = history.groupby(ID, observed=True, sort=False).tail(_lookback_steps(spec))
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
    from tidecast.data.features import add_time_features

    return add_time_features(monitor_clean, spec.features, timezone=spec.data.timezone, freq=spec.data.frequency)


def champion(spec: Spec) -> Any:
    """The champion version of the project's registered model (TrackingError when there is none)."""
    from tidecast.tracking.registry import champion_version

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
    from tidecast.monitoring.drift import detect_drift, load_reference
    from tidecast.monitoring.verdicts import observed_only

    mv = champion(spec)
    label = f"{spec.model_name} v{mv.version}"
    reference = load_reference(f"models:/{spec.model_name}/{mv.version}", spec=spec, label=label)
    as_of = pd.Timestamp(_run_of(spec).as_of) if _run_of(spec).as_of else None
    if as_of is None:
        as_of = pd.Timestamp(monitor_features[TIME].max()) + _step(spec)
    observed = observed_only(monitor_features, monitor_ingest, reference.get("columns") or [TARGET])
    report = detect_drift(observed, reference, spec.monitoring.data_drift, as_of=as_of)
    ctx.progress(1, 1, report.summary())
    return {"version": str(mv.version), "report": report}


@step(cache=False)
def monitor_actuals(monitor_ingest: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """Log the observed target values of the recent windows to the prediction store (duplicates averaged);
    values that arrive late are logged by a later run, whose windows are recomputed."""
    from tidecast.serving.store import store_for

    as_of = resolve_as_of(monitor_ingest, spec)
    ms = spec.monitoring.model_drift
    window = spec.steps(ms.window, "monitoring.model_drift.window") * _step(spec)
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
    from tidecast.monitoring.drift import load_reference
    from tidecast.monitoring.model_drift import baseline_from_tags
    from tidecast.monitoring.model_drift import model_drift as score
    from tidecast.serving.store import store_for

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
    from tidecast.monitoring import verdicts

    as_of = pd.Timestamp(_run_of(spec).as_of) if _run_of(spec).as_of else None
    window = spec.monitoring.data_drift.window
    feed = verdicts.feed_check(
        monitor_ingest, as_of=as_of, now=pd.Timestamp.now(tz="UTC").tz_localize(None),
        window=spec.steps(window, "monitoring.data_drift.window") * _step(spec), window_label=str(window),
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
    from tidecast import calendar

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
    from tidecast.serving.future import future_rows, read_future

    path = spec.resolve_path(spec.serving.future)
    values = read_future(spec, path, columns, what="serving.future")
    rows = future_rows(
        history, values, horizon, spec.data.frequency, columns, label=f"serving.future {spec.serving.future}"
    )
    return rows[[ID, TIME, *columns]]


@step(cache=False)
def monitor_predict(monitor_features: pd.DataFrame, monitor_ingest: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """Forecast the next horizon from the last input window with the champion; log it to the prediction store."""
    import mlflow

    from tidecast.serving.store import store_for
    from tidecast.tracking.registry import CHAMPION
    from tidecast.tracking.store import active_uris

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


# -------------------------------------------------------------------------------- retraining
def _write_snapshot(raw: pd.DataFrame, folder: Path, stamp: str) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"asof-{stamp}.parquet"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        raw.to_parquet(tmp, index=False)
        fmt = "parquet"
    except (ValueError, TypeError, ImportError, Exception):  # pyarrow cannot type a mixed column
        path = path.with_suffix(".csv")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        raw.to_csv(tmp, index=False)
        fmt = "csv"
    os.replace(tmp, path)
    snapshots = sorted(folder.glob("asof-*"), key=lambda p: p.stat().st_mtime)
    for old in snapshots[:-SNAPSHOTS_KEPT]:
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
    return path, fmt


def training_spec(spec: Spec, *, as_of: Any = None, input: str | os.PathLike[str] | None = None) -> Spec:
    """The spec a retrain runs with: the project's, or, with ``as_of``/``input``, one whose source is a
    copy of the raw rows before ``as_of`` (of ``input`` if given) under ``.tidecast/monitor/data/``.

    The copy keeps the source's own columns and formats (the data spec's time zone, sums and
    resampling still apply as in any training); a row's time is read with the same code as
    ingest (:func:`tidecast.data.sources.to_long`), so time zones and DST are handled alike.
    """
    from tidecast.data.sources import read_source, source_label, to_long
    from tidecast.spec import TargetSpec

    mspec = monitor_spec(spec, as_of=as_of, input=input)
    base = mspec.base()
    run = mspec.run
    if run.as_of is None and run.input is None:
        return base
    data = base.data
    raw = read_source(data)
    if run.as_of is not None:
        cut = pd.Timestamp(run.as_of)
        marked = raw.reset_index(drop=True)
        marked[_ROW] = np.arange(len(marked), dtype="float64")
        probe = data.model_copy(update={"exogenous": [*data.exogenous_columns, ExogenousColumn(name=_ROW, known_in_future=False)]})
        long = to_long(marked, probe, TargetSpec(sum_of=list(base.target.sum_of)), source_name=source_label(data.source))
        keep = np.sort(long.loc[long[TIME] < cut, _ROW].to_numpy(dtype="int64"))
        if len(keep) == 0:
            raise DataError(f"{source_label(data.source)}: no data before as_of {cut}")
        raw = raw.reset_index(drop=True).iloc[keep]
        stamp = cut.strftime("%Y%m%dT%H%M%S")
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path, fmt = _write_snapshot(raw, spec.state_dir / MONITOR_DIRNAME / "data", stamp)
    copy = data.model_copy(update={"source": str(path), "format": fmt, "read_options": {}, "query": None, "table": None})
    out = base.model_copy(update={"data": copy})
    out.root = spec.root
    out.source_file = spec.source_file
    return out


def retrain(
    spec: Spec,
    *,
    as_of: Any = None,
    input: str | os.PathLike[str] | None = None,
    callbacks: Any = None,
    report: bool = True,
) -> dict[str, Any]:
    """Run the training pipeline on the data known at ``as_of`` (see :func:`training_spec`); the
    registry's gate decides the promotion. Returns ``{"version", "promoted", "alias", "reason",
    "run_id", "executed"}`` (``version`` None when every step was cached: nothing new to train on)."""
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import run as run_pipeline
    from tidecast.training import preflight

    train = training_spec(spec, as_of=as_of, input=input)
    preflight(train)
    try:
        pipeline = training_pipeline(report=report)
    except TypeError:  # a training pipeline without the report steps
        pipeline = training_pipeline()
    result = run_pipeline(pipeline, train, callbacks=callbacks, lock_timeout=0.0)
    out: dict[str, Any] = {"executed": list(result.executed), "version": None, "promoted": False, "alias": None,
                           "reason": "nothing new to train on: every training step was cached", "run_id": None,
                           "data": train.data.source}
    if "track" in result.executed:
        tracked = result.outputs["track"]
        registration = tracked.get("registration") or {}
        out.update(
            version=registration.get("version"),
            promoted=bool(registration.get("promoted")),
            alias=registration.get("alias"),
            reason=registration.get("reason"),
            run_id=tracked.get("run_id"),
        )
    return out


# ------------------------------------------------------------------------------------ history
def history_path(spec: Spec) -> Path:
    return spec.state_dir / HISTORY_FILENAME


def read_history(spec: Spec) -> list[dict[str, Any]]:
    """The monitor's run history (oldest first); unreadable lines are skipped."""
    path = history_path(spec)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                out.append(item)
    return out


def append_history(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line (a single write, so concurrent writers do not interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------- the decision
@dataclass
class RetrainDecision:
    retrain: bool
    trigger: str | None
    """What asked for it ("data drift: ...", "model drift: ...")."""
    note: str | None = None
    """Why not, when there is drift but no retrain."""


def _duration(spec: Spec, value: Any, field_name: str) -> pd.Timedelta:
    return spec.steps(value, field_name) * _step(spec)


def retrain_policy(
    spec: Spec,
    *,
    as_of: pd.Timestamp,
    data_drift: bool,
    model_alarm: bool,
    trigger: str | None,
    history: list[dict[str, Any]],
    allowed: bool = True,
) -> RetrainDecision:
    """Retrain or not (times are data times: each run's ``as_of``):

    * never without drift, or when retraining is off (``--no-retrain``, ``retrain_on_drift: false``);
    * once the drift (data or model, in an unbroken run of monitor runs) has lasted ``retrain_after``,
      so that the retrain's backtest folds and held-out stretch see the new regime;
    * on data drift alone, not within ``retrain_cooldown`` of the last retrain attempt (the new
      champion's reference needs time to catch up with a lasting change); model drift, measured on
      the current champion's own forecasts, is not held back by the cooldown.
    """
    mon = spec.monitoring
    if not (data_drift or model_alarm):
        return RetrainDecision(False, None)
    if not allowed:
        return RetrainDecision(False, trigger, "retrain off (--no-retrain)")
    if not mon.retrain_on_drift:
        return RetrainDecision(False, trigger, "retrain off (monitoring.retrain_on_drift: false)")
    past = sorted(
        (h for h in history if h.get("as_of") and pd.Timestamp(h["as_of"]) < as_of and h.get("status") != "failed"),
        key=lambda h: pd.Timestamp(h["as_of"]),
    )
    after = _duration(spec, mon.retrain_after, "monitoring.retrain_after")
    if after > pd.Timedelta(0):
        start = as_of
        for entry in reversed(past):
            if not (entry.get("data_drift") or entry.get("model_drift")):
                break
            start = pd.Timestamp(entry["as_of"])
        if as_of - start < after:
            return RetrainDecision(
                False, trigger, f"retrain when the drift has lasted {mon.retrain_after}: at {start + after} UTC"
            )
    if model_alarm:
        return RetrainDecision(True, trigger)
    if mon.retrain_cooldown is not None:
        cooldown = _duration(spec, mon.retrain_cooldown, "monitoring.retrain_cooldown")
        last = next((pd.Timestamp(h["as_of"]) for h in reversed(past) if h.get("retrain_attempted")), None)
        if last is not None and as_of - last < cooldown:
            return RetrainDecision(
                False, trigger, f"retrain skipped: the last one was at {last} UTC, cooldown {mon.retrain_cooldown}"
            )
    return RetrainDecision(True, trigger)


# ------------------------------------------------------------------------------------ the run
@dataclass
class MonitorResult:
    """What one monitor run found and did."""

    project: str
    as_of: str
    verdict: str
    status: str
    """``drift`` (no retrain), ``retrained``, ``retrain_failed``; without drift the overall ``state``:
    ``ok``, ``stale`` or ``unknown``."""
    data_drift: dict[str, Any]
    model_drift: dict[str, Any]
    champion_before: str | None
    champion_after: str | None
    retrain: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None
    run_id: str | None = None
    started: str = ""
    finished: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    state: str = "ok"
    """The overall verdict, the worst check: ``drift`` > ``stale`` > ``unknown`` > ``ok`` (see
    :mod:`tidecast.monitoring.verdicts`); ``tidecast monitor --fail-on-drift`` exits by it."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    """Every check: ``kind`` (data, model, feed), ``subject``, ``state`` and ``reason``."""

    @property
    def alarm(self) -> bool:
        return self.status != "ok"

    def history_entry(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "started": self.started,
            "finished": self.finished,
            "status": self.status,
            "verdict": self.verdict,
            "data_drift": bool(self.data_drift.get("drift")),
            "model_drift": bool(self.model_drift.get("alarm")),
            "retrain_attempted": self.retrain is not None,
            "retrained_version": (self.retrain or {}).get("version"),
            "promoted": bool((self.retrain or {}).get("promoted")),
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "run_id": self.run_id,
            "state": self.state,
            **{f"{kind}_check": self._kind_state(kind) for kind in ("data", "model", "feed")},
        }

    def _kind_state(self, kind: str) -> str:
        from tidecast.monitoring.verdicts import Check, kind_state

        return kind_state([Check(**c) for c in self.checks], kind)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.forecast is not None:
            out["forecast"] = {k: v for k, v in self.forecast.items() if k != "forecast"}
        return json.loads(json.dumps(out, default=str))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _prune_cache(spec: Spec, keys: dict[str, str]) -> None:
    """Remove the monitor steps' cache entries other than this run's (one per as_of would pile up)."""
    from tidecast.pipeline.cache import ArtifactCache

    cache = ArtifactCache(spec.state_dir / "cache")
    for name, key, path in list(cache.entries()):
        if name in CACHED_STEPS and key != keys.get(name):
            shutil.rmtree(path, ignore_errors=True)


def _verdict(
    data_report: Any, model_report: Any, decision: RetrainDecision, retrained: dict[str, Any] | None,
    error: str | None, champion_before: str | None, checks: list[Any],
) -> tuple[str, str]:
    """(verdict, status): the drift and what was done, then the stale and unknown checks with their reasons."""
    from tidecast.monitoring.verdicts import OK, overall, verdict_text

    main, status = _action(data_report, model_report, decision, retrained, error, champion_before)
    state = overall(checks)
    return verdict_text(None if main == OK else main, checks), (state if status == OK else status)


def _action(
    data_report: Any, model_report: Any, decision: RetrainDecision, retrained: dict[str, Any] | None,
    error: str | None, champion_before: str | None,
) -> tuple[str, str]:
    parts = []
    if data_report.drift:
        parts.append(data_report.summary())
    if model_report.alarm:
        parts.append(model_report.summary())
    trigger = "; ".join(parts)
    if error is not None:
        return f"retrain failed: {error} (champion v{champion_before} still serving); {trigger}", "retrain_failed"
    if retrained is not None:
        version = retrained.get("version")
        if version is None:
            return f"{trigger} (retrain: {retrained.get('reason')})", "drift"
        if retrained.get("promoted"):
            return f"retrained: v{version} promoted to champion; {trigger}", "retrained"
        return f"retrained: v{version} challenger ({retrained.get('reason')}); {trigger}", "retrained"
    if trigger:
        return trigger + (f" ({decision.note})" if decision.note else ""), "drift"
    return "ok", "ok"


def monitor(
    spec: Spec,
    *,
    as_of: Any = None,
    input: str | os.PathLike[str] | None = None,
    retrain_allowed: bool = True,
    callbacks: Any = None,
    lock_timeout: float | None = 0.0,
    report: bool = True,
) -> MonitorResult:
    """One monitoring run (see the module docstring); returns the verdict and what was done.

    A retrain that fails (any error) is reported in the verdict ("retrain failed: ... (champion v2
    still serving)") and leaves the champion alias where it was; the forecast is then made by
    that champion. Other errors (unreadable data, no champion, no reference profile) raise
    :class:`~tidecast.errors.TidecastError` and are recorded in the history as ``failed``.
    """
    from tidecast.monitoring.verdicts import overall
    from tidecast.pipeline import ProjectLock
    from tidecast.pipeline import run as run_pipeline
    from tidecast.pipeline.lock import LockFile

    # the monitor's steps are recorded beside its history, not in the project's tidecast.lock (which
    # records the training pipeline, and is committed with the project: it must not churn daily)
    records = LockFile(Path(spec.state_dir) / "monitor.lock")
    mspec = monitor_spec(spec, as_of=as_of, input=input)
    pipeline = monitor_pipeline()
    started, clock = _now(), time.perf_counter()
    history = history_path(spec)
    keys: dict[str, str] = {}
    with ProjectLock(spec.state_dir, timeout=lock_timeout):
        try:
            first = run_pipeline(pipeline, mspec, until="monitor_checks", callbacks=callbacks, lockfile=records)
            keys = first.keys
            checks = first.outputs["monitor_checks"]
            data_report = checks["data_drift"]["report"]
            model_report = checks["model_drift"]["report"]
            champion_before = checks["data_drift"]["version"]
            when = pd.Timestamp(data_report.window_end)
            trigger = "; ".join(
                s for s in (data_report.summary() if data_report.drift else "",
                            model_report.summary() if model_report.alarm else "") if s
            ) or None
            decision = retrain_policy(
                spec,
                as_of=when,
                data_drift=data_report.drift,
                model_alarm=model_report.alarm,
                trigger=trigger,
                history=read_history(spec),
                allowed=retrain_allowed,
            )
            retrained: dict[str, Any] | None = None
            error: str | None = None
            if decision.retrain:
                try:
                    retrained = retrain(
                        spec,
                        as_of=when.tz_localize("UTC") if mspec.run.as_of else None,
                        input=mspec.run.input,
                        callbacks=callbacks,
                        report=report,
                    )
                except TidecastError as exc:
                    error = str(exc)
                except Exception as exc:  # a retrain must never take the monitor down with it
                    error = f"{type(exc).__name__}: {exc}"
                if error is not None:
                    retrained = {"version": None, "promoted": False, "error": error}
            second = run_pipeline(pipeline, mspec, until="monitor_predict", callbacks=callbacks, lockfile=records)
            forecast = second.outputs["monitor_predict"]
            verdict, status = _verdict(
                data_report, model_report, decision, None if error else retrained, error, champion_before, checks["checks"]
            )
            result = MonitorResult(
                project=spec.project,
                as_of=str(when),
                verdict=verdict,
                status=status,
                data_drift=data_report.to_dict(),
                model_drift=model_report.to_dict(),
                champion_before=champion_before,
                champion_after=forecast["version"],
                retrain=retrained,
                forecast=forecast,
                started=started,
                notes=[*data_report.notes, *model_report.notes],
                state=overall(checks["checks"]),
                checks=[c.to_dict() for c in checks["checks"]],
            )
            result.finished = _now()
            result.seconds = round(time.perf_counter() - clock, 3)
            result.run_id = log_monitor_run(spec, result, data_report.metrics() | model_report.metrics())
            append_history(history, result.history_entry())
            return result
        except BaseException as exc:
            if isinstance(exc, Exception):
                append_history(
                    history,
                    {
                        "as_of": mspec.run.as_of,
                        "started": started,
                        "finished": _now(),
                        "status": "failed",
                        "verdict": f"failed: {exc}",
                        "data_drift": None,
                        "model_drift": None,
                        "retrain_attempted": False,
                    },
                )
            raise
        finally:
            if keys:
                with contextlib.suppress(OSError, PipelineError):
                    _prune_cache(spec, keys)


def log_monitor_run(spec: Spec, result: MonitorResult, metrics: dict[str, float]) -> str | None:
    """Record a monitor run in MLflow (experiment ``<experiment>-monitor``): metrics, the verdict, the report."""
    import tempfile

    from tidecast.monitoring.verdicts import STATES, check_tags
    from tidecast.tracking.runs import _metrics, _tags, log_batch, process_tags
    from tidecast.tracking.store import connect, experiment_id, experiment_name, retry_locked

    client = connect(spec)
    exp = experiment_id(spec, client, name=experiment_name(spec) + EXPERIMENT_SUFFIX)
    stamp = pd.Timestamp(result.as_of).strftime("%Y%m%d-%H%M")
    tags = {
        "tidecast.kind": "monitor",
        "tidecast.project": spec.project,
        "tidecast.as_of": result.as_of,
        "tidecast.verdict": result.verdict[:5000],
        "tidecast.status": result.status,
        "tidecast.state": result.state,
        **check_tags(result.checks),
        "tidecast.champion_before": result.champion_before,
        "tidecast.champion_after": result.champion_after,
        "tidecast.retrained_version": (result.retrain or {}).get("version"),
        "mlflow.note.content": result.verdict[:5000],
        **process_tags(),
    }
    run = retry_locked(
        lambda: client.create_run(exp, run_name=f"monitor-{stamp}", tags={k: str(v) for k, v in tags.items() if v is not None})
    )
    run_id = run.info.run_id
    status = "FINISHED"
    try:
        extra = {
            "retrained": float(result.retrain is not None and result.retrain.get("version") is not None),
            "promoted": float(bool((result.retrain or {}).get("promoted"))),
            "retrain_failed": float(result.status == "retrain_failed"),
            **{f"checks_{state}": float(sum(c["state"] == state for c in result.checks)) for state in STATES},
            "seconds": result.seconds,
        }
        log_batch(client, run_id, metrics=_metrics({**metrics, **extra}), tags=_tags({}))
        with tempfile.TemporaryDirectory(prefix="tidecast-monitor-") as tmp:
            (Path(tmp) / "monitor_report.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
            retry_locked(lambda: client.log_artifacts(run_id, tmp))
    except Exception:
        status = "FAILED"
        raise
    finally:
        retry_locked(lambda: client.set_terminated(run_id, status=status))
    return run_id


__all__ = [
    "MONITOR_STEPS",
    "MonitorResult",
    "MonitorRun",
    "MonitorSpec",
    "RetrainDecision",
    "append_history",
    "history_path",
    "monitor",
    "monitor_pipeline",
    "monitor_spec",
    "parse_as_of",
    "read_history",
    "retrain",
    "retrain_policy",
    "training_spec",
]
