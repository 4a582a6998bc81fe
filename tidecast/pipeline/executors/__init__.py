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

import contextlib
import contextvars
import importlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
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


def shares_files(spec: Any) -> bool:
    """Whether the workers of the executor ``spec`` (an :class:`tidecast.spec.ExecutorSpec`) read and
    write this project's files themselves: local processes, a local Dask cluster, or a remote one
    with ``shared_storage: true``. Otherwise data travels to them and back."""
    kind = getattr(spec, "kind", "local") if spec is not None else "local"
    return kind != "dask" or not getattr(spec, "address", None) or bool(getattr(spec, "shared_storage", False))


PROBE_TIMEOUT_S = 3.0


def check_address(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A :class:`PipelineError` unless a Dask scheduler answers at ``address`` (``tcp://host:port``
    or ``host:port``) within ``timeout`` seconds: nothing listening, a connection that opens but
    stays silent (a firewall, a proxy) and a server of another kind (an HTTP port) are each one
    clear line. Cheap (a socket, no Dask import): a scheduler writes its handshake first, whose
    8-byte length prefix is read and checked. :func:`tidecast.training.preflight` calls it before
    any step runs. ``tls://`` is checked for a TCP connection only; other schemes are left to Dask."""
    import socket
    import struct
    from urllib.parse import urlsplit

    text = address.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else "tcp"
    if scheme not in {"tcp", "tls"}:
        return
    try:
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise PipelineError(f"executor.address: '{address}' is not a scheduler address ({exc})") from None
    if not host or port is None:
        raise PipelineError(f"executor.address: '{address}' is not a scheduler address (tcp://host:8786)")
    hint = "start one with `dask scheduler`, or drop executor.address to use a local cluster"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if scheme == "tls":
                return
            head = b""
            while len(head) < 8:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    raise PipelineError(
                        f"executor.address: {address} closed the connection without a Dask handshake", hint=hint
                    )
                head += chunk
    except OSError as exc:
        why = "nothing answered" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise PipelineError(
            f"executor.address: cannot reach the Dask scheduler at {address} within {timeout:g} s ({why})", hint=hint
        ) from None
    (size,) = struct.unpack("<Q", head)
    if not 0 < size < 1 << 26:
        raise PipelineError(
            f"executor.address: {address} answers, but not as a Dask scheduler (it sent {head!r})", hint=hint
        )


_SCOPE: contextvars.ContextVar[dict[tuple[Any, ...], Any] | None] = contextvars.ContextVar("executor_scope", default=None)
_SCOPE_LOCK = threading.Lock()  # steps side by side (threads that share the scope) ask for executors at once


class _Shared:
    """An executor of an :func:`executor_scope`: ``close()`` is left to the scope."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.n_workers = inner.n_workers

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, desc: str = "", on_result: OnResult | None = None) -> list[R]:
        return self._inner.map(fn, items, desc=desc, on_result=on_result)

    def close(self) -> None:
        """Nothing: the scope closes the executor when it ends."""

    def __enter__(self) -> _Shared:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # client, address...
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"shared {self._inner!r}"


@contextlib.contextmanager
def executor_scope() -> Iterator[None]:
    """Within the block, :func:`make_executor` hands out one executor per configuration, kept
    open across calls and closed when the block ends: a pipeline run starts one Dask cluster (or
    process pool) for all its steps, not one per step. Nested scopes reuse the outer one, and so do
    threads that run in a copy of the block's context (``contextvars.copy_context().run``: the
    runner's steps side by side)."""
    if _SCOPE.get() is not None:
        yield
        return
    pool: dict[tuple[Any, ...], Any] = {}
    token = _SCOPE.set(pool)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        for executor in pool.values():
            with contextlib.suppress(Exception):
                executor.close()


def make_executor(spec: Any = None, n_jobs: int = 1) -> Executor:
    """The executor for ``spec`` (a :class:`tidecast.spec.ExecutorSpec`, or ``None`` for local).

    Local: ``n_jobs`` processes (``-1``: every core; ``1``: in-process, no pool). Dask: the
    cluster at ``spec.address`` (or a local one with ``spec.n_workers`` workers). Inside an
    :func:`executor_scope`, the same configuration gets the same executor back.
    """
    pool = _SCOPE.get()
    if pool is None:
        return _make_executor(spec, n_jobs)
    kind = getattr(spec, "kind", "local") if spec is not None else "local"
    key = (kind, getattr(spec, "address", None), getattr(spec, "n_workers", None), n_jobs if kind == "local" else None)
    with _SCOPE_LOCK:  # one cluster per configuration, even when two steps ask at the same moment
        if key not in pool:
            pool[key] = _make_executor(spec, n_jobs)
        return _Shared(pool[key])  # type: ignore[return-value]


def _make_executor(spec: Any, n_jobs: int) -> Executor:
    kind = getattr(spec, "kind", "local") if spec is not None else "local"
    if kind == "local":
        return SequentialExecutor() if n_jobs == 1 else LocalExecutor(n_jobs)
    if kind == "dask":
        try:
            module = importlib.import_module("tidecast.pipeline.executors.dask")
        except ModuleNotFoundError as exc:
            raise PipelineError(
                f"executor.kind 'dask' is not available ({exc}): pip install 'tidecast[dask]'"
            ) from None
        return module.DaskExecutor(address=getattr(spec, "address", None), n_workers=getattr(spec, "n_workers", None))
    raise PipelineError(f"executor.kind: unknown executor {kind!r} (use 'local' or 'dask')")


__all__ = [
    "Executor", "LocalExecutor", "OnResult", "SequentialExecutor", "check_address", "executor_scope", "make_executor",
    "shares_files",
]
