"""Leaderboard ranking, failed candidates, the winner and the improvement over a baseline."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from tidecast.errors import BacktestError
from tidecast.evaluation.selection import (
    CandidateResult,
    improvement_over,
    leaderboard,
    per_series_winners,
    select_winner,
)
from tidecast.spec import RangeParam


def ok(name: str, kind: str = "k", seconds: float = 1.0, per_series: dict | None = None, **metrics: float) -> CandidateResult:  # type: ignore[type-arg]
    evaluation = SimpleNamespace(
        aggregate={"mae": 1.0, "rmse": 2.0, "coverage": 0.8, "pinball_q0.1": 0.3, **metrics},
        per_series=pd.DataFrame(per_series or {}, index=pd.Index(["a", "b"], name="unique_id")),
    )
    return CandidateResult(name, kind, {"alpha": 0.5, "r": RangeParam(low=0.1, high=1.0)}, evaluation, None, None, seconds, 0.5, 1)


def failed(name: str, error: str) -> CandidateResult:
    return CandidateResult(name, "k", {}, None, None, error, 0.1, 0.0, 0)


def test_ranking_columns_and_failed_last() -> None:
    entries = [
        failed("broken", "ModelError: cannot fit"),
        ok("snaive", kind="seasonal_naive", mase=1.0),
        ok("lgbm", mase=0.7),
        ok("ets", mase=0.9),
    ]
    board = leaderboard(entries, "mase")
    assert board["candidate"].tolist() == ["lgbm", "ets", "snaive", "broken"]
    assert board["rank"].tolist()[:3] == [1, 2, 3] and pd.isna(board["rank"].iloc[3])
    assert board["status"].tolist() == ["ok", "ok", "ok", "failed"]
    assert board["error"].iloc[3] == "ModelError: cannot fit" and board["error"].iloc[0] is None
    assert list(board.columns) == [
        "rank", "candidate", "kind", "params", "mase", "mae", "rmse", "coverage", "pinball_q0.1",
        "fit_seconds", "predict_seconds", "trials", "status", "error",
    ]
    assert json.loads(board["params"].iloc[0]) == {"alpha": 0.5, "r": {"low": 0.1, "high": 1.0, "log": False}}
    assert select_winner(board, "mase") == "lgbm"
    assert improvement_over(board, "lgbm", "snaive", "mase") == pytest.approx(0.3)
    assert improvement_over(board, "lgbm", "broken", "mase") is None
    with pytest.raises(BacktestError, match="no candidate named 'nope'"):
        improvement_over(board, "lgbm", "nope", "mase")


def test_ties_go_to_the_cheaper_then_the_earlier_candidate() -> None:
    board = leaderboard([ok("slow", seconds=9.0, mase=0.5), ok("fast", seconds=1.0, mase=0.5), ok("fast2", seconds=1.0, mase=0.5)], "mase")
    assert board["candidate"].tolist() == ["fast", "fast2", "slow"]
    assert select_winner(board, "mase") == "fast"


def test_non_finite_metric_never_wins_and_bias_ranks_by_absolute_value() -> None:
    board = leaderboard([ok("nan", mase=float("nan")), ok("good", mase=2.0)], "mase")
    assert board["candidate"].tolist() == ["good", "nan"]
    assert board["status"].iloc[1] == "ok" and "not a finite number" in board["error"].iloc[1]
    assert select_winner(board, "mase") == "good"
    biased = leaderboard([ok("low", bias=-3.0), ok("high", bias=1.0)], "bias")
    assert select_winner(biased, "bias") == "high"
    assert improvement_over(biased, "high", "low", "bias") == pytest.approx(2 / 3)


def test_every_candidate_failed() -> None:
    board = leaderboard([failed("x", "boom"), failed("y", "bang")], "mase")
    assert board["rank"].isna().all()
    with pytest.raises(BacktestError, match=r"^every candidate failed: x: boom, y: bang$"):
        select_winner(board, "mase")
    with pytest.raises(BacktestError, match="no candidates"):
        select_winner(leaderboard([], "mase"), "mase")


def test_unknown_or_unrankable_metric() -> None:
    with pytest.raises(BacktestError, match="'mase' was not computed"):
        leaderboard([ok("a")], "mase")
    with pytest.raises(BacktestError, match="cannot rank"):
        leaderboard([ok("a")], "coverage")


def test_per_series_winners() -> None:
    entries = [
        ok("m1", mase=1.0, per_series={"mase": [1.0, 3.0]}),
        ok("m2", mase=1.0, per_series={"mase": [2.0, 1.0]}),
        failed("m3", "boom"),
    ]
    table = per_series_winners(entries, "mase")
    assert table.to_dict("records") == [
        {"unique_id": "a", "candidate": "m1", "mase": 1.0},
        {"unique_id": "b", "candidate": "m2", "mase": 1.0},
    ]
