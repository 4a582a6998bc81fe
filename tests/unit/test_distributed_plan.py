"""``executor.global_models``: how the setting resolves, what cannot train distributed, the spec check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import SpecError
from tidecast.spec import ExecutorSpec, parse_spec
from tidecast.training.dask_data import _pieces
from tidecast.training.distributed import plan_training, resolve_global_models, unsupported_reason

SPEC = {
    "project": "p", "data": {"source": "x.csv", "frequency": "h"},
    "forecast": {"input_window": "2d", "horizon": "12h"},
    "models": [{"name": "lightgbm", "kind": "lightgbm"}],
}


@pytest.mark.parametrize(
    ("executor", "expected"),
    [
        (None, "single"),
        (ExecutorSpec(), "single"),
        (ExecutorSpec(kind="dask"), "single"),  # auto on a LocalCluster: same machine, identical to local
        (ExecutorSpec(kind="dask", n_workers=8), "single"),
        (ExecutorSpec(kind="dask", address="tcp://10.0.0.5:8786"), "distributed"),  # auto on an existing cluster
        (ExecutorSpec(kind="dask", address="tcp://10.0.0.5:8786", global_models="single"), "single"),
        (ExecutorSpec(kind="dask", global_models="distributed"), "distributed"),
        (ExecutorSpec(kind="dask", address="tcp://10.0.0.5:8786", global_models="distributed"), "distributed"),
    ],
)
def test_global_models_resolution(executor: ExecutorSpec | None, expected: str) -> None:
    assert resolve_global_models(executor) == expected


def test_only_recursive_lightgbm_has_a_library_dask_path() -> None:
    assert unsupported_reason("lightgbm", {}) is None
    assert unsupported_reason("lightgbm", {"strategy": "recursive", "num_leaves": 7}) is None
    assert "strategy: direct" in (unsupported_reason("lightgbm", {"strategy": "direct"}) or "")
    for kind in ("sklearn", "mlp", "my_plugin"):
        assert unsupported_reason(kind, {}) == f"kind '{kind}' has no library Dask path"


@pytest.mark.parametrize("executor", [{"global_models": "distributed"}, {"kind": "local", "global_models": "distributed"}])
def test_distributed_with_a_local_executor_is_one_spec_error_naming_the_field(executor: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({**SPEC, "executor": executor}, root=tmp_path)
    message = str(info.value)
    assert "executor.global_models" in message and "needs executor.kind: dask" in message and "\n" not in message


def test_the_spec_accepts_each_mode_on_dask(tmp_path: Path) -> None:
    for mode in ("auto", "single", "distributed"):
        spec = parse_spec({**SPEC, "executor": {"kind": "dask", "global_models": mode}}, root=tmp_path)
        assert spec.executor.global_models == mode
    assert parse_spec(SPEC, root=tmp_path).executor.global_models == "auto"
    with pytest.raises(SpecError, match="global_models"):
        parse_spec({**SPEC, "executor": {"kind": "dask", "global_models": "everywhere"}}, root=tmp_path)


def test_without_a_dask_client_everything_trains_single_or_per_series(tmp_path: Path) -> None:
    from tidecast.pipeline.executors import SequentialExecutor

    spec = parse_spec({**SPEC, "executor": {"kind": "dask", "global_models": "distributed"}}, root=tmp_path)
    for executor in (None, SequentialExecutor()):
        assert plan_training(spec, "lightgbm", {}, executor).label == "single"
        assert not plan_training(spec, "lightgbm", {}, executor).distributed
        assert plan_training(spec, "autoets", {}, executor).label == "per series"


def test_pieces_hold_whole_series_of_about_equal_rows() -> None:
    sizes = {"a": 50, "b": 10, "c": 30, "d": 30, "e": 80}
    frame = pd.DataFrame({"unique_id": np.repeat(list(sizes), list(sizes.values())), "y": 0.0})
    for n in (1, 2, 3, 5, 9):
        pieces = _pieces(frame, n)
        assert 1 <= len(pieces) <= min(n, len(sizes))
        pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), frame)
        owners = [set(p["unique_id"]) for p in pieces]
        assert sum(len(o) for o in owners) == len(sizes)  # no series in two pieces
    assert [len(p) for p in _pieces(frame, 2)] == [120, 80]
