"""The ``track`` pipeline step: after ``select``, record the training in MLflow and gate the new model.

Plug it into the training DAG with ``training_pipeline(extra=(track,))``.

Its cache key covers the resolved tracking store, registry and experiment (the spec's
``tracking:`` or ``MLFLOW_TRACKING_URI``), and a cached ``track`` holds only while its MLflow run
and registered version still exist in that store (:func:`check_recorded`, a few milliseconds on
the default SQLite store); otherwise it re-runs. What the registry says about the version is read
back from the store each time it is shown (:func:`read_registration`), never from the cache.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.data.sources import content_fingerprint
from tidecast.errors import TrackingError
from tidecast.pipeline.cache import ARTIFACTS
from tidecast.pipeline.dag import step
from tidecast.pipeline.hashing import stable_hash
from tidecast.pipeline.lock import LOCK_FILENAME, LockFile
from tidecast.spec import Spec
from tidecast.tracking.store import (
    _probe,
    connect,
    experiment_name,
    registry_uri,
    retry_locked,
    tracking_uri,
    uses_default_store,
)

TRACK_SPEC_SECTIONS = (
    "project",
    "tracking",
    "registry",
    "data",
    "forecast",
    "models",
    "selection",
    "seed",
    "backtest",
    "features",
    "clean",
    "target",
    "hierarchy",
)


NOT_UPSTREAM = frozenset({"track", "explain", "report"})
"""Steps of ``tidecast.lock`` that do not feed ``track``. Every other step's peak memory (the lock's
``peak_rss_mb``: that of the run of the step that produced the output used) is logged on the
training run as ``peak_rss_mb.<step>``."""


def upstream_records(spec: Spec) -> dict[str, Any]:
    """What ``tidecast.lock`` says about the steps of this run: their keys, the data fingerprint, and
    the cache folder of each (read while the run holds the project lock, so it is this run's)."""
    lock = LockFile(Path(spec.root) / LOCK_FILENAME)
    return {name: record for name, record in lock.records.items()}


def clean_summary(spec: Spec, records: dict[str, Any], clean: pd.DataFrame | None = None) -> dict[str, Any]:
    """The clean step's ``summary.json`` from its cache entry (``<entry>/artifacts/summary.json``)."""
    record = records.get("clean")
    if record is not None and record.outputs:
        file = Path(spec.root) / record.outputs / ARTIFACTS / "summary.json"
        if file.is_file():
            try:
                return json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
    summary: dict[str, Any] = {"note": "the clean step's summary.json was not found in its cache entry"}
    if clean is not None:
        summary["rows"] = len(clean)
    return summary


# ------------------------------------------------------------------------------ the store's state
def store_deps(spec: Spec) -> dict[str, str]:
    """Where ``track`` writes, as hashes (URIs may hold credentials; ``tidecast.lock`` is committed).
    The default store is named as such, so that it follows the project folder when moved."""
    uri = tracking_uri(spec)
    registry = registry_uri(spec)
    deps = {
        "store:tracking store": stable_hash("default" if uses_default_store(spec) else uri),
        "store:experiment": stable_hash(experiment_name(spec)),
    }
    if registry != uri:  # MLFLOW_REGISTRY_URI elsewhere
        deps["store:model registry"] = stable_hash(registry)
    return deps


@dataclass
class RegistryState:
    """A registered version as the registry holds it now."""

    model_name: str
    version: str
    exists: bool
    aliases: list[str] = field(default_factory=list)
    champion: str | None = None
    """The version the ``champion`` alias points at now."""
    gate_reason: str | None = None


_RUN_MISSING = "missing"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0]) if uri.startswith("sqlite:///") else None


