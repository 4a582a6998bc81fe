"""Where a project's runs and registered models live, and a client that fails fast when it can't get there.

The default store is SQLite under the project's state folder (``.tidecast/mlflow.db``) with the
artifacts beside it (``.tidecast/mlartifacts``), so ``tidecast run`` tracks with no server at all;
``tracking.uri`` in the spec or ``MLFLOW_TRACKING_URI`` point it anywhere MLflow can go.

>>> client = connect(spec)                          # doctest: +SKIP
>>> experiment_id(spec, client)                     # doctest: +SKIP
'1'
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tidecast.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec

T = TypeVar("T")

DB_FILENAME = "mlflow.db"
ARTIFACTS_DIRNAME = "mlartifacts"
PROBE_TIMEOUT_S = 5
_LOCKED_MARKERS = ("database is locked", "database table is locked", "database schema has changed")


# ------------------------------------------------------------------------------------- locations
def default_db_path(spec: Spec) -> Path:
    return (spec.state_dir / DB_FILENAME).resolve()


def default_artifact_root(spec: Spec) -> str:
    """The file URI of ``<state_dir>/mlartifacts`` (where runs of the default store keep their files)."""
    return (spec.state_dir / ARTIFACTS_DIRNAME).resolve().as_uri()


def tracking_uri(spec: Spec) -> str:
    """``tracking.uri`` of the spec, else ``MLFLOW_TRACKING_URI``, else SQLite under the state folder."""
    if spec.tracking.uri:
        return _resolve_local(spec, spec.tracking.uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{default_db_path(spec)}"


def registry_uri(spec: Spec) -> str:
    """The model registry's URI: ``MLFLOW_REGISTRY_URI`` when set (and no ``tracking.uri``), else the tracking URI."""
    if not spec.tracking.uri and os.environ.get("MLFLOW_REGISTRY_URI"):
        return os.environ["MLFLOW_REGISTRY_URI"]
    return tracking_uri(spec)


def artifact_location(spec: Spec) -> str | None:
    """Where a new experiment keeps its artifacts: the spec's, else ``mlartifacts`` for the default store.

    ``None`` lets a tracking server choose (its ``--default-artifact-root``).
    """
    if spec.tracking.artifact_location:
        return _resolve_local(spec, spec.tracking.artifact_location, as_uri=True)
    if uses_default_store(spec):
        return default_artifact_root(spec)
    uri = tracking_uri(spec)
    if uri.startswith("sqlite:///"):  # a SQLite file elsewhere: artifacts next to it, not in the cwd
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / ARTIFACTS_DIRNAME).as_uri()
    return None


def uses_default_store(spec: Spec) -> bool:
    return tracking_uri(spec) == f"sqlite:///{default_db_path(spec)}"


def experiment_name(spec: Spec) -> str:
    return spec.tracking.experiment or spec.project


def _resolve_local(spec: Spec, value: str, *, as_uri: bool = False) -> str:
    """A relative ``sqlite:///`` path or bare path resolved against the spec's folder."""
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        path = Path(value.removeprefix("sqlite:///"))
        if not path.is_absolute():
            return f"sqlite:///{(spec.root / path).resolve()}"
        return value
    if "://" in value or value.startswith(("file:", "databricks")):
        return value
    path = Path(value).expanduser()
    path = path if path.is_absolute() else (spec.root / path).resolve()
    return path.as_uri() if as_uri else str(path)


# ---------------------------------------------------------------------------------- connecting
@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _probe(uri: str) -> None:
    """Reach the store once, without MLflow's retry loops; raise TrackingError naming the reason."""
    if _is_http(uri):
        import requests

        try:
            response = requests.get(
                uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                params={"max_results": 1},
                timeout=PROBE_TIMEOUT_S,
            )
        except requests.RequestException as exc:
            raise TrackingError(f"tracking URI {uri} is unreachable: {_reason(exc)}") from None
        if response.status_code >= 500 or response.status_code == 404:
            raise TrackingError(
                f"tracking URI {uri} is unreachable: HTTP {response.status_code} from the MLflow REST API"
            )
        return
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"tracking URI {uri} is unreachable: cannot create {path.parent}: {exc}") from None
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise TrackingError(f"tracking URI {uri} is unreachable: {path} is not writable")
        return
    if uri.split(":", 1)[0].split("+", 1)[0] in {"postgresql", "mysql", "mssql"}:
        import sqlalchemy

        connect_args = {"connect_timeout": PROBE_TIMEOUT_S} if uri.startswith(("postgresql", "mysql")) else {}
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=connect_args)
            with engine.connect():
                pass
            engine.dispose()
        except Exception as exc:  # driver errors have no common base class
            raise TrackingError(f"tracking URI {uri} is unreachable: {_reason(exc)}") from None


_UNREACHABLE = ("connection refused", "name or service not known", "timed out", "no route to host")


