"""Parquet partitions of whole series between the data steps (tidecast.data.partitions) and their cache entries."""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.data.partitions import (
    PartitionedFrame,
    map_partitions,
    partition_bounds,
    partition_count,
    write_partitions,
)
from tidecast.errors import PipelineError
from tidecast.pipeline.cache import ArtifactCache


def _frame(sizes: dict[str, int]) -> pd.DataFrame:
    frames = [
        pd.DataFrame({
            "unique_id": uid,
            "ds": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": np.arange(n, dtype=float) + i,
            "kind": "a" if i % 2 else "b",
        })
        for i, (uid, n) in enumerate(sizes.items())
    ]
    return pd.concat(frames, ignore_index=True)


SIZES = {"m01": 30, "m02": 5, "m03": 50, "m04": 1, "m05": 20, "m06": 44, "m07": 9}


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_bounds_cut_between_series_only_and_cover_every_row(n: int) -> None:
    frame = _frame(SIZES)
    ids = frame["unique_id"].to_numpy()
    bounds = partition_bounds(ids, n)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(frame)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert 1 <= len(bounds) <= min(n, len(SIZES))  # about equal rows: uneven series may give fewer
    even = np.repeat([f"s{i}" for i in range(10)], 4)
    assert len(partition_bounds(even, n)) == min(n, 10)
    for start, stop in bounds:
        assert start < stop
        assert start == 0 or ids[start] != ids[start - 1]  # never inside a series


def test_partition_count_rules() -> None:
    assert partition_count(1, 10**8, 16) == 1  # one series: one partition, whatever its length
    assert partition_count(500, 400_000, 16) == 1  # fits one partition
    assert partition_count(1_000, 1_200_000, 2) == 4  # 3 by size, 2 per worker
    assert partition_count(10_000, 600_000, 1, rows_per_partition=500_000) == 5  # 2,000 series at most each
    assert partition_count(3, 10_000, 16, rows_per_partition=100) == 3  # never more than one per series


def test_round_trip_index_and_pickle(tmp_path: Path) -> None:
    frame = _frame(SIZES)
    parts = write_partitions(frame, tmp_path / "p", 3)
    assert parts.n_partitions == 3 and parts.n_series == len(SIZES) and len(parts) == len(frame)
    pd.testing.assert_frame_equal(parts.to_pandas(), frame)
    pd.testing.assert_frame_equal(parts.to_pandas(["unique_id", "y"]), frame[["unique_id", "y"]])
    index = parts.index()
    assert index["unique_id"].tolist() == list(SIZES) and index["rows"].tolist() == list(SIZES.values())
    for part in range(parts.n_partitions):  # the index says truly where each series is
        ids = set(parts.read(part)["unique_id"])
        assert ids == set(index.loc[index["part"] == part, "unique_id"])
    assert parts.read(1, ids=["m04"])["unique_id"].unique().tolist() in (["m04"], [])
    clone = pickle.loads(pickle.dumps(parts))
    assert clone.path == parts.path and len(pickle.dumps(parts)) < 500  # a path, not the rows
    pd.testing.assert_frame_equal(clone.to_pandas(), frame)


