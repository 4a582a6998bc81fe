"""One MLflow run per training: the parent holds the verdict, nested runs hold each candidate and trial.

Layout of what :func:`track_training` records (tags are prefixed ``tidecast.``)::

    <project>-<time>               parent run, kind=training
      params      metric, horizon, input window, frequency, folds, seed, winner and its params
      metrics     the winner's backtest (backtest_<m>) and held-out (holdout_<m>) metrics, baseline's
      artifacts   leaderboard.csv/json, clean_summary.json, spec.yaml, requirements.txt,
                  lineage.json, plots/backtest_<rank>_<candidate>.png (drawn by the caller's
                  ``draw_backtest``), model/ (the pyfunc)
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
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast import __version__
from tidecast.errors import TrackingError
from tidecast.faults import fault_point
from tidecast.frames import ID, TIME, finite_float
from tidecast.render import winner_summary
from tidecast.tracking.candidates import RunBook, log_candidate
from tidecast.tracking.provenance import git_commit, installed_versions, redact, resolved_spec_yaml
from tidecast.tracking.pyfunc import log_forecaster
from tidecast.tracking.records import (
    KIND_TAG,
    as_metrics,
    as_params,
    as_tags,
    log_batch,
    preset_schema,
    reap_dead_runs,
)
from tidecast.tracking.registry import RegistryDecision, register_and_gate
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

BacktestDrawer = Callable[[pd.DataFrame, str, Path], Path]
"""Draws one candidate's backtest forecasts (``forecasts, title, path``) to a PNG; the layer above
tracking passes it (:func:`tidecast.reporting.static.backtest_png`), tracking does not draw."""

MAX_PLOTS = 3


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


# --------------------------------------------------------------------------------- the parent
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
        preset_schema(dataset, features)
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
    draw_backtest: BacktestDrawer | None = None,
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
    if draw_backtest is None:
        return
    results = backtest.get("results") or {}
    ok = board[board["status"] == "ok"] if "status" in board else board
    for _, row in ok.head(MAX_PLOTS).iterrows():
        name = str(row["candidate"])
        result = results.get(name)
        forecasts = getattr(getattr(result, "backtest", None), "forecasts", None)
        if isinstance(forecasts, pd.DataFrame) and not forecasts.empty:
            draw_backtest(
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
    metrics = as_metrics(select.get("backtest_metrics") or {}, prefix="backtest_")
    metrics += as_metrics(select.get("holdout_metrics") or {}, prefix="holdout_")
    metrics += as_metrics(select.get("baseline_holdout_metrics") or {}, prefix="baseline_holdout_")
    status = board["status"] if "status" in board else pd.Series(["ok"] * len(board))
    metrics += as_metrics(
        {
            "improvement_over_baseline": select.get("improvement_over_baseline"),
            "refit_seconds": select.get("refit_seconds"),
            "n_series": select.get("n_series"),
            "candidates_ok": int((status == "ok").sum()),
            "candidates_failed": int((status != "ok").sum()),
        }
    )
    return metrics


def _day_kind_factors(model: Any) -> dict[str, float]:
    """The served model's interval width factors by kind of day (``{}`` when it has none)."""
    try:
        params = model.get_params() if hasattr(model, "get_params") else {}
    except Exception:  # a plugin's get_params may fail; the factors are a detail of the record
        return {}
    return dict(params.get("conformal_day_kinds") or {})


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
    factors = _day_kind_factors(select.get("model"))
    if factors:  # the intervals' width by kind of day (docs/intervals.md)
        params["interval_day_kinds"] = factors
    return as_params(params) + as_params(select.get("params") or {}, prefix="winner.")


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
    draw_backtest: BacktestDrawer | None = None,
) -> TrackingResult:
    """Record one training in MLflow: a parent run, nested candidate/trial runs, the pyfunc model, and
    (``register=True``) a registered model version promoted or not by the spec's gate.
    ``step_peaks`` (step name -> peak RSS in MiB, as the pipeline runner recorded it) become the
    parent run's ``peak_rss_mb.<step>`` metrics. ``draw_backtest`` draws the backtest forecasts of the
    best candidates (``plots/backtest_<rank>_<candidate>.png``); without it no plot is logged.

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
    book = RunBook(client, exp_id)
    commit, dirty = git_commit(Path(spec.root))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    parent_tags = {
        KIND_TAG: "training",
        "tidecast.version": __version__,
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
            order = sorted(results, key=lambda n: (finite_float(ranks.get(n)) or float("inf"), n))
            report(0, len(order) + 3, "logging candidates")
            for index, name in enumerate(order, start=1):
                run_id, trial_ids = log_candidate(
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
                metrics=_parent_metrics(backtest, select) + as_metrics(step_peaks or {}, prefix="peak_rss_mb."),
                params=_parent_params(spec, backtest, select),
            )
            fault_point("track.metrics-logged")
            with tempfile.TemporaryDirectory(prefix="tidecast-run-") as tmp:
                _parent_artifacts(
                    Path(tmp), spec, backtest, select, features, clean_summary, data_fingerprint, lock_hashes, commit,
                    draw_backtest,
                )
                _log_parent_artifacts(client, parent, Path(tmp))
            fault_point("track.artifacts-logged")
            # log_input and log_model speak MLflow's fluent API: make the parent the active run (ended below)
            mlflow.start_run(run_id=parent, nested=mlflow.active_run() is not None)
            resumed = True
            _log_dataset(spec, features, data_fingerprint)
            report(len(order) + 1, len(order) + 3, "logging the model")
            result.model_uri = log_forecaster(select, spec, features=features)
            retry_locked(lambda: client.set_tag(parent, "tidecast.model_uri", result.model_uri))
            fault_point("track.model-logged")
            if register:
                report(len(order) + 2, len(order) + 3, "registering")
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
                    tags=as_tags(
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
    return winner_summary(select, board)
