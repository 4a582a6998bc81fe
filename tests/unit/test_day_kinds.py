"""Intervals by kind of day (working days and days off share the interval's shape, not its width),
and calibration windows forecast by more than one fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tidecast.evaluation.calibration import (
    calibrate_folds,
    calibration_forecasts,
    calibration_groups,
    calibration_windows,
)
from tidecast.evaluation.folds import make_folds
from tidecast.models import ConformalForecaster, build_forecaster
from tidecast.models.base import FitContext
from tidecast.models.day_kinds import DayKinds, day_kinds_for, kind_factors


class _Nothing:
    name = "nothing"


class _TrainingMean:
    """Forecasts the mean of its training data, whatever the history: each fit leaves its mark."""

    name = "mean"

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> _TrainingMean:
        self.level, self.freq = float(df["y"].mean()), ctx.freq
        return self

    def predict(self, h: int, *, history: pd.DataFrame | None = None, **_: object) -> pd.DataFrame:
        assert history is not None
        ds = pd.date_range(history["ds"].max(), periods=h + 1, freq=self.freq)[1:]
        return pd.DataFrame({"unique_id": "a", "ds": ds, "yhat": self.level})


def test_labels_on_the_local_clock_with_holidays() -> None:
    # 2025-05-01 (Thursday) is a French holiday; 2025-05-03/04 a weekend. 22:30 UTC on Friday 2 May
    # is already Saturday in Paris.
    ds = pd.to_datetime(["2025-04-30 12:00", "2025-05-01 12:00", "2025-05-02 12:00", "2025-05-02 22:30"])
    assert DayKinds("Europe/Paris", "FR").labels(ds).tolist() == [0, 1, 0, 1]
    assert DayKinds("Europe/Paris", None).labels(ds).tolist() == [0, 0, 0, 1]
    assert DayKinds(None, None).labels(ds).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("freq", "expected"), [("5min", True), ("h", True), ("D", True), ("W", False), ("MS", False), ("B", False)]
)
def test_only_series_of_a_day_or_finer_have_kinds_of_day(freq: str, expected: bool) -> None:
    assert (day_kinds_for(freq, None, None) is not None) is expected


def test_a_kind_with_too_few_residuals_leaves_every_width_alone() -> None:
    assert kind_factors(np.array([0] * 100 + [1] * 10), np.ones(110)) == {}
    assert kind_factors(np.array([0] * 100), np.ones(100)) == {}


def _residuals(days: int = 28, seed: int = 0) -> pd.DataFrame:
    """Hourly residuals of daily forecasts: errors on weekends a quarter of the working days'."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01 01:00", periods=days * 24, freq="h")
    sigma = np.where(ds.weekday >= 5, 1.0, 4.0)
    return pd.DataFrame(
        {"unique_id": "a", "ds": ds, "step": np.tile(np.arange(1, 25), days), "yhat": 0.0, "y": rng.normal(0, sigma)}
    )


def test_weekend_intervals_are_narrower_where_weekend_errors_are() -> None:
    res = _residuals()
    kinds = ConformalForecaster(_Nothing(), res, day_kinds=DayKinds())  # type: ignore[arg-type]
    plain = ConformalForecaster(_Nothing(), res)  # type: ignore[arg-type]
    assert kinds.get_params()["conformal_day_kinds"]["day_off"] < 0.5 < 1 < kinds.get_params()["conformal_day_kinds"]["working_day"]
    steps = np.arange(1, 25)
    monday = pd.date_range("2024-02-05 01:00", periods=24, freq="h")
    sunday = pd.date_range("2024-02-04 01:00", periods=24, freq="h")
    width = {}
    for name, model, times in (("kinds", kinds, monday), ("kinds_sun", kinds, sunday), ("plain", plain, monday)):
        off = model.scaled_offsets((0.1, 0.9), None, steps, times)
        width[name] = float(np.mean(off[:, 1] - off[:, 0]))
    assert width["kinds_sun"] * 2.5 < width["kinds"]  # about 4x narrower (the errors' ratio)
    assert width["plain"] < width["kinds"]  # pooled: too narrow for a working day
    # each kind holds its level on fresh residuals of the same process
    fresh = _residuals(days=56, seed=1)
    off = kinds.scaled_offsets((0.1, 0.9), None, fresh["step"].to_numpy(), fresh["ds"].to_numpy())
    inside = (fresh["y"] >= off[:, 0]) & (fresh["y"] <= off[:, 1])
    weekend = fresh["ds"].dt.weekday >= 5
    assert 0.72 < inside[weekend].mean() < 0.88 and 0.72 < inside[~weekend].mean() < 0.88
    off = plain.scaled_offsets((0.1, 0.9), None, fresh["step"].to_numpy(), fresh["ds"].to_numpy())
    inside = (fresh["y"] >= off[:, 0]) & (fresh["y"] <= off[:, 1])
    assert inside[weekend].mean() > 0.95  # one width for every day over-covers the quiet days


def test_without_timestamps_or_kinds_nothing_changes() -> None:
    res = _residuals()
    plain = ConformalForecaster(_Nothing(), res)  # type: ignore[arg-type]
    untimed = ConformalForecaster(_Nothing(), res.drop(columns="ds"), day_kinds=DayKinds())  # type: ignore[arg-type]
    np.testing.assert_allclose(plain.offsets((0.1, 0.9)), untimed.offsets((0.1, 0.9)))
    assert untimed.get_params()["conformal_day_kinds"] == {}


