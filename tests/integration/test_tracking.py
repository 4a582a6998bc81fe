"""track_training on a real MLflow store (SQLite under tmp_path): runs, metrics, artifacts, lineage, failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from tracking_helpers import (
    backtest_and_select,
    child_env,
    make_frame,
    store_uri,
)

from tidecast.errors import TrackingError
from tidecast.reporting.bands import backtest_png
from tidecast.spec import parse_spec
from tidecast.tracking.records import process_tags, reap_dead_runs
from tidecast.tracking.runs import track_training
from tidecast.tracking.store import connect, experiment_id, tracking_uri


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame(days=8)


def _client(spec) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(spec), registry_uri=store_uri(spec))


def _children(client: MlflowClient, run) -> list:
    return client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'", max_results=100
    )


def test_one_parent_run_with_nested_candidates_trials_artifacts_and_dataset(new_project, frame: pd.DataFrame) -> None:
    spec = new_project()
    backtest, select = backtest_and_select(frame)
    # where each model trained (executor.global_models), as the backtest and select steps record it
    select["training"] = "distributed (mlforecast + LightGBM Dask, 2 workers)"
    backtest.setdefault("details", {}).setdefault("snaive", {})["training"] = "per series"
    result = track_training(
        spec,
        backtest=backtest,
        select=select,
        features=frame,
        clean_summary={"gaps_filled": 2, "outliers": 1},
        data_fingerprint="sha256:" + "ab" * 32,
        lock_hashes={"ingest": "k1", "select": "k5"},
        draw_backtest=backtest_png,
    )
    client = _client(spec)
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.artifact_uri.startswith((spec.state_dir / "mlartifacts").resolve().as_uri())
    tags = parent.data.tags
    assert tags["tidecast.kind"] == "training" and tags["tidecast.version"]
    assert tags["tidecast.spec_fingerprint"] == spec.fingerprint()
    assert tags["tidecast.data_fingerprint"] == "sha256:" + "ab" * 32
    assert tags["tidecast.winner"] == "snaive" and "tidecast.pid" in tags
    assert parent.data.params["winner"] == "snaive" and parent.data.params["metric"] == "mae"
    assert parent.data.params["winner_training"] == "distributed (mlforecast + LightGBM Dask, 2 workers)"
    assert parent.data.metrics["holdout_mae"] == pytest.approx(select["holdout_metrics"]["mae"])
    assert parent.data.metrics["backtest_mae"] == pytest.approx(select["backtest_metrics"]["mae"])

    # one nested run per candidate; the failed one is FAILED with its error
    children = {r.data.tags["tidecast.candidate"]: r for r in _children(client, parent)}
    assert set(children) == {"snaive", "biased", "broken"}
    assert set(result.candidate_runs) == set(children)
    assert children["broken"].info.status == "FAILED"
    assert children["snaive"].data.tags["tidecast.training"] == "per series"
    assert children["broken"].data.tags["tidecast.error"] == "candidate 'broken': boom"
    ok = children["snaive"]
    assert ok.info.status == "FINISHED" and ok.data.tags["tidecast.status"] == "ok"
    assert ok.data.params["season_length"] == "24"
    assert ok.data.metrics["mae"] == pytest.approx(backtest["results"]["snaive"].evaluation.aggregate["mae"])
    history = client.get_metric_history(ok.info.run_id, "fold_mae")
    per_fold = backtest["results"]["snaive"].evaluation.per_fold
    assert sorted((m.step, round(m.value, 9)) for m in history) == [
        (int(f), round(v, 9)) for f, v in zip(per_fold["fold"], per_fold["mae"], strict=True)
    ]
    assert len(client.get_metric_history(ok.info.run_id, "step_mae")) == 24
    assert {"fit_seconds", "predict_seconds"} <= set(ok.data.metrics)

    # trials nested under their candidate (a single-trial candidate gets none)
    trials = _children(client, ok)
    assert len(trials) == 3 and all(t.data.tags["tidecast.kind"] == "trial" for t in trials)
    assert sorted(t.info.status for t in trials) == ["FAILED", "FINISHED", "FINISHED"]
    assert _children(client, children["biased"]) == []

    # artifacts
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {
        "leaderboard.csv",
        "leaderboard.json",
        "clean_summary.json",
        "spec.yaml",
        "requirements.txt",
        "lineage.json",
    } <= files
    plots = {f.path for f in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/backtest_1_snaive.png", "plots/backtest_2_biased.png"}
    local = Path(client.download_artifacts(parent.info.run_id, "plots/backtest_1_snaive.png"))
    assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec_yaml = Path(client.download_artifacts(parent.info.run_id, "spec.yaml"))
    import yaml

    assert parse_spec(yaml.safe_load(spec_yaml.read_text()), root=spec.root).fingerprint() == spec.fingerprint()
    requirements = Path(client.download_artifacts(parent.info.run_id, "requirements.txt")).read_text()
    assert "mlflow==" in requirements and "pandas==" in requirements

    # the data as an MLflow dataset input, for lineage
    inputs = parent.inputs.dataset_inputs
    assert len(inputs) == 1
    dataset = inputs[0].dataset
    assert dataset.name == "tiny-features" and dataset.digest == "ab" * 8
    import json

    from mlflow.types.utils import _infer_schema  # the schema as MLflow infers it (tidecast computes it faster)

    assert json.loads(dataset.schema)["mlflow_colspec"] == json.loads(_infer_schema(frame).to_json())
    input_tags = {t.key: t.value for t in inputs[0].tags}
    assert input_tags["tidecast.content_hash"] == "sha256:" + "ab" * 32
    assert input_tags["tidecast.rows"] == str(len(frame)) and input_tags["mlflow.data.context"] == "training"

    # the model, registered as the first champion
    assert result.model_uri and result.model_uri.startswith("models:/")
    assert result.registration.version == "1" and result.registration.alias == "champion"
    assert str(client.get_model_version_by_alias(spec.model_name, "champion").version) == "1"
    assert parent.data.tags["tidecast.registry.alias"] == "champion"


def test_an_exception_mid_run_ends_every_run_failed(new_project, frame: pd.DataFrame) -> None:
    spec = new_project()
    backtest, select = backtest_and_select(frame)
    select["model"].lock = threading.Lock()  # cannot be pickled: log_model fails after the candidates
    with pytest.raises(TypeError):
        track_training(spec, backtest=backtest, select=select, features=frame, data_fingerprint="x")
    client = _client(spec)
    exp = client.get_experiment_by_name(spec.project)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("tidecast.kind") == "training"]
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert "TypeError" in parents[0].data.tags["tidecast.error"]
    assert len(runs) > 1 and not [r for r in runs if r.info.status == "RUNNING"]
    assert mlflow.active_run() is None
    assert client.search_registered_models() == []


def test_runs_of_a_killed_process_are_marked_failed(new_project) -> None:
    spec = new_project()
    client = connect(spec)
    exp = experiment_id(spec, client)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = client.create_run(exp, tags={**process_tags(), "tidecast.pid": str(dead.pid), "tidecast.pid_start": "0"})
    alive = client.create_run(exp, tags=process_tags())  # this process: left alone
    foreign = client.create_run(exp, tags={"tidecast.pid": str(dead.pid), "tidecast.host": "elsewhere"})
    assert reap_dead_runs(client, exp) == [orphan.info.run_id]
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    assert "died" in client.get_run(orphan.info.run_id).data.tags["tidecast.error"]
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(foreign.info.run_id).info.status == "RUNNING"


def test_an_unreachable_tracking_uri_fails_fast(new_project) -> None:
    spec = new_project(tracking={"uri": "http://127.0.0.1:9"})
    assert tracking_uri(spec) == "http://127.0.0.1:9"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=r"tracking URI http://127.0.0.1:9 is unreachable: connection refused"):
        connect(spec)
    assert time.monotonic() - started < 10


def test_tracking_uri_defaults_and_overrides(new_project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tidecast.tracking.provenance import git_commit

    commit, _ = git_commit(Path(__file__).parent)
    assert commit is not None and len(commit) == 40
    assert git_commit(tmp_path) == (None, None) or (tmp_path / ".git").exists()
    spec = new_project()
    assert tracking_uri(spec) == f"sqlite:///{(spec.state_dir / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert tracking_uri(spec) == "http://example.invalid:5000"
    spec2 = new_project("p2", tracking={"uri": "sqlite:///other/runs.db", "experiment": "exp"})
    assert tracking_uri(spec2) == f"sqlite:///{(spec2.root / 'other/runs.db').resolve()}"


CONCURRENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from tracking_helpers import backtest_and_select, make_frame, make_spec
    from tidecast.tracking.runs import track_training
    spec = make_spec(Path(sys.argv[1]))
    frame = make_frame(days=8)
    backtest, select = backtest_and_select(frame)
    result = track_training(spec, backtest=backtest, select=select, features=frame, data_fingerprint="x")
    print("RUN", result.run_id, result.registration.version)
    """
)


