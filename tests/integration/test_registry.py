"""The registry on a real MLflow store: first champion, a worse challenger, the gate, promote, rollback, compare."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import typer
from mlflow import MlflowClient
from rich.console import Console
from tracking_helpers import (
    backtest_and_select,
    make_frame,
    store_uri,
)
from typer.testing import CliRunner

from tidecast.commands.tracking import register
from tidecast.errors import TrackingError
from tidecast.tracking.compare import compare_runs, to_format
from tidecast.tracking.pyfunc import log_forecaster
from tidecast.tracking.registry import promote, register_version, rollback
from tidecast.tracking.runs import track_training
from tidecast.tracking.store import active_uris, connect, experiment_id


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame(days=8)


def _train(spec, frame: pd.DataFrame, bias: float = 0.0):
    backtest, select = backtest_and_select(frame, winner_bias=bias)
    return track_training(spec, backtest=backtest, select=select, features=frame, data_fingerprint=f"fp-{bias}")


def _alias(client: MlflowClient, name: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(name, alias).version)


def test_champion_challenger_promote_rollback_and_compare(new_project, frame: pd.DataFrame) -> None:
    spec = new_project()
    client = MlflowClient(tracking_uri=store_uri(spec), registry_uri=store_uri(spec))
    first = _train(spec, frame)
    assert first.registration.alias == "champion" and first.registration.version == "1"

    # a deliberately worse model: v1 stays champion, v2 is the challenger, with the reason
    second = _train(spec, frame, bias=4.0)
    decision = second.registration
    assert (decision.version, decision.alias, decision.promoted) == ("2", "challenger", False)
    assert "champion v1" in decision.reason and "held-out mae" in decision.reason
    assert _alias(client, "tiny", "champion") == "1" and _alias(client, "tiny", "challenger") == "2"
    v2 = client.get_model_version("tiny", "2")
    assert v2.tags["tidecast.gate"] == "failed" and v2.tags["tidecast.gate_reason"] == decision.reason
    assert v2.tags["tidecast.data_fingerprint"] == "fp-4.0" and v2.tags["tidecast.run_id"] == second.run_id
    assert float(v2.tags["tidecast.holdout_mae"]) > float(
        client.get_model_version("tiny", "1").tags["tidecast.holdout_mae"]
    )
    parent = client.get_run(second.run_id)
    assert parent.data.tags["tidecast.gate"] == "failed" and parent.data.tags["tidecast.gate_reason"] == decision.reason
    must = next(c for c in decision.checks if c.name == "must_beat_champion")
    assert must.threshold == pytest.approx(first_holdout(first, client))

    # by hand: promote v2, then roll back to v1
    action = promote(spec, 2, reason="trust me")
    assert (action.from_version, action.to_version) == ("1", "2")
    assert _alias(client, "tiny", "champion") == "2" and _alias(client, "tiny", "previous") == "1"
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("tiny", "challenger")  # the promoted challenger is no longer one
    back = rollback(spec, reason="v2 was worse")
    assert (back.from_version, back.to_version) == ("2", "1")
    assert _alias(client, "tiny", "champion") == "1"
    assert "tidecast.rolled_back" in client.get_model_version("tiny", "2").tags
    with pytest.raises(TrackingError, match="no previous champion"):
        rollback(spec)
    actions = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id], filter_string="tags.`tidecast.kind` = 'registry-action'"
    )
    assert sorted(r.data.tags["tidecast.action"] for r in actions) == ["promote", "rollback"]
    assert {r.data.tags.get("tidecast.reason") for r in actions} == {"trust me", "v2 was worse"}
    with pytest.raises(TrackingError, match="no version 9"):
        promote(spec, 9)

    # both trainings side by side, newest first, with a column per candidate
    table = compare_runs(spec, last=5)
    assert list(table["run_id"]) == [second.run_id, first.run_id]
    assert list(table["registry_alias"]) == ["challenger", "champion"]
    assert {"snaive", "biased", "broken"} <= set(table.columns)
    assert table["broken"].isna().all() and (table["biased"] > table["snaive"]).all()
    assert table.loc[0, "holdout"] > table.loc[1, "holdout"]
    assert compare_runs(spec, last=1, metric="rmse")["metric"].tolist() == ["rmse"]
    assert to_format(table, "csv").splitlines()[0].startswith("run_id,started,status,winner")
    with pytest.raises(TrackingError, match="no experiment"):
        compare_runs(spec, experiment="nope")

    # the same through the CLI commands
    out = io.StringIO()
    app = typer.Typer()
    register(app, Console(file=out, width=200))
    runner = CliRunner()
    done = runner.invoke(app, ["compare", "--spec", str(spec.root), "--format", "json"])
    assert done.exit_code == 0, done.output
    assert [row["run_id"] for row in json.loads(done.output)] == [second.run_id, first.run_id]
    done = runner.invoke(app, ["compare", "-s", str(spec.root), "--last", "1"])
    assert done.exit_code == 0 and "v2 challenger" in out.getvalue()
    done = runner.invoke(app, ["promote", "tiny", "2", "-s", str(spec.root), "--reason", "cli"])
    assert done.exit_code == 0, done.output
    assert _alias(client, "tiny", "champion") == "2" and "tiny@champion → v2 (was v1)" in out.getvalue()
    done = runner.invoke(app, ["rollback", "tiny", "-s", str(spec.root)])
    assert done.exit_code == 0 and _alias(client, "tiny", "champion") == "1"
    done = runner.invoke(app, ["rollback", "tiny", "-s", str(spec.root)])
    assert isinstance(done.exception, TrackingError)
    for command in ("ui", "compare", "promote", "rollback", "reproduce"):
        help_text = runner.invoke(app, [command, "--help"]).output
        assert "Example:" in help_text, command


def first_holdout(result, client: MlflowClient) -> float:
    return client.get_run(result.run_id).data.metrics["holdout_mae"]


def test_gate_thresholds_keep_a_first_model_out_of_champion(new_project, frame: pd.DataFrame) -> None:
    spec = new_project(gate={"max_metric": 0.001, "min_improvement": 0.5})
    result = _train(spec, frame)
    decision = result.registration
    assert decision.alias == "challenger" and not decision.promoted
    assert "max_metric 0.001" in decision.reason and "min_improvement +50.00%" in decision.reason
    client = MlflowClient(tracking_uri=store_uri(spec), registry_uri=store_uri(spec))
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("tiny", "champion")


def test_a_model_whose_artifacts_are_missing_is_not_registered(new_project, frame: pd.DataFrame) -> None:
    spec = new_project()
    _, select = backtest_and_select(frame)
    client = connect(spec)
    with active_uris(spec), mlflow.start_run(experiment_id=experiment_id(spec, client)):
        uri = log_forecaster(select, spec, features=frame)
    model = client.get_logged_model(uri.removeprefix("models:/"))
    pickled = Path(model.artifact_location.removeprefix("file://")) / "artifacts" / "forecaster.pkl"
    assert pickled.is_file()
    pickled.unlink()
    with active_uris(spec), pytest.raises(TrackingError, match=r"forecaster\.pkl are missing"):
        register_version(client, "tiny", uri, run_id=None, tags={})
    assert client.search_registered_models() == [] or not client.search_model_versions("name = 'tiny'")
    shutil.rmtree(pickled.parent.parent, ignore_errors=True)
