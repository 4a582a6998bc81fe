"""Plan and run a pipeline like ``dvc repro``: execute only the steps whose inputs changed.

A step's cache key is a hash of its code version, the spec sections it declares, the keys of
its upstream steps, its external fingerprint and its ``deps`` (plugin modules, library versions,
the store it writes to: :mod:`tidecast.pipeline.deps`). A fresh step with a ``check`` is asked
whether its cached output still holds outside the cache (its MLflow run still exists); when it
does not, it re-runs, and so do the steps downstream of it. Keys depend on the *keys* of inputs, not on
their content, so they can all be computed before anything runs; a step whose key is already in
the cache is fresh and is neither executed nor even loaded, unless a step that must run reads it.

``force=("clean",)`` re-executes ``clean`` only: its key does not change, so its downstream steps
stay fresh (force them too, or use ``force=("all",)``, to recompute them).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from tidecast.errors import PipelineError, TidecastError
from tidecast.faults import fault_point
from tidecast.pipeline.cache import PARTS_DIR, ArtifactCache
from tidecast.pipeline.dag import Pipeline, StepDef, _did_you_mean
from tidecast.pipeline.deps import describe_changes
from tidecast.pipeline.executors import executor_scope
from tidecast.pipeline.hashing import stable_hash
from tidecast.pipeline.lock import LOCK_FILENAME, LockFile, ProjectLock, StepRecord

Status = Literal["fresh", "stale", "missing"]
log = logging.getLogger("tidecast.pipeline")


@runtime_checkable
class SpecLike(Protocol):
    """What the engine needs of a spec (``tidecast.spec.Spec`` is one).

    ``section(*names)`` returns ``{name: JSON-able value}``; a section a step declares must also be
    an attribute of the spec (so that a typo in ``@step(spec=...)`` is caught).
    """

    @property
    def root(self) -> Path: ...

    @property
    def state_dir(self) -> Path: ...

    def section(self, *names: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class StepPlan:
    """What a run would do with one step, and why."""

    name: str
    key: str
    status: Status
    """fresh: its output is in the cache; stale: it will run although (or because) it ran
    before; missing: it never produced an output for this key."""
    reason: str
    """A human sentence: "never run", "spec section 'clean' changed", "forced"..."""
    code: str = ""
    spec: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    cache: bool = True
    deps: Mapping[str, str] | None = None

    @property
    def will_run(self) -> bool:
        return self.status != "fresh"


@dataclass
class RunCallbacks:
    """Optional hooks a front end (the CLI's progress bars) sets; the library never prints.

    - ``on_plan(plans)``: once, before any step runs.
    - ``on_step_start(name, index, total)``: for every step, ``index`` counting from 1.
    - ``on_step_progress(name, done, total, description)``: what a step reports via ``ctx.progress``.
    - ``on_step_end(name, status, seconds)``: status "ran" or "cached" (seconds 0.0).

    Any object with some of these methods works too (missing ones are skipped).
    """

    on_plan: Callable[[list[StepPlan]], None] | None = None
    on_step_start: Callable[[str, int, int], None] | None = None
    on_step_progress: Callable[[str, float, float | None, str], None] | None = None
    on_step_end: Callable[[str, str, float], None] | None = None


@dataclass
class StepContext:
    """Given to a step that takes a ``ctx`` parameter."""

    name: str
    key: str
    artifact_dir: Path
    """A temporary folder inside the cache: files written here become part of the step's cache
    entry (``<cache>/<step>/<key>/artifacts/``) if the step succeeds. For ``cache=False`` steps
    it is removed after the step."""
    state_dir: Path
    spec: Any
    log: logging.Logger
    parts_dir: Path | None = None
    """Where a step writes the partitions of the :class:`~tidecast.data.partitions.PartitionedFrame`
    it returns (inside the pending cache entry, like ``artifact_dir``)."""
    _on_progress: Callable[[str, float, float | None, str], None] | None = field(default=None, repr=False)

    def progress(self, done: float, total: float | None = None, description: str = "") -> None:
        """Report progress (``done`` out of ``total``) to the front end, if it listens."""
        if self._on_progress is not None:
            self._on_progress(self.name, done, total, description)


class Outputs(Mapping[str, Any]):
    """Step outputs by name, read from the cache on first access (then kept)."""

    def __init__(self, names: Iterable[str], values: dict[str, Any], loader: Callable[[str], Any]) -> None:
        self._names = list(names)
        self._values = values
        self._loader = loader

    def __contains__(self, name: object) -> bool:  # without loading anything
        return name in self._names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._values:
            self._values[name] = self._loader(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Outputs({self._names})"


@dataclass
class RunResult:
    executed: list[str]
    """Steps whose function ran, in order."""
    skipped: list[str]
    """Fresh steps taken from the cache (not necessarily loaded)."""
    outputs: Mapping[str, Any]
    """Every step's output by name, loaded lazily from the cache."""
    durations: dict[str, float]
    """Seconds per executed step."""
    plans: list[StepPlan] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    """Peak resident memory (MiB) per executed step: this process plus its local workers
    (:class:`~tidecast.pipeline.memory.PeakRSS`)."""

    @property
    def keys(self) -> dict[str, str]:
        return {p.name: p.key for p in self.plans}


class _Hooks:
    """The callbacks of a :class:`RunCallbacks` or of any object with some of its methods."""

    def __init__(self, callbacks: Any) -> None:
        self.on_plan = getattr(callbacks, "on_plan", None)
        self.on_step_start = getattr(callbacks, "on_step_start", None)
        self.on_step_progress = getattr(callbacks, "on_step_progress", None)
        self.on_step_end = getattr(callbacks, "on_step_end", None)


# ------------------------------------------------------------------------------- planning
def _as_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _resolve_force(pipeline: Pipeline, force: str | Iterable[str] | None) -> set[str]:
    names = _as_names(force)
    if "all" in names:
        return set(pipeline)
    for name in names:
        if name not in pipeline:
            raise PipelineError(f"cannot force '{name}': no such step{_did_you_mean(name, pipeline)}")
    return set(names)


def _spec_hashes(d: StepDef, spec: Any) -> dict[str, str]:
    if not d.spec_sections:
        return {}
    try:
        sliced = spec.section(*d.spec_sections)
    except TidecastError:
        raise
    except Exception as exc:
        raise PipelineError(f"step '{d.name}': cannot read spec sections {list(d.spec_sections)}: {exc}") from exc
    hashes: dict[str, str] = {}
    for section in d.spec_sections:
        value = sliced.get(section) if isinstance(sliced, Mapping) else None
        if value is None and not hasattr(spec, section):
            raise PipelineError(f"step '{d.name}' declares spec section '{section}', which the spec does not have")
        hashes[section] = stable_hash(value)
    return hashes


def _fingerprint(d: StepDef, spec: Any) -> str | None:
    if d.fingerprint is None:
        return None
    try:
        value = d.fingerprint(spec)
    except TidecastError:
        raise
    except Exception as exc:
        raise PipelineError(f"fingerprint of step '{d.name}' failed: {type(exc).__name__}: {exc}") from exc
    return value if isinstance(value, str) else stable_hash(value)


def _deps(d: StepDef, spec: Any) -> dict[str, str] | None:
    if d.deps is None:
        return None
    try:
        value = d.deps(spec)
    except TidecastError:
        raise
    except Exception as exc:
        raise PipelineError(f"dependencies of step '{d.name}' failed: {type(exc).__name__}: {exc}") from exc
    return {str(k): str(v) for k, v in sorted(dict(value).items())}


def _check(d: StepDef, spec: Any, output: Any) -> str | None:
    """``d.check(spec, output)``: why a cached output no longer holds (None: it does), or, with
    ``output`` None, raise if the step cannot run."""
    if d.check is None:
        return None
    try:
        reason = d.check(spec, output)
    except TidecastError:
        raise
    except Exception as exc:
        raise PipelineError(f"checking step '{d.name}' failed: {type(exc).__name__}: {exc}") from exc
    return str(reason) if reason else None


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _what_changed(
    code: str, spec: Mapping[str, str], inputs: Mapping[str, str], fp: str | None, deps: Mapping[str, str] | None,
    rec: StepRecord,
) -> str:
    reasons: list[str] = []
    if rec.code != code:
        reasons.append("code of step changed")
    sections = [s for s in dict.fromkeys([*spec, *rec.spec]) if spec.get(s) != rec.spec.get(s)]
    if len(sections) == 1:
        reasons.append(f"spec section '{sections[0]}' changed")
    elif sections:
        reasons.append(f"spec sections {_quoted(sections)} changed")
    ups = [i for i in dict.fromkeys([*inputs, *rec.inputs]) if inputs.get(i) != rec.inputs.get(i)]
    if len(ups) == 1:
        reasons.append(f"upstream '{ups[0]}' changed")
    elif ups:
        reasons.append(f"upstream steps {_quoted(ups)} changed")
    if fp != rec.fingerprint:
        reasons.append("data fingerprint changed")
    if deps is not None:
        reasons.extend(describe_changes(rec.deps, deps, explained=bool(sections)))
    return "; ".join(reasons) or "inputs changed"


def _default_cache(spec: Any, state_dir: str | os.PathLike[str] | None = None) -> ArtifactCache:
    return ArtifactCache(Path(state_dir if state_dir is not None else spec.state_dir) / "cache")


def _default_lockfile(spec: Any) -> LockFile:
    return LockFile(Path(spec.root) / LOCK_FILENAME)


def plan(
    pipeline: Pipeline,
    spec: SpecLike,
    cache: ArtifactCache | None = None,
    lockfile: LockFile | None = None,
    until: str | None = None,
    force: str | Iterable[str] = (),
) -> list[StepPlan]:
    """The key, status and reason of every step up to ``until``, in run order. Runs nothing.

    A step whose key is in the cache is fresh, even if ``tidecast.lock`` records another key (a
    spec switched back to an earlier value reuses its cache), unless its ``check`` finds that the
    cached output no longer holds: it is then stale, and so is every step downstream of it. Forced
    steps are stale. Reasons compare with the lock file's record.
    """
    cache = cache if cache is not None else _default_cache(spec)
    lockfile = lockfile if lockfile is not None else _default_lockfile(spec)
    sub = pipeline.subgraph(until)
    forced = _resolve_force(pipeline, force)
    keys: dict[str, str] = {}
    invalid: set[str] = set()  # cached outputs that no longer hold: they and their dependents re-run
    plans: list[StepPlan] = []
    for name in sub.order():
        d = sub[name]
        spec_hashes = _spec_hashes(d, spec)
        fp = _fingerprint(d, spec)
        deps = _deps(d, spec)
        inputs = {i: keys[i] for i in dict.fromkeys(d.inputs)}
        payload: dict[str, Any] = {"step": name, "code": d.code, "spec": spec_hashes, "inputs": inputs, "fingerprint": fp}
        if deps is not None:  # steps without deps keep the keys they had before deps existed
            payload["deps"] = deps
        key = stable_hash(payload)
        keys[name] = key
        rec = lockfile.get(name)
        status: Status
        broken = next((i for i in inputs if i in invalid), None)
        if not d.cache:
            status, reason = "stale", "not cached (cache=False): runs every time"
        elif cache.has(name, key):
            why = None if name in forced or broken else _check(d, spec, cache.load(name, key)) if d.check else None
            if name in forced:
                status, reason = "stale", "forced"
            elif broken is not None or why is not None:
                status, reason = "stale", why or f"upstream '{broken}' re-runs"
                invalid.add(name)
            elif rec is not None and rec.key != key:
                status, reason = "fresh", "reused from the cache of an earlier run"
            else:
                status, reason = "fresh", "up to date"
        elif rec is None:
            status, reason = "missing", "never run"
        elif rec.key == key:
            status, reason = "missing", "cached output missing"
        else:
            status, reason = "stale", _what_changed(d.code, spec_hashes, inputs, fp, deps, rec)
        plans.append(
            StepPlan(
                name=name, key=key, status=status, reason=reason, code=d.code, spec=spec_hashes,
                inputs=inputs, fingerprint=fp, cache=d.cache, deps=deps,
            )
        )
    return plans


def status(
    pipeline: Pipeline,
    spec: SpecLike,
    *,
    until: str | None = None,
    force: str | Iterable[str] = (),
    state_dir: str | os.PathLike[str] | None = None,
) -> list[StepPlan]:
    """:func:`plan` with the project's own cache and lock file: what ``run`` would do now."""
    return plan(pipeline, spec, _default_cache(spec, state_dir), _default_lockfile(spec), until=until, force=force)


# -------------------------------------------------------------------------------- running
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def _record(
    p: StepPlan, outputs: str | None, duration_s: float | None, finished_at: str | None, peak_rss_mb: float | None = None
) -> StepRecord:
    return StepRecord(
        key=p.key, code=p.code, spec=dict(p.spec), inputs=dict(p.inputs), fingerprint=p.fingerprint,
        deps=None if p.deps is None else dict(p.deps), outputs=outputs, duration_s=None if duration_s is None else round(duration_s, 4), finished_at=finished_at,
        peak_rss_mb=peak_rss_mb,
    )


def run(
    pipeline: Pipeline,
    spec: SpecLike,
    *,
    until: str | None = None,
    force: str | Iterable[str] = (),
    callbacks: RunCallbacks | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    lock_timeout: float | None = 0.0,
    lockfile: LockFile | None = None,
) -> RunResult:
    """Run the steps up to ``until`` whose output is not cached (plus ``force``d ones).

    Holds the project lock (:class:`~tidecast.pipeline.lock.ProjectLock`, waiting up to
    ``lock_timeout`` seconds) for the whole run. Each executed step is saved to the cache
    atomically and recorded in ``tidecast.lock`` as soon as it finishes, so an interrupted run
    keeps the steps that completed (``lockfile``: another record than the project's
    ``tidecast.lock``, e.g. the monitor's). A failing step raises :class:`PipelineError` ("step 'x'
    failed: ...", chaining the cause; a :class:`TidecastError` passes through unchanged) and leaves
    nothing of itself in the cache or the lock file.
    """
    state = Path(state_dir) if state_dir is not None else Path(spec.state_dir)
    root = Path(spec.root)
    cb = _Hooks(callbacks)
    cache = ArtifactCache(state / "cache")
    with ProjectLock(state, timeout=lock_timeout):
        cache.clean_tmp()
        lockfile = lockfile if lockfile is not None else _default_lockfile(spec)
        lockfile.clean_tmp()
        plans = plan(pipeline, spec, cache, lockfile, until=until, force=force)
        sub = pipeline.subgraph(until)
        for p in plans:  # a step that cannot run (its store does not answer) fails before any step runs
            if p.will_run:
                _check(sub[p.name], spec, None)
        if cb.on_plan:
            cb.on_plan(plans)
        by_name = {p.name: p for p in plans}
        to_run = [p.name for p in plans if p.will_run]
        # how many executing steps still need each output (to drop it from memory afterwards)
        readers = {p.name: sum(1 for c in sub.dependents(p.name) if c in to_run) for p in plans}

        # fresh steps whose lock record is absent or from another key: record what is used now
        stale_records = False
        for p in plans:
            rec = lockfile.get(p.name)
            if not p.will_run and (rec is None or rec.key != p.key):
                meta = cache.meta(p.name, p.key)
                lockfile.record(
                    p.name,
                    _record(
                        p, _relative(cache.path(p.name, p.key), root), meta.get("duration_s"), meta.get("created"),
                        meta.get("peak_rss_mb"),
                    ),
                    write=False,
                )
                stale_records = True
        if stale_records:
            lockfile.write()

        values: dict[str, Any] = {}  # in memory: outputs still to be read, and cache=False outputs
        frames: dict[str, Any] = {}  # partitioned outputs read whole, for the steps that take a DataFrame

        def value_of(name: str, handle: bool = False) -> Any:
            if name not in values:
                values[name] = cache.load(name, by_name[name].key)
            value = values[name]
            if handle or not _is_partitioned(value):
                return value
            if name not in frames:
                frames[name] = value.to_pandas()
            return frames[name]

        executed: list[str] = []
        skipped: list[str] = []
        durations: dict[str, float] = {}
        peaks: dict[str, float] = {}
        total = len(plans)
        with executor_scope():  # one process pool / Dask cluster for every step of the run
            for index, p in enumerate(plans, start=1):
                if cb.on_step_start:
                    cb.on_step_start(p.name, index, total)
                if not p.will_run:
                    skipped.append(p.name)
                    if cb.on_step_end:
                        cb.on_step_end(p.name, "cached", 0.0)
                    continue
                d = sub[p.name]
                seconds, value = _execute(d, p, spec, state, cache, value_of, cb, peaks=peaks)
                fault_point(f"step.{p.name}.committed")
                if d.cache:
                    if cache.meta(p.name, p.key).get("format") in ("parquet", "partitioned"):
                        # hand downstream steps exactly what a later run would load from the cache
                        value = cache.load(p.name, p.key)
                    lockfile.record(
                        p.name, _record(p, _relative(cache.path(p.name, p.key), root), seconds, _now(), peaks.get(p.name))
                    )
                else:
                    lockfile.record(p.name, _record(p, None, seconds, _now(), peaks.get(p.name)))
                values[p.name] = value
                executed.append(p.name)
                durations[p.name] = seconds
                for parent in dict.fromkeys(d.inputs):
                    readers[parent] -= 1
                    if readers[parent] <= 0 and by_name[parent].cache:
                        values.pop(parent, None)
                        frames.pop(parent, None)
                if readers[p.name] <= 0 and d.cache:
                    values.pop(p.name, None)
                fault_point(f"step.{p.name}.end")
                if cb.on_step_end:
                    cb.on_step_end(p.name, "ran", seconds)

    def load_output(name: str) -> Any:
        if not by_name[name].cache:
            raise PipelineError(f"step '{name}' is not cached and did not run")
        value = cache.load(name, by_name[name].key)
        return value.to_pandas() if _is_partitioned(value) else value

    kept = {n: v for n, v in values.items() if not by_name[n].cache}
    return RunResult(
        executed=executed,
        skipped=skipped,
        outputs=Outputs([p.name for p in plans], kept, load_output),
        durations=durations,
        plans=plans,
        peak_rss_mb=peaks,
    )


def _is_partitioned(value: Any) -> bool:
    return type(value).__name__ == "PartitionedFrame"


def _takes_partitions(d: StepDef, param: str) -> bool:
    """Whether ``param`` of the step is annotated ``PartitionedFrame`` (it then receives the handle
    of a partitioned output; any other parameter receives the partitions read into one DataFrame)."""
    import inspect

    annotation = inspect.signature(d.fn).parameters[param].annotation
    if isinstance(annotation, str):
        return "PartitionedFrame" in annotation
    return getattr(annotation, "__name__", "") == "PartitionedFrame"


def _execute(
    d: StepDef,
    p: StepPlan,
    spec: Any,
    state: Path,
    cache: ArtifactCache,
    value_of: Callable[[str, bool], Any],
    cb: _Hooks,
    *,
    peaks: dict[str, float] | None = None,
) -> tuple[float, Any]:
    """Run one step into a pending cache entry; commit it if the step is cached. Its peak memory
    (this process and its local workers, MiB) goes into ``peaks``, the cache entry's meta and the lock."""
    from tidecast.pipeline.memory import PeakRSS

    replace = cache.has(d.name, p.key)  # forced, or its cached output no longer holds: the new one replaces it
    pending = cache.begin(d.name, p.key)
    try:
        ctx = StepContext(
            name=d.name,
            key=p.key,
            artifact_dir=pending.artifact_dir,
            state_dir=state,
            spec=spec,
            log=logging.getLogger(f"tidecast.pipeline.{d.name}"),
            parts_dir=pending.tmp / PARTS_DIR,
            _on_progress=cb.on_step_progress,
        )
        kwargs: dict[str, Any] = {}
        for param in d.params:
            if param in ("spec", "ctx"):
                kwargs[param] = spec if param == "spec" else ctx
            else:
                kwargs[param] = value_of(param, _takes_partitions(d, param))
        log.debug("running step %s (key %s)", d.name, p.key)
        fault_point(f"step.{d.name}.start")
        started = time.perf_counter()
        try:
            with PeakRSS() as peak:
                value = d.fn(**kwargs)
        except TidecastError:
            raise
        except Exception as exc:
            raise PipelineError(f"step '{d.name}' failed: {type(exc).__name__}: {exc}") from exc
        seconds = time.perf_counter() - started
        if peaks is not None:
            peaks[d.name] = peak.mb
        if d.cache:
            try:
                pending.commit(value, kind=d.kind, duration_s=seconds, peak_rss_mb=peak.mb, replace=replace)
            except TidecastError:
                raise
            except Exception as exc:
                raise PipelineError(
                    f"step '{d.name}' returned a value that cannot be stored in the cache: {type(exc).__name__}: {exc}"
                ) from exc
        return seconds, value
    finally:
        if not pending.done:
            pending.abort()
        cache._forget(pending)
