"""Re-run a logged training from its recorded spec and check the metrics come out the same.

>>> report = reproduce("examples/power", "3c9f0e...")        # doctest: +SKIP
>>> report.matches, report.max_rel_diff                        # doctest: +SKIP
(True, 0.0)

**The scale of the comparison.** Two figures match when ``|logged - now| <= atol + RTOL * max(|logged|,
|now|)``, per metric:

* ``RTOL = 1e-6``: every metric is recomputed from scratch in float64. A deterministic model gives
  bit-identical figures; multi-threaded libraries (LightGBM, BLAS, torch) may add in another order,
  which moves the last few of the 16 significant digits, never the 7th. Every figure tidecast prints
  or gates on has 3 to 4 significant digits, so 1e-6 is far below any difference a reader or the gate
  could see, and far above summation noise.
* ``atol``, for figures near zero (a bias, a coverage of 0, a MAPE of a near-perfect fit) where a
  relative difference means nothing: ``1e-9`` for the unitless metrics (``mape``, ``smape``, ``wape``,
  ``mase``, ``coverage``; fractions or ratios of order 1), ``1e-9 × mean |y|`` for those in the
  target's unit (``mae``, ``rmse``, ``bias``, ``pinball``, widths). Both sit above the 5e-11 that
  ``leaderboard.json`` (10 decimals) can lose; the logged figures are read from the candidates' MLflow
  metrics (exact float64) wherever they exist.

When a run does not reproduce, :attr:`ReproduceReport.inputs` says which of its inputs differ from the
logged run's: data hash, spec, code (git commit, tidecast version), library versions, seed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tidecast import __version__
from tidecast.data.sources import content_fingerprint
from tidecast.errors import TrackingError
from tidecast.pipeline.executors import executor_scope
from tidecast.spec import Spec, load_spec, parse_spec
from tidecast.tracking.provenance import git_commit, installed_versions, redact
from tidecast.tracking.records import KIND_TAG, candidate_runs
from tidecast.tracking.store import connect, retry_locked
from tidecast.training import candidate_results, select_and_refit, steps

RTOL = 1e-6
ATOL = 1e-9
REL_TOL = RTOL  # the name of earlier versions
_NOT_METRICS = {"rank", "fit_seconds", "predict_seconds", "trials", "seconds", "search_seconds", "series_won"}
#: Metrics without a unit (fractions or ratios of order 1): absolute tolerance ``ATOL`` as is.
UNITLESS = ("mape", "smape", "wape", "mase", "coverage", "rank")


def tolerance(metric: str, scale: float = 1.0) -> tuple[float, float]:
    """``(rtol, atol)`` for ``metric``; ``scale``: the target's typical size (mean |y|), for metrics
    in the target's unit."""
    name = str(metric).lower()
    unitless = any(name == m or name.startswith(m + "_") for m in UNITLESS)
    size = 1.0 if unitless or not np.isfinite(scale) or scale <= 0 else float(scale)
    return RTOL, ATOL * size


def close(a: float, b: float, rtol: float, atol: float) -> bool:
    """Symmetric closeness: ``|a - b| <= atol + rtol * max(|a|, |b|)``; NaN matches NaN, ±inf itself."""
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    if np.isinf(a) or np.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


@dataclass
class ReproduceReport:
    """The logged and the re-computed metrics of every candidate (and of the winner on the held-out stretch)."""

    run_id: str
    data_fingerprint: str
    spec_fingerprint: str | None
    winner_logged: str | None
    winner_now: str | None
    comparison: pd.DataFrame = field(repr=False)
    """candidate, scope (backtest/holdout), metric, logged, reproduced, abs_diff, rel_diff, allowed
    (the largest ``abs_diff`` that matches), match."""
    tolerance: float = RTOL
    """The relative tolerance (each metric also has an absolute one: see :func:`tolerance`)."""
    inputs: list[dict[str, Any]] = field(default_factory=list)
    """What the run was computed from, logged vs now: ``input``, ``logged``, ``now``, ``same``
    (True, False, or None when it cannot be told)."""

    @property
    def differing_inputs(self) -> list[dict[str, Any]]:
        """The inputs that differ from the logged run's (or may: ``same`` None)."""
        return [row for row in self.inputs if row["same"] is not True]

    @property
    def max_rel_diff(self) -> float:
        diffs = self.comparison["rel_diff"].dropna()
        return float(diffs.max()) if len(diffs) else 0.0

    @property
    def matches(self) -> bool:
        return bool(self.comparison["match"].all()) and self.winner_logged == self.winner_now

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "data_fingerprint": self.data_fingerprint,
            "spec_fingerprint": self.spec_fingerprint,
            "winner_logged": self.winner_logged,
            "winner_now": self.winner_now,
            "matches": self.matches,
            "max_rel_diff": self.max_rel_diff,
            "tolerance": {"rtol": RTOL, "atol": f"{ATOL:g} (unitless metrics) or {ATOL:g} x mean |y|"},
            "inputs": self.inputs,
            "comparison": json.loads(self.comparison.to_json(orient="records", double_precision=15)),
        }


