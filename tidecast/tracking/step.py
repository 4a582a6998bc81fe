"""The ``track`` pipeline step: after ``select``, record the training in MLflow and gate the new model.

Plug it into the training DAG with ``training_pipeline(extra=(track,))``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.pipeline.dag import step
from tidecast.spec import Spec

TRACK_SPEC_SECTIONS = (
    "project",
    "tracking",
    "registry",
    "data",
    "forecast",
    "models",
    "selection",
    "seed",
    "backtest",
    "features",
    "clean",
    "target",
    "hierarchy",
)


NOT_UPSTREAM = frozenset({"track", "explain", "report"})
"""Steps of ``tidecast.lock`` that do not feed ``track``. Every other step's peak memory (the lock's
``peak_rss_mb``: that of the run of the step that produced the output used) is logged on the
training run as ``peak_rss_mb.<step>``."""


def upstream_records(spec: Spec) -> dict[str, Any]:
    """What ``tidecast.lock`` says about the steps of this run: their keys, the data fingerprint, and
    the cache folder of each (read while the run holds the project lock, so it is this run's)."""
    from tidecast.pipeline.lock import LOCK_FILENAME, LockFile

    lock = LockFile(Path(spec.root) / LOCK_FILENAME)
    return {name: record for name, record in lock.records.items()}


def clean_summary(spec: Spec, records: dict[str, Any], clean: pd.DataFrame | None = None) -> dict[str, Any]:
    """The clean step's ``summary.json`` from its cache entry (``<entry>/artifacts/summary.json``)."""
    from tidecast.pipeline.cache import ARTIFACTS

    record = records.get("clean")
    if record is not None and record.outputs:
        file = Path(spec.root) / record.outputs / ARTIFACTS / "summary.json"
        if file.is_file():
            try:
                return json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
    summary: dict[str, Any] = {"note": "the clean step's summary.json was not found in its cache entry"}
    if clean is not None:
        summary["rows"] = len(clean)
    return summary


@step(spec=TRACK_SPEC_SECTIONS)
def track(
    select: dict[str, Any], backtest: dict[str, Any], features: pd.DataFrame, clean: pd.DataFrame, spec: Spec, ctx: Any
) -> dict[str, Any]:
    """Log the training to MLflow (parent + candidate runs, the pyfunc model) and register it behind the gate."""
    from tidecast.tracking.runs import track_training

    records = upstream_records(spec)
    ingest = records.get("ingest")
    fingerprint = ingest.fingerprint if ingest is not None and ingest.fingerprint else None
    if fingerprint is None:
        from tidecast.data.sources import content_fingerprint

        fingerprint = content_fingerprint(spec.data)
    result = track_training(
        spec,
        backtest=backtest,
        select=select,
        features=features,
        clean_summary=clean_summary(spec, records, clean),
        data_fingerprint=fingerprint,
        lock_hashes={name: record.key for name, record in records.items()},
        progress=ctx.progress,
        step_peaks={name: record.peak_rss_mb for name, record in records.items() if name not in NOT_UPSTREAM},
    )
    out = result.to_dict()
    (Path(ctx.artifact_dir) / "tracking.json").write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    return json.loads(json.dumps(out, default=str))
