"""Conformal quantiles from backtest residuals."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import ModelError
from tidecast.models import ConformalForecaster, build_forecaster, needs_conformal
from tidecast.models.base import FitContext

H = 12


def gaussian_residuals(n_folds: int, sigma_of_step, ids=("A", "B"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for uid in ids:
        for _ in range(n_folds):
            steps = np.arange(1, H + 1)
            yhat = rng.normal(10, 1, H)
            rows.append(pd.DataFrame({"unique_id": uid, "step": steps, "yhat": yhat,
                                      "y": yhat + rng.normal(0, sigma_of_step(steps))}))
    return pd.concat(rows, ignore_index=True)


class Constant:
    """A point forecaster whose forecast is 10 everywhere (no native intervals)."""

    name = "const"
    native_intervals = False

    def fit(self, df, ctx):
        self.end = df["ds"].max()
        return self

    def predict(self, h, *, history=None, X_future=None, quantiles=()):
        ds = pd.date_range(self.end + pd.Timedelta("1h"), periods=h, freq="h")
        return pd.concat([pd.DataFrame({"unique_id": u, "ds": ds, "yhat": 10.0}) for u in ("A", "B")], ignore_index=True)

    def get_params(self):
        return {}


def fitted_constant() -> Constant:
    df = pd.DataFrame({"unique_id": "A", "ds": pd.date_range("2024-01-01", periods=5, freq="h"), "y": 1.0})
    return Constant().fit(df, None)


def test_coverage_on_gaussian_residuals() -> None:
    calib = gaussian_residuals(30, lambda s: 1.0 + 0.2 * s)
    model = ConformalForecaster(fitted_constant(), calib, window=1)
    fc = model.predict(H, quantiles=(0.1, 0.9))
    assert list(fc.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"]
    # fresh draws from the same distribution: about 80 % fall inside [q0.1, q0.9]
    rng = np.random.default_rng(1)
    steps = np.tile(np.arange(1, H + 1), 2)
    sigma = 1.0 + 0.2 * steps
    hits = []
    for _ in range(200):
        y = 10 + rng.normal(0, sigma)
        hits.append(((fc["q0.1"].to_numpy() <= y) & (y <= fc["q0.9"].to_numpy())).mean())
    assert 0.74 < np.mean(hits) < 0.86
    # the interval widens with the step, as the residuals do
    width = (fc["q0.9"] - fc["q0.1"]).to_numpy()[:H]
    assert width[-1] > width[0] * 1.5


def test_auto_window_pools_neighbouring_steps() -> None:
    calib = gaussian_residuals(2, lambda s: np.ones_like(s, dtype=float))  # 4 residuals a step
    model = ConformalForecaster(fitted_constant(), calib, min_samples=20)
    assert model.window == 4  # the first step sees steps 1..5: 5 x 4 = 20 residuals
    explicit = ConformalForecaster(fitted_constant(), calib, window=0)
    assert explicit.window == 0


def test_per_series_quantiles() -> None:
    a = gaussian_residuals(60, lambda s: np.full(len(s), 0.5), ids=("A",))
    b = gaussian_residuals(60, lambda s: np.full(len(s), 3.0), ids=("B",), seed=1)
    calib = pd.concat([a, b])
    fc = ConformalForecaster(fitted_constant(), calib, window=0, per_series=True).predict(H, quantiles=(0.1, 0.9))
    width = (fc["q0.9"] - fc["q0.1"]).groupby(fc["unique_id"]).mean()
    assert width["B"] > 4 * width["A"]
    pooled = ConformalForecaster(fitted_constant(), calib, window=0, per_series=False).predict(H, quantiles=(0.1, 0.9))
    pw = (pooled["q0.9"] - pooled["q0.1"]).groupby(pooled["unique_id"]).mean()
    assert abs(pw["A"] - pw["B"]) < 1e-9


def test_steps_beyond_calibration_reuse_the_last() -> None:
    calib = gaussian_residuals(20, lambda s: np.ones(len(s)))
    fc = ConformalForecaster(fitted_constant(), calib, window=0).predict(H + 5, quantiles=(0.9,))
    a = fc[fc["unique_id"] == "A"]["q0.9"].to_numpy()
    assert np.allclose(a[H:], a[H - 1])


def test_native_intervals_kept_unless_forced() -> None:
    t = np.arange(200)
    df = pd.DataFrame({"unique_id": "A", "ds": pd.date_range("2024-01-01", periods=200, freq="h"),
                       "y": np.sin(2 * np.pi * t / 24) + np.random.default_rng(0).normal(0, 0.1, 200)})
    ctx = FitContext(freq="h", horizon=H, input_window=24)
    inner = build_forecaster("sn", "seasonal_naive", {"season_length": 24}, freq="h").fit(df, ctx)
    calib = gaussian_residuals(20, lambda s: np.full(len(s), 5.0), ids=("A",))
    native = inner.predict(H, quantiles=(0.1, 0.9))
    kept = ConformalForecaster(inner, calib).predict(H, quantiles=(0.1, 0.9))
    pd.testing.assert_frame_equal(native, kept)
    forced = ConformalForecaster(inner, calib, force=True).predict(H, quantiles=(0.1, 0.9))
    assert ((forced["q0.9"] - forced["q0.1"]) > (native["q0.9"] - native["q0.1"])).all()


def test_wrapper_is_a_forecaster_and_pickles() -> None:
    calib = gaussian_residuals(10, lambda s: np.ones(len(s)))
    model = ConformalForecaster(fitted_constant(), calib)
    assert not needs_conformal(model) and needs_conformal(fitted_constant())
    assert model.name == "const"
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(model.predict(H, quantiles=(0.2, 0.8)), again.predict(H, quantiles=(0.2, 0.8)))
    assert model.predict(H).columns.tolist() == ["unique_id", "ds", "yhat"]


def test_bad_residuals() -> None:
    with pytest.raises(ModelError, match="lack column"):
        ConformalForecaster(fitted_constant(), pd.DataFrame({"unique_id": ["A"], "step": [1]}))
    empty = pd.DataFrame({"unique_id": ["A"], "step": [1], "y": [np.nan], "yhat": [1.0]})
    with pytest.raises(ModelError, match="no usable backtest residuals"):
        ConformalForecaster(fitted_constant(), empty)


def test_symmetric_offsets_come_from_absolute_residuals() -> None:
    # skewed residuals: the signed quantiles are lopsided, the symmetric ones are plus/minus one size
    rng = np.random.default_rng(3)
    steps = np.tile(np.arange(1, H + 1), 40)
    errors = rng.exponential(1.0, len(steps)) - 0.3
    calib = pd.DataFrame({"unique_id": "A", "step": steps, "yhat": 0.0, "y": errors})
    signed = ConformalForecaster(fitted_constant(), calib, window=H).offsets([0.1, 0.5, 0.9], "A")
    model = ConformalForecaster(fitted_constant(), calib, window=H, symmetric=True)
    symmetric = model.offsets([0.1, 0.5, 0.9], "A")
    assert signed[0, 2] > -signed[0, 0] * 2  # lopsided
    np.testing.assert_allclose(symmetric[:, 0], -symmetric[:, 2])
    np.testing.assert_allclose(symmetric[:, 1], 0.0)
    # the conformal 80 % quantile of |e| (n = 480: the ceil(481 * 0.8) = 385th smallest)
    assert symmetric[0, 2] == pytest.approx(np.sort(np.abs(errors))[384])
    assert model.get_params()["conformal_symmetric"] is True
    assert pickle.loads(pickle.dumps(model)).offsets([0.1, 0.9], "A")[0, 1] == pytest.approx(symmetric[0, 2])
