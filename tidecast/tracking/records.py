"""MLflow records, the small parts every tidecast run writes: metrics, params and tags within
MLflow's limits (:func:`log_batch`), the process that owns a run (:func:`process_tags`) and the
reaping of runs whose process died (:func:`reap_dead_runs`), and the searches for training and
candidate runs. Used by the training's record (:mod:`tidecast.tracking.runs`), the registry and
the monitor's run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.frames import finite_float
from tidecast.tracking.store import retry_locked

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG = "tidecast."
KIND_TAG = "tidecast.kind"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000


def now_ms() -> int:
    return int(time.time() * 1000)


def clip_text(value: Any, limit: int = MAX_PARAM_LENGTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def metric_key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(name))


def as_metrics(values: dict[str, Any], *, prefix: str = "", step: int = 0, ts: int | None = None) -> list[Any]:
    from mlflow.entities import Metric

    ts = ts or now_ms()
    out = []
    for key, value in values.items():
        number = finite_float(value)
        if number is not None:
            out.append(Metric(metric_key(prefix + str(key)), number, ts, int(step)))
    return out


def as_params(values: dict[str, Any], prefix: str = "") -> list[Any]:
    from mlflow.entities import Param

    return [Param(metric_key(prefix + str(k))[:250], clip_text(v)) for k, v in values.items()]


def as_tags(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, clip_text(v, 8000)) for k, v in values.items() if v is not None]


def log_batch(
    client: MlflowClient, run_id: str, *, metrics: list[Any] = (), params: list[Any] = (), tags: list[Any] = ()
) -> None:
    """``client.log_batch`` within MLflow's per-request limits, retried while SQLite is locked; the
    metrics of a run on a SQLite store in one bulk insert (:func:`_insert_metrics`)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    if metrics and _insert_metrics(client, run_id, metrics):
        metrics = []
    # params are write-once: the same key twice in one batch is an error
    params = list({p.key: p for p in params}.values())
    while metrics or params or tags:
        chunk_p, params = params[:100], params[100:]
        chunk_t, tags = tags[:100], tags[100:]
        room = 1000 - len(chunk_p) - len(chunk_t)
        chunk_m, metrics = metrics[:room], metrics[room:]
        retry_locked(lambda m=chunk_m, p=chunk_p, t=chunk_t: client.log_batch(run_id, metrics=m, params=p, tags=t))


