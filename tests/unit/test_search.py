"""Grids, list-valued parameters, and the Optuna search (seeded, silent, timeout-aware)."""

from __future__ import annotations

import logging

import optuna
import pytest

from tidecast.errors import BacktestError, ModelError
from tidecast.evaluation.search import MAX_GRID, TrialRecord, grid, is_searched, optuna_search
from tidecast.spec import RangeParam, SearchSpec


def test_is_searched_and_list_valued_parameters() -> None:
    assert not is_searched({"season_length": [288, 2016], "lags": [1, 2, 3], "hidden": [256, 256], "alpha": 0.1})
    assert is_searched({"alpha": [0.1, 0.2]})
    assert is_searched({"alpha": RangeParam(low=0.1, high=0.3)})
    assert is_searched({"alpha": {"low": 1, "high": 3}})
    assert is_searched({"season_length": [[24], [24, 168]]})
    assert not is_searched({"options": {"x": 1}})


def test_grid_is_a_cartesian_product_keeping_fixed_values() -> None:
    params = {"n": [100, 200], "season_length": [24, 168], "lr": [0.1, 0.2, 0.3], "fixed": "x"}
    combos = grid(params)
    assert len(combos) == 6
    assert combos[0] == {"n": 100, "season_length": [24, 168], "lr": 0.1, "fixed": "x"}
    assert combos[-1] == {"n": 200, "season_length": [24, 168], "lr": 0.3, "fixed": "x"}
    nested = grid({"season_length": [[24], [24, 168]], "a": 1})
    assert nested == [{"season_length": [24], "a": 1}, {"season_length": [24, 168], "a": 1}]
    assert grid({"a": 1}) == [{"a": 1}]
    assert grid({"lags": [1, 2]}, list_valued=set()) == [{"lags": 1}, {"lags": 2}]


def test_grid_errors() -> None:
    with pytest.raises(BacktestError, match=r"params.lr: a range \{low, high\} needs a search section"):
        grid({"lr": RangeParam(low=0.1, high=0.3)})
    with pytest.raises(BacktestError, match="empty list"):
        grid({"a": []})
    with pytest.raises(BacktestError, match=r"the grid has 64 combinations \(more than 50\); sample it instead with search: \{trials: N\}"):
        grid({"a": list(range(8)), "b": list(range(8))})
    assert MAX_GRID == 50


def test_without_search_lists_are_tried_exhaustively() -> None:
    seen: list[TrialRecord] = []
    result = optuna_search(lambda p: (p["a"] - 2) ** 2 + p["b"], {"a": [1, 2, 3], "b": [0, 1], "c": "x"}, None, on_trial=seen.append)
    assert result.best_params == {"a": 2, "b": 0, "c": "x"} and result.best_value == 0
    assert len(result.trials) == 6 == len(seen)
    single = optuna_search(lambda p: 1.5, {"a": 1}, None)
    assert single.best_value == 1.5 and len(single.trials) == 1
    with pytest.raises(BacktestError, match="needs a search section"):
        optuna_search(lambda p: 0.0, {"a": {"low": 0.0, "high": 1.0}}, None)


def quadratic(params: dict) -> float:  # type: ignore[type-arg]
    return (params["x"] - 1.7) ** 2 + (params["k"] - 4) ** 2


SPACE = {"x": {"low": -5.0, "high": 5.0}, "k": {"low": 1, "high": 10}, "fixed": 3}


def test_optuna_finds_the_minimum_of_a_quadratic_and_is_seeded() -> None:
    result = optuna_search(quadratic, SPACE, SearchSpec(trials=30, seed=0))
    assert result.best_value < 0.5  # minimum 0 at x = 1.7, k = 4 (a random search rarely gets there in 30)
    assert result.best_params["k"] == 4 and abs(result.best_params["x"] - 1.7) < 0.7
    assert isinstance(result.best_params["k"], int) and isinstance(result.best_params["x"], float)
    assert result.best_params["fixed"] == 3
    assert len(result.trials) <= 30
    again = optuna_search(quadratic, SPACE, SearchSpec(trials=30, seed=0))
    assert again.best_params == result.best_params and again.best_value == result.best_value
    assert [t.params for t in again.trials] == [t.params for t in result.trials]
    other = optuna_search(quadratic, SPACE, SearchSpec(trials=30, seed=1))
    assert [t.params for t in other.trials] != [t.params for t in result.trials]


def test_optuna_ranges_from_the_spec_log_and_list_valued_choices() -> None:
    params = {"lr": RangeParam(low=1e-4, high=1.0, log=True), "season_length": [[24], [24, 168]]}
    result = optuna_search(lambda p: abs(p["lr"] - 0.01) + len(p["season_length"]), params, SearchSpec(trials=15))
    assert result.best_params["season_length"] == [24]
    assert all(1e-4 <= t.params["lr"] <= 1.0 for t in result.trials)
    assert RangeParam.model_construct(low=2, high=9, log=False).low == 2
    ints = optuna_search(lambda p: float(p["n"]), {"n": RangeParam.model_construct(low=2, high=9, log=False)}, SearchSpec(trials=5))
    assert all(isinstance(t.params["n"], int) for t in ints.trials)


def test_finite_spaces_stop_early_and_repeats_are_not_re_evaluated() -> None:
    calls: list[dict] = []  # type: ignore[type-arg]

    def objective(p: dict) -> float:  # type: ignore[type-arg]
        calls.append(p)
        return float(p["a"])

    result = optuna_search(objective, {"a": [3, 1, 2]}, SearchSpec(trials=50, seed=0))
    assert result.best_params == {"a": 1}
    assert len(calls) == len({c["a"] for c in calls}) == 3  # every point once, then the study stops


def test_failed_trials_are_recorded_and_the_search_goes_on() -> None:
    def objective(p: dict) -> float:  # type: ignore[type-arg]
        if p["a"] == 1:
            raise ModelError("cannot fit a=1")
        if p["a"] == 2:
            return float("nan")
        return float(p["a"])

    result = optuna_search(objective, {"a": [1, 2, 3, 4]}, None)
    assert result.best_params == {"a": 3} and result.n_failed == 2
    assert result.trials[0].error == "cannot fit a=1" and result.trials[0].value is None
    assert "not a finite number" in (result.trials[1].error or "")
    with pytest.raises(ModelError, match=r"search: all 2 trial\(s\) failed; the first: ValueError: no"):
        optuna_search(lambda p: (_ for _ in ()).throw(ValueError("no")), {"a": [1, 2]}, SearchSpec(trials=4))


def test_timeout_is_honoured_and_optuna_stays_silent(capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    import time

    def slow(p: dict) -> float:  # type: ignore[type-arg]
        time.sleep(0.05)
        return p["x"] ** 2

    before = optuna.logging.get_verbosity()
    with caplog.at_level(logging.DEBUG):
        started = time.perf_counter()
        result = optuna_search(slow, {"x": {"low": -1.0, "high": 1.0}}, SearchSpec(trials=1000, timeout=0.3))
        elapsed = time.perf_counter() - started
    assert elapsed < 2.0 and 1 <= len(result.trials) < 100
    assert optuna.logging.get_verbosity() == before
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert not [r for r in caplog.records if r.name.startswith("optuna")]
