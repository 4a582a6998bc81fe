"""Where independent pieces of work (backtest folds, candidates) run: in-process, on local cores, or
on a cluster (``executor: {kind: dask}``, in :mod:`tidecast.pipeline.executors.dask`).

Every executor speaks :class:`Executor`: ``map(fn, items)`` returns ``[fn(item) for item in items]``
in the order of ``items``, whatever order the work finishes in. ``fn`` and the items must be
picklable for the parallel executors (module-level functions, dataclasses; closures are fine with
the loky backend, which uses cloudpickle).

>>> with make_executor(None, n_jobs=1) as ex:
...     ex.map(abs, [-1, 2, -3])
[1, 2, 3]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

from tidecast.errors import PipelineError
from tidecast.pipeline.executors.local import LocalExecutor, SequentialExecutor

T = TypeVar("T")
R = TypeVar("R")

OnResult = Callable[[int, Any], None]
"""``on_result(index, result)``: called in the calling process as each result arrives."""


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` over ``items``; results keep the order of ``items``."""

    n_workers: int

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], *, desc: str = "", on_result: OnResult | None = None
    ) -> list[R]:
        """``[fn(item) for item in items]``, possibly in parallel. ``desc`` names the work (for
        progress displays); ``on_result(index, result)`` is called as results come in. An
        exception raised by ``fn`` propagates."""
        ...

    def close(self) -> None:
        """Release workers. The executor must not be used afterwards."""
        ...


def make_executor(spec: Any = None, n_jobs: int = 1) -> Executor:
    """The executor for ``spec`` (a :class:`tidecast.spec.ExecutorSpec`, or ``None`` for local).

    Local: ``n_jobs`` processes (``-1``: every core; ``1``: in-process, no pool). Dask: the
    cluster at ``spec.address`` (or a local one with ``spec.n_workers`` workers).
    """
    kind = getattr(spec, "kind", "local") if spec is not None else "local"
    if kind == "local":
        return SequentialExecutor() if n_jobs == 1 else LocalExecutor(n_jobs)
    if kind == "dask":
        try:
            module = importlib.import_module("tidecast.pipeline.executors.dask")
        except ModuleNotFoundError as exc:
            raise PipelineError(f"executor.kind 'dask' is not available: {exc}") from None
        return module.DaskExecutor(address=getattr(spec, "address", None), n_workers=getattr(spec, "n_workers", None))
    raise PipelineError(f"executor.kind: unknown executor {kind!r} (use 'local' or 'dask')")


__all__ = ["Executor", "LocalExecutor", "OnResult", "SequentialExecutor", "make_executor"]