def test_two_processes_tracking_into_one_fresh_store_both_finish(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    helpers = str(Path(__file__).parent)
    env = child_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(root), helpers],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    run_ids = {line.split()[1] for out, _ in outs for line in out.splitlines() if line.startswith("RUN")}
    assert len(run_ids) == 2
    uri = f"sqlite:///{(root / '.tidecast' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("tidecast.kind") == "training"]
    assert {r.info.run_id for r in parents} == run_ids
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.info.status == "FINISHED" for r in parents)
    for parent in parents:
        assert len(_children(client, parent)) == 3
    versions = client.search_model_versions("name = 'tiny'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    assert str(client.get_model_version_by_alias("tiny", "champion").version) in {"1", "2"}
    assert not (tmp_path / "mlflow.db").exists()


PIPELINE_MODELS = """\
  - {name: naive, kind: naive}
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
"""


def test_track_step_in_the_pipeline_then_reproduce(tmp_path: Path, mlflow_template: Path, monkeypatch) -> None:
    import json
    import shutil

    from tests.conftest import make_project
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import run
    from tidecast.spec import load_spec
    from tidecast.tracking.reproduce import reproduce

    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    root = make_project(tmp_path / "proj", days=30, models=PIPELINE_MODELS)
    (root / ".tidecast").mkdir()
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")
    spec = load_spec(root)
    result = run(training_pipeline(report=False), spec)
    assert "track" in result.executed
    tracked = result.outputs["track"]
    assert tracked["registration"]["alias"] == "champion" and tracked["registration"]["version"] == "1"
    client = _client(spec)
    parent = client.get_run(tracked["run_id"])
    assert parent.info.status == "FINISHED"
    # the clean step's summary, read back from its cache entry, and the pipeline's keys as lineage
    summary = json.loads(Path(client.download_artifacts(parent.info.run_id, "clean_summary.json")).read_text())
    cached = json.loads(
        (spec.state_dir / "cache" / "clean" / result.keys["clean"] / "artifacts" / "summary.json").read_text()
    )
    assert summary == json.loads(json.dumps(cached))
    lineage = json.loads(Path(client.download_artifacts(parent.info.run_id, "lineage.json")).read_text())
    assert lineage["lock"]["features"] == result.keys["features"]
    assert parent.data.tags["tidecast.data_fingerprint"].startswith("sha256:")

    # the champion forecasts from history it is given, computing its own calendar features
    with active_uris_for(spec):
        model = mlflow.pyfunc.load_model(f"models:/{spec.model_name}@champion")
    card = model.unwrap_python_model().card
    assert card["time_feature_columns"] and card["exog_future"] == ["temperature"]
    features = result.outputs["features"]
    window, horizon = spec.forecast_steps()
    pos = features.groupby("unique_id").cumcount(ascending=False)
    history = features[(pos >= horizon) & (pos < horizon + window)]
    future = features[pos < horizon].drop(columns=["y"])
    want = result.outputs["select"]["model"].predict(horizon, history=history, X_future=future, quantiles=[0.1, 0.9])
    raw = pd.concat([history, future.assign(y=float("nan"))])[["unique_id", "ds", "y", "temperature"]]
    got = model.predict(raw, params={"horizon": horizon, "quantiles": [0.1, 0.9]})
    pd.testing.assert_frame_equal(got, want[got.columns].reset_index(drop=True), check_dtype=False)

    # a cached re-run logs nothing new; reproduce re-runs the backtest and matches
    again = run(training_pipeline(report=False), load_spec(root))
    assert again.executed == []
    report = reproduce(root, tracked["run_id"])
    assert report.matches, report.comparison
    assert report.winner_now == parent.data.tags["tidecast.winner"]
    assert set(report.comparison["scope"]) == {"backtest", "holdout"}

    # a registry-only edit re-runs just the track step; the gate scores the champion's pyfunc on the held-out stretch
    spec_file = root / "tidecast.yaml"
    spec_file.write_text(spec_file.read_text() + "registry: {gate: {max_metric: 1000}}\n")
    third = run(training_pipeline(report=False), load_spec(root))
    assert third.executed == ["track"]
    decision = third.outputs["track"]["registration"]
    assert decision["version"] == "2"
    checks = {c["name"]: c for c in decision["checks"]}
    assert set(checks) == {"max_metric", "min_improvement", "must_beat_champion"}
    assert checks["must_beat_champion"]["threshold"] is not None, checks["must_beat_champion"]["detail"]

    # changed data: refused, naming both hashes
    data = root / "data" / "power.csv"
    data.write_text(data.read_text() + data.read_text().splitlines()[-1] + "\n")
    with pytest.raises(TrackingError, match=r"trained on sha256:\w+, .* is now sha256:\w+"):
        reproduce(root, tracked["run_id"])


def active_uris_for(spec):
    from tidecast.tracking.store import active_uris

    return active_uris(spec)
