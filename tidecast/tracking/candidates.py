"""The nested runs of one training: one per candidate (its backtest metrics, per fold and per
horizon step) and one per search trial under it, opened and ended through a :class:`RunBook` so
that every run ends FINISHED or FAILED. :func:`tidecast.tracking.runs.track_training` drives it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast.tracking.records import (
    KIND_TAG,
    PARENT_TAG,
    as_metrics,
    as_params,
    clip_text,
    log_batch,
    now_ms,
    process_tags,
)
from tidecast.tracking.store import retry_locked

if TYPE_CHECKING:
    from mlflow import MlflowClient


def _per_fold(evaluation: Any) -> list[Any]:
    frame = getattr(evaluation, "per_fold", None)
    return _stepped(frame, "fold", prefix="fold_")


def _per_step(evaluation: Any) -> list[Any]:
    frame = getattr(evaluation, "per_step", None)
    return _stepped(frame, "step", prefix="step_", limit=2000)


def _stepped(frame: Any, column: str, *, prefix: str, limit: int | None = None) -> list[Any]:
    """Metrics of a per-fold/per-step frame (averaged over series if it has several rows per step)."""
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return []
    if column not in frame.columns and column in (frame.index.names or []):
        frame = frame.reset_index()
    if column not in frame.columns:
        return []
    skip = {column, "unique_id", "cutoff", "fold", "step", "ds", "n"}
    numeric = [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        return []
    grouped = frame.groupby(column)[numeric].mean()
    if limit is not None:
        grouped = grouped.iloc[:limit]
    ts = now_ms()
    out = []
    for step_value, row in grouped.iterrows():
        try:
            step = int(step_value)
        except (TypeError, ValueError):
            continue
        out.extend(as_metrics(row.to_dict(), prefix=prefix, step=step, ts=ts))
    return out


class RunBook:
    """The runs opened by one training, so that every one of them ends FINISHED or FAILED."""

    def __init__(self, client: MlflowClient, exp_id: str) -> None:
        self.client = client
        self.exp_id = exp_id
        self.open: list[str] = []

    def create(self, name: str, tags: dict[str, Any], parent: str | None = None) -> str:
        all_tags = {**tags, **process_tags()}
        if parent is not None:
            all_tags[PARENT_TAG] = parent
        run = retry_locked(
            lambda: self.client.create_run(
                self.exp_id, run_name=name, tags={k: clip_text(v, 8000) for k, v in all_tags.items() if v is not None}
            )
        )
        self.open.append(run.info.run_id)
        return run.info.run_id

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        retry_locked(lambda: self.client.set_terminated(run_id, status=status))
        if run_id in self.open:
            self.open.remove(run_id)

    def fail_all(self, error: str) -> None:
        for run_id in reversed(list(self.open)):
            with contextlib.suppress(Exception):
                retry_locked(lambda run_id=run_id: self.client.set_tag(run_id, "tidecast.error", clip_text(error, 8000)))
            with contextlib.suppress(Exception):
                self.end(run_id, "FAILED")


def log_candidate(
    book: RunBook, parent: str, name: str, result: Any, details: dict[str, Any], metric: str, rank: Any
) -> tuple[str, list[str]]:
    client = book.client
    error = getattr(result, "error", None)
    params = getattr(result, "params", None) or {}
    tags = {
        KIND_TAG: "candidate",
        "tidecast.candidate": name,
        "tidecast.model_kind": getattr(result, "kind", None),
        "tidecast.status": "failed" if error else "ok",
        "tidecast.error": error,
        "tidecast.rank": None if rank is None else str(rank),
        "tidecast.training_run": parent,
        "tidecast.training": (details or {}).get("training"),  # single / per series / distributed (...)
    }
    run_id = book.create(name, tags, parent=parent)
    metrics = as_metrics(
        {
            "fit_seconds": getattr(result, "fit_seconds", None),
            "predict_seconds": getattr(result, "predict_seconds", None),
            "trials": getattr(result, "trials", None),
            "search_seconds": (details or {}).get("seconds"),
        }
    )
    evaluation = getattr(result, "evaluation", None)
    if evaluation is not None:
        metrics += as_metrics(dict(getattr(evaluation, "aggregate", {}) or {}))
        metrics += _per_fold(evaluation)
        metrics += _per_step(evaluation)
    log_batch(client, run_id, metrics=metrics, params=as_params(params))
    trial_ids: list[str] = []
    trials = (details or {}).get("trials") or []
    if len(trials) > 1:
        for index, trial in enumerate(trials, start=1):
            trial_error = trial.get("error")
            trial_id = book.create(
                f"{name}/trial-{index:03d}",
                {
                    KIND_TAG: "trial",
                    "tidecast.candidate": name,
                    "tidecast.trial": str(index),
                    "tidecast.status": "failed" if trial_error else "ok",
                    "tidecast.error": trial_error,
                    "tidecast.training_run": parent,
                },
                parent=run_id,
            )
            log_batch(
                client,
                trial_id,
                params=as_params(trial.get("params") or {}),
                metrics=as_metrics({metric: trial.get("value"), "seconds": trial.get("seconds")}),
            )
            book.end(trial_id, "FAILED" if trial_error else "FINISHED")
            trial_ids.append(trial_id)
    book.end(run_id, "FAILED" if error else "FINISHED")
    return run_id, trial_ids


__all__ = ["RunBook", "log_candidate"]