class _Ctx:
    """The little a step function needs from the pipeline engine, for calling steps directly."""

    def __init__(self, name: str, folder: Path, state_dir: Path, spec: Any) -> None:
        self.name = name
        self.key = "reproduce"
        self.artifact_dir = folder / name
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.parts_dir = folder / name / "parts"
        self.state_dir = state_dir
        self.spec = spec
        self.log = logging.getLogger(f"tidecast.reproduce.{name}")

    def progress(self, *_: Any, **__: Any) -> None:
        return None


def _rel_diff(a: float, b: float) -> float:
    if np.isnan(a) and np.isnan(b):
        return 0.0
    if np.isnan(a) or np.isnan(b):
        return float("inf")
    return abs(a - b) / max(abs(a), abs(b), 1e-300) if a != b else 0.0


def _row(candidate: str, scope: str, metric: str, logged: float, now: float, scale: float) -> dict[str, Any]:
    rtol, atol = tolerance(metric, scale)
    finite = np.isfinite(logged) and np.isfinite(now)
    return {
        "candidate": candidate,
        "scope": scope,
        "metric": metric,
        "logged": logged,
        "reproduced": now,
        "abs_diff": abs(logged - now) if finite else (0.0 if close(logged, now, 0, 0) else float("inf")),
        "rel_diff": _rel_diff(logged, now),
        "allowed": atol + rtol * max(abs(logged), abs(now)) if finite else 0.0,
        "match": close(logged, now, rtol, atol),
    }


def _logged_candidate_metrics(client: Any, run: Any) -> dict[str, dict[str, float]]:
    """Each candidate's aggregate metrics as its nested run logged them (float64, unrounded)."""
    out: dict[str, dict[str, float]] = {}
    for child in candidate_runs(client, [run.info.experiment_id], run.info.run_id):
        if child.data.tags.get(KIND_TAG) == "candidate":
            name = child.data.tags.get("tidecast.candidate") or child.info.run_name
            out[str(name)] = dict(child.data.metrics)
    return out


def _logged_versions(client: Any, run_id: str) -> dict[str, str] | None:
    with tempfile.TemporaryDirectory(prefix="tidecast-repro-") as tmp:
        try:
            path = retry_locked(lambda: client.download_artifacts(run_id, "requirements.txt", tmp))
        except Exception:
            return None
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    return dict(line.strip().split("==", 1) for line in lines if "==" in line)


def _inputs(client: Any, run: Any, spec: Spec, root: Path, data_now: str) -> list[dict[str, Any]]:
    """The logged run's inputs next to this re-run's: data, spec, code, libraries, seed."""
    tags, params = run.data.tags, run.data.params

    def row(name: str, logged: Any, now: Any, same: bool | None = None) -> dict[str, Any]:
        if same is None and logged is not None and now is not None:
            same = str(logged) == str(now)
        return {"input": name, "logged": logged, "now": now, "same": same}

    commit, dirty = git_commit(root)
    logged_dirty = tags.get("tidecast.git_dirty") == "true"
    logged_commit = tags.get("mlflow.source.git.commit")
    code_same: bool | None = None
    if logged_commit and commit:
        code_same = False if logged_commit != commit else (None if logged_dirty or dirty else True)
    elif not logged_commit and not commit:
        code_same = None  # not a git work tree, then or now: the tidecast version is all there is

    def shown(head: str | None, changes: bool | None) -> str | None:
        return None if head is None else head[:12] + (" (uncommitted changes)" if changes else "")

    rows = [
        row("data", tags.get("tidecast.data_fingerprint"), data_now),
        row("spec", tags.get("tidecast.spec_fingerprint"), spec.fingerprint()),
        row("code: git commit", shown(logged_commit, logged_dirty), shown(commit, dirty), code_same),
        row("code: tidecast", tags.get("tidecast.version"), __version__),
    ]
    logged_versions = _logged_versions(client, run.info.run_id)
    now_versions = installed_versions()
    if logged_versions is None:
        rows.append(row("libraries", None, f"{len(now_versions)} packages"))
    else:
        changed = [
            f"{name} {logged_versions.get(name, 'absent')} → {now_versions.get(name, 'absent')}"
            for name in sorted(set(logged_versions) | set(now_versions))
            if logged_versions.get(name) != now_versions.get(name)
        ]
        rows.append(
            row("libraries", f"{len(logged_versions)} packages", "; ".join(changed) or "the same", not changed)
        )
    rows.append(row("seed", params.get("seed"), spec.seed))
    return rows


