"""The DVC-like promise: a second run executes nothing; an edit re-runs only what depends on it."""

from __future__ import annotations

from pathlib import Path

import yaml

from tidecast.flows import training_pipeline
from tidecast.pipeline import run, status
from tidecast.spec import load_spec


def test_second_run_executes_nothing_and_edits_rerun_dependents(small_project: Path) -> None:
    pipeline = training_pipeline(report=False)
    first = run(pipeline, load_spec(small_project))
    assert set(first.executed) == {"ingest", "clean", "features", "backtest", "select", "track"}
    assert (small_project / "tidecast.lock").exists()
    board = first.outputs["backtest"]["leaderboard"]
    assert set(board["candidate"]) == {"naive", "seasonal_naive", "lightgbm"}

    second = run(pipeline, load_spec(small_project))
    assert second.executed == []
    assert all(p.status == "fresh" for p in status(pipeline, load_spec(small_project)))

    # change only the backtest section: data steps stay cached
    spec_file = small_project / "tidecast.yaml"
    data = yaml.safe_load(spec_file.read_text())
    data["backtest"]["folds"] = 3
    spec_file.write_text(yaml.safe_dump(data))
    plans = {p.name: p for p in status(pipeline, load_spec(small_project))}
    assert plans["clean"].status == "fresh"
    assert plans["backtest"].status == "stale"
    third = run(pipeline, load_spec(small_project))
    assert set(third.executed) == {"backtest", "select", "track"}


def test_feature_edit_reruns_features_and_models_only(small_project: Path) -> None:
    pipeline = training_pipeline(report=False)
    run(pipeline, load_spec(small_project))
    spec_file = small_project / "tidecast.yaml"
    data = yaml.safe_load(spec_file.read_text())
    data["features"]["calendar"] = ["hour", "weekday"]
    spec_file.write_text(yaml.safe_dump(data))
    again = run(pipeline, load_spec(small_project))
    assert set(again.executed) == {"features", "backtest", "select", "track"}
