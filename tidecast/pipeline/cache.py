"""The artifact cache: one folder per (step, key), committed atomically.

Layout under ``<state_dir>/cache/``::

    <step>/<key>/output.parquet   a pandas DataFrame            (or)
    <step>/<key>/output.json      a dict/list that JSON holds exactly  (or)
    <step>/<key>/output.joblib    anything else                 (None: no output file)
    <step>/<key>/output.parts/    a partitioned output (a folder of files: see ``PARTITIONED_TYPE``)
    <step>/<key>/artifacts/...    extra files the step wrote through ``ctx.artifact_dir``
    <step>/<key>/meta.json        step, key, created, format, type, sizes, duration

An entry is written into ``<step>/.tmp-<key>-<pid>-<random>/`` and renamed to ``<step>/<key>/``
only once complete, so a killed run leaves at most a ``.tmp-*`` folder, which readers ignore and
:meth:`ArtifactCache.clean_tmp` removes later. Only a folder with a ``meta.json`` counts as an entry.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidecast.errors import PipelineError, TidecastError
from tidecast.faults import fault_point

META = "meta.json"
ARTIFACTS = "artifacts"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
_OUTPUT_FILES = {
    "parquet": "output.parquet", "json": "output.json", "joblib": "output.joblib", "partitioned": "output.parts",
}
PARTS_DIR = _OUTPUT_FILES["partitioned"]
#: The class name of a partitioned output: a step's output held as a folder of files (the domain's
#: ``tidecast.data.partitions.PartitionedFrame``: Parquet partitions). The engine knows it by name only
#: and needs of it: ``path`` (its folder), ``to_pandas()`` (the whole frame), ``manifest`` (reading it
#: checks the folder) and ``cls(folder)`` (reopen it: the class is imported by the name the entry's
#: meta records, so the engine imports no domain module).
PARTITIONED_TYPE = "PartitionedFrame"


def is_partitioned(value: Any) -> bool:
    """Whether ``value`` is a partitioned output (see ``PARTITIONED_TYPE``)."""
    return type(value).__name__ == PARTITIONED_TYPE


def _open_partitioned(type_name: str, folder: Path) -> Any:
    """Reopen the partitioned output of class ``type_name`` (``module.PartitionedFrame``) at ``folder``."""
    module, _, name = str(type_name).rpartition(".")
    if name != PARTITIONED_TYPE or not module:
        raise PipelineError(f"cache entry {folder.parent} records a partitioned output of type {type_name!r}")
    handle = getattr(importlib.import_module(module), name)(folder)
    handle.manifest  # noqa: B018 -- a missing or damaged manifest fails here, with its one-line message
    return handle


def _is_dataframe(value: Any) -> bool:
    pandas = sys.modules.get("pandas")  # no pandas imported: value cannot be a DataFrame
    return pandas is not None and isinstance(value, pandas.DataFrame)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _write_output(value: Any, folder: Path, kind: str, step: str) -> str:
    """Write ``value`` into ``folder``; return the format used ("parquet", "json", "joblib", "none")."""
    if value is None and kind == "auto":
        return "none"
    if is_partitioned(value) and kind in ("auto", "partitioned"):
        target = folder / PARTS_DIR  # a step writes its partitions there (ctx.parts_dir); others are copied
        if Path(value.path).resolve() != target.resolve():
            shutil.copytree(value.path, target, dirs_exist_ok=True)
        return "partitioned"
    if kind == "partitioned":
        raise PipelineError(f"step '{step}' declares kind='partitioned' but returned a {type(value).__name__}")
    if kind in ("auto", "parquet") and _is_dataframe(value):
        target = folder / _OUTPUT_FILES["parquet"]
        try:
            value.to_parquet(target, engine="pyarrow")
            return "parquet"
        except Exception as exc:  # e.g. non-string column names or mixed object columns
            target.unlink(missing_ok=True)
            if kind == "parquet":
                raise PipelineError(f"step '{step}': its DataFrame cannot be written as Parquet: {exc}") from exc
    elif kind == "parquet":
        raise PipelineError(f"step '{step}' declares kind='parquet' but returned a {type(value).__name__}")
    if kind == "json" or (kind == "auto" and isinstance(value, dict | list)):
        try:
            text = json.dumps(value, ensure_ascii=False, indent=1)
            exact = json.loads(text) == value  # tuples, int keys, NaN... would not come back equal
        except (TypeError, ValueError) as exc:
            if kind == "json":
                raise PipelineError(f"step '{step}' declares kind='json' but its output is not JSON: {exc}") from exc
            exact = False
        if exact or kind == "json":
            (folder / _OUTPUT_FILES["json"]).write_text(text, encoding="utf-8")
            return "json"
    import joblib

    joblib.dump(value, folder / _OUTPUT_FILES["joblib"])
    return "joblib"


class PendingEntry:
    """A cache entry being written: a temporary folder that :meth:`commit` renames into place.

    Use it as a context manager: leaving the block without a commit removes the folder.
    """

    def __init__(self, cache: ArtifactCache, step: str, key: str) -> None:
        self.cache = cache
        self.step = step
        self.key = key
        folder = cache.root / step
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = folder / f"{TMP_PREFIX}{key}-{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp.mkdir()
        self.artifact_dir = self.tmp / ARTIFACTS
        self.artifact_dir.mkdir()
        self.format: str | None = None
        self.done = False

    def __enter__(self) -> PendingEntry:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far."""
        self.done = True
        _rmtree(self.tmp)

    def commit(
        self,
        value: Any,
        *,
        kind: str = "auto",
        duration_s: float | None = None,
        extra_dir: str | os.PathLike[str] | None = None,
        peak_rss_mb: float | None = None,
        replace: bool = False,
    ) -> Path:
        """Write ``value`` (and the files of ``extra_dir``, if given, into ``artifacts/``), then
        rename the folder to ``<step>/<key>/``. Returns the entry's path. On any error nothing is
        committed and the temporary folder is removed. An entry already there is kept (same key,
        same content) unless ``replace``: a forced step, or one whose output no longer held."""
        if self.done:
            raise PipelineError(f"cache entry {self.step}/{self.key} was already committed or aborted")
        try:
            if extra_dir is not None and Path(extra_dir).resolve() != self.artifact_dir.resolve():
                shutil.copytree(extra_dir, self.artifact_dir, dirs_exist_ok=True)
            self.format = _write_output(value, self.tmp, kind, self.step)
            if not any(self.artifact_dir.iterdir()):
                self.artifact_dir.rmdir()
            sizes = {
                p.relative_to(self.tmp).as_posix(): p.stat().st_size for p in sorted(self.tmp.rglob("*")) if p.is_file()
            }
            meta = {
                "step": self.step,
                "key": self.key,
                "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "format": self.format,
                "output": _OUTPUT_FILES.get(self.format),
                "type": f"{type(value).__module__}.{type(value).__qualname__}",
                "sizes": sizes,
                "bytes": sum(sizes.values()),
                "duration_s": None if duration_s is None else round(float(duration_s), 6),
                "peak_rss_mb": peak_rss_mb,
            }
            (self.tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            fault_point(f"cache.{self.step}.before-rename")
            final = self.cache.path(self.step, self.key)
            if final.exists():
                if (final / META).is_file() and not replace:  # written meanwhile with the same key: same content
                    self.abort()
                    return final
                trash = final.with_name(f"{TRASH_PREFIX}{self.key}-{os.getpid()}-{secrets.token_hex(4)}")
                os.rename(final, trash)
                _rmtree(trash)
            os.rename(self.tmp, final)
            self.done = True
            return final
        except BaseException:
            self.abort()
            raise


class ArtifactCache:
    """Step outputs keyed by content hash, under ``root`` (normally ``<state_dir>/cache``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._pending: set[Path] = set()

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.root)!r})"

    def path(self, step: str, key: str) -> Path:
        """The folder of an entry (whether it exists or not)."""
        return self.root / step / key

    def artifacts(self, step: str, key: str) -> Path:
        """The folder of an entry's extra files (may not exist: the step wrote none)."""
        return self.path(step, key) / ARTIFACTS

    def has(self, step: str, key: str) -> bool:
        """Whether a complete entry exists."""
        return (self.path(step, key) / META).is_file()

    def meta(self, step: str, key: str) -> dict[str, Any]:
        """The ``meta.json`` of an entry."""
        file = self.path(step, key) / META
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineError(f"no cached output for step '{step}' (key {key})") from None
        except (OSError, ValueError) as exc:
            raise PipelineError(
                f"cache entry {file.parent} is damaged ({exc}); delete that folder and run again"
            ) from None

    def begin(self, step: str, key: str) -> PendingEntry:
        """Start writing an entry: a temporary folder with an ``artifacts/`` subfolder."""
        pending = PendingEntry(self, step, key)
        self._pending.add(pending.tmp)
        return pending

    def save(
        self,
        step: str,
        key: str,
        value: Any,
        extra_dir: str | os.PathLike[str] | None = None,
        *,
        kind: str = "auto",
        duration_s: float | None = None,
    ) -> Path:
        """Store ``value`` (and a copy of ``extra_dir``'s files) atomically; returns the entry path."""
        pending = self.begin(step, key)
        try:
            return pending.commit(value, kind=kind, duration_s=duration_s, extra_dir=extra_dir)
        finally:
            self._pending.discard(pending.tmp)

    def load(self, step: str, key: str) -> Any:
        """Read an entry's output back."""
        meta = self.meta(step, key)
        fmt = meta.get("format")
        folder = self.path(step, key)
        if fmt == "none":
            return None
        if fmt not in _OUTPUT_FILES:
            raise PipelineError(f"cache entry {folder} has an unknown format {fmt!r}; delete that folder and run again")
        file = folder / _OUTPUT_FILES[fmt]
        try:
            if fmt == "partitioned":
                return _open_partitioned(meta.get("type", ""), file)
            if fmt == "parquet":
                import pandas as pd

                return pd.read_parquet(file, engine="pyarrow")
            if fmt == "json":
                return json.loads(file.read_text(encoding="utf-8"))
            import joblib

            return joblib.load(file)
        except TidecastError:
            raise
        except Exception as exc:
            raise PipelineError(
                f"cached output of step '{step}' at {file} cannot be read ({type(exc).__name__}: {exc}); "
                "delete that folder and run again"
            ) from exc

    def entries(self) -> Iterator[tuple[str, str, Path]]:
        """Every complete entry as ``(step, key, path)``."""
        if not self.root.is_dir():
            return
        for step_dir in sorted(self.root.iterdir()):
            if not step_dir.is_dir() or step_dir.name.startswith("."):
                continue
            for entry in sorted(step_dir.iterdir()):
                if not entry.name.startswith(".") and (entry / META).is_file():
                    yield step_dir.name, entry.name, entry

    def clean_tmp(self, max_age_s: float = 60.0) -> list[Path]:
        """Remove leftovers of interrupted writes: ``.tmp-*`` folders whose process is gone or
        that are older than ``max_age_s`` (folders this object is writing are kept). Call it while
        holding the project lock. Returns the removed folders."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        for step_dir in self.root.iterdir():
            if not step_dir.is_dir():
                continue
            for entry in step_dir.iterdir():
                if entry.name.startswith(TRASH_PREFIX):
                    _rmtree(entry)
                    removed.append(entry)
                    continue
                if not entry.name.startswith(TMP_PREFIX) or entry in self._pending:
                    continue
                parts = entry.name[len(TMP_PREFIX) :].split("-")
                pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else -1
                try:
                    age = now - entry.stat().st_mtime
                except OSError:
                    continue
                if not pid_alive(pid) or age > max_age_s:
                    _rmtree(entry)
                    removed.append(entry)
        return removed

    def gc(self, keep: Mapping[str, str | Iterable[str]]) -> list[Path]:
        """Remove every entry except ``keep`` (step -> key, or step -> keys), and leftovers of
        interrupted writes. Call it while holding the project lock. Returns the removed folders."""
        wanted = {step: {keys} if isinstance(keys, str) else set(keys) for step, keys in keep.items()}
        removed = self.clean_tmp()
        for step, key, path in list(self.entries()):
            if key not in wanted.get(step, ()):
                _rmtree(path)
                removed.append(path)
        if self.root.is_dir():
            for step_dir in self.root.iterdir():
                if step_dir.is_dir():
                    with contextlib.suppress(OSError):
                        step_dir.rmdir()  # only when empty
        return removed

    def _forget(self, pending: PendingEntry) -> None:
        self._pending.discard(pending.tmp)
