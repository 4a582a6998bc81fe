"""One monitor run: :func:`monitor` drives the monitor's steps (:mod:`tidecast.monitoring.steps`)
in two passes under one project lock:

1. up to ``monitor_checks``: read the data as it is known at ``as_of`` (the spec's source, re-read
   because it grows, or ``--input``), clean it and add the time features with the training code,
   log the observed values to the prediction store as actuals, then check data drift (the recent
   window against the champion's reference profile) and model drift (the champion's logged
   forecasts against those actuals);
2. on drift (and when :func:`~tidecast.monitoring.retrain.retrain_policy` allows it) retrain
   through the training pipeline and its promotion gate
   (:func:`~tidecast.monitoring.retrain.retrain`); then ``monitor_predict``: forecast the next
   horizon with the champion (the new one after a promotion) and log it to the prediction store.

The cached steps' older entries are removed after each run. Every run is an MLflow run of the
experiment ``<experiment>-monitor`` (drift metrics, the verdict as a tag, ``monitor_report.json``)
and a line of ``.tidecast/monitor-history.jsonl`` (:mod:`tidecast.serving.history`).

``as_of`` simulates time: the monitor only sees rows strictly before it (future rows of
known-in-future exogenous columns excepted, with ``y`` blanked).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.errors import PipelineError, TidecastError
from tidecast.monitoring.retrain import RetrainDecision, retrain, retrain_policy
from tidecast.monitoring.run_spec import monitor_spec
from tidecast.monitoring.steps import CACHED_STEPS, monitor_pipeline
from tidecast.monitoring.verdicts import OK, STATES, Check, check_tags, kind_state, overall, verdict_text
from tidecast.pipeline import ProjectLock
from tidecast.pipeline import run as run_pipeline
from tidecast.pipeline.cache import ArtifactCache
from tidecast.pipeline.lock import LockFile
from tidecast.serving.history import append_history, history_path, read_history
from tidecast.spec import Spec
from tidecast.tracking.records import as_metrics, as_tags, log_batch, process_tags
from tidecast.tracking.store import connect, experiment_id, experiment_name, retry_locked

EXPERIMENT_SUFFIX = "-monitor"


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
    cache = ArtifactCache(spec.state_dir / "cache")
    for name, key, path in list(cache.entries()):
        if name in CACHED_STEPS and key != keys.get(name):
            shutil.rmtree(path, ignore_errors=True)


def _verdict(
    data_report: Any, model_report: Any, decision: RetrainDecision, retrained: dict[str, Any] | None,
    error: str | None, champion_before: str | None, checks: list[Any],
) -> tuple[str, str]:
    """(verdict, status): the drift and what was done, then the stale and unknown checks with their reasons."""
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
        log_batch(client, run_id, metrics=as_metrics({**metrics, **extra}), tags=as_tags({}))
        with tempfile.TemporaryDirectory(prefix="tidecast-monitor-") as tmp:
            (Path(tmp) / "monitor_report.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
            retry_locked(lambda: client.log_artifacts(run_id, tmp))
    except Exception:
        status = "FAILED"
        raise
    finally:
        retry_locked(lambda: client.set_terminated(run_id, status=status))
    return run_id


__all__ = ["EXPERIMENT_SUFFIX", "MonitorResult", "log_monitor_run", "monitor"]
