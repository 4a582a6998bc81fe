"""The data a backtest reads: the partitions on disk or the frame, and how a per-series model's
series are split into partitions."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tidecast.data.partitions import PartitionedFrame
from tidecast.evaluation.backtest import partition_series
from tidecast.frames import ID, TARGET, TIME
from tidecast.models.registry import fits_per_series
from tidecast.pipeline.executors import shares_files
from tidecast.spec import Spec
from tidecast.training.hierarchy import with_aggregates

__all__ = ["PARTITION_MAX_SERIES", "BacktestData", "series_partitions"]


PARTITION_MAX_SERIES = 2000
"""No series partition holds more series than this (bounds one task's memory)."""


def series_partitions(frame: pd.DataFrame, n_workers: int) -> list[list[Any]] | None:
    """How a per-series model's backtest is split: ``None`` (one piece) for one worker and few
    series, else about two partitions per worker, of at most :data:`PARTITION_MAX_SERIES` series.
    The forecasts do not depend on it (each series is fit on its own)."""
    ids = pd.unique(frame[ID])
    n = len(ids)
    wanted = max(2 * n_workers if n_workers > 1 else 1, -(-n // PARTITION_MAX_SERIES))
    wanted = min(wanted, n)
    return None if wanted <= 1 else partition_series(ids, wanted)


class BacktestData:
    """The backtest's data: the partitions on disk (when the features step wrote them), the
    ``unique_id, ds, y`` columns this process needs for folds and scores, and every column, read
    only when a global model needs them all."""

    def __init__(self, data: Any, spec: Spec) -> None:
        self.source = data if isinstance(data, PartitionedFrame) and spec.hierarchy is None else None
        frame = data.to_pandas() if isinstance(data, PartitionedFrame) else data  # a hierarchy needs every node
        self._full = None if self.source is not None else with_aggregates(frame, spec)
        self.light = self.source.to_pandas([ID, TIME, TARGET]) if self.source is not None else self._full

        self.shared_storage = shares_files(spec.executor)

    @property
    def full(self) -> pd.DataFrame:
        if self._full is None:
            self._full = self.source.to_pandas()  # type: ignore[union-attr]
        return self._full

    def for_kind(self, kind: str) -> Any:
        """What the backtest of a candidate of ``kind`` reads: the partitions (the workers read
        their rows there), unless a global model's workers cannot see them."""
        if self.source is not None and (fits_per_series(kind) or self.shared_storage):
            return self.source
        return self.full
