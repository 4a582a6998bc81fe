"""Re-run a logged training from its recorded spec and check the metrics come out the same.

>>> report = reproduce("examples/power", "3c9f0e...")        # doctest: +SKIP
>>> report.matches, report.max_rel_diff                        # doctest: +SKIP
(True, 0.0)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.errors import TrackingError
from tidecast.tracking.runs import KIND_TAG, redact
from tidecast.tracking.store import connect, retry_locked

if TYPE_CHECKING:
    from tidecast.spec import Spec

REL_TOL = 1e-9
_NOT_METRICS = {"rank", "fit_seconds", "predict_seconds", "trials", "seconds"}


@dataclass
class ReproduceReport:
    """The logged and the re-computed metrics of every candidate (and of the winner on the held-out stretch)."""

    run_id: str
    data_fingerprint: str
    spec_fingerprint: str | None
    winner_logged: str | None
    winner_now: str | None
    comparison: pd.DataFrame = field(repr=False)
    """candidate, scope (backtest/holdout), metric, logged, reproduced, rel_diff, match."""
    tolerance: float = REL_TOL

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
            "tolerance": self.tolerance,
            "comparison": json.loads(self.comparison.to_json(orient="records")),
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


def logged_spec(client: Any, run_id: str, root: Path) -> Spec:
    """The resolved spec a training logged (``spec.yaml``), rooted at ``root``."""
    import yaml

    from tidecast.spec import parse_spec

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
    from tidecast.pipeline import steps

    state = Path(spec.state_dir)
    from tidecast.pipeline.executors import executor_scope

    with executor_scope():
        raw = steps.ingest(spec, _Ctx("ingest", folder, state, spec))
        cleaned = steps.clean(raw, spec, _Ctx("clean", folder, state, spec))
        features = steps.features(cleaned, spec, _Ctx("features", folder, state, spec))
        return features.to_pandas(), cleaned.to_pandas()


def reproduce(spec_or_root: Spec | str | os.PathLike[str], run_id: str) -> ReproduceReport:
    """Re-run the backtest and selection of training run ``run_id`` with its logged spec and compare.

    Raises :class:`TrackingError` when the run is not a training or the data changed since (naming
    both content hashes). Metrics are compared with a relative tolerance of 1e-9; the report says
    which differ.
    """
    from tidecast.data.sources import content_fingerprint
    from tidecast.spec import Spec as SpecClass
    from tidecast.spec import load_spec
    from tidecast.training import candidate_results, select_and_refit

    project = spec_or_root if isinstance(spec_or_root, SpecClass) else load_spec(spec_or_root)
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

    rows: list[dict[str, Any]] = []
    logged = _logged_board(client, run_id).set_index("candidate")
    board = backtested["leaderboard"].set_index("candidate")
    for cand in logged.index:
        if cand not in board.index:
            rows.append(
                {
                    "candidate": cand,
                    "scope": "backtest",
                    "metric": "status",
                    "logged": np.nan,
                    "reproduced": np.nan,
                    "rel_diff": float("inf"),
                    "match": False,
                }
            )
            continue
        for column in logged.columns:
            if column in _NOT_METRICS or column not in board.columns:
                continue
            a = pd.to_numeric(pd.Series([logged.at[cand, column]]), errors="coerce").iloc[0]
            b = pd.to_numeric(pd.Series([board.at[cand, column]]), errors="coerce").iloc[0]
            if pd.isna(a) and pd.isna(b) and not isinstance(logged.at[cand, column], int | float):
                continue  # a text column (kind, params, status, error)
            diff = _rel_diff(float(a), float(b))
            rows.append(
                {
                    "candidate": cand,
                    "scope": "backtest",
                    "metric": column,
                    "logged": float(a),
                    "reproduced": float(b),
                    "rel_diff": diff,
                    "match": diff <= REL_TOL,
                }
            )
    for key, value in run.data.metrics.items():
        if key.startswith("holdout_"):
            metric = key.removeprefix("holdout_")
            now = float(selected["holdout_metrics"].get(metric, np.nan))
            diff = _rel_diff(float(value), now)
            rows.append(
                {
                    "candidate": selected["winner"],
                    "scope": "holdout",
                    "metric": metric,
                    "logged": float(value),
                    "reproduced": now,
                    "rel_diff": diff,
                    "match": diff <= REL_TOL,
                }
            )
    comparison = pd.DataFrame(
        rows, columns=["candidate", "scope", "metric", "logged", "reproduced", "rel_diff", "match"]
    )
    return ReproduceReport(
        run_id=run_id,
        data_fingerprint=current_hash,
        spec_fingerprint=run.data.tags.get("tidecast.spec_fingerprint"),
        winner_logged=run.data.tags.get("tidecast.winner"),
        winner_now=selected["winner"],
        comparison=comparison,
    )