def _insert_metrics(client: MlflowClient, run_id: str, metrics: list[Any]) -> bool:
    """Write ``metrics`` of an active run as MLflow's SQL store does (a row per metric in ``metrics``,
    duplicates dropped; per key, the row of the highest ``(step, timestamp, value)`` in
    ``latest_metrics``), in one bulk insert instead of an ORM object per row and ~1,000 metrics per
    request (~37,000 metrics per training of examples/power: seconds). Only on a SQLite store and
    for finite values; False (nothing written) where MLflow's own path must do it."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import insert
        from sqlalchemy.exc import IntegrityError
    except ImportError:
        return False
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if not isinstance(store, SqlAlchemyStore) or getattr(store, "db_type", None) != "sqlite":
        return False
    unique: dict[tuple[str, int, int, float], None] = {}
    for metric in metrics:
        value = finite_float(metric.value)
        if value is None:
            return False  # MLflow stores NaN and infinities its own way
        unique[(str(metric.key), int(metric.timestamp), int(metric.step), value)] = None
    rows = [
        {"run_uuid": run_id, "key": key, "value": value, "timestamp": ts, "step": step, "is_nan": False}
        for key, ts, step, value in unique
    ]
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        best = latest.get(row["key"])
        if best is None or (row["step"], row["timestamp"], row["value"]) > (best["step"], best["timestamp"], best["value"]):
            latest[row["key"]] = row

    def write() -> None:
        with store.ManagedSessionMaker(read_only=False) as session:
            store._check_run_is_active(store._get_run(run_uuid=run_id, session=session))
            keys = list(latest)
            existing = {
                old.key: old
                for start in range(0, len(keys), 500)
                for old in session.query(SqlLatestMetric).filter(
                    SqlLatestMetric.run_uuid == run_id, SqlLatestMetric.key.in_(keys[start : start + 500])
                )
            }
            session.execute(insert(SqlMetric), rows)
            fresh = []
            for key, row in latest.items():
                old = existing.get(key)
                if old is None:
                    fresh.append(row)
                elif (row["step"], row["timestamp"], row["value"]) > (old.step, old.timestamp, old.value):
                    old.value, old.timestamp, old.step, old.is_nan = row["value"], row["timestamp"], row["step"], False
            if fresh:
                session.execute(insert(SqlLatestMetric), fresh)

    try:
        retry_locked(write)
    except IntegrityError:  # a metric already there: MLflow's path skips those (rolled back here)
        return False
    except Exception:
        # one transaction, rolled back on any error: MLflow's own path then writes the metrics (or
        # raises its own error), so a store whose internals differ from these never loses a metric
        # nor fails a run that MLflow's public API would have logged
        return False
    return True


# ------------------------------------------------------------------------------ dataset schema
def frame_schema(frame: pd.DataFrame) -> Any:
    """The MLflow schema of ``frame``, the same as MLflow infers it (``mlflow.types.utils._infer_schema``)
    at a fraction of the cost: MLflow tests every value of every column for a missing value in
    Python (seconds for the feature frame of a year of 5-minute readings). A column of a plain
    numeric, boolean or datetime dtype, or of strings only, has its type inferred by MLflow from its
    first value and ``required`` from a vectorised ``isna``; any other column is inferred by MLflow
    whole, as before."""
    from mlflow.types.schema import ColSpec, Schema
    from mlflow.types.utils import _infer_pandas_column, _infer_required

    columns = []
    for name in frame.columns:
        column = frame[name]
        plain = isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiubM"
        strings = column.dtype == object and pd.api.types.infer_dtype(column, skipna=False) == "string"
        if len(column) and (plain or strings):
            columns.append(ColSpec(type=_infer_pandas_column(column.iloc[:1]), name=name, required=not column.isna().any()))
        else:
            columns.append(ColSpec(type=_infer_pandas_column(column), name=name, required=_infer_required(column)))
    return Schema(columns)


def preset_schema(dataset: Any, frame: pd.DataFrame) -> None:
    """Give an MLflow ``PandasDataset`` of ``frame`` its schema (:func:`frame_schema`) before MLflow
    infers it the slow way; a dataset of another kind, or a frame the fast path cannot read, is
    left to MLflow."""
    import functools
    import inspect

    if not isinstance(inspect.getattr_static(type(dataset), "schema", None), functools.cached_property):
        return
    with contextlib.suppress(Exception):  # MLflow then infers it itself (or records none), as before
        dataset.__dict__["schema"] = frame_schema(frame)


# ------------------------------------------------------------------------------ process identity
def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live process from a recycled pid), Linux only."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    pid = os.getpid()
    tags = {"tidecast.pid": str(pid), "tidecast.host": socket.gethostname()}
    start = _proc_start(pid)
    if start:
        tags["tidecast.pid_start"] = start
    return tags


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    if start is not None:
        current = _proc_start(pid)
        if current is not None and current != start:
            return False  # the pid was recycled by another process
    return True


def reap_dead_runs(client: MlflowClient, exp_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of ``exp_id`` whose recorded process (on this host) is gone.

    A training killed with SIGKILL cannot end its own runs; this is how they stop showing as
    RUNNING. Runs of other hosts, or without a recorded pid, are left alone.
    """
    host = socket.gethostname()
    reaped: list[str] = []
    runs = retry_locked(
        lambda: client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    )
    for run in runs:
        tags = run.data.tags
        if tags.get("tidecast.host") != host or "tidecast.pid" not in tags:
            continue
        try:
            pid = int(tags["tidecast.pid"])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid, tags.get("tidecast.pid_start")):
            continue
        note = f"process {pid} on {host} died before the run ended"
        retry_locked(lambda run=run, note=note: client.set_tag(run.info.run_id, "tidecast.error", note))
        retry_locked(lambda run=run: client.set_terminated(run.info.run_id, status="FAILED"))
        reaped.append(run.info.run_id)
    return reaped


# ------------------------------------------------------------------------------- run searches
def training_runs(
    client: MlflowClient, exp_ids: list[str], *, max_results: int = 10, filter_extra: str = ""
) -> list[Any]:
    """The parent runs of trainings, newest first."""
    query = f"tags.`{KIND_TAG}` = 'training'" + (f" and {filter_extra}" if filter_extra else "")
    return retry_locked(
        lambda: client.search_runs(
            exp_ids, filter_string=query, max_results=max_results, order_by=["attributes.start_time DESC"]
        )
    )


def candidate_runs(client: MlflowClient, exp_ids: list[str], parent_run_id: str) -> list[Any]:
    query = f"tags.`{KIND_TAG}` = 'candidate' and tags.`{PARENT_TAG}` = '{parent_run_id}'"
    return retry_locked(lambda: client.search_runs(exp_ids, filter_string=query, max_results=1000))


__all__ = [
    "KIND_TAG",
    "MAX_PARAM_LENGTH",
    "PARENT_TAG",
    "TAG",
    "as_metrics",
    "as_params",
    "as_tags",
    "candidate_runs",
    "clip_text",
    "frame_schema",
    "log_batch",
    "metric_key",
    "now_ms",
    "preset_schema",
    "process_tags",
    "reap_dead_runs",
    "training_runs",
]
