"""One MLflow run per training: the parent holds the verdict, nested runs hold each candidate and trial.

Layout of what :func:`track_training` records (tags are prefixed ``tidecast.``)::

    <project>-<time>               parent run, kind=training
      params      metric, horizon, input window, frequency, folds, seed, winner and its params
      metrics     the winner's backtest (backtest_<m>) and held-out (holdout_<m>) metrics, baseline's
      artifacts   leaderboard.csv/json, clean_summary.json, spec.yaml, requirements.txt,
                  lineage.json, plots/backtest_<rank>_<candidate>.png, model/ (the pyfunc)
      inputs      the feature frame as an MLflow dataset (content hash, rows)
      ├─ <candidate>               nested, kind=candidate: params, fold_<m> (step = fold), <m>, seconds
      │   └─ <candidate>/trial-001  nested, kind=trial: params, the searched metric
      └─ ...

A run that raises on the way ends FAILED, never RUNNING; runs left RUNNING by a killed process of
this host are marked FAILED the next time a training is tracked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.errors import TrackingError
from tidecast.faults import fault_point
from tidecast.tracking.store import (
    _UNREACHABLE,
    _reason,
    active_uris,
    connect,
    experiment_id,
    experiment_name,
    retry_locked,
    storage_error,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tidecast.spec import Spec
    from tidecast.tracking.registry import RegistryDecision

TAG = "tidecast."
KIND_TAG = "tidecast.kind"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000
MAX_PLOTS = 3
MAIN_PACKAGES = (
    "tidecast",
    "mlflow",
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "scikit-learn",
    "statsforecast",
    "mlforecast",
    "utilsforecast",
    "lightgbm",
    "optuna",
    "holidays",
    "joblib",
    "cloudpickle",
    "torch",
)


@dataclass
class TrackingResult:
    """What :func:`track_training` recorded, and the registry's verdict."""

    run_id: str
    experiment_id: str
    experiment: str
    tracking_uri: str
    candidate_runs: dict[str, str] = field(default_factory=dict)
    trial_runs: dict[str, list[str]] = field(default_factory=dict)
    model_uri: str | None = None
    registration: RegistryDecision | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "registration"}
        out["registration"] = self.registration.to_dict() if self.registration is not None else None
        return out


# --------------------------------------------------------------------------------- small helpers
def _now_ms() -> int:
    return int(time.time() * 1000)


def _str(value: Any, limit: int = MAX_PARAM_LENGTH) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _metric_key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(name))


def _metrics(values: dict[str, Any], *, prefix: str = "", step: int = 0, ts: int | None = None) -> list[Any]:
    from mlflow.entities import Metric

    ts = ts or _now_ms()
    out = []
    for key, value in values.items():
        number = _finite(value)
        if number is not None:
            out.append(Metric(_metric_key(prefix + str(key)), number, ts, int(step)))
    return out


def _params(values: dict[str, Any], prefix: str = "") -> list[Any]:
    from mlflow.entities import Param

    return [Param(_metric_key(prefix + str(k))[:250], _str(v)) for k, v in values.items()]


def _tags(values: dict[str, Any]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, _str(v, 8000)) for k, v in values.items() if v is not None]


def log_batch(
    client: MlflowClient, run_id: str, *, metrics: list[Any] = (), params: list[Any] = (), tags: list[Any] = ()
) -> None:
    """``client.log_batch`` within MLflow's per-request limits, retried while SQLite is locked."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    # params are write-once: the same key twice in one batch is an error
    params = list({p.key: p for p in params}.values())
    while metrics or params or tags:
        chunk_p, params = params[:100], params[100:]
        chunk_t, tags = tags[:100], tags[100:]
        room = 1000 - len(chunk_p) - len(chunk_t)
        chunk_m, metrics = metrics[:room], metrics[room:]
        retry_locked(lambda m=chunk_m, p=chunk_p, t=chunk_t: client.log_batch(run_id, metrics=m, params=p, tags=t))


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


# --------------------------------------------------------------------------------- provenance
def git_commit(path: Path) -> tuple[str | None, bool | None]:
    """(HEAD commit, work tree dirty?) when ``path`` is inside a git work tree; (None, None) otherwise."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return head.stdout.strip() or None, bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def installed_versions(packages: Iterable[str] = MAIN_PACKAGES) -> dict[str, str]:
    """``name -> version`` of the installed main dependencies (absent ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def redact(source: str) -> str:
    """A data source URL without its password (``user:***@host``): credentials never reach MLflow."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", source)


