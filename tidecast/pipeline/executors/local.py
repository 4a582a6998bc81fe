"""In-process and local multi-process executors (joblib, loky backend)."""

from __future__ import annotations

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

        n_jobs = self.n_jobs
        if hasattr(items, "__len__"):  # no more processes than tasks: each costs a start and its imports
            n_jobs = min(self.n_workers, len(items))  # type: ignore[arg-type]
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
        return self._collect(parallel(delayed(fn)(item) for item in items), on_result)

    def __repr__(self) -> str:
        return f"LocalExecutor(n_jobs={self.n_jobs})"
