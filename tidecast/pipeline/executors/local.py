"""In-process and local multi-process executors (joblib, loky backend)."""

from __future__ import annotations

import atexit
import contextlib
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tidecast.errors import PipelineError

# loky replaces a worker whose memory grew by 300 MB since its first task (a global model's fold after
# a small per-series task is enough) once that worker's task is done, and says so with a warning meant
# for leaking code; the work goes on, and a run's console should not show it
warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given to the executor")

T = TypeVar("T")
R = TypeVar("R")

_warming: list[Any] = []
"""The result generators of :func:`warm_up` that no map has waited for yet."""
_warming_lock = threading.Lock()


def _quietly(fn: Callable[[], Any]) -> None:
    """``fn()`` in a worker, its errors ignored: a warm-up never fails the work that follows it."""
    with contextlib.suppress(Exception):
        fn()


def warm_up(n_jobs: int, fn: Callable[[], Any]) -> bool:
    """Start now, in the background, the reusable loky pool that ``LocalExecutor(n_jobs).map`` will
    use (same worker count, same settings: loky hands the same processes to that map), each
    worker running ``fn()`` once (its imports, say) while the caller goes on with other work.

    The next parallel :meth:`LocalExecutor.map` waits for the warm-up to end before it submits its
    own tasks (they would queue behind it anyway). Errors of ``fn`` are ignored, and a pool that
    cannot start is left to the map to start as it always does. Returns whether a warm-up began."""
    from joblib import Parallel, delayed, effective_n_jobs

    with _warming_lock:
        if n_jobs < 2 or _warming:
            return False
        try:
            if effective_n_jobs(n_jobs) < n_jobs:  # a daemon process or a nested call: no pool
                return False
            parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
            _warming.append(parallel(delayed(_quietly)(fn) for _ in range(n_jobs)))
        except Exception:
            return False
    _at_exit(_drop_warm_up)  # after loky's hook, so it runs first
    return True


def _drop_warm_up() -> None:
    """At exit, a warm-up that no map waited for (the run failed or stopped before its backtest):
    its workers killed at once, before loky's own exit hook would wait for their imports to end and
    joblib, at the interpreter's teardown, would fail loudly on the unfinished generator."""
    with _warming_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joblib's "tasks executed but not used"
        while _warming:
            results = _warming.pop()
            with contextlib.suppress(Exception):
                results.close()


_exit_hooks: set[Callable[[], None]] = set()


def _at_exit(fn: Callable[[], None]) -> None:
    """Run ``fn`` once at exit, before the hooks registered so far with threading's exit hooks
    (loky's, which joins its pool), else with :mod:`atexit`."""
    if fn in _exit_hooks:
        return
    _exit_hooks.add(fn)
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(fn)
            return
    except RuntimeError:  # the interpreter is already shutting down
        return
    atexit.register(fn)


def _settle_warm_up() -> None:
    """Wait for a running :func:`warm_up` (its results are nothing; its errors are ignored)."""
    with _warming_lock:
        while _warming:
            results = _warming.pop()
            with contextlib.suppress(Exception):
                for _ in results:
                    pass


class _Base:
    n_workers: int = 1
    _closed: bool = False

    def _check_open(self) -> None:
        if self._closed:
            raise PipelineError(f"{type(self).__name__}: used after close()")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _sequential(
        fn: Callable[[T], R], items: Iterable[T], on_result: Callable[[int, Any], None] | None
    ) -> list[R]:
        return _Base._collect((fn(item) for item in items), on_result)

    @staticmethod
    def _collect(results: Iterable[R], on_result: Callable[[int, Any], None] | None) -> list[R]:
        """The results in order, each passed to ``on_result(index, result)`` as it comes."""
        out: list[R] = []
        for index, result in enumerate(results):
            out.append(result)
            if on_result is not None:
                on_result(index, result)
        return out


class SequentialExecutor(_Base):
    """Runs everything in the calling process, one item after the other (easy to debug)."""

    n_workers = 1

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        desc: str = "",
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[R]:
        self._check_open()
        return self._sequential(fn, items, on_result)

    def __repr__(self) -> str:
        return "SequentialExecutor()"


class LocalExecutor(_Base):
    """Runs items on ``n_jobs`` local processes with joblib's loky backend (``-1``: every core).

    Items are dispatched lazily (at most ``2 * n_jobs`` ahead), so a generator of large items
    does not sit in memory all at once. ``n_jobs=1`` runs in-process. The loky worker pool is
    reused between calls (and between executors) and shut down by loky when idle.
    """

    def __init__(self, n_jobs: int = -1) -> None:
        from joblib import effective_n_jobs

        if n_jobs == 0:
            raise PipelineError("n_jobs must not be 0 (use 1 for no parallelism, -1 for every core)")
        self.n_jobs = n_jobs
        self.n_workers = max(1, int(effective_n_jobs(n_jobs)))

    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        desc: str = "",
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[R]:
        self._check_open()
        if self.n_workers == 1 or (hasattr(items, "__len__") and len(items) <= 1):  # type: ignore[arg-type]
            return self._sequential(fn, items, on_result)
        from joblib import Parallel, delayed

        _settle_warm_up()
        n_jobs = self.n_jobs
        if hasattr(items, "__len__"):  # no more processes than tasks: each costs a start and its imports
            n_jobs = min(self.n_workers, len(items))  # type: ignore[arg-type]
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
        return self._collect(parallel(delayed(fn)(item) for item in items), on_result)

    def __repr__(self) -> str:
        return f"LocalExecutor(n_jobs={self.n_jobs})"
