"""Load a registered tidecast model for serving, and hold the one being served.

:func:`load_model` resolves ``models:/NAME@alias`` or ``models:/NAME/VERSION`` in the registry and
reads the pyfunc's two artifacts (the pickled forecaster and its model card) directly, as
``TidecastModel.load_context`` does, without MLflow's pyfunc wrapper: its predictions are the same,
without the schema enforcement on every call.

:class:`ModelHolder` keeps the :class:`LoadedModel` a server answers with. Requests take a
reference to ``holder.current`` when they start and finish on it; :meth:`ModelHolder.poll` loads
the version an alias points at when it changed and swaps it in with one reference assignment, so
no request ever sees a half-loaded model. A failed load keeps the old model.

>>> holder = ModelHolder(spec, "champion")           # doctest: +SKIP
>>> holder.poll()                                     # doctest: +SKIP
True
>>> holder.current.version                            # doctest: +SKIP
'3'
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from tidecast.errors import ServingError, TidecastError
from tidecast.serving.fast import warm_up
from tidecast.serving.model import LoadedModel
from tidecast.tracking.pyfunc import CARD_FILE, MODEL_FILE
from tidecast.tracking.store import active_uris, connect, retry_locked

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec

log = logging.getLogger("tidecast.serving")

_URI_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)/?$")
_URI_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_METRIC_PREFIXES = ("holdout", "backtest")


# ------------------------------------------------------------------------------------ references
@dataclass(frozen=True)
class ModelRef:
    """What to serve: a registered model ``name`` and either an ``alias`` or a pinned ``version``."""

    name: str
    alias: str | None = None
    version: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_ref(ref: str | int | None, default_name: str) -> ModelRef:
    """``"champion"``, ``"3"``, ``"v3"``, ``"models:/NAME@alias"`` or ``"models:/NAME/3"`` as a :class:`ModelRef`.

    >>> parse_model_ref("champion", "power")
    ModelRef(name='power', alias='champion', version=None)
    >>> parse_model_ref("models:/power/3", "x")
    ModelRef(name='power', alias=None, version='3')
    """
    text = str(ref if ref is not None else "champion").strip()
    if match := _URI_ALIAS.match(text):
        return ModelRef(match["name"], alias=match["alias"])
    if match := _URI_VERSION.match(text):
        return ModelRef(match["name"], version=match["version"])
    if text.startswith("models:/"):
        raise ServingError(f"model {text!r}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    if re.fullmatch(r"[vV]?\d+", text):
        return ModelRef(default_name, version=text.lstrip("vV"))
    if not text or not re.fullmatch(r"[A-Za-z0-9_.\-]+", text):
        raise ServingError(f"model {text!r}: expected an alias (e.g. 'champion') or a version number")
    return ModelRef(default_name, alias=text)


def metrics_from_tags(tags: dict[str, str]) -> dict[str, dict[str, float]]:
    """``tidecast.holdout_mae`` ... tags of a version as ``{"holdout": {"mae": ...}, "backtest": {...}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in tags.items():
        for prefix in _METRIC_PREFIXES:
            head = f"tidecast.{prefix}_"
            if key.startswith(head):
                try:
                    out.setdefault(prefix, {})[key[len(head) :]] = float(value)
                except ValueError:
                    continue
    return {k: dict(sorted(v.items())) for k, v in out.items()}


# ----------------------------------------------------------------------------------- registry
def registry_client(spec: Spec) -> MlflowClient:
    """A client on the spec's registry, raising :class:`ServingError` when the store is unreachable."""
    try:
        return connect(spec)
    except TidecastError as exc:
        raise ServingError(exc.message, hint=exc.hint) from None


def resolve_version(client: MlflowClient, ref: ModelRef) -> Any:
    """The registered :class:`~mlflow.entities.model_registry.ModelVersion` ``ref`` points at.

    Raises :class:`ServingError` naming what is missing: the registered model, the alias or the version.
    """
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return retry_locked(lambda: client.get_model_version_by_alias(ref.name, ref.alias))
        return retry_locked(lambda: client.get_model_version(ref.name, str(ref.version)))
    except MlflowException:
        pass
    try:
        registered = retry_locked(lambda: client.get_registered_model(ref.name))
    except MlflowException:
        raise ServingError(f"no registered model {ref.name!r} in the registry") from None
    if ref.alias:
        aliases = ", ".join(sorted(registered.aliases or {})) or "none"
        raise ServingError(f"registered model {ref.name!r} has no alias {ref.alias!r} (aliases: {aliases})")
    versions = sorted(
        (int(v.version) for v in retry_locked(lambda: client.search_model_versions(f"name='{ref.name}'"))),
    )
    listed = ", ".join(map(str, versions)) or "none"
    raise ServingError(f"registered model {ref.name!r} has no version {ref.version} (versions: {listed})")


def _local_path(uri: str) -> Path | None:
    """The folder of a ``file:`` URI or a plain path, else None (the artifacts must be downloaded)."""
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    if "://" not in uri and not uri.startswith(("models:", "runs:")):
        return Path(uri)
    return None


def _artifact_paths(model_dir: Path, label: str) -> tuple[Path, Path]:
    """(forecaster pickle, model card) of a logged tidecast pyfunc, from its MLmodel file."""
    import yaml

    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        raise ServingError(f"model {label}: no MLmodel file in {model_dir}")
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ServingError(f"model {label}: cannot read its MLmodel file: {exc}") from None
    flavor = (meta.get("flavors") or {}).get("python_function") or {}
    artifacts = flavor.get("artifacts") or {}
    paths = {}
    root = model_dir.resolve()
    for key, default in (("forecaster", f"artifacts/{MODEL_FILE}"), ("model_card", f"artifacts/{CARD_FILE}")):
        entry = artifacts.get(key)
        relative = entry.get("path") if isinstance(entry, dict) else None
        path = model_dir / str(relative or default)
        # the MLmodel file names the pickle: it must lie inside the version's own artifact folder
        if not path.resolve().is_relative_to(root):
            raise ServingError(f"model {label}: artifact {key} ({relative}) lies outside its artifact folder {root}")
        paths[key] = path
    if not artifacts and not paths["forecaster"].is_file():
        raise ServingError(f"model {label} is not a tidecast model (its pyfunc has no forecaster artifact)")
    for key, path in paths.items():
        if not path.is_file():
            raise ServingError(f"model {label}: artifact {key} ({path}) is missing")
    return paths["forecaster"], paths["model_card"]


def load_version(
    spec: Spec, client: MlflowClient, mv: Any, *, alias: str | None = None, warmup: bool = True
) -> LoadedModel:
    """Read a registered version's forecaster and card (downloading them first from a remote store)."""
    import cloudpickle
    import mlflow

    started = time.perf_counter()
    name, version = str(mv.name), str(mv.version)
    label = f"{name} v{version}"
    try:
        download_uri = retry_locked(lambda: client.get_model_version_download_uri(name, version))
    except Exception as exc:
        raise ServingError(f"model {label}: cannot locate its artifacts ({exc})") from None
    local = _local_path(str(download_uri))
    temporary = None
    if local is None or not local.is_dir():
        temporary = Path(tempfile.mkdtemp(prefix="tidecast-serving-"))
        try:
            with active_uris(spec):
                local = Path(
                    mlflow.artifacts.download_artifacts(artifact_uri=str(download_uri), dst_path=str(temporary))
                )
        except Exception as exc:
            shutil.rmtree(temporary, ignore_errors=True)
            raise ServingError(f"model {label}: cannot download its artifacts from {download_uri} ({exc})") from None
    try:
        model_file, card_file = _artifact_paths(local, label)
        try:
            with open(model_file, "rb") as handle:
                forecaster = cloudpickle.load(handle)
            card = json.loads(card_file.read_text(encoding="utf-8"))
        except Exception as exc:  # unpickling runs arbitrary model code
            raise ServingError(f"model {label}: cannot load its forecaster: {type(exc).__name__}: {exc}") from None
        missing = [k for k in ("freq", "input_window", "horizon") if k not in card]
        if missing:
            raise ServingError(f"model {label}: its model card lacks {', '.join(missing)}")
    except ServingError:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    loaded = LoadedModel(
        name=name,
        version=version,
        alias=alias,
        forecaster=forecaster,
        card=card,
        artifact_dir=local,
        artifact_files=(model_file, card_file),
        tags=tags,
        metrics=metrics_from_tags(tags),
        run_id=getattr(mv, "run_id", None),
        source=str(getattr(mv, "source", "") or "") or None,
        temporary_dir=temporary,
    )
    if warmup:
        warm_up(loaded)
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def load_model(
    spec: Spec, ref: str | ModelRef | None = None, *, client: MlflowClient | None = None, warmup: bool = True
) -> LoadedModel:
    """Load ``ref`` (``"champion"``, ``"3"``, ``models:/NAME@alias``, ``models:/NAME/3``; default: ``serving.model``).

    >>> model = load_model(spec, "champion")          # doctest: +SKIP
    >>> model.version, model.card["horizon"]          # doctest: +SKIP
    ('3', 288)
    """
    if not isinstance(ref, ModelRef):
        ref = parse_model_ref(ref if ref is not None else spec.serving.model, spec.model_name)
    client = client or registry_client(spec)
    mv = resolve_version(client, ref)
    return load_version(spec, client, mv, alias=ref.alias, warmup=warmup)


# ------------------------------------------------------------------------------------- holder
class ModelHolder:
    """The model a server answers with, swapped atomically when the registry moves the alias.

    ``current`` is read without a lock (one attribute read); :meth:`swap` assigns it under a lock.
    ``ready`` is False, with ``reason``, until a model is loaded; a failed reload keeps the old
    model (and records ``last_error``). :meth:`readiness` is also False while the version the
    reference points at cannot be loaded (``target_error``: its artifacts vanished, say) although
    the last good model is still served, and while the served model's own files are missing; a
    registry that cannot be reached leaves it as it was (the served model is still the right one).
    """

    def __init__(
        self,
        spec: Spec,
        ref: str | ModelRef | None = None,
        *,
        warmup: bool = True,
        on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None,
    ) -> None:
        self.spec = spec
        self.ref = (
            ref
            if isinstance(ref, ModelRef)
            else parse_model_ref(ref if ref is not None else spec.serving.model, spec.model_name)
        )
        self.warmup = warmup
        self.on_swap = on_swap
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._client: MlflowClient | None = None
        self.reason: str | None = "no model loaded yet"
        self.last_error: str | None = None
        self.target_error: str | None = None  # the version the reference points at, which cannot be loaded
        self.last_poll: float | None = None
        self.swaps = 0

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def readiness(self) -> tuple[bool, str | None]:
        """(ready, reason): a model is loaded and its artifact files are still there."""
        model = self._current
        if model is None:
            return False, self.reason or "no model loaded"
        pending = self.target_error
        if pending is not None:
            return False, f"{pending}; still serving v{model.version}"
        return model.artifacts_present()

    def swap(self, new: LoadedModel) -> LoadedModel | None:
        """Make ``new`` the served model; returns the previous one (requests holding it finish on it)."""
        with self._swap_lock:
            old, self._current = self._current, new
            self.swaps += 1 if old is not None else 0
            self.reason = None
            self.target_error = None
        if self.on_swap is not None:
            try:
                self.on_swap(old, new)
            except Exception:  # metrics must never break a swap
                log.exception("on_swap callback failed")
        if old is not None and old is not new:
            log.info("serving %s v%s (was v%s)", new.name, new.version, old.version)
            old.release()
        else:
            log.info("serving %s v%s", new.name, new.version)
        return old

    def _registry(self) -> MlflowClient:
        if self._client is None:
            self._client = registry_client(self.spec)
        return self._client

    def poll(self) -> bool:
        """Load and swap in the version the reference points at if it is not the one served.

        Returns True when a new model was swapped in. Errors are recorded (``last_error``; and
        ``reason`` while no model is loaded) and re-raised as :class:`ServingError`.
        """
        with self._poll_lock:
            self.last_poll = time.time()
            mv = None
            try:
                client = self._registry()
                mv = resolve_version(client, self.ref)
                current = self._current
                if current is not None and str(mv.version) == current.version and current.name == str(mv.name):
                    self.last_error = None
                    self.target_error = None
                    return False
                loaded = load_version(self.spec, client, mv, alias=self.ref.alias, warmup=self.warmup)
            except Exception as exc:
                message = exc.message if isinstance(exc, TidecastError) else f"{type(exc).__name__}: {exc}"
                self.last_error = message
                if mv is not None:  # the registry answered: the version it names cannot be served
                    self.target_error = f"{self.ref.uri} is v{mv.version}, which cannot be loaded: {message}"
                if self._current is None:
                    self.reason = f"cannot load {self.ref.uri}: {message}"
                log.warning("registry poll for %s failed: %s", self.ref.uri, message)
                if isinstance(exc, ServingError):
                    raise
                raise ServingError(message) from exc
            self.last_error = None
            self.swap(loaded)
            return True


__all__ = [
    "LoadedModel",
    "ModelHolder",
    "ModelRef",
    "load_model",
    "load_version",
    "metrics_from_tags",
    "parse_model_ref",
    "registry_client",
    "resolve_version",
]
