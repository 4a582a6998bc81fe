"""Trainings side by side, read back from MLflow (``tidecast compare``).

>>> compare_runs(spec, last=5)                      # doctest: +SKIP
     run_id             started   status   winner  metric  holdout_mase  ...  naive  seasonal_naive  lightgbm
0  3c9f...  2025-01-02 10:00:00  FINISHED  lightgbm  mase      0.71     ...  1.32   1.00            0.69
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast.errors import TrackingError
from tidecast.tracking.records import KIND_TAG, candidate_runs, training_runs
from tidecast.tracking.store import connect, experiment_name, retry_locked

if TYPE_CHECKING:
    from tidecast.spec import Spec

BASE_COLUMNS = [
    "run_id",
    "started",
    "status",
    "winner",
    "metric",
    "holdout",
    "backtest",
    "baseline_holdout",
    "improvement_over_baseline",
    "registry_version",
    "registry_alias",
    "gate_reason",
    "data_fingerprint",
    "spec_fingerprint",
    "git_commit",
]


def compare_runs(spec: Spec, experiment: str | None = None, last: int = 10, metric: str | None = None) -> pd.DataFrame:
    """The last ``last`` trainings of ``experiment`` (default: the project's), newest first.

    One row per training (parent run): when it started, its status, the winner, the selection
    metric (``metric`` overrides which one is shown) held-out and in the backtest, the registry's
    verdict, the data and spec hashes, then one column per candidate with its backtest ``metric``
    (NaN where a candidate failed or did not take part).
    """
    if last < 1:
        raise TrackingError(f"compare: --last must be at least 1, got {last}")
    client = connect(spec)
    name = experiment or experiment_name(spec)
    found = retry_locked(lambda: client.get_experiment_by_name(name))
    if found is None:
        raise TrackingError(f"compare: no experiment {name!r} in the tracking store (run 'tidecast run' first)")
    exp_ids = [found.experiment_id]
    rows: list[dict[str, Any]] = []
    candidates: list[str] = []
    for run in training_runs(client, exp_ids, max_results=last):
        tags, metrics = run.data.tags, run.data.metrics
        chosen = metric or tags.get("tidecast.metric") or run.data.params.get("metric") or spec.selection.metric
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "started": pd.to_datetime(run.info.start_time, unit="ms", utc=True).tz_localize(None),
            "status": run.info.status,
            "winner": tags.get("tidecast.winner"),
            "metric": chosen,
            "holdout": metrics.get(f"holdout_{chosen}"),
            "backtest": metrics.get(f"backtest_{chosen}"),
            "baseline_holdout": metrics.get(f"baseline_holdout_{chosen}"),
            "improvement_over_baseline": metrics.get("improvement_over_baseline"),
            "registry_version": tags.get("tidecast.registry.version"),
            "registry_alias": tags.get("tidecast.registry.alias"),
            "gate_reason": tags.get("tidecast.gate_reason"),
            "data_fingerprint": tags.get("tidecast.data_fingerprint"),
            "spec_fingerprint": tags.get("tidecast.spec_fingerprint"),
            "git_commit": tags.get("mlflow.source.git.commit"),
        }
        for child in candidate_runs(client, exp_ids, run.info.run_id):
            if child.data.tags.get(KIND_TAG) != "candidate":
                continue
            cand = child.data.tags.get("tidecast.candidate") or child.info.run_name
            if cand not in candidates:
                candidates.append(cand)
            row[cand] = child.data.metrics.get(chosen)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*BASE_COLUMNS, *candidates])
    for column in ["holdout", "backtest", "baseline_holdout", "improvement_over_baseline", *candidates]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def to_format(frame: pd.DataFrame, fmt: str) -> str:
    """``csv`` or ``json`` text of a comparison (the CLI renders ``table`` itself)."""
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        return frame.to_json(orient="records", date_format="iso", indent=2, double_precision=15)
    raise TrackingError(f"compare: unknown format {fmt!r} (use table, csv or json)")
