"""LightGBM's recursive forecast calls the booster directly (issue 19): the same numbers as the
scikit-learn wrapper, which it bypasses for a step's few rows, and the fitted model is untouched."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd

from tidecast.models._lightgbm import BoosterPredict
from tidecast.models.base import FitContext
from tidecast.models.ml import LightGBMModel
from tidecast.spec import FeatureSpec

H = 24


def _data(n_series: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ds = pd.date_range("2024-03-01", periods=24 * 20, freq="h")
    shape = 1 + 0.4 * np.sin(2 * np.pi * np.asarray(ds.hour) / 24)
    return pd.concat(
        [pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": (i + 1) * shape + 0.1 * rng.standard_normal(len(ds))})
         for i in range(n_series)],
        ignore_index=True,
    )


def _ctx() -> FitContext:
    features = FeatureSpec(lags=[1, 2, 24], rolling=[{"window": 3, "stats": ["mean", "std"]}], calendar=["hour", "weekday"])
    return FitContext(freq="h", horizon=H, input_window=48, seed=0, features=features)


def _wrapper_forecast(model: LightGBMModel, **kwargs: object) -> pd.DataFrame:
    fast = LightGBMModel._forecaster
    try:
        LightGBMModel._forecaster = lambda self: self._fcst  # type: ignore[method-assign]
        return model.predict(H, **kwargs)  # type: ignore[arg-type]
    finally:
        LightGBMModel._forecaster = fast  # type: ignore[method-assign]


def test_the_booster_path_forecasts_what_the_wrapper_does() -> None:
    data = _data(3)
    model = LightGBMModel(n_estimators=30, num_leaves=7).fit(data, _ctx())
    assert isinstance(model._forecaster().models_["model"], BoosterPredict)
    history = data.groupby("unique_id").tail(60).reset_index(drop=True)
    for kwargs in ({}, {"history": history}):
        fast = model.predict(H, **kwargs)
        slow = _wrapper_forecast(model, **kwargs)
        pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    # the fitted model keeps its LGBMRegressor (SHAP, pickles): the swap lives in a copy
    assert type(model._fcst.models_["model"]).__name__ == "LGBMRegressor"
    again = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(again.predict(H), model.predict(H), check_exact=True)


def test_many_rows_go_through_the_wrapper() -> None:
    class Wrapper:
        n_features_in_ = 2

        def predict(self, X: object) -> str:
            return "wrapper"

    rows = pd.DataFrame({"a": np.zeros(BoosterPredict.MAX_ROWS + 1), "b": np.zeros(BoosterPredict.MAX_ROWS + 1)})
    assert BoosterPredict(Wrapper()).predict(rows) == "wrapper"
    assert BoosterPredict(Wrapper()).predict(rows.astype({"a": "category"}).head(3)) == "wrapper"
