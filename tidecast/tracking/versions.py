"""Registered model versions and their aliases: register a logged model (checked and waited for
until READY), read the version an alias points at (:func:`alias_version`, :func:`champion_version`).
The gate (:mod:`tidecast.tracking.gate`) and the promotions (:mod:`tidecast.tracking.registry`) build on it.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from tidecast.errors import TrackingError
from tidecast.faults import fault_point
from tidecast.tracking.store import active_uris, connect, retry_locked

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
PREVIOUS_TAG = "tidecast.previous_champion"
READY_TIMEOUT_S = 300.0


def on_project_store(fn: Any) -> Any:
    """Run ``fn(spec, ...)`` with MLflow's global URIs on the project's store: the registry resolves
    ``models:/`` sources through them, and must never fall back to an ``mlflow.db`` in the cwd."""

    @functools.wraps(fn)
    def wrapper(spec: Spec, *args: Any, **kwargs: Any) -> Any:
        with active_uris(spec):
            return fn(spec, *args, **kwargs)

    return wrapper


def _model_id(model_uri: str) -> str | None:
    if model_uri.startswith("models:/m-"):
        return model_uri.removeprefix("models:/").split("/", 1)[0]
    return None


def verify_artifacts(client: MlflowClient, model_uri: str) -> list[str]:
    """The logged model's files; raises TrackingError unless its MLmodel and tidecast artifacts are all there."""
    import mlflow

    # lazy: pyfunc imports MLflow's pyfunc; the registry's readers (a no-op run's check of track) need none
    from tidecast.tracking.pyfunc import CARD_FILE, MODEL_FILE

    model_id = _model_id(model_uri)
    try:
        if model_id is not None:
            top = [f.path for f in client.list_logged_model_artifacts(model_id)]
            nested = [f.path for f in client.list_logged_model_artifacts(model_id, "artifacts")]
        else:
            top = [f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=model_uri)]
            nested = [
                f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=model_uri.rstrip("/") + "/artifacts")
            ]
    except Exception as exc:
        raise TrackingError(f"model {model_uri}: cannot list its artifacts ({exc}); not registering it") from None
    names = {p.rsplit("/", 1)[-1] for p in [*top, *nested]}
    missing = [f for f in ("MLmodel", MODEL_FILE, CARD_FILE) if f not in names]
    if missing:
        raise TrackingError(f"model {model_uri}: artifacts {', '.join(missing)} are missing; not registering it")
    return sorted([*top, *nested])


def wait_ready(client: MlflowClient, name: str, version: str, timeout: float = READY_TIMEOUT_S) -> Any:
    """Poll a model version until its status is READY (raise TrackingError if it fails or times out)."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        mv = retry_locked(lambda: client.get_model_version(name, version))
        status = str(mv.status)
        if status.endswith("READY"):
            return mv
        if "FAILED" in status:
            raise TrackingError(f"model {name} version {version}: registration failed ({mv.status_message or status})")
        if time.monotonic() > deadline:
            raise TrackingError(f"model {name} version {version}: not READY after {timeout:.0f} s (status {status})")
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def register_version(
    client: MlflowClient, name: str, model_uri: str, *, run_id: str | None, tags: dict[str, Any]
) -> Any:
    """Register ``model_uri`` (after checking its artifacts exist) under ``name``; returns the READY version."""
    from mlflow.exceptions import MlflowException

    verify_artifacts(client, model_uri)
    try:
        retry_locked(lambda: client.create_registered_model(name))
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
            raise
    model_id = _model_id(model_uri)
    clean_tags = {k: str(v) for k, v in tags.items() if v is not None}
    mv = retry_locked(
        lambda: client.create_model_version(name, model_uri, run_id=run_id, tags=clean_tags, model_id=model_id)
    )
    fault_point("registry.version-created")
    return wait_ready(client, name, mv.version)


def alias_version(client: MlflowClient, name: str, alias: str) -> Any | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return retry_locked(lambda: client.get_model_version_by_alias(name, alias))
    except MlflowException:
        return None


@on_project_store
def champion_version(spec: Spec, *, client: MlflowClient | None = None, name: str | None = None) -> Any | None:
    """The current champion version of the project's registered model, or None."""
    client = client or connect(spec)
    return alias_version(client, name or spec.model_name, CHAMPION)


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "PREVIOUS_TAG",
    "READY_TIMEOUT_S",
    "alias_version",
    "champion_version",
    "on_project_store",
    "register_version",
    "verify_artifacts",
    "wait_ready",
]
