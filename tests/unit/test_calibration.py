"""Interval metrics on hand-computed values, and the calibration of intervals without look-ahead."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from tidecast.evaluation.calibration import (
    calibrate_folds,
    calibration_forecasts,
    calibration_windows,
    conformal_quantile,
    interval_residuals,
)
from tidecast.evaluation.folds import make_folds
from tidecast.evaluation.metrics import coverage, evaluate, interval_score, interval_width, mean_pinball, pinball
from tidecast.models import ConformalForecaster, build_forecaster
from tidecast.models.base import FitContext

# ----------------------------------------------------------------------------------- metrics
Y = np.array([0.0, 5.0, 12.0, 10.0])
LO = np.array([1.0, 1.0, 1.0, 1.0])
HI = np.array([10.0, 10.0, 10.0, 10.0])


def test_interval_metrics_by_hand() -> None:
    assert coverage(Y, LO, HI) == pytest.approx(0.5)  # 5 and 10 (bound included) are inside
    assert interval_width(LO, HI) == pytest.approx(9.0)
    # widths 9; below by 1 -> + 2/0.2 * 1 = 10; above by 2 -> + 20: (19 + 9 + 29 + 9) / 4
    assert interval_score(Y, LO, HI, 0.2) == pytest.approx(16.5)
    # pinball: q=0.1 on lo: (0.9*1 + 0.1*4 + 0.1*11 + 0.1*9) / 4; q=0.9 on hi: (0.1*10 + 0.1*5 + 0.9*2 + 0) / 4
    assert pinball(Y, LO, 0.1) == pytest.approx((0.9 + 0.4 + 1.1 + 0.9) / 4)
    assert pinball(Y, HI, 0.9) == pytest.approx((1.0 + 0.5 + 1.8 + 0.0) / 4)
    assert mean_pinball(Y, {0.1: LO, 0.9: HI}) == pytest.approx(((0.9 + 0.4 + 1.1 + 0.9) / 4 + 3.3 / 4) / 2)
    with pytest.raises(ValueError, match="alpha"):
        interval_score(Y, LO, HI, 1.0)


def test_evaluate_reports_interval_metrics_per_pair() -> None:
    fc = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range("2024-01-01", periods=4, freq="h"),
            "fold": 0,
            "step": [1, 2, 3, 4],
            "y": Y,
            "yhat": (LO + HI) / 2,
            "q0.1": LO,
            "q0.9": HI,
            "q0.25": LO + 1,
            "q0.75": HI - 1,
        }
    )
    agg = evaluate(fc).aggregate
    assert agg["coverage_80"] == pytest.approx(0.5) and agg["width_80"] == pytest.approx(9.0)
    assert agg["interval_score_80"] == pytest.approx(16.5)
    # 50 % interval [2, 9]: widths 7; penalties 2/0.5 * (2, 0, 3, 1) -> (15, 7, 19, 11)
    assert agg["interval_score_50"] == pytest.approx(13.0)
    assert agg["interval_score"] == pytest.approx((16.5 + 13.0) / 2)
    assert agg["coverage"] == agg["coverage_80"] and agg["interval_width"] == agg["width_80"]
    assert evaluate(fc).per_step.loc[1, "interval_score_80"] == pytest.approx(19.0)


# ------------------------------------------------------------------------ conformal quantile
def test_finite_sample_quantile() -> None:
    values = np.arange(1, 20, dtype=float)  # n = 19
    assert conformal_quantile(values, 0.9) == 18.0  # ceil(20 * 0.9) = 18th
    assert conformal_quantile(values, 0.1) == 2.0  # floor(20 * 0.1) = 2nd
    assert np.quantile(values, 0.9) == pytest.approx(17.2)  # the plain quantile is narrower
    assert conformal_quantile(np.arange(1, 5, dtype=float), 0.9) == 4.0  # ceil(5 * 0.9) = 5 > n: the largest
    assert np.isnan(conformal_quantile([], 0.9))
    # weights: the old residuals count less; with weight 0 they are ignored
    w = np.r_[np.zeros(10), np.ones(9)]
    assert conformal_quantile(values, 0.9, w) == conformal_quantile(values[10:], 0.9)


def test_finite_sample_correction_holds_the_level() -> None:
    rng = np.random.default_rng(3)
    n, trials = 20, 4000
    inside_plain = inside_conformal = 0
    for _ in range(trials):
        calib, test = rng.normal(size=n), rng.normal()
        inside_plain += np.quantile(calib, 0.1) <= test <= np.quantile(calib, 0.9)
        inside_conformal += conformal_quantile(calib, 0.1) <= test <= conformal_quantile(calib, 0.9)
    assert inside_plain / trials < 0.78  # about 0.76 with 20 residuals
    assert 0.79 <= inside_conformal / trials <= 0.84  # ranks 3..19 of 21: 17 / 21 = 0.81 expected


def test_pooled_residuals_are_scaled_to_each_series() -> None:
    rng = np.random.default_rng(0)
    rows = [
        pd.DataFrame(
            {"unique_id": uid, "step": np.tile(np.arange(1, 5), 5), "yhat": 0.0, "y": rng.normal(0, sigma, 20)}
        )
        for uid, sigma in (("small", 1.0), ("big", 100.0))
    ]
    model = ConformalForecaster(_Nothing(), pd.concat(rows), window=0, min_samples=50)
    small, big = model.offsets((0.1, 0.9), "small"), model.offsets((0.1, 0.9), "big")
    ratio = (big[:, 1] - big[:, 0]) / (small[:, 1] - small[:, 0])
    assert np.all((ratio > 30) & (ratio < 300))  # each series' width follows its own scale


class _Nothing:
    name = "nothing"


# ---------------------------------------------------------------------------------- windows
def hourly(days: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    y = 10 + 3 * np.sin(2 * np.pi * ds.hour.to_numpy() / 24) + rng.normal(0, 1, len(ds))
    return pd.DataFrame({"unique_id": "a", "ds": ds, "y": y})


CTX = FitContext(freq="h", horizon=24, input_window=48)


def test_windows_before_the_first_fold_one_horizon_apart() -> None:
    df = hourly(30)
    folds = make_folds(df, h=24, folds=3, holdout=24, freq="h", min_train=48)
    windows = calibration_windows(folds, df, CTX, 5, min_train=48)
    assert [w.index for w in windows] == [-6, -5, -4, -3, -2]
    assert all(w.test_end <= folds[0].cutoff for w in windows)
    assert windows[-1].cutoff == folds[0].cutoff - pd.Timedelta(hours=24)
    assert all(b.cutoff - a.cutoff == pd.Timedelta(hours=24) for a, b in pairwise(windows))
    # a short history keeps half of the first fold's training data for the calibration model
    short = hourly(8)
    few = calibration_windows(make_folds(short, h=24, folds=2, holdout=24, freq="h", min_train=48), short, CTX, 50)
    assert 1 <= len(few) <= 2


def test_window_forecasts_see_nothing_after_their_cutoff() -> None:
    df = hourly(30)
    folds = make_folds(df, h=24, folds=3, holdout=24, freq="h", min_train=48)
    windows = calibration_windows(folds, df, CTX, 4, min_train=48)

    def make():
        return build_forecaster("snaive", "seasonal_naive", {"season_length": 24}, freq="h")

    out, errors = calibration_forecasts(make, df, CTX, windows)
    assert not errors and sorted(out["cutoff"].unique()) == [w.cutoff for w in windows]
    assert set(out["step"]) == set(range(1, 25)) and len(out) == 4 * 24
    # change every actual after the second window's cut-off: its forecasts (and the first's) stay the same
    changed = df.copy()
    changed.loc[changed["ds"] > windows[1].cutoff, "y"] += 100.0
    again, _ = calibration_forecasts(make, changed, CTX, windows)
    early = out["cutoff"] <= windows[1].cutoff
    np.testing.assert_allclose(again.loc[early, "yhat"], out.loc[early, "yhat"])
    assert not np.allclose(again.loc[~early, "yhat"], out.loc[~early, "yhat"])


def test_fold_quantiles_use_only_residuals_known_at_the_cutoff() -> None:
    rng = np.random.default_rng(1)
    start = pd.Timestamp("2024-01-10")
    rows = []
    for k in range(3):
        cutoff = start + pd.Timedelta(hours=24 * k)
        ds = pd.date_range(cutoff + pd.Timedelta(hours=1), periods=24, freq="h")
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": "a",
                    "ds": ds,
                    "fold": k,
                    "cutoff": cutoff,
                    "step": np.arange(1, 25),
                    "y": rng.normal(0, 1, 24),
                    "yhat": 0.0,
                }
            )
        )
    forecasts = pd.concat(rows, ignore_index=True)
    cal_ds = pd.date_range(start - pd.Timedelta(hours=24 * 6) + pd.Timedelta(hours=1), periods=24 * 6, freq="h")
    calibration = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": cal_ds,
            "cutoff": cal_ds.floor("D") - pd.Timedelta(hours=1),
            "step": np.tile(np.arange(1, 25), 6),
            "y": rng.normal(0, 1, 24 * 6),
            "yhat": 0.0,
        }
    )
    base, fallback = calibrate_folds(forecasts, calibration, [0.1, 0.9])
    assert fallback == []
    # the last fold's errors blow up: the earlier folds' quantiles do not move, the last fold's own neither
    wild = forecasts.copy()
    wild.loc[wild["fold"] == 2, "y"] *= 1000
    moved, _ = calibrate_folds(wild, calibration, [0.1, 0.9])
    np.testing.assert_allclose(moved[["q0.1", "q0.9"]], base[["q0.1", "q0.9"]])
    # ...whereas fold 1's errors do move fold 2's quantiles (fold 1's actuals are known at its cut-off)
    wild1 = forecasts.copy()
    wild1.loc[wild1["fold"] == 1, "y"] *= 1000
    moved1, _ = calibrate_folds(wild1, calibration, [0.1, 0.9])
    last = moved1["fold"] == 2
    assert (moved1.loc[last, "q0.9"] > base.loc[last, "q0.9"]).any()
    np.testing.assert_allclose(moved1.loc[~last, ["q0.1", "q0.9"]], base.loc[~last, ["q0.1", "q0.9"]])
    # without calibration windows the first fold has nothing before it: the other folds, flagged
    _, fallback = calibrate_folds(forecasts, None, [0.1, 0.9])
    assert fallback == [0]
    assert len(interval_residuals(forecasts, calibration)) == len(forecasts) + len(calibration)
