"""The typed step outputs (frozen, read as mappings too) and the one place that decides a metric's direction."""

from __future__ import annotations

import dataclasses
import pickle

import pandas as pd
import pytest

from tidecast.errors import BacktestError
from tidecast.evaluation.selection import Ranking
from tidecast.training.results import Backtested, PerSeriesChoice


def test_ranking_decides_the_direction_of_every_metric() -> None:
    mae, bias = Ranking("mae"), Ranking("bias")
    assert mae.direction == "lower" and bias.direction == "lower absolute"
    assert mae.better(1.0, 2.0) and mae.better(-3.0, 2.0)  # signed: lower wins
    assert bias.better(-1.0, 2.0) and not bias.better(-3.0, 2.0)
    assert list(bias.keys(pd.Series([-2.0, 1.0]))) == [2.0, 1.0]
    assert mae.improvement(4.0, 3.0) == pytest.approx(0.25)
    assert bias.improvement(-4.0, 1.0) == pytest.approx(0.75)
    assert mae.improvement(0.0, 1.0) is None and mae.improvement(float("nan"), 1.0) is None
    with pytest.raises(BacktestError, match="cannot rank"):
        Ranking("coverage").check()


def _backtested(**extra: object) -> Backtested:
    board = pd.DataFrame({"rank": [1], "candidate": ["a"], "mae": [1.0], "status": ["ok"]})
    return Backtested(leaderboard=board, metric="bias", folds=[{"index": 0}], season_length=7, results={}, **extra)  # type: ignore[arg-type]


def test_backtested_is_frozen_and_reads_as_the_former_dict() -> None:
    out = _backtested()
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.metric = "mae"  # type: ignore[misc]
    assert out["metric"] == "bias" and out.ranking.direction == "lower absolute" == out.direction
    assert out["hierarchy"] is None and "hierarchy" not in out and out.get("ensembles", "none") == "none"
    assert set(out) == {"leaderboard", "metric", "folds", "season_length", "results", "details"}
    assert {**out, "folds": []}["folds"] == [] and out["folds"] == [{"index": 0}]
    with pytest.raises(KeyError):
        out["nothing"]
    again = pickle.loads(pickle.dumps(out))
    assert isinstance(again, Backtested) and again.folds == out.folds


def test_a_per_series_choice_is_set_only_with_the_per_series_scope() -> None:
    choice = PerSeriesChoice(
        mapping={"s": "a"}, winners=pd.DataFrame(), fallback="a", unjudged=[], counts={"a": 1},
        aggregate={"mae": 1.0}, global_winner="a", global_aggregate={"mae": 1.0},
    )
    out = _backtested(per_series=choice)
    assert "per_series" in out and out["per_series"]["mapping"] == {"s": "a"} and out.per_series.fallback == "a"
