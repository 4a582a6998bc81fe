"""Greedy ensemble selection: a known best mix, no look-ahead across folds, the ensemble's own
recalibrated intervals, the fitted forecaster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tidecast.evaluation.ensembles import combined_points, ensemble_backtest, greedy_weights, recalibrate
from tidecast.models.base import FitContext
from tidecast.models.baselines import Naive, SeasonalNaive
from tidecast.models.ensemble import EnsembleForecaster


def test_greedy_finds_the_known_mix() -> None:
    # y is exactly 0.75 a + 0.25 b; c is noise: with a bag of 8 the exact mix is reachable
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 500))
    y = 0.75 * a + 0.25 * b
    w = greedy_weights(np.stack([a, b, c]), y, max_iterations=8, metric="rmse")
    assert w.tolist() == pytest.approx([0.75, 0.25, 0.0])
    mixed = w @ np.stack([a, b, c])
    assert np.sqrt(np.mean((y - mixed) ** 2)) < 1e-12


def test_greedy_with_replacement_and_ties() -> None:
    y = np.zeros(4)
    # +1 and -1 cancel: the best bag is half each; the constant 3 is never picked
    w = greedy_weights(np.array([[1.0] * 4, [-1.0] * 4, [3.0] * 4]), y, max_iterations=10, metric="mae")
    assert w.tolist() == [0.5, 0.5, 0.0]
    # one member better than every mix: all the weight
    w = greedy_weights(np.array([[0.1] * 4, [2.0] * 4]), y, max_iterations=5, metric="mae")
    assert w.tolist() == [1.0, 0.0]


def test_pinball_weighs_the_quantiles() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=400)
    point = np.stack([np.zeros(400), np.zeros(400)])
    # same points; member 0's 10-90 % band is calibrated, member 1's far too narrow
    quant = np.stack(
        [
            np.stack([np.full(400, -1.2816), np.full(400, 1.2816)], axis=1),
            np.stack([np.full(400, -0.01), np.full(400, 0.01)], axis=1),
        ]
    )
    w = greedy_weights(point, y, max_iterations=10, metric="pinball", quantiles=quant, levels=[0.1, 0.9])
    assert w[0] > 0.8


def _fold_frame(fold: int, y: np.ndarray, yhat: np.ndarray) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=len(y), freq="h") + pd.Timedelta(hours=100 * fold)
    return pd.DataFrame(
        {
            "unique_id": "s",
            "ds": ds,
            "fold": fold,
            "cutoff": ds[0] - pd.Timedelta(hours=1),
            "step": np.arange(1, len(y) + 1),
            "y": y,
            "yhat": yhat,
            "q0.1": yhat - 1.0,
            "q0.9": yhat + 1.0,
        }
    )


def test_no_look_ahead() -> None:
    # a is right on folds 0-1 and wrong on fold 2; b the opposite
    y = np.linspace(1, 2, 24)
    a = pd.concat([_fold_frame(0, y, y), _fold_frame(1, y, y), _fold_frame(2, y, y + 20)], ignore_index=True)
    b = pd.concat([_fold_frame(0, y, y + 5), _fold_frame(1, y, y + 5), _fold_frame(2, y, y)], ignore_index=True)
    out = ensemble_backtest({"a": a, "b": b}, metric="mae", quantiles=[0.1, 0.9], max_iterations=10)
    assert out.fold_weights[0] == {"a": 0.5, "b": 0.5}  # fold 0: equal weights
    assert out.fold_weights[1] == {"a": 1.0, "b": 0.0}  # fitted on fold 0 only
    assert out.fold_weights[2] == {"a": 1.0, "b": 0.0}  # fitted on folds 0-1: b's good fold 2 is not seen
    fc = out.forecasts
    assert np.allclose(fc.loc[fc["fold"] == 0, "yhat"], y + 2.5)
    assert np.allclose(fc.loc[fc["fold"] == 2, "yhat"], y + 20)  # scored with a's weights: honest
    assert np.allclose(fc.loc[fc["fold"] == 2, "q0.9"], y + 21)  # quantiles combined with the same weights
    # changing fold 2 (the future) changes nothing of folds 0-1
    b2 = b.copy()
    b2.loc[b2["fold"] == 2, "yhat"] += 100
    again = ensemble_backtest({"a": a, "b": b2}, metric="mae", quantiles=[0.1, 0.9], max_iterations=10)
    early = fc["fold"] < 2
    assert np.array_equal(again.forecasts.loc[early, "yhat"], fc.loc[early, "yhat"])
    # the final weights see every fold: a's miss on fold 2 outweighs b's on folds 0-1
    assert out.weights == {"a": 0.0, "b": 1.0}


def test_forecaster_combines_members() -> None:
    ds = pd.date_range("2024-01-01", periods=96, freq="h")
    y = np.sin(np.arange(96) * 2 * np.pi / 24) * 10 + 50 + np.arange(96) * 0.1
    df = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    ctx = FitContext(freq="h", horizon=24, input_window=48)
    naive, snaive = Naive().fit(df, ctx), SeasonalNaive(season_length=24).fit(df, ctx)
    ens = EnsembleForecaster({"n": Naive(), "s": SeasonalNaive(season_length=24)}, {"n": 0.25, "s": 0.75}).fit(df, ctx)
    got = ens.predict(24, quantiles=[0.1, 0.9])
    want_point = 0.25 * naive.predict(24)["yhat"].to_numpy() + 0.75 * snaive.predict(24)["yhat"].to_numpy()
    assert np.allclose(got["yhat"].to_numpy(), want_point)
    n_q = naive.predict(24, quantiles=[0.1, 0.9])
    s_q = snaive.predict(24, quantiles=[0.1, 0.9])
    assert np.allclose(got["q0.1"], 0.25 * n_q["q0.1"].to_numpy() + 0.75 * s_q["q0.1"].to_numpy())
    assert (got["q0.1"] <= got["yhat"]).all() and (got["yhat"] <= got["q0.9"]).all()
    # a zero weight keeps no member
    assert list(EnsembleForecaster({"n": Naive(), "s": Naive()}, {"n": 1.0, "s": 0.0}).members) == ["n"]


def _members_with_windows(seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Two members whose errors cancel: a = y + e, b = y - e (hourly, 6 calibration windows, 3 folds)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01 00:00")
    folds: dict[str, list[pd.DataFrame]] = {"a": [], "b": []}
    windows: dict[str, list[pd.DataFrame]] = {"a": [], "b": []}
    for k in range(9):  # days 0-5: calibration windows; 6-8: folds 0-2
        cutoff = start + pd.Timedelta(days=k) - pd.Timedelta(hours=1)
        ds = pd.date_range(cutoff + pd.Timedelta(hours=1), periods=24, freq="h")
        y, e = rng.normal(10, 1, 24), rng.normal(0, 2, 24)
        for name, yhat in (("a", y + e), ("b", y - e)):
            frame = pd.DataFrame({"unique_id": "s", "ds": ds, "cutoff": cutoff, "step": np.arange(1, 25), "y": y, "yhat": yhat})
            if k < 6:
                windows[name].append(frame)
            else:
                folds[name].append(frame.assign(fold=k - 6, **{"q0.1": yhat - 2.56, "q0.9": yhat + 2.56}))
    return (
        {n: pd.concat(f, ignore_index=True) for n, f in folds.items()},
        {n: pd.concat(w, ignore_index=True) for n, w in windows.items()},
    )


def test_combined_points_weigh_the_members_on_shared_rows() -> None:
    _, windows = _members_with_windows()
    short = windows["b"].iloc[24:]  # b lacks the first window
    out = combined_points({"a": windows["a"], "b": short}, {"a": 0.25, "b": 0.75})
    assert out is not None and len(out) == len(short)
    merged = windows["a"].iloc[24:].reset_index(drop=True)
    assert np.allclose(out["yhat"], 0.25 * merged["yhat"] + 0.75 * short["yhat"].to_numpy())
    assert combined_points({"a": windows["a"], "b": None}, {"a": 0.5, "b": 0.5}) is None
    assert combined_points({"a": windows["a"], "b": None}, {"a": 1.0, "b": 0.0}) is not None  # b weighs nothing


def test_recalibrated_intervals_are_the_ensembles_own() -> None:
    folds, windows = _members_with_windows()
    built = ensemble_backtest(folds, metric="mae", quantiles=[0.1, 0.9], max_iterations=10)
    assert built.weights == {"a": 0.5, "b": 0.5}  # the errors cancel: the ensemble is exact
    averaged = built.forecasts
    assert np.allclose(averaged["q0.9"] - averaged["q0.1"], 5.12)  # the members' widths, averaged
    forecasts, residuals = recalibrate(built, windows, [0.1, 0.9])
    assert residuals is not None and np.allclose(residuals["yhat"], residuals["y"])
    assert np.allclose(forecasts["q0.9"] - forecasts["q0.1"], 0.0)  # its own errors are zero
    assert np.allclose(forecasts["yhat"], averaged["yhat"])
    # no look-ahead: the last fold's actuals do not move the earlier folds' quantiles
    moved = {n: f.assign(y=np.where(f["fold"] == 2, f["y"] + 50.0, f["y"])) for n, f in folds.items()}
    again, _ = recalibrate(ensemble_backtest(moved, metric="mae", quantiles=[0.1, 0.9], max_iterations=10), windows, [0.1, 0.9])
    early = forecasts["fold"] < 2
    assert np.allclose(again.loc[early, "q0.9"], forecasts.loc[early, "q0.9"])
