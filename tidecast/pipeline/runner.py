"""Run a pipeline like ``dvc repro``: execute only the steps whose inputs changed.

:func:`run` takes the project lock, plans the run (:func:`tidecast.pipeline.planning.plan`: every
step's key and status), asks the steps that will run whether they can (their ``check``), then
executes the stale and missing ones, each into a pending cache entry committed atomically and
recorded in ``tidecast.lock`` as soon as it finishes. A fresh step is neither executed nor loaded,
unless a step that runs reads it.

Steps whose inputs are all done run at the same time, up to :func:`parallel_steps` of them (2 by
default, 1 on one core; ``TIDECAST_PARALLEL_STEPS=1`` runs them one after the other), each in a
thread of its own that sees the run's context (the executor scope), unless a step declares
``exclusive`` (:func:`tidecast.pipeline.dag.step`). A step that can run alone runs in the calling
thread, as every step does with one at a time. The calling thread coordinates: it reports the
steps' start and end, records them in ``tidecast.lock`` and drops outputs from memory once no
running or waiting step reads them. After a failure no step starts; the steps already running are
waited for and recorded if they succeeded, then the first failure is raised. Ctrl-C in the calling
thread is raised in the steps' threads too (``KeyboardInterrupt``), which are waited for.

``force=("clean",)`` re-executes ``clean`` only: its key does not change, so its downstream steps
stay fresh (force them too, or use ``force=("all",)``, to recompute them).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from tidecast.errors import PipelineError, TidecastError
from tidecast.faults import fault_point
from tidecast.pipeline.cache import PARTITIONED_TYPE, PARTS_DIR, ArtifactCache, PendingEntry, is_partitioned
from tidecast.pipeline.context import Hooks, Outputs, RunCallbacks, RunResult, SpecLike, StepContext, StepPlan
from tidecast.pipeline.dag import Pipeline, StepDef
from tidecast.pipeline.executors import executor_scope
from tidecast.pipeline.lock import LockFile, ProjectLock, StepRecord
from tidecast.pipeline.memory import PeakRSS
from tidecast.pipeline.planning import check, default_lockfile, plan

log = logging.getLogger("tidecast.pipeline")

#: How many steps may run at the same time (``1``: one after the other), unless ``run`` is told.
PARALLEL_ENV = "TIDECAST_PARALLEL_STEPS"


def parallel_steps(requested: int | None = None) -> int:
    """How many steps :func:`run` runs at the same time at most: ``requested``, else the
    ``TIDECAST_PARALLEL_STEPS`` environment variable, else 2 (1 on a single core)."""
    value = requested
    if value is None:
        text = os.environ.get(PARALLEL_ENV, "").strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                raise PipelineError(f"{PARALLEL_ENV}={text!r} is not a whole number (1: one step at a time)") from None
    if value is None:
        value = min(2, os.cpu_count() or 1)
    if value < 1:
        what = "max_parallel" if requested is not None else PARALLEL_ENV
        raise PipelineError(f"{what} must be 1 or more (1: one step at a time), got {value}")
    return value


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
    max_parallel: int | None = None,
) -> RunResult:
    """Run the steps up to ``until`` whose output is not cached (plus ``force``d ones).

    Holds the project lock (:class:`~tidecast.pipeline.lock.ProjectLock`, waiting up to
    ``lock_timeout`` seconds) for the whole run. Each executed step is saved to the cache
    atomically and recorded in ``tidecast.lock`` as soon as it finishes, so an interrupted run
    keeps the steps that completed (``lockfile``: another record than the project's
    ``tidecast.lock``, e.g. the monitor's). A failing step raises :class:`PipelineError` ("step 'x'
    failed: ...", chaining the cause; a :class:`TidecastError` passes through unchanged) and leaves
    nothing of itself in the cache or the lock file. Up to ``max_parallel`` independent steps run
    at the same time (default: :func:`parallel_steps`; see the module docstring).
    """
    limit = parallel_steps(max_parallel)
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
        spans: dict[str, tuple[float, float]] = {}
        total = len(plans)
        index_of = {p.name: i for i, p in enumerate(plans, start=1)}
        run_started = time.perf_counter()

        def finish(p: StepPlan, done: _Done) -> None:
            """The coordinating thread's part of a step that succeeded: record it, free its inputs."""
            d = sub[p.name]
            value = done.value
            fault_point(f"step.{p.name}.committed")
            if d.cache:
                if cache.meta(p.name, p.key).get("format") in ("parquet", "partitioned"):
                    # hand downstream steps exactly what a later run would load from the cache
                    value = cache.load(p.name, p.key)
                lockfile.record(
                    p.name, _record(p, _relative(cache.path(p.name, p.key), root), done.seconds, _now(), done.peak_mb)
                )
            else:
                lockfile.record(p.name, _record(p, None, done.seconds, _now(), done.peak_mb))
            values[p.name] = value
            executed.append(p.name)
            durations[p.name] = done.seconds
            peaks[p.name] = done.peak_mb
            spans[p.name] = (done.started - run_started, done.started - run_started + done.seconds)
            for parent in dict.fromkeys(d.inputs):
                readers[parent] -= 1
                if readers[parent] <= 0 and by_name[parent].cache:
                    values.pop(parent, None)
                    frames.pop(parent, None)
            if readers[p.name] <= 0 and d.cache:
                values.pop(p.name, None)
            fault_point(f"step.{p.name}.end")
            if cb.on_step_end:
                cb.on_step_end(p.name, "ran", done.seconds)

        waiting = list(plans)  # not started yet, in the plan's order
        running: dict[str, _StepThread] = {}
        wake = threading.Event()
        failure: BaseException | None = None

        def collect() -> None:
            """Record the steps whose threads ended; keep the first failure (later ones as its notes)."""
            nonlocal failure
            for name in [n for n in list(running) if running[n].finished]:
                thread = running.pop(name)
                thread.join()  # it has ended its work: only its return is left
                cache._forget(thread.pending)
                if thread.done is not None:
                    finish(by_name[name], thread.done)
                    continue
                error = thread.error if thread.error is not None else KeyboardInterrupt()
                if failure is None:
                    failure = error
                elif not isinstance(error, KeyboardInterrupt):
                    failure.add_note(f"step '{name}' failed meanwhile: {type(error).__name__}: {error}")

        def startable(p: StepPlan, beside: list[str], available: set[str]) -> bool:
            d = sub[p.name]
            return (
                len(beside) < limit
                and all(i in available for i in d.inputs)
                and all(d.can_run_beside(sub[other]) for other in beside)
            )

        with executor_scope():  # one process pool / Dask cluster for every step of the run
            try:
                while (waiting and failure is None) or running:
                    # what starts now, in the plan's order; a fresh step is reported once every step before it started
                    available = {*skipped, *executed}
                    actions: list[StepPlan] = []
                    beside = list(running)
                    blocked = False
                    for p in list(waiting) if failure is None else []:  # after a failure no step starts
                        if not p.will_run and not blocked:
                            actions.append(p)
                            available.add(p.name)
                        elif p.will_run and startable(p, beside, available):
                            actions.append(p)
                            beside.append(p.name)
                        else:
                            blocked = blocked or p.will_run
                    alone = not running and sum(1 for a in actions if a.will_run) == 1
                    for p in actions:
                        waiting.remove(p)
                        if cb.on_step_start:
                            cb.on_step_start(p.name, index_of[p.name], total)
                        if not p.will_run:
                            skipped.append(p.name)
                            if cb.on_step_end:
                                cb.on_step_end(p.name, "cached", 0.0)
                            continue
                        d = sub[p.name]
                        replace = cache.has(d.name, p.key)  # forced, or no longer holds: the new output replaces it
                        pending, kwargs = _prepare(d, p, spec, state, cache, value_of, cb)
                        if alone:  # in this thread, as with one step at a time
                            try:
                                done = _call(d, p, pending, kwargs, replace)
                            finally:
                                cache._forget(pending)
                            finish(p, done)
                        else:
                            running[p.name] = _StepThread(d, p, pending, kwargs, replace, wake)
                            running[p.name].start()
                    if running:
                        wake.wait(0.5)
                        wake.clear()  # a step that ends from now on sets it again
                        collect()
                    elif waiting and not actions and failure is None:  # not with a valid plan: never wait forever
                        raise PipelineError(f"steps {', '.join(p.name for p in waiting)} can never start")
                if failure is not None:
                    raise failure
            except BaseException as exc:
                _drain(running, interrupt=isinstance(exc, KeyboardInterrupt))
                with contextlib.suppress(Exception):  # record what succeeded meanwhile; the first error wins
                    collect()
                raise

    def load_output(name: str) -> Any:
        if not by_name[name].cache:
            raise PipelineError(f"step '{name}' is not cached and did not run")
        value = cache.load(name, by_name[name].key)
        return value.to_pandas() if is_partitioned(value) else value

    kept = {n: v for n, v in values.items() if not by_name[n].cache}
    order = [n for n in to_run if n in durations]  # the plan's order, whichever finished first
    return RunResult(
        executed=order,
        skipped=skipped,
        outputs=Outputs([p.name for p in plans], kept, load_output),
        durations={n: durations[n] for n in order},
        plans=plans,
        peak_rss_mb={n: peaks[n] for n in order},
        spans={n: spans[n] for n in order},
    )


def _takes_partitions(d: StepDef, param: str) -> bool:
    """Whether ``param`` of the step is annotated with the partitioned output's class (it then receives
    the handle of a partitioned output; any other parameter receives the partitions read into one DataFrame)."""
    annotation = inspect.signature(d.fn).parameters[param].annotation
    if isinstance(annotation, str):
        return PARTITIONED_TYPE in annotation
    return getattr(annotation, "__name__", "") == PARTITIONED_TYPE


class _Done(NamedTuple):
    """What a step that succeeded hands to the coordinating thread."""

    seconds: float
    value: Any
    peak_mb: float
    started: float
    """``time.perf_counter()`` when its function started."""


def _prepare(
    d: StepDef, p: StepPlan, spec: Any, state: Path, cache: ArtifactCache, value_of: Callable[[str, bool], Any], cb: Hooks
) -> tuple[PendingEntry, dict[str, Any]]:
    """In the coordinating thread: the step's pending cache entry and its arguments (inputs read
    from memory or the cache)."""
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
    except BaseException:
        pending.abort()
        cache._forget(pending)
        raise
    return pending, kwargs


def _call(d: StepDef, p: StepPlan, pending: PendingEntry, kwargs: dict[str, Any], replace: bool) -> _Done:
    """Run one step's function into its pending cache entry and commit it if the step is cached (in
    whichever thread runs the step). Its peak memory (this process and its local workers, MiB)
    goes into the cache entry's meta and, through the coordinating thread, the lock."""
    try:
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
        if d.cache:
            try:
                pending.commit(value, kind=d.kind, duration_s=seconds, peak_rss_mb=peak.mb, replace=replace)
            except TidecastError:
                raise
            except Exception as exc:
                raise PipelineError(
                    f"step '{d.name}' returned a value that cannot be stored in the cache: {type(exc).__name__}: {exc}"
                ) from exc
        return _Done(seconds, value, peak.mb, started)
    finally:
        if not pending.done:
            pending.abort()


class _StepThread(threading.Thread):
    """A step run beside others: :func:`_call` in a copy of the run's context (its executor scope)."""

    def __init__(
        self, d: StepDef, p: StepPlan, pending: PendingEntry, kwargs: dict[str, Any], replace: bool, wake: threading.Event
    ) -> None:
        super().__init__(name=f"tidecast-step-{d.name}", daemon=True)  # a second Ctrl-C does not wait for it
        self.pending = pending
        self.done: _Done | None = None
        self.error: BaseException | None = None
        self.finished = False
        """Set (after ``done`` or ``error``) just before the thread wakes the coordinating thread."""
        self._work = (d, p, pending, kwargs, replace)
        self._context = contextvars.copy_context()
        self._wake = wake

    def run(self) -> None:
        try:
            self.done = self._context.run(_call, *self._work)
        except BaseException as exc:  # the coordinating thread raises it
            self.error = exc
        finally:
            self._work = ()  # the inputs are the coordinator's to drop
            self.finished = True
            self._wake.set()

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the step's thread at its next Python instruction (what Ctrl-C
        does to the main thread; code inside a C call sees it when the call returns)."""
        if self.ident is not None and self.is_alive() and not self.finished:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident), ctypes.py_object(KeyboardInterrupt))


def _drain(running: dict[str, _StepThread], *, interrupt: bool) -> None:
    """Wait for the steps still running (after Ctrl-C, interrupting them first); a second Ctrl-C stops waiting."""
    if interrupt:
        for thread in running.values():
            thread.interrupt()
    for thread in running.values():
        thread.join()
        thread.finished = True  # an exception that landed after its step ended: collect() reports it interrupted
