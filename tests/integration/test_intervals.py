"""Calibrated intervals through the real training path: a small project's candidates report coverage,
width and interval score in the leaderboard, in the printed table and in MLflow (folds and held-out)."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient
from rich.console import Console
from tracking_helpers import make_frame, store_uri

from tidecast.evaluation.selection import leaderboard, select_winner
from tidecast.render import leaderboard_table
from tidecast.tracking.runs import track_training
from tidecast.training import candidate_results, select_and_refit

MODELS = [
    {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": 24}},
    {"name": "wavg", "kind": "window_average", "params": {"window_size": 24}},
]


def test_winner_reports_calibrated_intervals_in_leaderboard_and_mlflow(new_project) -> None:
    spec = new_project(models=MODELS)
    frame = make_frame(days=14)
    backtested = candidate_results(frame, spec)
    board = backtested["leaderboard"]
    assert {"coverage", "interval_width", "interval_score"} <= set(board.columns)
    for name, entry in backtested["results"].items():
        agg = entry.evaluation.aggregate
        assert 0.0 <= agg["coverage_80"] <= 1.0 and agg["width_80"] > 0, name
        assert agg["interval_score_80"] >= agg["width_80"]  # the width plus penalties
        # calibration windows before the first fold, one horizon apart, none reaching the fold's cut-off
        calibration = entry.backtest.calibration
        first = min(f.cutoff for f in entry.backtest.folds)
        assert calibration["cutoff"].nunique() >= 2 and (calibration["ds"] <= first).all()
    # the printed leaderboard names the interval score
    console = Console(width=250, record=True)
    console.print(leaderboard_table(board, "mae"))
    assert "interval_score" in console.export_text()
    # interval_score ranks candidates as any other metric
    by_score = leaderboard(list(backtested["results"].values()), "interval_score")
    assert select_winner(by_score, "interval_score") == by_score.iloc[0]["candidate"]
    assert by_score["interval_score"].is_monotonic_increasing

    select = select_and_refit(backtested, frame, spec)
    assert 0.0 <= select["holdout_metrics"]["coverage_80"] <= 1.0
    assert select["holdout_metrics"]["interval_score"] == pytest.approx(select["holdout_metrics"]["interval_score_80"])
    # the served model's intervals: the refit model forecasts with calibrated quantiles
    fc = select["model"].predict(24, quantiles=[0.1, 0.9])
    assert (fc["q0.1"] <= fc["yhat"]).all() and (fc["yhat"] <= fc["q0.9"]).all() and (fc["q0.9"] > fc["q0.1"]).any()

    result = track_training(spec, backtest=backtested, select=select, features=frame, clean_summary={})
    client = MlflowClient(tracking_uri=store_uri(spec), registry_uri=store_uri(spec))
    parent = client.get_run(result.run_id)
    assert parent.data.metrics["holdout_interval_score"] == pytest.approx(select["holdout_metrics"]["interval_score"])
    assert parent.data.metrics["backtest_coverage_80"] == pytest.approx(select["backtest_metrics"]["coverage_80"])
    winner_run = client.get_run(result.candidate_runs[select["winner"]])
    for key in ("coverage_80", "width_80", "interval_score_80", "interval_score", "pinball"):
        assert key in winner_run.data.metrics, key
    # coverage by horizon step, as the run report plots it
    history = client.get_metric_history(winner_run.info.run_id, "step_coverage_80")
    assert sorted(m.step for m in history) == list(range(1, 25))
    assert pd.Series([m.value for m in history]).between(0, 1).all()
