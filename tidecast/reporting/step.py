"""The ``explain`` and ``report`` pipeline steps, after ``track``.

``explain`` takes the models the backtest fitted on its last fold (refitting only those it did not
keep) and measures what they rely on (see :mod:`tidecast.reporting.explain`); it is cached like
the model steps.
``report`` builds the run report (:mod:`tidecast.reporting.run_report`), writes it under
``.tidecast/reports/`` and logs it, its PNGs and tables to the training's MLflow run (``report/``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.errors import TrackingError
from tidecast.faults import fault_point
from tidecast.pipeline.cache import ARTIFACTS
from tidecast.pipeline.dag import step
from tidecast.pipeline.hashing import source_hash
from tidecast.reporting.explain import explain_candidates
from tidecast.reporting.run_report import build_run_report
from tidecast.spec import Spec
from tidecast.tracking.step import TRACK_SPEC_SECTIONS, clean_summary, upstream_records
from tidecast.tracking.store import active_uris, connect, retry_locked, storage_error
from tidecast.training.steps import FOLD_MODELS

_EXPLAIN_CODE = source_hash("data", "models", "evaluation", "training", "reporting/explain.py", "reporting/model_parts.py", "reporting/permutation.py")
_REPORT_CODE = source_hash(
    "reporting/run_report.py",
    "reporting/charts.py",
    "reporting/static.py",
    "reporting/analysis.py",
    "reporting/html.py",
)
EXPLAIN_SPEC_SECTIONS = ("data", "target", "features", "forecast", "backtest", "models", "selection", "seed")
#: Where a run's report lands, under the project's state folder.
REPORTS_DIRNAME = "reports"
ARTIFACT_PATH = "report"


@step(spec=EXPLAIN_SPEC_SECTIONS, version=_EXPLAIN_CODE, kind="joblib")
def explain(
    backtest: Mapping[str, Any], select: Mapping[str, Any], features: pd.DataFrame, spec: Spec, ctx: Any
) -> dict[str, Any]:
    """Permutation importance of the feature groups, SHAP for tree models, fitted components of statistical ones."""
    models = fold_models(spec, upstream_records(spec), backtest)
    return explain_candidates(backtest, select, features, spec, progress=ctx.progress, fold_models=models)


def fold_models(spec: Spec, records: dict[str, Any], backtest: Mapping[str, Any]) -> dict[str, dict[int, Any]]:
    """The models the backtest kept of its last fold (``<backtest entry>/artifacts/fold_models.joblib``,
    see :func:`tidecast.training.steps.backtest`): candidate -> fold index -> model, only those of
    this ``backtest`` output (same folds, same parameters); empty when absent or unreadable
    (explain then refits)."""
    record = records.get("backtest")
    if record is None or not record.outputs:
        return {}
    file = Path(spec.root) / record.outputs / ARTIFACTS / FOLD_MODELS
    if not file.is_file():
        return {}
    import joblib

    try:
        loaded = joblib.load(file)
    except Exception:  # a torn or foreign file: refitting is the safe answer
        return {}
    if not isinstance(loaded, dict) or str(loaded.get("folds")) != str(backtest.get("folds")):
        return {}  # another backtest's (a lock that records another run): not these folds
    results = backtest.get("results") or {}
    params = loaded.get("params") or {}
    return {
        name: models for name, models in (loaded.get("models") or {}).items()
        if name in results and params.get(name) == getattr(results[name], "params", None)
    }


def clean_changes(spec: Spec, records: dict[str, Any]) -> pd.DataFrame | None:
    """The clean step's ``changes.parquet`` (what cleaning changed), from its cache entry."""
    record = records.get("clean")
    if record is None or not record.outputs:
        return None
    file = Path(spec.root) / record.outputs / ARTIFACTS / "changes.parquet"
    if not file.is_file():
        return None
    try:
        return pd.read_parquet(file)
    except Exception:
        return None


def reports_dir(spec: Spec) -> Path:
    return spec.state_dir / REPORTS_DIRNAME


def log_report(spec: Spec, run_id: str, folder: Path) -> None:
    """Log a written report folder to the MLflow run ``run_id`` under ``report/``."""
    from mlflow.exceptions import MlflowException

    client = connect(spec)
    try:
        with active_uris(spec):
            retry_locked(lambda: client.log_artifacts(run_id, str(folder), ARTIFACT_PATH))
            retry_locked(lambda: client.set_tag(run_id, "tidecast.report", f"{ARTIFACT_PATH}/report.html"))
    except Exception as exc:
        refused = storage_error(exc, spec, doing=f"log the run report to MLflow run {run_id}")
        if refused is not None:
            raise refused from None
        if isinstance(exc, MlflowException):
            raise TrackingError(f"cannot log the run report to MLflow run {run_id}: {exc.message}") from None
        raise


@step(spec=TRACK_SPEC_SECTIONS, version=_REPORT_CODE)
def report(
    track: dict[str, Any],
    explain: dict[str, Any],
    backtest: Mapping[str, Any],
    select: Mapping[str, Any],
    clean: pd.DataFrame,
    spec: Spec,
    ctx: Any,
) -> dict[str, Any]:
    """Build the run report (HTML, PNGs, tables), write it under .tidecast/reports/ and log it to the run."""
    started = time.perf_counter()
    ctx.progress(0, 3, "building the report")
    records = upstream_records(spec)
    built = build_run_report(
        spec,
        backtest=backtest,
        select=select,
        clean=clean,
        changes=clean_changes(spec, records),
        clean_summary=clean_summary(spec, records, clean),
        explained=explain,
        tracking=track,
    )
    fault_point("report.built")
    run_id = str(track.get("run_id") or "")
    folder = reports_dir(spec) / (f"run-{run_id[:12]}" if run_id else time.strftime("run-%Y%m%d-%H%M%S"))
    if folder.exists():
        shutil.rmtree(folder)
    ctx.progress(1, 3, "writing")
    paths = built.write(folder)
    latest = reports_dir(spec) / "latest.html"
    shutil.copyfile(paths["html"], latest)
    fault_point("report.written")
    if run_id:
        ctx.progress(2, 3, "logging to MLflow")
        log_report(spec, run_id, folder)
        fault_point("report.logged")
    seconds = time.perf_counter() - started
    ctx.progress(3, 3, f"{paths['html']}")
    out = {
        "html": str(paths["html"]),
        "latest": str(latest),
        "folder": str(folder),
        "run_id": run_id or None,
        "artifact_path": ARTIFACT_PATH if run_id else None,
        "sections": built.sections,
        "charts": built.charts,
        "plots": sorted(p.name for p in (folder / "plots").glob("*.png")) if (folder / "plots").is_dir() else [],
        "warnings": built.warnings,
        "seconds": round(seconds, 2),
    }
    (Path(ctx.artifact_dir) / "report.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


REPORT_STEPS = (explain, report)

__all__ = ["ARTIFACT_PATH", "REPORT_STEPS", "clean_changes", "explain", "log_report", "report", "reports_dir"]
