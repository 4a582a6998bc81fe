"""The leaderboard table fits the terminal by leaving columns out, never by truncating names."""

from __future__ import annotations

import pandas as pd
import pytest
from rich.console import Console

from tidecast.render import format_metric, leaderboard_table, winner_summary

BOARD = pd.DataFrame({
    "rank": [1, 2], "candidate": ["lightgbm/min_trace_wls_struct", "seasonal_naive"],
    "kind": ["lightgbm", "seasonal_naive"], "mase": [0.5, 0.9], "mae": [1.0, 2.0], "rmse": [1.5, 2.5],
    "smape": [0.1, 0.2], "bias": [0.0, 0.1], "coverage": [0.8, 0.7], "fit_seconds": [1.0, 0.1],
    "predict_seconds": [0.1, 0.01], "status": ["ok", "ok"], "error": [None, None],
})


def render(width: int | None, metric: str = "mase", board: pd.DataFrame = BOARD) -> str:
    console = Console(width=width or 200, force_terminal=False, record=True)
    console.print(leaderboard_table(board, metric, width=width))
    return console.export_text()


@pytest.mark.parametrize("width", [60, 80, 100])
def test_narrow_terminals_keep_whole_names_and_the_ranking_metric(width: int) -> None:
    text = render(width)
    assert "lightgbm/min_trace_wls_struct" in text and "seasonal_naive" in text and "…" not in text
    assert "mase" in text and "0.500" in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_wide_terminals_show_everything_and_other_metrics_rank_too() -> None:
    text = render(None)
    for column in ("kind", "mase", "mae", "rmse", "smape", "bias", "coverage", "fit s", "predict s"):
        assert column in text
    narrow = render(60, metric="rmse")
    assert "rmse" in narrow and "1.500" in narrow and "mase" not in narrow


def test_ratio_metrics_are_percentages_with_the_heading_saying_so() -> None:
    board = BOARD.assign(mape=[0.007, 0.0123], wape=[0.5, 1.25])
    text = render(None, metric="mape", board=board)
    assert "ranked by MAPE, in %" in text
    assert "mape %" in text and "smape %" in text and "wape %" in text and "coverage %" in text
    assert "0.70 %" in text and "1.23 %" in text and "80.00 %" in text  # mape, coverage 0.8
    assert "mase %" not in text and "0.500" in text  # a ratio to a scale, not a percentage
    assert format_metric("wape", board["wape"][1]) == "125.00 %"


def test_winner_line_names_each_stretch_and_agrees_with_the_gate() -> None:
    # better than the baseline over the backtest folds, worse on the held-out stretch
    select = {
        "winner": "lightgbm", "kind": "lightgbm", "metric": "mape", "baseline": "seasonal_naive", "horizon": 24,
        "backtest_metrics": {"mape": 0.007}, "improvement_over_baseline": 1 - 0.007 / 0.0112,
        "holdout_metrics": {"mape": 0.022}, "baseline_holdout_metrics": {"mape": 0.0172},
    }
    board = pd.DataFrame({"candidate": ["lightgbm", "seasonal_naive"], "status": ["ok", "ok"], "mape": [0.007, 0.0112]})
    line = winner_summary(select, board)
    assert "backtest folds: MAPE 0.70 % vs seasonal_naive 1.12 % (37.50% better)" in line
    gate = (0.0172 - 0.022) / 0.0172  # registry.evaluate_gate's improvement
    assert f"held-out last 24 steps: MAPE 2.20 % vs seasonal_naive 1.72 % ({abs(gate):.2%} worse)" in line
    assert "(the winner is the baseline)" in winner_summary({**select, "winner": "seasonal_naive"}, board)


def test_the_winner_line_says_how_often_its_interval_covered() -> None:
    select = {
        "metric": "mase", "winner": "mlp", "kind": "mlp", "baseline": "snaive",
        "backtest_metrics": {"mase": 0.4, "coverage_80": 0.765, "coverage_50": 0.49},
        "holdout_metrics": {"mase": 0.6, "coverage_80": 0.79861},
    }
    line = winner_summary(select)
    assert line.endswith("80 % interval covered 76.5 % of the fold points, 79.9 % held out"), line
    del select["holdout_metrics"]
    assert winner_summary(select).endswith("80 % interval covered 76.5 % of the fold points")
    assert "interval" not in winner_summary({**select, "backtest_metrics": {"mase": 0.4}})  # no quantiles