def _sqlite_rows(path: Path, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on an MLflow SQLite store; none when the file or its tables are absent."""
    if not path.is_file():
        return []
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return connection.execute(query, args).fetchall()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise TrackingError(f"tracking store {path} cannot be read: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise TrackingError(f"tracking store {path} cannot be read: {exc}") from None


def _run_stage(spec: Spec, run_id: str) -> str:
    """``active``, ``deleted`` or ``missing``: the run's state in the current tracking store."""
    uri = tracking_uri(spec)
    path = _sqlite_path(uri)
    if path is not None:
        rows = _sqlite_rows(path, "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,))
        return str(rows[0][0]) if rows else _RUN_MISSING
    from mlflow.exceptions import MlflowException

    client = connect(spec)
    try:
        return str(retry_locked(lambda: client.get_run(run_id)).info.lifecycle_stage)
    except MlflowException:
        return _RUN_MISSING


def read_registration(spec: Spec, model_name: str, version: str) -> RegistryState:
    """Version ``version`` of ``model_name`` as the project's registry holds it now: whether it
    exists, its aliases, where ``champion`` points and the gate's reason (SQLite read directly)."""
    from tidecast.tracking.registry import CHAMPION  # lazy: the registry module imports MLflow

    path = _sqlite_path(registry_uri(spec))
    if path is not None:
        number = int(version)
        found = _sqlite_rows(
            path, "SELECT current_stage FROM model_versions WHERE name = ? AND version = ?", (model_name, number)
        )
        exists = bool(found) and found[0][0] != "Deleted_Internal"
        aliases = _sqlite_rows(
            path, "SELECT alias FROM registered_model_aliases WHERE name = ? AND version = ?", (model_name, number)
        )
        champion = _sqlite_rows(
            path, "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (model_name, CHAMPION)
        )
        reason = _sqlite_rows(
            path,
            "SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND key = 'tidecast.gate_reason'",
            (model_name, number),
        )
        return RegistryState(
            model_name, str(version), exists, sorted(str(a[0]) for a in aliases) if exists else [],
            str(champion[0][0]) if champion else None, str(reason[0][0]) if reason and exists else None,
        )
    from mlflow.exceptions import MlflowException

    from tidecast.tracking.registry import alias_version  # lazy: imports MLflow

    client = connect(spec)
    current = alias_version(client, model_name, CHAMPION)
    try:
        mv = retry_locked(lambda: client.get_model_version(model_name, str(version)))
    except MlflowException:
        return RegistryState(model_name, str(version), False, champion=None if current is None else str(current.version))
    return RegistryState(
        model_name, str(version), True, sorted(getattr(mv, "aliases", None) or []),
        None if current is None else str(current.version), (mv.tags or {}).get("tidecast.gate_reason"),
    )


def check_recorded(spec: Spec, output: dict[str, Any] | None) -> str | None:
    """``track``'s check: why its cached output no longer holds in the current store (its run or its
    registered version is gone), or None. Before ``track`` runs (``output`` None): raise
    :class:`~tidecast.errors.TrackingError` if the store does not answer, before any step runs."""
    if output is None:
        for uri in dict.fromkeys((tracking_uri(spec), registry_uri(spec))):
            if _sqlite_path(uri) is None:  # a SQLite store is created by the run itself
                _probe(uri)
        return None
    run_id = str(output.get("run_id") or "")
    stage = _run_stage(spec, run_id) if run_id else _RUN_MISSING
    if stage == _RUN_MISSING:
        return f"run {run_id[:4]}… is missing from the store"
    if stage != "active":
        return f"run {run_id[:4]}… was deleted from the store"
    registration = output.get("registration") or {}
    if registration.get("model_name") and registration.get("version") is not None:
        state = read_registration(spec, str(registration["model_name"]), str(registration["version"]))
        if not state.exists:
            return f"model {state.model_name} v{state.version} is missing from the registry"
    return None


def track_step(draw_backtest: Callable[[pd.DataFrame, str, Path], Path] | None = None) -> Any:
    """The ``track`` step. Tracking draws nothing: ``draw_backtest`` (``forecasts, title, path`` -> the
    PNG), passed by the layer that assembles the pipeline (:mod:`tidecast.flows` passes
    :func:`tidecast.reporting.bands.backtest_png`), draws the best candidates' backtest plots."""

    @step(spec=TRACK_SPEC_SECTIONS, deps=store_deps, check=check_recorded)
    def track(
        select: Mapping[str, Any], backtest: Mapping[str, Any], features: pd.DataFrame, clean: pd.DataFrame, spec: Spec, ctx: Any
    ) -> dict[str, Any]:
        """Log the training to MLflow (parent + candidate runs, the pyfunc model) and register it behind the gate."""
        from tidecast.tracking.runs import track_training  # lazy: imports MLflow (a no-op run needs none)

        records = upstream_records(spec)
        ingest = records.get("ingest")
        fingerprint = ingest.fingerprint if ingest is not None and ingest.fingerprint else None
        if fingerprint is None:
            fingerprint = content_fingerprint(spec.data)
        result = track_training(
            spec,
            backtest=backtest,
            select=select,
            features=features,
            clean_summary=clean_summary(spec, records, clean),
            data_fingerprint=fingerprint,
            lock_hashes={name: record.key for name, record in records.items()},
            progress=ctx.progress,
            step_peaks={name: record.peak_rss_mb for name, record in records.items() if name not in NOT_UPSTREAM},
            draw_backtest=draw_backtest,
        )
        out = result.to_dict()
        (Path(ctx.artifact_dir) / "tracking.json").write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
        return json.loads(json.dumps(out, default=str))

    return track


track = track_step()
"""The ``track`` step without backtest plots (the training pipeline of :mod:`tidecast.flows` draws them)."""
