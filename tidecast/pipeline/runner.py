"""Run a pipeline like ``dvc repro``: execute only the steps whose inputs changed.

:func:`run` takes the project lock, plans the run (:func:`tidecast.pipeline.planning.plan`: every
step's key and status), asks the steps that will run whether they can (their ``check``), then
executes the stale and missing ones in order, each into a pending cache entry committed atomically
and recorded in ``tidecast.lock`` as soon as it finishes. A fresh step is neither executed nor
loaded, unless a step that runs reads it.

``force=("clean",)`` re-executes ``clean`` only: its key does not change, so its downstream steps
stay fresh (force them too, or use ``force=("all",)``, to recompute them).
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidecast.errors import PipelineError, TidecastError
from tidecast.faults import fault_point
from tidecast.pipeline.cache import PARTITIONED_TYPE, PARTS_DIR, ArtifactCache, is_partitioned
from tidecast.pipeline.context import Hooks, Outputs, RunCallbacks, RunResult, SpecLike, StepContext, StepPlan
from tidecast.pipeline.dag import Pipeline, StepDef
from tidecast.pipeline.executors import executor_scope
from tidecast.pipeline.lock import LockFile, ProjectLock, StepRecord
from tidecast.pipeline.memory import PeakRSS
from tidecast.pipeline.planning import check, default_lockfile, plan

log = logging.getLogger("tidecast.pipeline")


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
    cb = Hooks(callbacks)
    cache = ArtifactCache(state / "cache")
    with ProjectLock(state, timeout=lock_timeout):
        cache.clean_tmp()
        lockfile = lockfile if lockfile is not None else default_lockfile(spec)
        lockfile.clean_tmp()
        plans = plan(pipeline, spec, cache, lockfile, until=until, force=force)
        sub = pipeline.subgraph(until)
        for p in plans:  # a step that cannot run (its store does not answer) fails before any step runs
            if p.will_run:
                check(sub[p.name], spec, None)
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
            if handle or not is_partitioned(value):
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
        return value.to_pandas() if is_partitioned(value) else value

    kept = {n: v for n, v in values.items() if not by_name[n].cache}
    return RunResult(
        executed=executed,
        skipped=skipped,
        outputs=Outputs([p.name for p in plans], kept, load_output),
        durations=durations,
        plans=plans,
        peak_rss_mb=peaks,
    )


def _takes_partitions(d: StepDef, param: str) -> bool:
    """Whether ``param`` of the step is annotated with the partitioned output's class (it then receives
    the handle of a partitioned output; any other parameter receives the partitions read into one DataFrame)."""
    annotation = inspect.signature(d.fn).parameters[param].annotation
    if isinstance(annotation, str):
        return PARTITIONED_TYPE in annotation
    return getattr(annotation, "__name__", "") == PARTITIONED_TYPE


def _execute(
    d: StepDef,
    p: StepPlan,
    spec: Any,
    state: Path,
    cache: ArtifactCache,
    value_of: Callable[[str, bool], Any],
    cb: Hooks,
    *,
    peaks: dict[str, float] | None = None,
) -> tuple[float, Any]:
    """Run one step into a pending cache entry; commit it if the step is cached. Its peak memory
    (this process and its local workers, MiB) goes into ``peaks``, the cache entry's meta and the lock."""
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
