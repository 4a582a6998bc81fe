"""The explain step reuses the backtest's own fit of the last fold instead of refitting (issue 19):
the backtest keeps that model, the pipeline sets it aside in the backtest's artifacts, explain
takes it (and only when it belongs to the same folds and parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tidecast.frames import POINT, TIME
from tidecast.spec import parse_spec

FREQ = "1h"


def _write_project(root: Path, days: int = 30) -> Any:
    rng = np.random.default_rng(3)
    ds = pd.date_range("2024-01-01", periods=24 * days, freq=FREQ)
    y = 50 + 10 * np.sin(2 * np.pi * ds.hour / 24) + rng.normal(0, 1, len(ds))
    (root / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"ds": ds.strftime("%Y-%m-%d %H:%M:%S"), "y": y}).to_csv(root / "data" / "x.csv", index=False)
    data = {
        "project": "reuse",
        "data": {"source": "data/x.csv", "time_column": "ds", "target_column": "y", "frequency": FREQ},
        "forecast": {"input_window": "2d", "horizon": "1d", "quantiles": []},
        "backtest": {"folds": 2},
        "models": [
            {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
            {"name": "avg", "kind": "window_average", "params": {"window_size": "1d"}},
        ],
    }
    return parse_spec(data, root=root)


def _features(spec: Any) -> pd.DataFrame:
    from tidecast.data.long_format import to_long
    from tidecast.data.sources import read_source

    return to_long(read_source(spec.data), spec.data, spec.target, source_name="x.csv")


def test_backtest_keeps_the_last_folds_model_which_forecasts_that_fold(tmp_path: Path) -> None:
    from tidecast.training import candidate_results

    spec = _write_project(tmp_path)
    frame = _features(spec)
    out = candidate_results(frame, spec)
    last = out["folds"][-1]
    for name in ("snaive", "avg"):
        result = out["results"][name].backtest
        assert list(result.models) == [last["index"]]  # the last fold only
        model = result.models[last["index"]]
        forecast = model.predict(int(last["h"]), quantiles=[])
        fold = result.forecasts[result.forecasts["fold"] == last["index"]]
        np.testing.assert_allclose(forecast[POINT].to_numpy(), fold[POINT].to_numpy())
        assert forecast[TIME].min() == pd.Timestamp(last["test_start"])


def test_explain_uses_the_kept_model_and_refits_without_it(tmp_path: Path) -> None:
    from tidecast.reporting.explain import explain_candidates
    from tidecast.training import candidate_results

    spec = _write_project(tmp_path)
    frame = _features(spec)
    backtest = candidate_results(frame, spec)
    index = backtest["folds"][-1]["index"]
    select = {"winner": "snaive"}
    kept = {name: dict(entry.backtest.models) for name, entry in backtest["results"].items()}

    refit = explain_candidates(backtest, select, frame, spec, repeats=1)["explanations"]
    reused = explain_candidates(backtest, select, frame, spec, repeats=1, fold_models=kept)["explanations"]
    for name in ("snaive", "avg"):  # deterministic models: the backtest's fit and a refit agree
        pd.testing.assert_frame_equal(reused[name].permutation, refit[name].permutation)

    # given another model under a candidate's name, explain measures that one: it did not refit
    swapped = {"snaive": {index: kept["avg"][index]}}
    explained = explain_candidates(backtest, select, frame, spec, repeats=1, fold_models=swapped)["explanations"]
    base = explained["snaive"].permutation["base_mae"].iloc[0]
    assert base == pytest.approx(refit["avg"].permutation["base_mae"].iloc[0])
    assert base != pytest.approx(refit["snaive"].permutation["base_mae"].iloc[0])


def test_pipeline_sets_the_fold_models_aside_and_explain_checks_they_are_its_own(tmp_path: Path) -> None:
    import joblib

    from tidecast.pipeline import Pipeline, run
    from tidecast.pipeline.cache import ARTIFACTS
    from tidecast.pipeline.lock import LOCK_FILENAME, LockFile
    from tidecast.reporting.step import explain, fold_models
    from tidecast.training.steps import FOLD_MODELS, TRAINING_STEPS

    spec = _write_project(tmp_path)
    result = run(Pipeline([*TRAINING_STEPS, explain]), spec)
    assert "explain" in result.executed
    backtest = result.outputs["backtest"]
    # the cached backtest output holds no model (a no-op's leaderboard unpickles none)
    assert all(not entry.backtest.models for entry in backtest["results"].values())
    records = LockFile(tmp_path / LOCK_FILENAME).records
    file = tmp_path / records["backtest"].outputs / ARTIFACTS / FOLD_MODELS
    assert set(joblib.load(file)["models"]) == {"snaive", "avg"}

    models = fold_models(spec, records, backtest)
    assert set(models) == {"snaive", "avg"}
    other = {**backtest, "folds": backtest["folds"][:-1]}  # another backtest's folds: none taken
    assert fold_models(spec, records, other) == {}
    changed = dict(backtest["results"])
    changed["avg"] = type(changed["avg"])(**{**changed["avg"].__dict__, "params": {"window_size": "2d"}})
    assert set(fold_models(spec, records, {**backtest, "results": changed})) == {"snaive"}
    assert set(result.outputs["explain"]["explanations"]) == {"snaive", "avg"}
