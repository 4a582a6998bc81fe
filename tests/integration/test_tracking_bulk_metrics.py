"""A training's metrics written to a SQLite store in one bulk insert (issue 19: ~37,000 metrics,
seconds of the ``track`` step) hold exactly what MLflow's own ``log_batch`` writes: every row of
``metrics`` and, per key, the latest value."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("mlflow")

from mlflow import MlflowClient
from mlflow.entities import Metric

from tidecast.tracking import records


def _metrics(ts: int) -> list[Metric]:
    out = [Metric("mae", 1.5, ts, 0), Metric("mae", 1.5, ts, 0)]  # a duplicate: one row
    out += [Metric(f"step_{name}", float(step) * k, ts, step) for step in range(1, 300) for k, name in enumerate(("mae", "rmse", "mase"), 1)]
    out += [Metric("fold_mae", value, ts + step, step) for step, value in ((2, 0.5), (0, 0.25), (1, 0.75))]
    out += [Metric("tie", value, ts, 3) for value in (2.0, 1.0)]  # same step and time: the larger value is latest
    return out


def _rows(db: Path, run_id: str) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(db) as connection:
        metrics = connection.execute(
            "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? ORDER BY key, step, timestamp, value", (run_id,)
        ).fetchall()
        latest = connection.execute(
            "SELECT key, value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid = ? ORDER BY key", (run_id,)
        ).fetchall()
    return metrics, latest


def test_bulk_metrics_are_what_mlflow_writes(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment("bulk", artifact_location=(tmp_path / "artifacts").as_uri())
    ours, theirs = client.create_run(exp).info.run_id, client.create_run(exp).info.run_id
    for run_id in (ours, theirs):  # a metric logged earlier: its latest value is compared, not overwritten blindly
        client.log_batch(run_id, metrics=[Metric("step_mae", 1e6, 1, 10_000), Metric("mae", 9.0, 1, 0)])
    metrics = _metrics(1_700_000_000_000)
    assert records._insert_metrics(client, ours, metrics)  # the bulk path (what records.log_batch takes first)
    for start in range(0, len(metrics), 1000):  # MLflow's own path, within its per-request limit
        client.log_batch(theirs, metrics=metrics[start : start + 1000])
    assert _rows(db, ours) == _rows(db, theirs)
    assert len(_rows(db, ours)[0]) == len(metrics) - 1 + 2
    assert client.get_run(ours).data.metrics == client.get_run(theirs).data.metrics
    assert client.get_run(ours).data.metrics["step_mae"] == 1e6 and client.get_run(ours).data.metrics["tie"] == 2.0


def test_not_finite_values_and_a_logged_twice_metric_take_mlflows_path(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment("bulk", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    assert not records._insert_metrics(client, run_id, [Metric("x", float("nan"), 1, 0)])
    assert records._insert_metrics(client, run_id, [Metric("y", 1.0, 1, 0)])
    assert not records._insert_metrics(client, run_id, [Metric("y", 1.0, 1, 0), Metric("z", 2.0, 1, 0)])  # rolled back
    assert _rows(db, run_id)[0] == [("y", 1.0, 1, 0, 0)]
    records.log_batch(client, run_id, metrics=[Metric("y", 1.0, 1, 0), Metric("z", 2.0, 1, 0)])
    assert client.get_run(run_id).data.metrics == {"y": 1.0, "z": 2.0}
    client.delete_run(run_id)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="deleted"):  # a deleted run takes no metric, as with MLflow's own path
        records.log_batch(client, run_id, metrics=[Metric("w", 1.0, 1, 0)])


def test_a_store_whose_internals_differ_falls_back_to_mlflows_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bulk path reads MLflow's private store API; where a future MLflow changes it, the metrics
    are still logged (by MLflow's public log_batch), and nothing half written stays behind."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment("bulk", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id

    def renamed(*_: object, **__: object) -> None:
        raise AttributeError("'SqlAlchemyStore' object has no attribute '_check_run_is_active'")

    monkeypatch.setattr(SqlAlchemyStore, "_check_run_is_active", renamed)
    metrics = _metrics(1_700_000_000_000)
    assert not records._insert_metrics(client, run_id, metrics)
    assert _rows(db, run_id) == ([], [])  # records.log_batch then takes MLflow's path (see the test above)
