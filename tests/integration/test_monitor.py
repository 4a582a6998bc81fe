"""The monitor on a real project: MLflow SQLite store, prediction store, data files, the training pipeline.

The tests of this module run in order on one project trained once (``trained``): an unchanged day,
a level shift that is detected, retrained and promoted, a retrain that fails, and bad input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import make_project
from tidecast.errors import DataError, TrackingError
from tidecast.monitoring.drift import clear_reference_cache
from tidecast.monitoring.retrain import retrain
from tidecast.monitoring.run import monitor
from tidecast.serving.history import read_history
from tidecast.serving.store import store_for
from tidecast.spec import load_spec
from tidecast.tracking.store import tracking_uri

MODELS = """\
  - {name: naive, kind: naive}
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
"""
TRAIN_AS_OF = "2024-01-29 00:00"  # local (Europe/Paris) midnight: 28 days of history
FAILING = '''
class Broken:
    name = "broken"

    def fit(self, df, ctx):
        raise RuntimeError("the model cannot be fitted")

    def predict(self, h, *, history=None, X_future=None, quantiles=()):
        raise RuntimeError("never fitted")

    def get_params(self):
        return {}


def build(**params):
    return Broken()
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path):
    root = make_project(tmp_path_factory.mktemp("monitor") / "proj", days=40, models=MODELS)
    (root / ".tidecast").mkdir()
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")
    spec = load_spec(root)
    first = retrain(spec, as_of=pd.Timestamp(TRAIN_AS_OF, tz="Europe/Paris"), report=False)
    assert first["version"] == "1" and first["promoted"], first
    return spec


def client_of(spec) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(spec), registry_uri=tracking_uri(spec))


def champion_of(spec) -> str:
    return str(client_of(spec).get_model_version_by_alias(spec.model_name, "champion").version)


def test_unchanged_days_are_ok_forecasts_and_actuals_are_logged(trained) -> None:
    spec = trained
    first = monitor(spec, as_of="2024-01-30 00:00", report=False)
    # no forecast of v1 was logged before: the model check cannot run, and the verdict says so
    assert first.status == first.state == "unknown", first.verdict
    assert first.verdict == "unknown: no forecast of v1 in the last 7 window(s): nothing to score yet (v1)"
    assert {(c["kind"], c["state"]) for c in first.checks} == {("feed", "ok"), ("data", "ok"), ("model", "unknown")}
    assert first.champion_before == first.champion_after == "1"
    assert first.data_drift["window_start"] == "2024-01-28 23:00:00"  # the local day before, in UTC
    store = store_for(spec)
    preds = store.predictions(spec.model_name)
    assert len(preds) == 24 and set(preds["source"]) == {"monitor"} and set(preds["model_version"]) == {"1"}
    assert preds["ds"].min() == pd.Timestamp("2024-01-29 23:00")  # the forecast starts at as_of
    assert len(store.actuals()) > 24

    second = monitor(spec, as_of="2024-01-31 00:00", report=False)
    assert second.status == second.state == "ok" and second.verdict == "ok", second.verdict
    latest = second.model_drift["windows"][0]
    assert latest["complete"] and latest["forecasts"] == 24 and latest["actuals"] == 24
    assert latest["ratio"] is not None and latest["mae"] > 0

    # every run is an MLflow run of <experiment>-monitor and a history line
    client = client_of(spec)
    exp = client.get_experiment_by_name(f"{spec.project}-monitor")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["tidecast.state"] for r in runs] == ["unknown", "ok"]
    assert runs[0].data.tags["tidecast.check.model.v1"].startswith("unknown: no forecast of v1")
    assert runs[-1].data.tags["tidecast.verdict"] == "ok" and runs[-1].data.tags["tidecast.checks"] == "4 ok"
    assert runs[-1].data.tags["tidecast.as_of"] == "2024-01-30 23:00:00"
    assert "drift.y.profile" in runs[-1].data.metrics and "drift.temperature.wasserstein" in runs[-1].data.metrics
    assert "live_mae" in runs[-1].data.metrics and runs[-1].info.status == "FINISHED"
    history = read_history(spec)
    assert [h["status"] for h in history] == ["unknown", "ok"] and history[-1]["run_id"] == runs[-1].info.run_id
    assert history[0]["model_check"] == "unknown" and history[0]["data_check"] == history[0]["feed_check"] == "ok"
    # the monitor's cache keeps one entry per step
    cache = spec.state_dir / "cache"
    assert len(list((cache / "monitor_ingest").iterdir())) == 1
    # the monitor records its steps beside its history: the project's tidecast.lock does not churn
    import yaml

    project_lock = yaml.safe_load((spec.root / "tidecast.lock").read_text())["steps"]
    assert not [name for name in project_lock if name.startswith("monitor")]
    assert "monitor_checks" in yaml.safe_load((spec.state_dir / "monitor.lock").read_text())["steps"]


def test_a_level_shift_is_flagged_retrained_and_promoted(trained) -> None:
    spec = trained
    data = Path(spec.data.source)
    frame = pd.read_csv(data)
    shifted = pd.to_datetime(frame["timestamp"]) >= pd.Timestamp("2024-01-31")
    frame.loc[shifted, "power_kw"] *= 1.6
    frame.to_csv(data, index=False)

    result = monitor(spec, as_of="2024-02-01 00:00", report=False)
    assert result.status == "retrained", result.verdict
    assert result.verdict.startswith("retrained: v2 promoted to champion; data drift: y "), result.verdict
    assert result.champion_before == "1" and result.champion_after == "2"
    assert champion_of(spec) == "2"
    assert result.forecast["version"] == "2"  # the forecast after the retrain is the new champion's
    # the retrain trained on the data before as_of only, through the training pipeline
    snapshot = Path(result.retrain["data"])
    assert snapshot.parent == spec.state_dir / "monitor" / "data" and snapshot.exists()
    assert "track" in result.retrain["executed"]
    mv = client_of(spec).get_model_version(spec.model_name, "2")
    assert mv.tags["tidecast.trained_until"] == "2024-01-31 22:00:00"
    entry = read_history(spec)[-1]
    assert entry["retrain_attempted"] and entry["promoted"] and entry["retrained_version"] == "2"


def test_a_failing_retrain_leaves_the_champion_serving(trained) -> None:
    spec = trained
    (Path(spec.root) / "broken_models.py").write_text(FAILING)
    broken = spec.model_copy(deep=True)
    broken.models = [broken.models[0].model_copy(update={"name": "broken", "kind": "broken_models:build"})]
    broken.monitoring.data_drift.calibrate = False  # every window drifts: a tiny PSI threshold, no calibration
    broken.monitoring.data_drift.psi = 1e-9
    broken.monitoring.retrain_cooldown = None
    before = champion_of(spec)
    result = monitor(broken, as_of="2024-02-02 00:00", report=False)
    assert result.status == "retrain_failed"
    assert result.verdict.startswith("retrain failed: ") and f"(champion v{before} still serving)" in result.verdict
    assert "cannot be fitted" in result.verdict
    assert champion_of(spec) == before and result.champion_after == before
    assert result.forecast["rows"] == 24  # the champion still forecasts
    assert read_history(spec)[-1]["status"] == "retrain_failed"
    runs = client_of(spec).search_runs(
        [client_of(spec).get_experiment_by_name(f"{spec.project}-monitor").experiment_id],
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    assert runs[0].data.metrics["retrain_failed"] == 1.0


def test_bad_input_gives_clear_errors(trained, tmp_path: Path) -> None:
    spec = trained
    with pytest.raises(DataError, match="--as-of: cannot read 'yesterday'"):
        monitor(spec, as_of="yesterday")
    with pytest.raises(DataError, match="--input: no such file"):
        monitor(spec, input=tmp_path / "nope.csv")
    with pytest.raises(DataError, match="no data before as_of"):
        monitor(spec, as_of="2023-06-01 00:00")
    # actuals with a long gap in the recent history: the cleaning step names it
    frame = pd.read_csv(spec.data.source)
    ts = pd.to_datetime(frame["timestamp"])
    gap = frame[(ts < "2024-02-01 02:00") | (ts >= "2024-02-01 14:00")]
    gap.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataError, match="gap"):
        monitor(spec, input=tmp_path / "gap.csv", as_of="2024-02-02 00:00")
    failed = read_history(spec)[-1]
    assert failed["status"] == "failed" and "gap" in failed["verdict"]


def test_a_champion_without_reference_profile_is_named(trained) -> None:
    spec = trained
    files = sorted((spec.state_dir / "mlartifacts").rglob("reference_profile.json"))
    assert files, "the logged models carry their reference profile"
    saved = {f: f.read_bytes() for f in files}
    clear_reference_cache()  # read references are cached per version: forget them, as a new process would
    try:
        for f in files:
            f.unlink()
        with pytest.raises(TrackingError, match=r"model \S+ v2 has no reference profile \(trained before monitoring existed\): retrain it"):
            monitor(spec, as_of="2024-02-03 00:00", report=False)
    finally:
        for f, content in saved.items():
            f.write_bytes(content)
    reference = json.loads(files[0].read_text())
    assert reference["version"] == 1 and reference["columns"] == ["y", "temperature"]
