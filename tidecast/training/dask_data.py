"""The data of distributed training on the Dask cluster (see :mod:`tidecast.training.distributed`):
a frame or Parquet files of whole series spread over the workers, normalised as the models see
their data, and the workers' LightGBM output kept off this process's stdout."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tidecast.data.partitions import partition_bounds
from tidecast.errors import ModelError
from tidecast.frames import ID, TARGET, TIME
from tidecast.models.base import FitContext
from tidecast.models.ml import MLForecastModel


def n_dask_workers(client: Any) -> int:
    return max(1, len(client.nthreads()))



@contextlib.contextmanager
def _on(client: Any) -> Iterator[None]:
    """Dask work on ``client`` (also for libraries that ask for the default client), with object
    string columns kept as they are (pandas' dtypes, as the single-machine model sees them)."""
    import dask

    with client.as_current(), dask.config.set({"dataframe.convert-string": False}):
        yield


class _ThreadNotice(logging.Filter):
    """Drops LightGBM Dask's "Parameter n_jobs will be ignored." (its own estimator always has an
    ``n_jobs``; the threads of each worker are its Dask threads, as intended)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).endswith("will be ignored.")


def _quiet_lightgbm() -> None:
    """LightGBM's messages to the ``lightgbm`` logger instead of stdout: its Dask network set-up
    prints ("Finding random open ports...", "[LightGBM] [Info] Listening...") whatever ``verbose``."""
    import lightgbm

    logger = logging.getLogger("lightgbm")
    if not any(isinstance(f, _ThreadNotice) for f in logger.filters):
        logger.addFilter(_ThreadNotice())
    lightgbm.register_logger(logger)


def _mute_stdout() -> None:
    """A LocalCluster worker's stdout to /dev/null: LightGBM's native network set-up writes
    "[LightGBM] [Info] Listening..." there from the worker's task threads (its log callback and
    level are per thread, so neither ``verbose`` nor a registered logger reaches them), and a
    local worker's stdout is this process's (``tidecast ... --json`` output included)."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def _quiet_workers(client: Any) -> None:
    _quiet_lightgbm()
    client.run(_quiet_lightgbm)
    from distributed import LocalCluster

    if isinstance(getattr(client, "cluster", None), LocalCluster):  # our own worker processes only
        client.run(_mute_stdout)


def _paths_of(data: Any) -> list[str] | None:
    """The Parquet files of ``data`` (a list of paths or a PartitionedFrame), or ``None`` for a frame."""
    if isinstance(data, pd.DataFrame):
        return None
    if hasattr(data, "paths") and not isinstance(data, str | os.PathLike):
        data = data.paths
    if isinstance(data, str | os.PathLike):
        data = [data]
    paths = [str(p) for p in data]
    if not paths:
        raise ModelError("distributed training: no data files")
    return paths


def _normalise(part: pd.DataFrame) -> pd.DataFrame:
    """One partition as the models see their data: string ids, timestamps, float target, sorted."""
    out = part.copy()
    out[ID] = out[ID].astype(str)
    if not pd.api.types.is_datetime64_any_dtype(out[TIME]):
        out[TIME] = pd.to_datetime(out[TIME])
    out[TARGET] = out[TARGET].astype(float)
    return out.sort_values([ID, TIME], kind="stable", ignore_index=True)


def _read_part(path: str, columns: list[str]) -> pd.DataFrame:
    """One partition file, normalised (on a worker)."""
    return _normalise(pd.read_parquet(path, columns=columns, engine="pyarrow"))


def _pieces(frame: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    """``frame`` (sorted by id) cut into at most ``n`` runs of whole series of about equal rows."""
    bounds = partition_bounds(frame[ID].to_numpy(), n)
    return [frame.iloc[a:b].reset_index(drop=True) for a, b in bounds if b > a]


@dataclass
class _Source:
    """The data on the cluster: a persisted Dask frame of the model's columns, whole series per
    partition, and what the results need of the input (its id dtype)."""

    frame: Any  # dask.dataframe.DataFrame
    id_dtype: Any
    time_dtype: Any


def spread(data: Any, ctx: FitContext, client: Any) -> _Source:
    """``data`` (a frame or Parquet files of whole series) as a Dask frame persisted on ``client``'s
    workers: only the columns a model reads, normalised, whole series per partition."""
    import dask.dataframe as dd

    paths = _paths_of(data)
    _quiet_workers(client)
    with _on(client):
        if paths is None:
            frame: pd.DataFrame = data
            missing = [c for c in (ID, TIME, TARGET) if c not in frame.columns]
            if missing:
                raise ModelError(f"distributed training: the data has no column(s) {', '.join(missing)}")
            id_dtype = frame[ID].dtype
            frame = _normalise(frame[MLForecastModel._used_columns(frame.columns, ctx)])
            time_dtype = frame[TIME].dtype
            pieces = _pieces(frame, 2 * n_dask_workers(client))
            futures = client.scatter(pieces)  # round-robin over the workers
            ddf = dd.from_delayed(futures, meta=frame.iloc[:0], verify_meta=False)
        else:
            import pyarrow.parquet as pq

            empty = pq.read_schema(paths[0]).empty_table().to_pandas()
            used = MLForecastModel._used_columns(list(empty.columns), ctx)
            meta = _normalise(empty[used])
            id_dtype, time_dtype = empty[ID].dtype, meta[TIME].dtype
            # one pandas read per file (a Dask partition each): files may differ in Parquet type (a column
            # all null in one of them), which a single read_parquet over all of them cannot cast
            ddf = dd.from_map(_read_part, paths, columns=used, meta=meta, enforce_metadata=False)
        ddf = client.persist(ddf)
    return _Source(ddf, id_dtype, time_dtype)


def source_for(data: Any, ctx: FitContext, client: Any) -> _Source:
    """The data of a backtest (a :class:`tidecast.training.candidates._Data` holder, or a frame) spread on
    ``client`` once for all the candidates that train distributed: the partition files when the
    workers see them (``shared_storage``), else the full frame, scattered."""
    if isinstance(data, pd.DataFrame):
        return spread(data, ctx, client)
    cache: dict[int, _Source] = data.__dict__.setdefault("_distributed_sources", {})
    if id(client) not in cache:
        files = getattr(data, "source", None)
        payload = files if files is not None and getattr(data, "shared_storage", False) else data.full
        cache[id(client)] = spread(payload, ctx, client)
    return cache[id(client)]