def _double(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    kept = frame[frame["unique_id"] != "m03"]  # drops one series
    return kept.assign(y=kept["y"] * 2).reset_index(drop=True), len(frame)


def test_map_partitions_in_process_and_on_workers(tmp_path: Path) -> None:
    from tidecast.pipeline.executors import make_executor

    frame = _frame(SIZES)
    source = write_partitions(frame, tmp_path / "in", 4)
    expected = frame[frame["unique_id"] != "m03"].assign(y=lambda d: d["y"] * 2).reset_index(drop=True)
    seen: list[tuple[int, int]] = []
    out, extras = map_partitions(_double, source, tmp_path / "a", on_part=lambda d, t: seen.append((d, t)))
    pd.testing.assert_frame_equal(out.to_pandas(), expected)
    assert sum(extras) == len(frame) and seen[-1] == (source.n_partitions, source.n_partitions) and source.n_partitions > 1
    with make_executor(None, 2) as executor:
        on_disk, _ = map_partitions(_double, source, tmp_path / "b", executor)
        shipped, _ = map_partitions(_double, source, tmp_path / "c", executor, shared_storage=False)
    for result in (on_disk, shipped):
        pd.testing.assert_frame_equal(result.to_pandas(), expected)
        assert result.n_series == len(SIZES) - 1


def test_damaged_or_missing_partitions_are_one_line_errors(tmp_path: Path) -> None:
    parts = write_partitions(_frame(SIZES), tmp_path / "p", 2)
    parts.part_path(1).unlink()
    with pytest.raises(PipelineError, match=r"part-00001\.parquet is missing"):
        parts.to_pandas()
    (tmp_path / "p" / "manifest.json").write_text("{not json")
    with pytest.raises(PipelineError, match="damaged"):
        _ = PartitionedFrame(tmp_path / "p").n_partitions


def test_cache_commits_partitions_written_in_place_and_copies_others(tmp_path: Path) -> None:
    from tidecast.pipeline.cache import PARTS_DIR

    frame = _frame(SIZES)
    cache = ArtifactCache(tmp_path / "cache")
    with cache.begin("clean", "k1") as pending:
        written = write_partitions(frame, pending.tmp / PARTS_DIR, 2)  # what a step does via ctx.parts_dir
        final = pending.commit(written)
    meta = json.loads((final / "meta.json").read_text())
    assert meta["format"] == "partitioned" and meta["output"] == PARTS_DIR
    assert not list((tmp_path / "cache" / "clean").glob(".tmp-*"))
    loaded = cache.load("clean", "k1")
    assert isinstance(loaded, PartitionedFrame) and loaded.path == final / PARTS_DIR
    pd.testing.assert_frame_equal(loaded.to_pandas(), frame)
    elsewhere = write_partitions(frame, tmp_path / "elsewhere", 3)
    cache.save("features", "k2", elsewhere)
    pd.testing.assert_frame_equal(cache.load("features", "k2").to_pandas(), frame)
    assert cache.load("features", "k2").n_partitions == 3


def test_cache_reopens_a_partitioned_output_by_the_class_its_meta_names(tmp_path: Path) -> None:
    """The engine imports no domain module: it reopens a partitioned entry with the class its meta
    records, and a meta naming another class is one clear error, not an import of anything."""
    from tidecast.errors import PipelineError

    cache = ArtifactCache(tmp_path / "cache")
    final = cache.save("clean", "k1", write_partitions(_frame(SIZES), tmp_path / "p", 2))
    meta_file = final / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["type"] == "tidecast.data.partitions.PartitionedFrame"
    meta["type"] = "os.system"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(PipelineError, match=r"records a partitioned output of type 'os\.system'"):
        cache.load("clean", "k1")


def test_tail_per_series_by_position_equals_groupby_tail() -> None:
    from tidecast.frames import tail_per_series

    frame = _frame(SIZES)
    for steps in (1, 3, 10, 100):
        expected = frame.groupby("unique_id", sort=False).tail(steps).reset_index(drop=True)
        pd.testing.assert_frame_equal(tail_per_series(frame, steps), expected)
        shuffled = frame.sample(frac=1, random_state=steps)  # rows of a series apart: the groupby path
        pd.testing.assert_frame_equal(
            tail_per_series(shuffled, steps), shuffled.groupby("unique_id", sort=False).tail(steps).reset_index(drop=True)
        )


def test_regular_grid_names_a_duplicate_and_tells_gaps() -> None:
    from tidecast.errors import ModelError
    from tidecast.models._frames import regular_grid

    frame = _frame(SIZES)
    assert regular_grid(frame, "h", "m") is True
    assert regular_grid(frame.drop(index=[5]).reset_index(drop=True), "h", "m") is False  # a gap in m01
    assert regular_grid(frame, "MS", "m") is False  # no fixed length: the caller checks itself
    doubled = pd.concat([frame.iloc[:3], frame.iloc[2:]], ignore_index=True)
    with pytest.raises(ModelError, match=r"several rows for series 'm01' at 2024-01-01 02:00:00"):
        regular_grid(doubled, "h", "lgbm")
