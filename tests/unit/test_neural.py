"""The torch MLP on CPU: small windows, few epochs."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from tests.conftest import future_temp
from tidecast.errors import ModelError
from tidecast.models import build_forecaster, needs_conformal
from tidecast.models.base import FitContext
from tidecast.spec import FeatureSpec

pytestmark = pytest.mark.neural
torch = pytest.importorskip("torch")

W, H = 48, 24
PARAMS = {"hidden": [32], "epochs": 8, "batch_size": 64, "patience": 3, "device": "cpu"}


def hourly(n: int = 24 * 30, ids=("A", "B"), exog: bool = True) -> pd.DataFrame:
    t = np.arange(n)
    frames = []
    for i, uid in enumerate(ids):
        rng = np.random.default_rng(i)
        temp = 15 + np.cumsum(rng.normal(0, 0.3, n))
        frame = pd.DataFrame({
            "unique_id": uid, "ds": pd.date_range("2024-01-01", periods=n, freq="h"),
            "y": 50 * (i + 1) + 10 * np.sin(2 * np.pi * t / 24) + temp + rng.normal(0, 1, n),
        })
        if exog:
            frame["temp"] = temp
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def future(df: pd.DataFrame, h: int = H) -> pd.DataFrame:
    return future_temp(df, h)


CTX = FitContext(freq="h", horizon=H, input_window=W, exog_future=("temp",), seed=1,
                 features=FeatureSpec(calendar=["hour", "weekday"]))


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return hourly()


@pytest.fixture(scope="module")
def model(data):
    return build_forecaster("mlp", "mlp", PARAMS, freq="h").fit(data, CTX)


def test_mlp_fits_and_forecasts(model, data) -> None:
    fc = model.predict(H, X_future=future(data))
    assert list(fc.columns) == ["unique_id", "ds", "yhat"]
    assert len(fc) == 2 * H
    assert fc.groupby("unique_id")["ds"].min().eq(data["ds"].max() + pd.Timedelta("1h")).all()
    # the daily cycle and the level of each series are learned roughly
    truth = 50 * np.array([1, 2])[:, None] + 10 * np.sin(2 * np.pi * np.arange(H) / 24) + 15
    err = np.abs(fc["yhat"].to_numpy().reshape(2, H) - truth).mean()
    assert err < 15
    assert needs_conformal(model)
    assert 1 <= len(model.history_["val_loss"]) <= PARAMS["epochs"]


def test_mlp_shorter_horizon_and_history(model, data) -> None:
    cut = data["ds"].max() - pd.Timedelta("5D")
    recent = data[(data["ds"] <= cut)].groupby("unique_id").tail(W)
    fc = model.predict(6, history=recent, X_future=future(recent, 6))
    assert len(fc) == 12
    assert fc.groupby("unique_id")["ds"].min().eq(cut + pd.Timedelta("1h")).all()
    with pytest.raises(ModelError, match="candidate 'mlp': needs at least 48 readings of history, got 10"):
        model.predict(H, history=recent.groupby("unique_id").tail(10), X_future=future(recent))
    with pytest.raises(ModelError, match="trained for a horizon of 24 steps, asked for 25"):
        model.predict(H + 1, X_future=future(data, H + 1))
    with pytest.raises(ModelError, match="X_future"):
        model.predict(H)


def test_mlp_pickles_and_is_deterministic(model, data) -> None:
    fc = model.predict(H, X_future=future(data))
    blob = pickle.dumps(model)
    again = pickle.loads(blob)
    assert again._module is None
    pd.testing.assert_frame_equal(fc, again.predict(H, X_future=future(data)))
    twin = build_forecaster("mlp", "mlp", PARAMS, freq="h").fit(data, CTX)
    pd.testing.assert_frame_equal(fc, twin.predict(H, X_future=future(data)))


def test_mlp_without_features_or_exog() -> None:
    df = hourly(n=24 * 10, ids=("A",), exog=False)
    ctx = FitContext(freq="h", horizon=H, input_window=W)
    m = build_forecaster("m", "mlp", {**PARAMS, "epochs": 2, "stride": 3}, freq="h").fit(df, ctx)
    assert len(m.predict(H)) == H
    with pytest.raises(ModelError, match="needs at least input window \\+ horizon = 72 readings"):
        build_forecaster("m", "mlp", PARAMS, freq="h").fit(df.head(50), ctx)


def test_mlp_bad_params() -> None:
    with pytest.raises(ModelError, match="candidate 'm': dropout must lie in"):
        build_forecaster("m", "mlp", {"dropout": 1.5}, freq="h")
    with pytest.raises(ModelError, match="mlp does not accept parameter 'hiden'"):
        build_forecaster("m", "mlp", {"hiden": [3]}, freq="h")


def test_mlp_predict_ignores_row_order_duplicates_and_extra_rows(model, data) -> None:
    fut = future(data)
    fc = model.predict(H, history=data, X_future=fut)
    shuffled = data.sample(frac=1.0, random_state=1)
    noisy = pd.concat([
        fut.assign(temp=fut["temp"] + 99.0),  # overwritten below: the last duplicate wins
        fut,
        fut.assign(unique_id="unknown"),  # a series the request does not forecast
        fut.assign(ds=fut["ds"] - pd.Timedelta("30min")),  # off the grid: ignored
    ]).sample(frac=1.0, random_state=2)
    wrong = noisy["temp"] > fut["temp"].max() + 50
    noisy = pd.concat([noisy[wrong], noisy[~wrong]])  # the wrong duplicates come first
    pd.testing.assert_frame_equal(fc, model.predict(H, history=shuffled, X_future=noisy))
    # each series alone gives what it gets in the batch (time features are computed per distinct end)
    for uid, g in data.groupby("unique_id"):
        alone = model.predict(H, history=g, X_future=fut[fut["unique_id"] == uid])
        pd.testing.assert_frame_equal(alone, fc[fc["unique_id"] == uid].reset_index(drop=True))


def test_mlp_predict_with_series_ending_apart_and_tz_aware_history(model, data) -> None:
    a = data[data["unique_id"] == "A"]
    b = data[data["unique_id"] == "B"].iloc[:-7]  # ends 7 hours earlier
    both = pd.concat([a, b], ignore_index=True)
    fc = model.predict(5, history=both, X_future=future(both, 5))
    assert fc.groupby("unique_id")["ds"].min().to_dict() == {
        "A": a["ds"].max() + pd.Timedelta("1h"), "B": b["ds"].max() + pd.Timedelta("1h")
    }
    aware = both.assign(ds=both["ds"].dt.tz_localize("UTC"))
    fut = future(both, 5)
    fc_aware = model.predict(5, history=aware, X_future=fut.assign(ds=fut["ds"].dt.tz_localize("UTC")))
    assert str(fc_aware["ds"].dt.tz) == "UTC"
    np.testing.assert_allclose(fc_aware["yhat"], fc["yhat"])
    hole = fut[~((fut["unique_id"] == "B") & (fut["ds"] == fut["ds"].max()))]
    hole = hole[~((hole["unique_id"] == "B") & (hole["ds"] == b["ds"].max() + pd.Timedelta("3h")))]
    with pytest.raises(ModelError, match=r"X_future has no value for temp at .* of series 'B'"):
        model.predict(5, history=both, X_future=hole)
