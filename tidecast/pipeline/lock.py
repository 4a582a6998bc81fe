"""``tidecast.lock`` (what each step last ran with) and the project's inter-process run lock.

``tidecast.lock`` lives in the project folder, next to ``tidecast.yaml``, and is meant to be
committed: it records per step the cache key and the hashes it was made from, so ``tidecast
status`` can say *why* a step is stale. It is always rewritten whole, atomically::

    schema: 1
    steps:
      clean:
        key: 3f1c0e9a7b2d4c51
        code: 9a0e...
        spec: {clean: 51d2...}
        inputs: {ingest: 77ab...}
        fingerprint: null
        deps: null          # backtest: {plugin:my_models.py: 1a2b..., library:lightgbm: 4.6.0}
        outputs: .tidecast/cache/clean/3f1c0e9a7b2d4c51
        duration_s: 0.42
        finished_at: '2025-01-01T12:00:00Z'
        peak_rss_mb: 312.5
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidecast.errors import LockedError, PipelineError
from tidecast.faults import fault_point
from tidecast.pipeline.cache import pid_alive

LOCK_FILENAME = "tidecast.lock"
RUN_LOCK_FILENAME = "run.lock"
SCHEMA = 1
_HEADER = "# Written by tidecast: what each pipeline step last ran with. Do not edit by hand.\n"


@dataclass
class StepRecord:
    """One step's entry in ``tidecast.lock``."""

    key: str
    code: str
    spec: dict[str, str] = field(default_factory=dict)
    """Hash of each spec section the step declares."""
    inputs: dict[str, str] = field(default_factory=dict)
    """Key of each upstream step."""
    fingerprint: str | None = None
    deps: dict[str, str] | None = None
    """What the step's ``deps`` gave (``plugin:<file>`` → hash, ``library:<dist>`` → version,
    ``store:<what>`` → hash); None for steps without, and in locks written before tidecast kept them."""
    outputs: str | None = None
    """The cache entry, relative to the project folder (None for ``cache=False`` steps)."""
    duration_s: float | None = None
    finished_at: str | None = None
    peak_rss_mb: float | None = None
    """Peak resident memory of the step's run, this process plus its local workers (MiB)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> StepRecord:
        if not isinstance(data, dict) or not isinstance(data.get("key"), str) or not isinstance(data.get("code"), str):
            raise PipelineError(f"{where}: a step record needs at least 'key' and 'code'")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("spec", "inputs"):
            if not isinstance(values.get(name, {}), dict):
                raise PipelineError(f"{where}: '{name}' must be a mapping")
            values[name] = {str(k): str(v) for k, v in (values.get(name) or {}).items()}
        if values.get("deps") is not None:
            if not isinstance(values["deps"], dict):
                raise PipelineError(f"{where}: 'deps' must be a mapping")
            values["deps"] = {str(k): str(v) for k, v in values["deps"].items()}
        return cls(**values)


class LockFile:
    """Read and atomically rewrite ``tidecast.lock``. A missing file reads as empty."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.records: dict[str, StepRecord] = self._read()

    def __repr__(self) -> str:
        return f"LockFile({str(self.path)!r}, steps={list(self.records)})"

    def _read(self) -> dict[str, StepRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise PipelineError(f"{self.path}: cannot read the lock file: {exc}") from None
        hint = "delete it; the next run writes it again"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PipelineError(f"{self.path}: not valid YAML ({exc})", hint=hint) from None
        if data is None:
            return {}
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else None
            raise PipelineError(f"{self.path}: expected 'schema: {SCHEMA}', found {found!r}", hint=hint)
        steps = data.get("steps") or {}
        if not isinstance(steps, dict):
            raise PipelineError(f"{self.path}: 'steps' must be a mapping of step names", hint=hint)
        try:
            return {str(n): StepRecord.from_dict(r, where=f"{self.path}: steps.{n}") for n, r in steps.items()}
        except PipelineError as exc:
            raise PipelineError(exc.message, hint=hint) from None

    def reload(self) -> None:
        self.records = self._read()

    def get(self, name: str) -> StepRecord | None:
        return self.records.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def record(self, name: str, record: StepRecord, *, write: bool = True) -> None:
        """Set a step's record (and rewrite the file unless ``write=False``)."""
        self.records[name] = record
        if write:
            self.write()

    def remove(self, *names: str, write: bool = True) -> None:
        for name in names:
            self.records.pop(name, None)
        if write:
            self.write()

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "steps": {name: rec.to_dict() for name, rec in self.records.items()}}

    def clean_tmp(self) -> list[Path]:
        """Remove the temporary files of writes whose process died before ``os.replace`` (a killed run
        leaves ``.tidecast.lock.<pid>-<random>.tmp`` beside the lock file). Call it while holding the
        project lock. Returns the removed files."""
        removed: list[Path] = []
        prefix = f".{self.path.name}."
        try:
            candidates = list(self.path.parent.glob(f"{prefix}*.tmp"))
        except OSError:
            return removed
        for file in candidates:
            pid_text = file.name[len(prefix) : -len(".tmp")].split("-", 1)[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and pid_alive(int(pid_text)):
                continue
            with contextlib.suppress(OSError):
                file.unlink()
                removed.append(file)
        return removed

    def write(self) -> None:
        """Rewrite the whole file: a temporary file in the same folder, then ``os.replace``."""
        text = _HEADER + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            fault_point("lock.before-replace")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


# ------------------------------------------------------------------------------ run lock
_held_lock = threading.Lock()
_held: dict[str, list[Any]] = {}  # resolved path -> [fd, depth, thread id]


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


class ProjectLock:
    """An exclusive lock on ``<state_dir>/run.lock`` held for a whole run (a context manager).

    ``timeout``: seconds to wait for another holder (0: fail at once; None: wait forever). Raises
    :class:`~tidecast.errors.LockedError` naming the holder's pid. The kernel releases the lock
    when its process dies, so a killed run never leaves the project locked. Re-entrant within
    one thread (a nested ``with`` is a no-op).
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, timeout: float | None = 0.0, poll_s: float = 0.05) -> None:
        self.path = Path(state_dir) / RUN_LOCK_FILENAME
        self.timeout = timeout
        self.poll_s = poll_s
        self._key: str | None = None

    def __repr__(self) -> str:
        return f"ProjectLock({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._key is not None

    def _holder(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text if text.isdigit() else "unknown"

    def _settled_holder(self, tries: int = 25, pause_s: float = 0.02) -> str:
        """The holder's pid, waiting up to half a second for it: a run that has just taken the lock
        writes its pid a moment later (and one releasing it empties the file first)."""
        for _ in range(tries):
            holder = self._holder()
            if holder != "unknown":
                return holder
            time.sleep(pause_s)
        return "unknown"

    def acquire(self) -> ProjectLock:
        if self._key is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        with _held_lock:
            entry = _held.get(key)
            if entry is not None and entry[2] == threading.get_ident():
                entry[1] += 1
                self._key = key
                return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.timeout is None else time.monotonic() + max(0.0, self.timeout)
        while not _try_lock(fd):
            if deadline is not None and time.monotonic() >= deadline:
                holder = self._settled_holder()
                if _try_lock(fd):  # released while its holder was being read
                    break
                os.close(fd)
                # no "remove the file" advice: the kernel drops the lock with its process, and deleting
                # a held lock file would let a second run lock a new file beside the first
                raise LockedError(
                    f"project locked: another tidecast run holds {self.path} (pid {holder}); "
                    "wait for it to finish (a run that dies releases the lock by itself)"
                )
            time.sleep(self.poll_s)
        try:  # the pid at offset 0, then the file cut to it: a reader never sees an old pid's tail
            text = f"{os.getpid()}\n".encode()
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
        except OSError:
            pass
        with _held_lock:
            _held[key] = [fd, 1, threading.get_ident()]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        key, self._key = self._key, None
        with _held_lock:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
        fd = entry[0]
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> ProjectLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