def test_served_model_and_folds_use_the_same_widths() -> None:
    res = _residuals()
    model = ConformalForecaster(build_forecaster("zero", "naive", {}, freq="h"), res, force=True, day_kinds=DayKinds())
    history = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-02-02", periods=48, freq="h"), "y": 0.0})
    model.fit(history, FitContext(freq="h", horizon=48, input_window=48))
    fc = model.predict(48, quantiles=(0.1, 0.9))
    expected = model.scaled_offsets((0.1, 0.9), "a", np.arange(1, 49), fc["ds"].to_numpy())
    np.testing.assert_allclose(fc[["q0.1", "q0.9"]].to_numpy(), fc[["yhat"]].to_numpy() + expected)
    # the folds of calibrate_folds, on the same rows: the same offsets
    folds = fc.assign(fold=0, cutoff=history["ds"].max(), step=np.arange(1, 49), y=0.0).drop(columns=["q0.1", "q0.9"])
    calibrated, _ = calibrate_folds(folds, res, [0.1, 0.9], day_kinds=DayKinds())
    np.testing.assert_allclose(calibrated[["q0.1", "q0.9"]].to_numpy(), fc[["q0.1", "q0.9"]].to_numpy())


def test_calibration_windows_shared_by_several_fits() -> None:
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=30 * 24, freq="h")
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(len(ds), dtype=float) + rng.normal(0, 1, len(ds))})
    ctx = FitContext(freq="h", horizon=24, input_window=48)
    folds = make_folds(df, h=24, folds=2, holdout=24, freq="h", min_train=48)
    windows = calibration_windows(folds, df, ctx, 6, min_train=48)

    def make() -> _TrainingMean:
        return _TrainingMean()

    one, errors = calibration_forecasts(make, df, ctx, windows)
    two, errors2 = calibration_forecasts(make, df, ctx, windows, fits=2)
    assert not errors and not errors2 and len(one) == len(two) == 6 * 24
    early = two["cutoff"] <= windows[2].cutoff
    # the first three windows: the same (oldest) fit; the last three: a second fit, on more data
    np.testing.assert_allclose(two.loc[early, "yhat"], one.loc[early, "yhat"])
    assert two.loc[~early, "yhat"].nunique() == 1 and two.loc[~early, "yhat"].iloc[0] > one["yhat"].max()


def test_the_training_run_records_the_widths_by_kind_of_day() -> None:
    from tidecast.tracking.runs import _day_kind_factors

    model = ConformalForecaster(_Nothing(), _residuals(), day_kinds=DayKinds())  # type: ignore[arg-type]
    factors = _day_kind_factors(model)
    assert set(factors) == {"working_day", "day_off"} and factors["day_off"] < factors["working_day"]
    assert _day_kind_factors(ConformalForecaster(_Nothing(), _residuals())) == {}  # type: ignore[arg-type]
    assert _day_kind_factors(None) == {}


def _hourly_windows(days: int, n_windows: int) -> tuple[pd.DataFrame, list]:  # type: ignore[type-arg]
    ds = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.zeros(len(ds))})
    ctx = FitContext(freq="h", horizon=24, input_window=24)
    folds = make_folds(df, h=24, folds=2, holdout=24, freq="h", min_train=24)
    return df, calibration_windows(folds, df, ctx, n_windows, min_train=24)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (400, 1),  # 20 days of windows after 376 days: within a tenth, one model
        (150, 2),  # after 126 days: 20 days is 16 % of it, two models of 10 windows
        (44, 10),  # after 21 days: ten models of two windows (2 days is a tenth of 21, rounded up)
        (30, 10),  # 13 windows (half the history before the folds) after 14 days: one or two per model
    ],
)
def test_auto_fits_keep_each_model_within_a_tenth_of_its_training(days: int, expected: int) -> None:
    df, windows = _hourly_windows(days, 20)
    assert len(windows) == (20 if days > 40 else 13)
    groups = calibration_groups(windows, df, "auto")
    assert len(groups) == expected
    assert [w.cutoff for g in groups for w in g] == sorted(w.cutoff for w in windows)  # oldest first, all of them
    trained = int((df["ds"] <= windows[0].cutoff).sum())
    if expected < len(windows):  # each group's windows span at most a tenth of what the oldest model saw
        assert max(sum(w.h for w in g) for g in groups) <= 0.1 * trained + 24


def test_explicit_fits_and_never_more_models_than_windows() -> None:
    df, windows = _hourly_windows(400, 6)
    assert [len(g) for g in calibration_groups(windows, df, 2)] == [3, 3]
    assert len(calibration_groups(windows, df, 50)) == 6
    assert calibration_groups([], df, "auto") == []


@pytest.mark.parametrize("value", [0, 101, "many", -1, 2.5, True])
def test_calibration_fits_must_be_auto_or_a_count(value: object) -> None:
    from pydantic import ValidationError

    from tidecast.spec.forecast import BacktestSpec

    assert BacktestSpec(calibration_fits="auto").calibration_fits == "auto"
    assert BacktestSpec(calibration_fits=3).calibration_fits == 3
    with pytest.raises(ValidationError, match="calibration_fits"):
        BacktestSpec(calibration_fits=value)
