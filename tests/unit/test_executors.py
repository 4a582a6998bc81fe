"""Executors: order kept, callbacks, make_executor's choices."""

from __future__ import annotations

import os

import pytest

from tidecast.errors import PipelineError
from tidecast.pipeline.executors import Executor, LocalExecutor, SequentialExecutor, make_executor
from tidecast.spec import ExecutorSpec


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_sequential_and_local_keep_order_and_call_back() -> None:
    items = list(range(12))
    seen: list[tuple[int, int]] = []
    seq = SequentialExecutor().map(square_with_pid, items, on_result=lambda i, r: seen.append((i, r[0])))
    assert [r[0] for r in seq] == [x * x for x in items] and seen == [(i, i * i) for i in items]
    with LocalExecutor(2) as executor:
        assert executor.n_workers == 2
        par = executor.map(square_with_pid, (x for x in items), desc="squares")  # a generator is fine
    assert [r[0] for r in par] == [x * x for x in items]
    assert {pid for _, pid in par} != {os.getpid()}  # ran in worker processes
    with pytest.raises(PipelineError, match="after close"):
        executor.map(square_with_pid, items)


def test_make_executor() -> None:
    assert isinstance(make_executor(None, 1), SequentialExecutor)
    assert isinstance(make_executor(ExecutorSpec(), 1), SequentialExecutor)
    local = make_executor(ExecutorSpec(kind="local"), -1)
    assert isinstance(local, LocalExecutor) and isinstance(local, Executor)
    assert LocalExecutor(1).map(abs, [-1, -2]) == [1, 2]  # one job: in-process
    with pytest.raises(PipelineError, match="n_jobs must not be 0"):
        LocalExecutor(0)
    try:
        import tidecast.pipeline.executors.dask  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(PipelineError, match="'dask' is not available"):
            make_executor(ExecutorSpec(kind="dask"), 1)


def test_a_scope_hands_out_one_executor_per_configuration_and_closes_it_at_the_end() -> None:
    from tidecast.pipeline.executors import executor_scope, make_executor

    with executor_scope():
        first = make_executor(None, 2)
        first.close()  # left to the scope: still usable
        again = make_executor(None, 2)
        assert again._inner is first._inner  # type: ignore[attr-defined]
        assert again.map(abs, [-1, -2, 3]) == [1, 2, 3]
        assert make_executor(None, 3)._inner is not first._inner  # type: ignore[attr-defined]
        with executor_scope():  # nested: the outer scope's executors
            assert make_executor(None, 2)._inner is first._inner  # type: ignore[attr-defined]
        inner = first._inner  # type: ignore[attr-defined]
    assert inner._closed
    assert not hasattr(make_executor(None, 2), "_inner")  # outside a scope: a fresh, unshared one
