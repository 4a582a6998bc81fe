"""The explain step's permutation importance and the select step's held-out fits run side by side
in worker processes (issue 19: the reference run on 2 cores) and give the same numbers as in turn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.unit.test_parallel_candidates import _spec_and_frame
from tidecast.models.base import FitContext
from tidecast.models.baselines import Naive, SeasonalNaive
from tidecast.reporting.explain import fold_frames
from tidecast.reporting.permutation import permutations
from tidecast.training import settings
from tidecast.training.candidates import candidate_results
from tidecast.training.selection import select_and_refit
from tidecast.training.settings import side_by_side


def test_side_by_side_needs_two_tasks_enough_rows_and_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 2)
    assert side_by_side(10_000, 3) == 2
    assert side_by_side(10_000, 1) == 1
    assert side_by_side(1_000, 3) == 1  # tiny data: a process costs more than it saves
    monkeypatch.setenv("TIDECAST_PARALLEL_CANDIDATES", "0")
    assert side_by_side(10_000, 3) == 1


def test_permutations_side_by_side_equal_in_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, frame = _spec_and_frame(tmp_path, 24 * 220)
    cutoff = frame["ds"].max() - pd.Timedelta(hours=24)
    train, test = fold_frames(frame, {"index": 0, "cutoff": str(cutoff), "test_end": str(frame["ds"].max())}, spec)
    ctx = FitContext(freq="1h", horizon=24, input_window=48)
    models = {
        "snaive": ("seasonal_naive", SeasonalNaive(season_length=24).fit(train, ctx)),
        "naive": ("naive", Naive().fit(train, ctx)),
        "broken": ("naive", "not a model"),  # its error comes back as the note's words, either way
    }
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 2)
    assert side_by_side(len(train), len(models)) == 2
    side = permutations(models, train, test, spec, repeats=2)
    monkeypatch.setenv("TIDECAST_PARALLEL_CANDIDATES", "0")
    serial = permutations(models, train, test, spec, repeats=2)
    assert list(side) == list(serial) == list(models)  # the callers' order
    for name in ("snaive", "naive"):
        assert side[name][1] is None
        pd.testing.assert_frame_equal(side[name][0], serial[name][0])
    assert side["broken"][0] is None and side["broken"][1] == serial["broken"][1]
    assert serial["broken"][1].startswith("AttributeError")


def test_select_side_by_side_equals_in_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, frame = _spec_and_frame(tmp_path, 24 * 220)
    monkeypatch.setenv("TIDECAST_PARALLEL_CANDIDATES", "0")
    backtested = candidate_results(frame, spec)
    serial = select_and_refit(backtested, frame, spec)
    monkeypatch.delenv("TIDECAST_PARALLEL_CANDIDATES")
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 2)
    assert side_by_side(len(frame), 2) == 2
    side = select_and_refit(backtested, frame, spec)
    assert side.winner == serial.winner and side.baseline == serial.baseline
    assert serial.baseline is not None and serial.baseline != serial.winner  # both held-out fits ran
    assert side.holdout_metrics == serial.holdout_metrics
    assert side.baseline_holdout_metrics == serial.baseline_holdout_metrics
    for key in ("winner", "baseline"):
        pd.testing.assert_frame_equal(side.holdout_forecasts[key], serial.holdout_forecasts[key])
    pd.testing.assert_frame_equal(side.holdout_scales, serial.holdout_scales)
    h = spec.forecast_steps()[1]
    pd.testing.assert_frame_equal(side.model.predict(h), serial.model.predict(h))


@pytest.mark.parametrize(
    ("backtest", "models"),
    [
        ({"calibration_fits": "auto"}, 2),  # 20 days of windows after 197 days: two models
        ({"calibration_fits": 3}, 3),
        ({"calibration_windows": 0}, 0),  # no window: the folds calibrate each other
    ],
)
def test_a_candidate_split_in_folds_and_calibration_models_equals_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backtest: dict, models: int  # type: ignore[type-arg]
) -> None:
    from tidecast.spec import parse_spec
    from tidecast.training import candidates as module

    spec, frame = _spec_and_frame(tmp_path, 24 * 220)
    raw = spec.model_dump(mode="json", exclude_none=True) if hasattr(spec, "model_dump") else None
    assert raw is not None
    raw["models"] = [
        {"name": "gbm", "kind": "lightgbm", "params": {"n_estimators": 20, "num_leaves": 7}},
        {"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": "1d"}},
    ]
    raw["backtest"] = {**raw.get("backtest", {}), **backtest}
    spec = parse_spec({k: v for k, v in raw.items() if k != "root"}, root=tmp_path)
    assert module._splits(spec.models[0], spec) and not module._splits(spec.models[1], spec)  # quick
    groups: list[int] = []
    tasks_of = module._calibration_tasks

    def counted(*args):  # type: ignore[no-untyped-def]
        tasks = tasks_of(*args)
        groups.append(len(tasks))
        return tasks

    monkeypatch.setattr(module, "_calibration_tasks", counted)
    finished: list[str] = []
    original = module._finish_split

    def finish(entry, *args):  # type: ignore[no-untyped-def]
        finished.append(entry.name)
        return original(entry, *args)

    monkeypatch.setattr(module, "_finish_split", finish)
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 2)
    side = candidate_results(frame, spec)
    assert finished == ["gbm"]  # its folds and its calibration models ran as tasks of their own
    assert groups == [models]
    monkeypatch.setenv("TIDECAST_PARALLEL_CANDIDATES", "0")
    serial = candidate_results(frame, spec)
    assert finished == ["gbm"]
    timing = [c for c in serial.leaderboard.columns if "seconds" in c]
    pd.testing.assert_frame_equal(side.leaderboard.drop(columns=timing), serial.leaderboard.drop(columns=timing))
    for name, entry in serial.results.items():
        pd.testing.assert_frame_equal(side.results[name].backtest.forecasts, entry.backtest.forecasts)
        pd.testing.assert_frame_equal(side.results[name].backtest.calibration, entry.backtest.calibration)
        assert side.results[name].evaluation.aggregate == entry.evaluation.aggregate
        assert [t["value"] for t in side.details[name]["trials"]] == [t["value"] for t in serial.details[name]["trials"]]
