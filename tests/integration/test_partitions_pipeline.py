"""The data stays in Parquet partitions of whole series between the pipeline's steps, and the
results are those of the same work on the whole frame in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tracking_helpers import whole_frame_features

from tidecast.spec import Spec, parse_spec

SPEC: dict[str, Any] = {
    "project": "parts",
    "data": {
        "source": "data/meters.parquet", "series_column": "series_id", "time_column": "timestamp",
        "target_column": "load", "frequency": "h", "static_columns": ["customer_type"],
    },
    "clean": {"gaps": {"method": "interpolate", "max_gap": "6h"}},
    "features": {"lags": [1, 24], "calendar": ["hour", "weekday"]},
    "forecast": {"input_window": "2d", "horizon": "12h", "quantiles": [0.1, 0.9]},
    "backtest": {"folds": 2, "n_jobs": 2},
    "selection": {"metric": "mase"},
    "executor": {"partition_rows": 600},
    "models": [
        {"name": "seasonal_naive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
        {"name": "autoets", "kind": "autoets", "fit_window": "2d"},
        {"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 10, "num_leaves": 7}},
    ],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 hourly meters of different starts and lengths, with gaps, plus one too short to use."""
    from tidecast.datasets import make_meters

    root = tmp_path_factory.mktemp("parts")
    frame = make_meters(12, days=10, seed=5)
    frame = frame.drop(index=frame.index[100:104])  # a gap in the first meter
    short = frame[frame["series_id"] == "meter_002"].tail(10).assign(series_id="short_1")
    (root / "data").mkdir()
    pd.concat([frame, short], ignore_index=True).to_parquet(root / "data" / "meters.parquet", index=False)
    return root


def _in_memory(spec: Spec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """What ingest, clean and features compute, done on the whole frame at once."""
    return whole_frame_features(spec)


def test_steps_hand_over_partitions_and_match_the_whole_frame(project: Path) -> None:
    from tidecast.data.partitions import PartitionedFrame
    from tidecast.flows import training_pipeline
    from tidecast.pipeline.cache import ArtifactCache
    from tidecast.pipeline.runner import run
    from tidecast.training import candidate_results

    spec = parse_spec(SPEC, root=project)
    result = run(training_pipeline(report=False), spec, until="backtest")
    assert result.executed == ["ingest", "clean", "features", "backtest"]

    cache = ArtifactCache(spec.state_dir / "cache")
    for name in ("ingest", "clean", "features"):
        assert cache.meta(name, result.keys[name])["format"] == "partitioned"
        parts = cache.load(name, result.keys[name])
        assert isinstance(parts, PartitionedFrame) and parts.n_partitions >= 4  # 600 rows each: 12 series split
        index = parts.index()
        for part in range(parts.n_partitions):  # every series lies whole in the partition the index names
            rows = parts.read(part)
            assert set(rows["unique_id"]) == set(index.loc[index["part"] == part, "unique_id"])
            assert (rows.groupby("unique_id").size() == index.set_index("unique_id")["rows"].loc[rows["unique_id"].unique()]).all()

    expected, summary = _in_memory(spec)
    assert expected["unique_id"].nunique() == 12  # short_1 skipped
    pd.testing.assert_frame_equal(result.outputs["features"], expected)
    clean_entry = cache.artifacts("clean", result.keys["clean"])
    assert json.loads((clean_entry / "summary.json").read_text()) == summary
    assert summary["gaps_filled"] == 4 and summary["series_too_short"] == ["short_1"]

    # the same backtest on the frame in memory, in this process: the same leaderboard and forecasts
    alone = candidate_results(expected, parse_spec({**SPEC, "backtest": {"folds": 2, "n_jobs": 1}}, root=project))
    backtested = result.outputs["backtest"]
    columns = ["candidate", "mase", "mae", "coverage_80", "status"]
    pd.testing.assert_frame_equal(backtested["leaderboard"][columns], alone["leaderboard"][columns])
    for name, entry in alone["results"].items():
        pd.testing.assert_frame_equal(backtested["results"][name].backtest.forecasts, entry.backtest.forecasts)


def test_dask_workers_clean_and_add_features_partition_by_partition(project: Path, tmp_path: Path) -> None:
    """The data steps on a two-worker LocalCluster: the workers read and write the partitions; the
    result is the same as in memory."""
    pytest.importorskip("distributed")
    import shutil

    from tidecast.flows import training_pipeline
    from tidecast.pipeline.runner import run

    root = tmp_path / "dask"
    shutil.copytree(project / "data", root / "data")
    spec = parse_spec({**SPEC, "executor": {"kind": "dask", "n_workers": 2, "partition_rows": 600}}, root=root)
    result = run(training_pipeline(report=False), spec, until="features")
    assert result.executed == ["ingest", "clean", "features"]
    expected, summary = _in_memory(spec)
    pd.testing.assert_frame_equal(result.outputs["features"], expected)
    from tidecast.pipeline.cache import ArtifactCache

    cache = ArtifactCache(spec.state_dir / "cache")
    assert cache.load("features", result.keys["features"]).n_partitions >= 4
    assert json.loads((cache.artifacts("clean", result.keys["clean"]) / "summary.json").read_text()) == summary


def test_partitions_of_different_column_types_feed_a_global_model(tmp_path: Path) -> None:
    """A static column all null in some partitions (and strings in others) gives partition files of
    different Parquet types; a global model's fold, which reads them all, still runs."""
    from tidecast.datasets import make_meters
    from tidecast.flows import training_pipeline
    from tidecast.pipeline.runner import run

    frame = make_meters(8, days=10, seed=2)
    frame["customer_type"] = frame["customer_type"].astype(object)
    frame.loc[frame["series_id"] < "meter_004", "customer_type"] = None  # the first partition: Parquet type null
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "meters.parquet", index=False)
    models = [{"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 5, "num_leaves": 7}}]
    spec = parse_spec({**SPEC, "models": models, "backtest": {"folds": 2, "n_jobs": 1}}, root=tmp_path)
    result = run(training_pipeline(report=False), spec, until="backtest")
    board = result.outputs["backtest"]["leaderboard"]
    assert board["status"].tolist() == ["ok"], board["error"].tolist()
    forecasts = result.outputs["backtest"]["results"]["lightgbm"].backtest.forecasts
    ids = set(forecasts["unique_id"])
    assert ids & {"meter_001", "meter_002", "meter_003"} and ids & {"meter_005", "meter_006", "meter_007", "meter_008"}
