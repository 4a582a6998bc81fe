"""Candidates backtested side by side in worker processes (issue 19: the reference run on 2 cores)
give the same leaderboard, fold forecasts and kept fold models as one after the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tidecast.pipeline.executors import executor_scope, make_executor
from tidecast.spec import parse_spec
from tidecast.training import candidates as module
from tidecast.training.candidates import _candidate_workers, _Data, candidate_results


def _spec_and_frame(root: Path, hours: int) -> tuple[Any, pd.DataFrame]:
    rng = np.random.default_rng(5)
    ds = pd.date_range("2024-01-01", periods=hours, freq="1h")
    y = 50 + 10 * np.sin(2 * np.pi * ds.hour / 24) + rng.normal(0, 1, len(ds))
    (root / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"ds": ds.strftime("%Y-%m-%d %H:%M:%S"), "y": y}).to_csv(root / "data" / "x.csv", index=False)
    spec = parse_spec(
        {
            "project": "parallel",
            "data": {"source": "data/x.csv", "time_column": "ds", "target_column": "y", "frequency": "1h"},
            "forecast": {"input_window": "2d", "horizon": "1d", "quantiles": [0.1, 0.9]},
            "backtest": {"folds": 2},
            "models": [
                {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
                {"name": "ets", "kind": "autoets", "fit_window": "14d"},
                {"name": "avg", "kind": "window_average", "params": {"window_size": "1d"}},
            ],
        },
        root=root,
    )
    from tidecast.data.long_format import to_long
    from tidecast.data.sources import read_source

    return spec, to_long(read_source(spec.data), spec.data, spec.target, source_name="x.csv")


def test_side_by_side_equals_one_after_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, frame = _spec_and_frame(tmp_path, 24 * 220)
    monkeypatch.setattr(module.os, "cpu_count", lambda: 2)
    assert _candidate_workers(spec, module.SequentialExecutor(), list(enumerate(spec.models)), _Data(frame, spec)) == 2
    side = candidate_results(frame, spec)
    monkeypatch.setenv("TIDECAST_PARALLEL_CANDIDATES", "0")
    assert _candidate_workers(spec, module.SequentialExecutor(), list(enumerate(spec.models)), _Data(frame, spec)) == 1
    serial = candidate_results(frame, spec)
    timing = [c for c in serial.leaderboard.columns if "seconds" in c]
    pd.testing.assert_frame_equal(side.leaderboard.drop(columns=timing), serial.leaderboard.drop(columns=timing))
    assert list(side.results) == list(serial.results)  # the spec's order
    for name, entry in serial.results.items():
        pd.testing.assert_frame_equal(side.results[name].backtest.forecasts, entry.backtest.forecasts)
        assert list(side.results[name].backtest.models) == list(entry.backtest.models)


def test_tiny_data_and_fast_candidates_stay_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, frame = _spec_and_frame(tmp_path, 24 * 30)
    monkeypatch.setattr(module.os, "cpu_count", lambda: 8)
    candidates = list(enumerate(spec.models))
    assert _candidate_workers(spec, module.SequentialExecutor(), candidates, _Data(frame, spec)) == 1  # 720 rows
    spec, frame = _spec_and_frame(tmp_path, 24 * 220)
    fast = [(i, c) for i, c in candidates if c.kind != "autoets"]
    assert _candidate_workers(spec, module.SequentialExecutor(), fast, _Data(frame, spec)) == 1
    assert _candidate_workers(spec, module.LocalExecutor(2), candidates, _Data(frame, spec)) == 1  # folds in parallel
    with executor_scope():  # as the pipeline runs the step: the scope's shared in-process executor
        assert _candidate_workers(spec, make_executor(None, 1), candidates, _Data(frame, spec)) == 3
