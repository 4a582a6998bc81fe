"""The leaderboard table fits the terminal by leaving columns out, never by truncating names."""

from __future__ import annotations

import pandas as pd
import pytest
from rich.console import Console

from tidecast.cli import leaderboard_table

BOARD = pd.DataFrame({
    "rank": [1, 2], "candidate": ["lightgbm/min_trace_wls_struct", "seasonal_naive"],
    "kind": ["lightgbm", "seasonal_naive"], "mase": [0.5, 0.9], "mae": [1.0, 2.0], "rmse": [1.5, 2.5],
    "smape": [0.1, 0.2], "bias": [0.0, 0.1], "coverage": [0.8, 0.7], "fit_seconds": [1.0, 0.1],
    "predict_seconds": [0.1, 0.01], "status": ["ok", "ok"], "error": [None, None],
})


def render(width: int | None, metric: str = "mase") -> str:
    console = Console(width=width or 200, force_terminal=False, record=True)
    console.print(leaderboard_table(BOARD, metric, width=width))
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
