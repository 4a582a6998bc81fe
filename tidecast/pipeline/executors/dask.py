"""The Dask executor (``executor: {kind: dask}``): the same work as the local executor, on a cluster.

* ``address: tcp://host:8786``: the existing scheduler there (checked within a few seconds: an
  unreachable address is a :class:`~tidecast.errors.PipelineError`, not a hang);
* no address: a ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes
  (default: every core), started here and shut down by :meth:`DaskExecutor.close`.

``map`` submits at most ``4 * n_workers`` items ahead (a generator of large items is not held in
memory all at once), hands every result to ``on_result`` as it arrives and returns them in the
order of the items. A worker lost mid-run is not an error: the scheduler re-runs its tasks on the
other workers (up to ``distributed.scheduler.allowed-failures`` times). An exception raised by
``fn`` itself propagates, as with the other executors.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import distributed  # noqa: F401  -- a missing distributed makes make_executor say 'dask is not available'

from tidecast.errors import PipelineError
from tidecast.pipeline.executors import check_address

T = TypeVar("T")
R = TypeVar("R")

CONNECT_TIMEOUT_S = 3.0


def _progress_bar(total: int | None, desc: str) -> Any:
    """A tqdm bar on an interactive stderr (``None`` otherwise, or without tqdm)."""
    if not desc or not sys.stderr.isatty() or os.environ.get("TIDECAST_NO_PROGRESS"):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="task", leave=False)


class DaskExecutor:
    """Runs items as Dask tasks on the cluster at ``address`` (or a local one of ``n_workers``)."""

    def __init__(self, address: str | None = None, n_workers: int | None = None, *, threads_per_worker: int = 1) -> None:
        from distributed import Client, LocalCluster

        self.address = address
        self._cluster: Any = None
        self._closed = False
        if address:
            if "://" not in address and ":" not in address:
                raise PipelineError(f"executor.address: '{address}' is not a scheduler address (tcp://host:8786)")
            check_address(address, CONNECT_TIMEOUT_S)  # one clear line for a wrong address, not Dask's errors
            try:
                self._client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise PipelineError(
                    f"executor.address: cannot reach the Dask scheduler at {address} "
                    f"within {CONNECT_TIMEOUT_S:g} s ({type(exc).__name__})",
                    hint="start one with `dask scheduler`, or drop executor.address to use a local cluster",
                ) from None
            except ValueError as exc:
                raise PipelineError(f"executor.address: '{address}': {exc}") from None
        else:
            workers = n_workers or max(1, os.cpu_count() or 1)
            # the scheduler runs in this process: its INFO lines (workers registering...) are not ours to print
            scheduler_log = logging.getLogger("distributed")
            if scheduler_log.getEffectiveLevel() < logging.WARNING:
                scheduler_log.setLevel(logging.WARNING)
            try:
                self._cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=40,  # logging.ERROR
                )
                self._client = Client(self._cluster, set_as_default=False)
            except Exception as exc:
                if self._cluster is not None:
                    self._cluster.close()
                raise PipelineError(f"executor: could not start a local Dask cluster: {type(exc).__name__}: {exc}") from None
        info = self._client.scheduler_info()
        threads = sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values())
        self.n_workers = max(1, threads or (n_workers or 1))

    # -- the Executor protocol ---------------------------------------------------------------------
    def map(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        desc: str = "",
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[R]:
        from distributed import as_completed

        if self._closed:
            raise PipelineError("DaskExecutor: used after close()")
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
        bar = _progress_bar(total, desc)
        results: dict[int, Any] = {}
        ahead = 4 * self.n_workers
        prefix = f"tidecast-{uuid.uuid4().hex[:8]}"
        iterator = iter(enumerate(items))
        pending = as_completed(loop=self._client.loop)
        index_of: dict[str, int] = {}

        def submit_next() -> bool:
            try:
                index, item = next(iterator)
            except StopIteration:
                return False
            future = self._client.submit(fn, item, key=f"{prefix}-{index}", pure=False)
            index_of[future.key] = index
            pending.add(future)
            return True

        try:
            for _ in range(ahead):
                if not submit_next():
                    break
            for future in pending:
                index = index_of.pop(future.key)
                result = future.result()  # an exception raised by fn is re-raised here
                future.release()
                results[index] = result
                if on_result is not None:
                    on_result(index, result)
                if bar is not None:
                    bar.update(1)
                submit_next()
        except BaseException:
            for future in list(pending.futures):
                future.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()
        return [results[i] for i in range(len(results))]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address or "LocalCluster"
        return f"DaskExecutor({where}, n_workers={self.n_workers})"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (for libraries with their own Dask path)."""
        return self._client


__all__ = ["DaskExecutor"]