def resolved_spec_yaml(spec: Spec) -> str:
    """The spec as validated (environment overrides applied, paths resolved), passwords redacted."""
    import yaml

    data = spec.model_dump(mode="json", exclude={"envs"})
    data["data"]["source"] = redact(data["data"]["source"])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------ plotting
def plot_backtest(forecasts: pd.DataFrame, title: str, path: Path, *, max_series: int = 3) -> Path:
    """Forecast vs actual over the backtest folds (first ``max_series`` series), with the widest quantile band."""
    from matplotlib.figure import Figure

    from tidecast.frames import ID, POINT, TARGET, TIME

    ids = list(dict.fromkeys(forecasts[ID].astype(str)))[:max_series]
    qcols = sorted(
        (c for c in forecasts.columns if c.startswith("q") and _finite(c[1:]) is not None), key=lambda c: float(c[1:])
    )
    fig = Figure(figsize=(10, 2.6 * max(1, len(ids))), dpi=80, layout="constrained")
    axes = fig.subplots(max(1, len(ids)), 1, squeeze=False)[:, 0]
    for ax, uid in zip(axes, ids, strict=False):
        part = forecasts[forecasts[ID].astype(str) == uid].sort_values(TIME)
        ax.plot(part[TIME], part[TARGET], color="black", linewidth=1, label="actual")
        folds = sorted(part["fold"].unique()) if "fold" in part else [None]
        for i, fold in enumerate(folds):
            chunk = part if fold is None else part[part["fold"] == fold]
            colour = f"C{i % 10}"
            ax.plot(chunk[TIME], chunk[POINT], color=colour, linewidth=1, label="forecast" if i == 0 else None)
            if len(qcols) >= 2:
                ax.fill_between(chunk[TIME], chunk[qcols[0]], chunk[qcols[-1]], color=colour, alpha=0.2, linewidth=0)
        ax.set_title(f"{title} · {uid}", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------------- the records
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
    ts = _now_ms()
    out = []
    for step_value, row in grouped.iterrows():
        try:
            step = int(step_value)
        except (TypeError, ValueError):
            continue
        out.extend(_metrics(row.to_dict(), prefix=prefix, step=step, ts=ts))
    return out


class _RunBook:
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
                self.exp_id, run_name=name, tags={k: _str(v, 8000) for k, v in all_tags.items() if v is not None}
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
                retry_locked(lambda run_id=run_id: self.client.set_tag(run_id, "tidecast.error", _str(error, 8000)))
            with contextlib.suppress(Exception):
                self.end(run_id, "FAILED")


def _log_candidate(
    book: _RunBook, parent: str, name: str, result: Any, details: dict[str, Any], metric: str, rank: Any
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
    metrics = _metrics(
        {
            "fit_seconds": getattr(result, "fit_seconds", None),
            "predict_seconds": getattr(result, "predict_seconds", None),
            "trials": getattr(result, "trials", None),
            "search_seconds": (details or {}).get("seconds"),
        }
    )
    evaluation = getattr(result, "evaluation", None)
    if evaluation is not None:
        metrics += _metrics(dict(getattr(evaluation, "aggregate", {}) or {}))
        metrics += _per_fold(evaluation)
        metrics += _per_step(evaluation)
    log_batch(client, run_id, metrics=metrics, params=_params(params))
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
                params=_params(trial.get("params") or {}),
                metrics=_metrics({metric: trial.get("value"), "seconds": trial.get("seconds")}),
            )
            book.end(trial_id, "FAILED" if trial_error else "FINISHED")
            trial_ids.append(trial_id)
    book.end(run_id, "FAILED" if error else "FINISHED")
    return run_id, trial_ids


def _log_dataset(spec: Spec, features: pd.DataFrame, data_fingerprint: str | None) -> None:
    """The training frame as an input of the active run: an MLflow dataset named ``<project>-features``
    whose digest is the data's content hash, tagged with the full hash and the row count (lineage in the UI)."""
    import mlflow

    name = f"{spec.project}-features"
    digest = (data_fingerprint or "").split(":", 1)[-1][:16] or None  # MLflow keeps at most 36 characters
    tags = {"tidecast.rows": str(len(features))}
    if data_fingerprint:
        tags["tidecast.content_hash"] = data_fingerprint
    with warnings.catch_warnings():  # schema hints about integer columns, ambiguous local sources
        warnings.simplefilter("ignore", UserWarning)
        try:
            dataset = mlflow.data.from_pandas(
                features, source=redact(spec.data.source), name=name, targets="y", digest=digest
            )
        except Exception:  # a source MLflow cannot resolve (a SQL URL...): the frame is still recorded
            dataset = mlflow.data.from_pandas(features, name=name, targets="y", digest=digest)
        retry_locked(lambda: mlflow.log_input(dataset, context="training", tags=tags))


def _parent_artifacts(
    folder: Path,
    spec: Spec,
    backtest: dict[str, Any],
    select: dict[str, Any],
    features: pd.DataFrame,
    clean_summary: Any,
    data_fingerprint: str | None,
    lock_hashes: dict[str, Any] | None,
    commit: str | None,
) -> None:
    board: pd.DataFrame = backtest["leaderboard"]
    board.to_csv(folder / "leaderboard.csv", index=False)
    (folder / "leaderboard.json").write_text(
        board.to_json(orient="records", indent=2, date_format="iso"), encoding="utf-8"
    )
    (folder / "clean_summary.json").write_text(json.dumps(clean_summary or {}, indent=2, default=str), encoding="utf-8")
    (folder / "spec.yaml").write_text(resolved_spec_yaml(spec), encoding="utf-8")
    versions = installed_versions()
    (folder / "requirements.txt").write_text(
        "".join(f"{name}=={version}\n" for name, version in versions.items()), encoding="utf-8"
    )
    from tidecast.frames import ID, TIME

    lineage = {
        "data_fingerprint": data_fingerprint,
        "data_source": redact(spec.data.source),
        "rows": len(features),
        "series": int(features[ID].nunique()) if ID in features else None,
        "start": str(features[TIME].min()) if TIME in features else None,
        "end": str(features[TIME].max()) if TIME in features else None,
        "columns": [str(c) for c in features.columns],
        "spec_fingerprint": spec.fingerprint(),
        "lock": lock_hashes or {},
        "git_commit": commit,
        "folds": backtest.get("folds"),
        "season_length": backtest.get("season_length"),
        "trained_until": select.get("trained_until"),
    }
    (folder / "lineage.json").write_text(json.dumps(lineage, indent=2, default=str), encoding="utf-8")
    results = backtest.get("results") or {}
    ok = board[board["status"] == "ok"] if "status" in board else board
    for _, row in ok.head(MAX_PLOTS).iterrows():
        name = str(row["candidate"])
        result = results.get(name)
        forecasts = getattr(getattr(result, "backtest", None), "forecasts", None)
        if isinstance(forecasts, pd.DataFrame) and not forecasts.empty:
            plot_backtest(
                forecasts,
                f"#{row.get('rank', '?')} {name}",
                folder / "plots" / f"backtest_{row.get('rank', 0)}_{name}.png",
            )


def _log_parent_artifacts(client: MlflowClient, run_id: str, folder: Path) -> None:
    """Upload the parent's files, then its ``plots/`` folder (the bulk), each retried while SQLite is locked."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file()]
    for file in files:
        retry_locked(lambda file=file: client.log_artifact(run_id, str(file)))
    fault_point("track.artifacts-partial")
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        retry_locked(lambda sub=sub: client.log_artifacts(run_id, str(sub), sub.name))


def _parent_metrics(backtest: dict[str, Any], select: dict[str, Any]) -> list[Any]:
    board: pd.DataFrame = backtest["leaderboard"]
    metrics = _metrics(select.get("backtest_metrics") or {}, prefix="backtest_")
    metrics += _metrics(select.get("holdout_metrics") or {}, prefix="holdout_")
    metrics += _metrics(select.get("baseline_holdout_metrics") or {}, prefix="baseline_holdout_")
    status = board["status"] if "status" in board else pd.Series(["ok"] * len(board))
    metrics += _metrics(
        {
            "improvement_over_baseline": select.get("improvement_over_baseline"),
            "refit_seconds": select.get("refit_seconds"),
            "n_series": select.get("n_series"),
            "candidates_ok": int((status == "ok").sum()),
            "candidates_failed": int((status != "ok").sum()),
        }
    )
    return metrics


def _parent_params(spec: Spec, backtest: dict[str, Any], select: dict[str, Any]) -> list[Any]:
    window, horizon = spec.forecast_steps()
    params = {
        "metric": backtest.get("metric"),
        "frequency": spec.data.frequency,
        "horizon": horizon,
        "input_window": window,
        "quantiles": list(spec.forecast.quantiles),
        "folds": spec.backtest.folds,
        "backtest_window": spec.backtest.window,
        "seed": spec.seed,
        "candidates": [m.name for m in spec.models],
        "target_transform": spec.target.transform,
        "winner": select.get("winner"),
        "winner_kind": select.get("kind"),
        "baseline": select.get("baseline"),
    }
    if select.get("training"):
        params["winner_training"] = select["training"]
    return _params(params) + _params(select.get("params") or {}, prefix="winner.")


def track_training(
    spec: Spec,
    *,
    backtest: dict[str, Any],
    select: dict[str, Any],
    features: pd.DataFrame,
    clean_summary: Any = None,
    data_fingerprint: str | None = None,
    lock_hashes: dict[str, Any] | None = None,
    register: bool = True,
    progress: Any = None,
    step_peaks: dict[str, float | None] | None = None,
) -> TrackingResult:
    """Record one training in MLflow: a parent run, nested candidate/trial runs, the pyfunc model, and
    (``register=True``) a registered model version promoted or not by the spec's gate.
    ``step_peaks`` (step name -> peak RSS in MiB, as the pipeline runner recorded it) become the
    parent run's ``peak_rss_mb.<step>`` metrics.

    Any exception ends every run it opened as FAILED (with the error as the ``tidecast.error`` tag)
    and is raised again; MLflow's own errors are raised as :class:`TrackingError`.

    >>> result = track_training(spec, backtest=bt, select=sel, features=frame)   # doctest: +SKIP
    >>> result.registration.alias                                                # doctest: +SKIP
    'champion'
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    report = progress or (lambda *_a, **_k: None)
    client = connect(spec)
    exp_id = experiment_id(spec, client)
    reap_dead_runs(client, exp_id)
    book = _RunBook(client, exp_id)
    commit, dirty = git_commit(Path(spec.root))
    import tidecast

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    parent_tags = {
        KIND_TAG: "training",
        "tidecast.version": tidecast.__version__,
        "tidecast.spec_fingerprint": spec.fingerprint(),
        "tidecast.data_fingerprint": data_fingerprint,
        "tidecast.project": spec.project,
        "tidecast.winner": select.get("winner"),
        "tidecast.metric": backtest.get("metric") or select.get("metric"),
        "tidecast.model_name": spec.model_name,
        "mlflow.source.git.commit": commit,
        "tidecast.git_dirty": None if dirty is None else str(dirty).lower(),
        "mlflow.source.name": str(spec.source_file) if spec.source_file else None,
        "mlflow.note.content": _note(select, backtest.get("leaderboard")),
    }
    parent = book.create(f"{spec.project}-{stamp}", parent_tags)
    fault_point("track.run-created")
    result = TrackingResult(
        run_id=parent, experiment_id=exp_id, experiment=experiment_name(spec), tracking_uri=tracking_uri(spec)
    )
    resumed = False
    try:
        with active_uris(spec):
            board: pd.DataFrame = backtest["leaderboard"]
            metric = backtest.get("metric") or select.get("metric")
            ranks = dict(zip(board["candidate"].astype(str), board["rank"], strict=False)) if "rank" in board else {}
            results = backtest.get("results") or {}
            order = sorted(results, key=lambda n: (_finite(ranks.get(n)) or float("inf"), n))
            report(0, len(order) + 3, "logging candidates")
            for index, name in enumerate(order, start=1):
                run_id, trial_ids = _log_candidate(
                    book,
                    parent,
                    name,
                    results[name],
                    (backtest.get("details") or {}).get(name),
                    metric,
                    ranks.get(name),
                )
                result.candidate_runs[name] = run_id
                fault_point("track.candidate-logged")
                if trial_ids:
                    result.trial_runs[name] = trial_ids
                report(index, len(order) + 3, f"logged {name}")
            log_batch(
                client,
                parent,
                metrics=_parent_metrics(backtest, select) + _metrics(step_peaks or {}, prefix="peak_rss_mb."),
                params=_parent_params(spec, backtest, select),
            )
            fault_point("track.metrics-logged")
            with tempfile.TemporaryDirectory(prefix="tidecast-run-") as tmp:
                _parent_artifacts(
                    Path(tmp), spec, backtest, select, features, clean_summary, data_fingerprint, lock_hashes, commit
                )
                _log_parent_artifacts(client, parent, Path(tmp))
            fault_point("track.artifacts-logged")
            # log_input and log_model speak MLflow's fluent API: make the parent the active run (ended below)
            mlflow.start_run(run_id=parent, nested=mlflow.active_run() is not None)
            resumed = True
            _log_dataset(spec, features, data_fingerprint)
            report(len(order) + 1, len(order) + 3, "logging the model")
            from tidecast.tracking.pyfunc import log_forecaster

            result.model_uri = log_forecaster(select, spec, features=features)
            retry_locked(lambda: client.set_tag(parent, "tidecast.model_uri", result.model_uri))
            fault_point("track.model-logged")
            if register:
                report(len(order) + 2, len(order) + 3, "registering")
                from tidecast.tracking.registry import register_and_gate

                decision = register_and_gate(
                    spec,
                    client=client,
                    model_uri=result.model_uri,
                    run_id=parent,
                    select=select,
                    features=features,
                    data_fingerprint=data_fingerprint,
                )
                result.registration = decision
                fault_point("track.registered")
                log_batch(
                    client,
                    parent,
                    tags=_tags(
                        {
                            "tidecast.registry.model": decision.model_name,
                            "tidecast.registry.version": decision.version,
                            "tidecast.registry.alias": decision.alias,
                            "tidecast.gate": "passed" if decision.promoted else "failed",
                            "tidecast.gate_reason": decision.reason,
                        }
                    ),
                )
            mlflow.end_run("FINISHED")
            resumed = False
        book.end(parent, "FINISHED")
        fault_point("track.finished")
        report(len(order) + 3, len(order) + 3, "tracked")
    except BaseException as exc:
        if resumed:
            with contextlib.suppress(Exception), active_uris(spec):
                mlflow.end_run("FAILED")
        book.fail_all(f"{type(exc).__name__}: {exc}")
        refused = None
        if isinstance(exc, Exception):  # not KeyboardInterrupt
            refused = storage_error(exc, spec, doing=f"record training run {parent}")
        if refused is not None:
            raise refused from exc
        import requests

        if isinstance(exc, MlflowException | requests.RequestException):
            raise TrackingError(_tracking_failed(spec, parent, exc)) from exc
        raise
    return result


def _tracking_failed(spec: Spec, parent: str, exc: BaseException) -> str:
    """One line for a training whose store failed mid-run: a server that went away is named as such
    (MLflow's own text is a page of urllib3 retries)."""
    reason = _reason(exc)
    uri = tracking_uri(spec)
    if reason in _UNREACHABLE:
        return f"tracking server {uri} went away while recording training run {parent} ({reason}); re-run once it answers"
    return f"tracking run {parent} in {uri} failed: {getattr(exc, 'message', None) or reason}"


def _note(select: dict[str, Any], board: pd.DataFrame | None = None) -> str:
    from tidecast.render import winner_summary  # the CLI's winner line: each figure names its stretch

    return winner_summary(select, board)


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
