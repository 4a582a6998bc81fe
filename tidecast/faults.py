"""Named fault points for the fault-injection tests (``tests/faults``); inert unless armed.

Library code calls :func:`fault_point` at the moments where a crash is most likely to leave
something half done (a step starting or ending, a cache entry written but not yet renamed into
place, an MLflow run created but not yet filled, a model version registered but not yet given
its alias...). Nothing happens unless the process was started with::

    TIDECAST_FAULT_POINT=<name>[:n]     # SIGKILL this process the n-th time <name> is reached (n=1)
    TIDECAST_FAULT_ACTION=stop          # SIGSTOP it there instead (a test changes the world, then SIGCONTs it)
    TIDECAST_FAULT_TRACE=<file>         # append the name of every point reached to <file>

The environment is read once, at import; an unarmed call is one global lookup and a return.
:data:`POINTS` lists every point (``{step}`` stands for a pipeline step's name).
"""

from __future__ import annotations

import os
import signal
import threading

ENV_POINT = "TIDECAST_FAULT_POINT"
ENV_ACTION = "TIDECAST_FAULT_ACTION"
ENV_TRACE = "TIDECAST_FAULT_TRACE"

#: Every fault point of the library, in the order a training run reaches them.
POINTS: tuple[str, ...] = (
    "step.{step}.start",  # runner: the step's pending cache folder exists, its function has not run
    "cache.{step}.before-rename",  # cache: the entry is fully written in its .tmp- folder, not renamed
    "step.{step}.committed",  # runner: the entry is in the cache, tidecast.lock does not record it yet
    "lock.before-replace",  # tidecast.lock: the new text is in its temporary file, not yet replaced
    "step.{step}.end",  # runner: the step is cached and recorded
    "track.run-created",  # MLflow: the parent run exists (RUNNING), nothing logged to it
    "track.candidate-logged",  # MLflow: one more candidate run logged and ended
    "track.metrics-logged",  # MLflow: the parent's params and metrics are logged
    "track.artifacts-partial",  # MLflow: the parent's files are uploaded, its plots/ not yet
    "track.artifacts-logged",  # MLflow: every parent artifact is uploaded
    "pyfunc.load",  # the pyfunc is loaded (first: MLflow validating the input example while logging it)
    "track.model-logged",  # MLflow: the model is logged, not registered
    "registry.version-created",  # registry: a new version exists, no gate verdict, no alias
    "registry.gate-evaluated",  # registry: the gate's checks are computed, nothing recorded
    "registry.previous-set",  # registry: `previous` moved to the old champion, `champion` not yet moved
    "registry.champion-set",  # registry: `champion` moved, its promotion tags not yet written
    "track.registered",  # MLflow: the verdict is known, not yet tagged on the parent run
    "track.finished",  # MLflow: every run ended, the step's cache entry not yet written
    "report.built",  # report: built in memory, nothing written
    "report.written",  # report: written under .tidecast/reports/, not logged to MLflow
    "report.logged",  # report: logged to the MLflow run
)


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    name, sep, count = value.rpartition(":")
    if sep and name and count.isdigit():
        return name, max(1, int(count))
    return value, 1


_target: tuple[str, int] | None = _parse(os.environ.get(ENV_POINT))
_trace: str | None = os.environ.get(ENV_TRACE) or None
_stop: bool = os.environ.get(ENV_ACTION) == "stop"
_seen: dict[str, int] = {}
_lock = threading.Lock()  # steps side by side reach points from two threads: count, trace and kill as one


def arm(point: str | None, trace: str | None = None, *, stop: bool = False) -> None:
    """Arm (or with ``None`` disarm) this process as the environment variables would at import."""
    global _target, _trace, _stop
    _target = _parse(point)
    _trace = trace
    _stop = stop
    _seen.clear()


def fault_point(name: str) -> None:
    """Mark a place where a crash is worth testing: SIGKILL (or SIGSTOP) this process if it is armed for ``name``."""
    if _target is None and _trace is None:
        return
    with _lock:  # held through the kill: no other thread's point is traced after the one that kills
        count = _seen[name] = _seen.get(name, 0) + 1
        if _trace is not None:
            with open(_trace, "a", encoding="utf-8") as handle:
                handle.write(f"{name}:{count}\n")
                handle.flush()
                os.fsync(handle.fileno())
        if _target is not None and _target == (name, count):
            os.kill(os.getpid(), signal.SIGSTOP if _stop else signal.SIGKILL)


__all__ = ["ENV_ACTION", "ENV_POINT", "ENV_TRACE", "POINTS", "arm", "fault_point"]