def logged_spec(client: Any, run_id: str, root: Path) -> Spec:
    """The resolved spec a training logged (``spec.yaml``), rooted at ``root``."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="tidecast-repro-") as tmp:
        try:
            path = retry_locked(lambda: client.download_artifacts(run_id, "spec.yaml", tmp))
        except Exception as exc:
            raise TrackingError(f"run {run_id} has no logged spec.yaml ({exc})") from None
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    # the logged spec is already resolved: no environment overrides apply again
    return parse_spec(data, root=root, source=f"run {run_id}: spec.yaml", env="")


def _logged_board(client: Any, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="tidecast-repro-") as tmp:
        path = retry_locked(lambda: client.download_artifacts(run_id, "leaderboard.json", tmp))
        return pd.DataFrame(json.loads(Path(path).read_text(encoding="utf-8")))


def rebuild_features(spec: Spec, folder: Path) -> tuple[pd.DataFrame, Any]:
    """ingest → clean → features of ``spec``, by calling the pipeline's step functions directly
    (the project's cache and ``tidecast.lock`` are left untouched)."""
    state = Path(spec.state_dir)
    with executor_scope():
        raw = steps.ingest(spec, _Ctx("ingest", folder, state, spec))
        cleaned = steps.clean(raw, spec, _Ctx("clean", folder, state, spec))
        features = steps.features(cleaned, spec, _Ctx("features", folder, state, spec))
        return features.to_pandas(), cleaned.to_pandas()


def reproduce(spec_or_root: Spec | str | os.PathLike[str], run_id: str) -> ReproduceReport:
    """Re-run the backtest and selection of training run ``run_id`` with its logged spec and compare.

    Raises :class:`TrackingError` when the run is not a training or the data changed since (naming
    both content hashes). Metrics are compared per metric, relative and absolute (see the module's
    docstring); the report says which differ, and which of the run's inputs differ from the logged ones.
    """
    project = spec_or_root if isinstance(spec_or_root, Spec) else load_spec(spec_or_root)
    client = connect(project)
    try:
        run = retry_locked(lambda: client.get_run(run_id))
    except Exception as exc:
        raise TrackingError(f"reproduce: no run {run_id} in {client.tracking_uri} ({exc})") from None
    if run.data.tags.get(KIND_TAG) != "training":
        raise TrackingError(f"reproduce: run {run_id} is not a training run (kind {run.data.tags.get(KIND_TAG)!r})")
    spec = logged_spec(client, run_id, Path(project.root))
    if "***" in spec.data.source and redact(project.data.source) == spec.data.source:
        spec.data.source = project.data.source  # the password was redacted from the log: take today's
    logged_hash = run.data.tags.get("tidecast.data_fingerprint")
    current_hash = content_fingerprint(spec.data)
    if logged_hash and logged_hash != current_hash:
        raise TrackingError(
            f"reproduce: the data changed since run {run_id}: it was trained on {logged_hash}, "
            f"{redact(spec.data.source)} is now {current_hash}"
        )
    with tempfile.TemporaryDirectory(prefix="tidecast-repro-") as tmp:
        features, _ = rebuild_features(spec, Path(tmp))
    backtested = candidate_results(features, spec)
    selected = select_and_refit(backtested, features, spec)
    scale = float(np.nanmean(np.abs(features["y"].to_numpy(dtype=float)))) if "y" in features else 1.0

    rows: list[dict[str, Any]] = []
    logged = _logged_board(client, run_id).set_index("candidate")
    exact = _logged_candidate_metrics(client, run)
    board = backtested["leaderboard"].set_index("candidate")
    for cand in logged.index:
        if cand not in board.index:
            rows.append({**_row(str(cand), "backtest", "status", np.nan, np.inf, scale), "match": False})
            continue
        for column in logged.columns:
            if column in _NOT_METRICS or column not in board.columns:
                continue
            raw = logged.at[cand, column]
            a = pd.to_numeric(pd.Series([raw]), errors="coerce").iloc[0]
            b = pd.to_numeric(pd.Series([board.at[cand, column]]), errors="coerce").iloc[0]
            if pd.isna(a) and pd.isna(b) and not isinstance(raw, int | float):
                continue  # a text column (kind, params, status, error)
            a = exact.get(str(cand), {}).get(str(column), a)  # the unrounded figure where MLflow has it
            rows.append(_row(str(cand), "backtest", str(column), float(a), float(b), scale))
    for key, value in run.data.metrics.items():
        if key.startswith("holdout_"):
            metric = key.removeprefix("holdout_")
            now = float(selected["holdout_metrics"].get(metric, np.nan))
            rows.append(_row(str(selected["winner"]), "holdout", metric, float(value), now, scale))
    columns = ["candidate", "scope", "metric", "logged", "reproduced", "abs_diff", "rel_diff", "allowed", "match"]
    comparison = pd.DataFrame(rows, columns=columns)
    return ReproduceReport(
        run_id=run_id,
        data_fingerprint=current_hash,
        spec_fingerprint=run.data.tags.get("tidecast.spec_fingerprint"),
        winner_logged=run.data.tags.get("tidecast.winner"),
        winner_now=selected["winner"],
        comparison=comparison,
        inputs=_inputs(client, run, spec, Path(project.root), current_hash),
    )
