"""Per-series scaling of the global ML models (``scaling``): series of different levels share one model."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import ModelError
from tidecast.models.base import FitContext
from tidecast.models.ml import LightGBMModel
from tidecast.spec import FeatureSpec

H = 24


def _levels(levels: dict[str, float], days: int = 21, seed: int = 0) -> pd.DataFrame:
    """Series of one daily shape at very different levels (a household next to a substation)."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-03-01", periods=24 * days, freq="h")
    shape = 1 + 0.4 * np.sin(2 * np.pi * np.asarray(ds.hour) / 24)
    frames = [
        pd.DataFrame({"unique_id": uid, "ds": ds, "y": level * shape * (1 + 0.03 * rng.standard_normal(len(ds)))})
        for uid, level in levels.items()
    ]
    return pd.concat(frames, ignore_index=True)


def _ctx() -> FitContext:
    return FitContext(freq="h", horizon=H, input_window=48, seed=0, features=FeatureSpec(lags=[1, 24], calendar=["hour"]))


def _relative_error(model: LightGBMModel, train: pd.DataFrame, actual: pd.DataFrame) -> pd.Series:
    pred = model.predict(H).merge(actual, on=["unique_id", "ds"])
    return (pred["yhat"] - pred["y"]).abs().groupby(pred["unique_id"]).mean() / actual.groupby("unique_id")["y"].mean()


def test_auto_scaling_fits_small_and_large_series_alike() -> None:
    data = _levels({"house": 1.0, "street": 30.0, "feeder": 400.0, "substation": 5000.0})
    cut = data["ds"].max() - pd.Timedelta(hours=H)
    train, actual = data[data["ds"] <= cut], data[data["ds"] > cut]
    scaled = LightGBMModel(n_estimators=40).fit(train, _ctx())
    raw = LightGBMModel(n_estimators=40, scaling="none").fit(train, _ctx())
    err_scaled, err_raw = _relative_error(scaled, train, actual), _relative_error(raw, train, actual)
    assert err_scaled.max() < 0.1  # every series within 10 % of its level
    assert err_raw["house"] > 5 * err_scaled["house"]  # unscaled, the small series drown in the big ones' splits
    assert scaled.get_params()["scaling"] == "auto" and raw.get_params()["scaling"] == "none"


def test_the_forecast_does_not_depend_on_how_much_history_is_sent() -> None:
    data = _levels({"a": 2.0, "b": 200.0})
    model = LightGBMModel(n_estimators=20).fit(data, _ctx())
    stored = model.predict(H)
    for days in (2, 7):  # the training statistics scale a known series, not those of the history sent
        recent = data.groupby("unique_id").tail(24 * days)
        again = model.predict(H, history=recent)
        np.testing.assert_allclose(again["yhat"], stored["yhat"], rtol=1e-9)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(clone.predict(H)["yhat"], stored["yhat"], rtol=1e-12)


def test_a_new_series_is_scaled_by_its_own_history() -> None:
    data = _levels({"a": 2.0, "b": 200.0})
    model = LightGBMModel(n_estimators=30).fit(data, _ctx())
    newcomer = _levels({"new": 50.0}, days=3, seed=4)
    forecast = model.predict(H, history=newcomer)
    assert set(forecast["unique_id"]) == {"new"}
    assert 0.7 * 50 < forecast["yhat"].mean() < 1.3 * 50  # at its own level, not at a or b's


def test_one_series_is_not_scaled_and_a_bad_value_is_a_model_error() -> None:
    single = _levels({"only": 10.0})
    model = LightGBMModel(n_estimators=5).fit(single, _ctx())
    assert model._stats is None  # auto: nothing to share between series
    assert LightGBMModel(n_estimators=5, scaling="per_series").fit(single, _ctx())._stats is not None
    with pytest.raises(ModelError, match="scaling must be one of auto, none, per_series"):
        LightGBMModel(scaling="global")