def _reason(exc: BaseException) -> str:
    """A short reason: one of ``_UNREACHABLE`` when the text says so, else its first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for marker in _UNREACHABLE:
        if marker in str(exc).lower():
            return marker
    return text[:300]


@contextlib.contextmanager
def store_lock(spec: Spec, timeout: float = 120.0) -> Iterator[None]:
    """An exclusive, cross-process lock for one-time store set-up (schema creation, new experiment).

    Only local SQLite stores need it (two processes migrating one fresh file at once corrupt it);
    for other stores it is a no-op.
    """
    uri = tracking_uri(spec)
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(f"tracking store {uri}: timed out waiting for {lock_path}") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def connect(spec: Spec) -> MlflowClient:
    """An :class:`mlflow.MlflowClient` on the project's tracking store and registry, checked to answer.

    Fails within a few seconds with :class:`TrackingError` ("tracking URI ... is unreachable: ...")
    instead of MLflow's minutes of retries. Creates the SQLite schema under a file lock, so that two
    processes that start on a fresh store at once do not race.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri, reg_uri = tracking_uri(spec), registry_uri(spec)
    # later calls keep a few quick retries, not MLflow's default of minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    for target in dict.fromkeys((uri, reg_uri)):
        _probe(target)
    try:
        with (
            store_lock(spec),
            _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(PROBE_TIMEOUT_S)),
        ):
            # the client opens (and for a new SQLite file, migrates) the store as it is made
            client = MlflowClient(tracking_uri=uri, registry_uri=reg_uri)
            retry_locked(lambda: client.search_experiments(max_results=1))
            retry_locked(lambda: client.search_registered_models(max_results=1))
    except TrackingError:
        raise
    except MlflowException as exc:
        raise TrackingError(f"tracking URI {uri} is unreachable: {_reason(exc)}") from None
    except Exception as exc:  # sqlalchemy/requests errors surface raw from the stores
        raise TrackingError(f"tracking URI {uri} is unreachable: {type(exc).__name__}: {_reason(exc)}") from None
    return client


def experiment_id(spec: Spec, client: MlflowClient, name: str | None = None) -> str:
    """The id of the project's experiment (``tracking.experiment``, else the project name), created if needed.

    A new experiment of the default store keeps its artifacts in ``.tidecast/mlartifacts``; a deleted
    one of the same name is restored.
    """
    from mlflow.exceptions import MlflowException

    name = name or experiment_name(spec)

    def get_or_create() -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location(spec))
        except MlflowException as exc:  # created meanwhile by another process
            found = client.get_experiment_by_name(name)
            if found is None:
                raise TrackingError(f"cannot create experiment {name!r} in {tracking_uri(spec)}: {exc}") from None
            return found.experiment_id

    with store_lock(spec):
        return retry_locked(get_or_create)


#: OSError numbers that mean the storage refuses writes (full, read-only, forbidden), not a bug
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
_STORAGE_MARKERS = {
    "database or disk is full": "the disk is full",
    "readonly database": "the database is read-only",
    "read-only file system": "read-only file system",
    "disk i/o error": "disk I/O error",
}


def _where(location: str) -> str:
    return location.removeprefix("file://") if location.startswith("file:///") else location


def storage_error(
    exc: BaseException, spec: Spec, *, doing: str = "write to the tracking store"
) -> TrackingError | None:
    """A one-line :class:`TrackingError` for a store that cannot take writes (no space left, read-only,
    permission denied), naming where, or None when ``exc`` is something else.

    Looks at ``exc`` and its causes: an ``OSError`` with one of :data:`STORAGE_ERRNOS` (the artifact
    folder), or SQLite's "database or disk is full" / "readonly database" (the tracking database).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            target = current.filename or artifact_location(spec) or tracking_uri(spec)
            reason = os.strerror(current.errno).lower()
            return TrackingError(
                f"cannot {doing}: {reason} at {_where(str(target))}",
                hint="free some space or make it writable, then run again",
            )
        text = str(current).lower()
        for marker, reason in _STORAGE_MARKERS.items():
            if marker in text:
                return TrackingError(
                    f"cannot {doing}: {reason} ({tracking_uri(spec)})",
                    hint="free some space or make it writable, then run again",
                )
        current = current.__cause__ or current.__context__
    return None


def is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _LOCKED_MARKERS)


def retry_locked(fn: Callable[[], T], *, attempts: int = 40, pause: float = 0.05) -> T:
    """Call ``fn``, retrying while SQLite says the database is locked (another writer holds it)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if not is_locked_error(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause * (1 + attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")  # pragma: no cover


_ACTIVE_URIS = threading.RLock()
"""Held while MLflow's fluent API points at a project's store: that pointer (and the environment
variables set with it) is process-wide, and pipeline steps may run side by side in threads."""


@contextlib.contextmanager
def active_uris(spec: Spec) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.pyfunc.log_model``...) at the project's store, then restore it.

    Also turns MLflow's artifact progress bars off meanwhile (the library never prints). One thread
    at a time holds it (a reentrant lock): a step beside another waits for the other's block to end
    instead of logging to the other's store or restoring its URIs under it.
    """
    with _ACTIVE_URIS:
        yield from _pointed(spec)


def _pointed(spec: Spec) -> Iterator[None]:
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved: dict[str, Any] = {
        "tracking": getattr(tracking_utils, "_tracking_uri", None),
        "registry": getattr(registry_utils, "_registry_uri", None),
        "env": {
            k: os.environ.get(k)
            for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        },
    }
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(tracking_uri(spec))
    mlflow.set_registry_uri(registry_uri(spec))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["tracking"])  # None unsets it (and resets MLflow's tracer)
        registry_utils._registry_uri = saved["registry"]
        for key, value in saved["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


__all__ = [
    "active_uris",
    "artifact_location",
    "connect",
    "default_artifact_root",
    "experiment_id",
    "experiment_name",
    "registry_uri",
    "retry_locked",
    "storage_error",
    "store_lock",
    "tracking_uri",
]
