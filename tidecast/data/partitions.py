"""Long data on disk as Parquet partitions of whole series, between the pipeline's data steps.

A :class:`PartitionedFrame` is a folder::

    part-00000.parquet   the rows of a contiguous run of series ids (sorted by unique_id, ds)
    part-00001.parquet   ...
    index.parquet        one row per series: unique_id, part, rows, start, end

Every series lies whole in one partition and the partitions follow each other in id order, so
concatenating them gives back the one sorted frame. ``ingest``, ``clean`` and ``features`` write
their output this way (``clean`` and ``features`` one partition per task, on the run's executor);
``backtest`` sends each per-series task the path of its partition rather than the rows; a step
that needs every series at once (a global model's fit, the report) reads them all with
:meth:`PartitionedFrame.to_pandas`. The handle itself is a path: cheap to pickle to a worker.

>>> import tempfile
>>> frame = pd.DataFrame({"unique_id": ["a", "a", "b"], "ds": pd.to_datetime(["2024-01-01"] * 3), "y": [1.0, 2, 3]})
>>> parts = write_partitions(frame, tempfile.mkdtemp(), 2)
>>> parts.n_partitions, parts.n_series, len(parts), parts.read(1)["y"].tolist()
(2, 2, 3, [3.0])
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import PipelineError
from tidecast.frames import ID, TIME, series_bounds

INDEX = "index.parquet"
MANIFEST = "manifest.json"
PART_PATTERN = "part-{:05d}.parquet"

ROWS_PER_PARTITION = 500_000
"""Default rows per partition (``executor.partition_rows``): what one worker holds of the data at
a time (a few hundred MB with features). Data of fewer rows stays in one partition."""
SERIES_PER_PARTITION = 2_000
"""And at most this many series per partition."""


def partition_count(n_series: int, n_rows: int, n_workers: int = 1, rows_per_partition: int = ROWS_PER_PARTITION) -> int:
    """How many partitions ``n_rows`` rows of ``n_series`` series are split into: one when they
    fit ``rows_per_partition``; else enough to keep each under ``rows_per_partition`` rows and
    :data:`SERIES_PER_PARTITION` series, and at least two per worker, never more than one per series.

    >>> partition_count(1, 10_000_000), partition_count(50, 1_000), partition_count(1_000, 1_440_000, 4)
    (1, 1, 8)
    """
    if n_series <= 1 or n_rows <= rows_per_partition:
        return 1
    wanted = max(
        math.ceil(n_rows / rows_per_partition), math.ceil(n_series / SERIES_PER_PARTITION), 2 * max(1, n_workers)
    )
    return max(1, min(wanted, n_series))


def partition_bounds(ids: np.ndarray, n_partitions: int) -> list[tuple[int, int]]:
    """Row ranges ``[(start, stop), ...]`` that cut a frame sorted by id into ``n_partitions`` runs
    of whole series with about as many rows each (fewer when there are fewer series).

    >>> partition_bounds(np.array(["a", "a", "a", "b", "c", "c"]), 2)
    [(0, 3), (3, 6)]
    """
    n = len(ids)
    if n == 0:
        return [(0, 0)]
    starts, _ = series_bounds(ids)  # first row of each series
    n_partitions = max(1, min(int(n_partitions), len(starts)))
    targets = (np.arange(1, n_partitions) * n) / n_partitions
    cuts = starts[np.clip(np.searchsorted(starts, targets), 0, len(starts) - 1)]
    edges = [0, *sorted({int(c) for c in cuts if 0 < c < n}), n]
    return list(itertools.pairwise(edges))


@dataclass(frozen=True)
class PartitionedFrame:
    """A folder of Parquet partitions of whole series (see the module docstring)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __getstate__(self) -> dict[str, Any]:  # a path only: cached properties stay behind
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "path", Path(state["path"]))

    # -- what is there -----------------------------------------------------------------------------
    @cached_property
    def manifest(self) -> dict[str, Any]:
        file = self.path / MANIFEST
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineError(f"{self.path} holds no partitioned data (no {MANIFEST}); delete it and run again") from None
        except (OSError, ValueError) as exc:
            raise PipelineError(f"{file} is damaged ({exc}); delete {self.path.parent} and run again") from None

    @property
    def n_partitions(self) -> int:
        return len(self.manifest["parts"])

    @property
    def n_series(self) -> int:
        return int(self.manifest["series"])

    @property
    def columns(self) -> list[str]:
        return list(self.manifest["columns"])

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def part_path(self, part: int) -> Path:
        return self.path / self.manifest["parts"][part]["file"]

    @property
    def paths(self) -> list[Path]:
        """The partition files, in id order."""
        return [self.part_path(i) for i in range(self.n_partitions)]

    def index(self) -> pd.DataFrame:
        """One row per series: ``unique_id, part, rows, start, end`` (small: no data; read once)."""
        return self._index

    @cached_property
    def _index(self) -> pd.DataFrame:
        return _read(self.path / INDEX, None)

    def series_ids(self) -> list[Any]:
        """Every series id, in order."""
        return self.index()[ID].tolist()

    # -- reading -----------------------------------------------------------------------------------
    def read(self, part: int, columns: Sequence[str] | None = None, ids: Sequence[Any] | None = None) -> pd.DataFrame:
        """One partition (its ``columns`` only; only the series ``ids``, when given)."""
        frame = _read(self.part_path(part), columns)
        if ids is not None:
            frame = frame[frame[ID].isin(list(ids))].reset_index(drop=True)
        return frame

    def iter_partitions(self, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        for part in range(self.n_partitions):
            yield self.read(part, columns)

    def to_pandas(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every partition in one frame (sorted by ``unique_id, ds``): for steps that need all series."""
        frames = list(self.iter_partitions(columns))
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        try:
            return f"PartitionedFrame({str(self.path)!r}, {self.n_partitions} partitions, {self.n_series} series)"
        except PipelineError:
            return f"PartitionedFrame({str(self.path)!r})"


def release_arrow_memory() -> None:
    """Hand the memory Arrow's allocator keeps after a read back to the system: a worker that
    reads partition after partition would otherwise look like it leaks (loky restarts a worker
    whose memory keeps growing)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _read(file: Path, columns: Sequence[str] | None) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(file, engine="pyarrow", columns=list(columns) if columns is not None else None)
        release_arrow_memory()
        return frame
    except FileNotFoundError:
        raise PipelineError(f"partition {file} is missing; delete {file.parent.parent} and run again") from None
    except Exception as exc:
        raise PipelineError(f"partition {file} cannot be read ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------------------------------- writing
def write_part(frame: pd.DataFrame, folder: str | os.PathLike[str], part: int) -> dict[str, Any]:
    """Write one partition (rows sorted by ``unique_id, ds``) into ``folder``; returns what
    :func:`finish_partitions` needs to know of it (its per-series index rows included)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = PART_PATTERN.format(part)
    frame.to_parquet(folder / name, engine="pyarrow", index=False)
    return {"part": part, "file": name, "rows": len(frame), "index": _series_index(frame, part)}


def _series_index(frame: pd.DataFrame, part: int) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame({ID: pd.Series([], dtype=frame[ID].dtype), "part": [], "rows": [], "start": [], "end": []})
    grouped = frame.groupby(ID, sort=False, observed=True)[TIME]
    index = grouped.agg(["size", "min", "max"]).reset_index()
    index.columns = [ID, "rows", "start", "end"]
    index.insert(1, "part", part)
    return index


def finish_partitions(folder: str | os.PathLike[str], written: Sequence[dict[str, Any]], columns: Sequence[str]) -> PartitionedFrame:
    """Write the index and manifest of partitions written by :func:`write_part` (in any order)
    and return the handle. Empty partitions are dropped; partitions keep their id order."""
    folder = Path(folder)
    kept = [w for w in sorted(written, key=lambda w: w["part"]) if w["rows"]]
    if not kept:
        raise PipelineError(f"no rows to write into {folder}")
    index = pd.concat([w["index"] for w in kept], ignore_index=True)
    index["part"] = np.repeat(np.arange(len(kept)), [len(w["index"]) for w in kept])
    index.to_parquet(folder / INDEX, engine="pyarrow", index=False)
    manifest = {
        "format": 1,
        "rows": int(sum(w["rows"] for w in kept)),
        "series": len(index),
        "columns": [str(c) for c in columns],
        "parts": [{"file": w["file"], "rows": int(w["rows"]), "series": len(w["index"])} for w in kept],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return PartitionedFrame(folder)


def write_partitions(frame: pd.DataFrame, folder: str | os.PathLike[str], n_partitions: int) -> PartitionedFrame:
    """Cut ``frame`` (sorted by ``unique_id, ds``) into ``n_partitions`` runs of whole series and
    write them into ``folder``."""
    ids = frame[ID].to_numpy()
    written = []
    for part, (start, stop) in enumerate(partition_bounds(ids, n_partitions)):
        piece = frame.iloc[start:stop].reset_index(drop=True)
        written.append(write_part(piece, folder, part))
    return finish_partitions(folder, written, list(frame.columns))


# ------------------------------------------------------------------------------- per-partition work
@dataclass(frozen=True)
class PartTask:
    """One partition's work for :func:`map_partitions`: read ``source`` (a partition file, or the
    rows themselves when the workers share no file system with this process), apply ``fn``,
    write the result as partition ``part`` into ``out_dir`` (or hand it back)."""

    fn: Callable[[pd.DataFrame], tuple[pd.DataFrame, Any]]
    source: Path | pd.DataFrame
    part: int
    out_dir: Path | None


def _run_part(task: PartTask) -> tuple[dict[str, Any] | pd.DataFrame, Any]:
    frame = task.source if isinstance(task.source, pd.DataFrame) else _read(task.source, None)
    out, extra = task.fn(frame)
    if task.out_dir is None:
        return out, extra
    return write_part(out, task.out_dir, task.part), extra


def map_partitions(
    fn: Callable[[pd.DataFrame], tuple[pd.DataFrame, Any]],
    source: PartitionedFrame,
    out_dir: str | os.PathLike[str],
    executor: Any = None,
    *,
    shared_storage: bool = True,
    desc: str = "",
    on_part: Callable[[int, int], None] | None = None,
) -> tuple[PartitionedFrame, list[Any]]:
    """Apply ``fn(frame) -> (frame, extra)`` to every partition of ``source``, on ``executor``'s
    workers (in this process without one, or for a single partition), writing the results as the
    partitions of ``out_dir``. Returns the new handle and each partition's ``extra``, in order.

    ``fn`` must keep whole series and their order (it may drop series). Each worker holds one
    partition at a time. ``shared_storage=False`` (workers on other machines) ships the rows to
    the workers and the results back, and this process writes the files. ``on_part(done, total)``
    is called as partitions finish."""
    out_dir = Path(out_dir)
    n = source.n_partitions
    direct = executor is None or n == 1 or getattr(executor, "n_workers", 1) <= 1
    to_disk = shared_storage or direct
    tasks = (
        PartTask(fn, source.part_path(p) if shared_storage or direct else source.read(p), p, out_dir if to_disk else None)
        for p in range(n)
    )
    done = 0

    def count(_: int, __: Any) -> None:
        nonlocal done
        done += 1
        if on_part is not None:
            on_part(done, n)

    if direct:
        results = [_run_part(t) for t in tasks]
        for i in range(n):
            count(i, None)
    else:
        results = executor.map(_run_part, tasks, desc=desc, on_result=count)
    written = [r if isinstance(r, dict) else write_part(r, out_dir, p) for p, (r, _) in enumerate(results)]
    columns = _columns_of(out_dir, written)
    return finish_partitions(out_dir, written, columns), [extra for _, extra in results]


def _columns_of(folder: Path, written: Sequence[dict[str, Any]]) -> list[str]:
    import pyarrow.parquet as pq

    first = next((w for w in written if w["rows"]), None)
    if first is None:
        return []
    return [f.name for f in pq.read_schema(folder / first["file"]) if not f.name.startswith("__index_level_")]


__all__ = [
    "PartTask",
    "PartitionedFrame",
    "finish_partitions",
    "map_partitions",
    "partition_bounds",
    "partition_count",
    "write_part",
    "write_partitions",
]
