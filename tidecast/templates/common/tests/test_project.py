"""This project's own checks: the spec is valid, the data matches it, the plugin model keeps the contract.

Run with ``make test`` (or ``python -m pytest -q tests``); it takes a few seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from custom_models import build  # noqa: E402

from tidecast.models.base import FitContext  # noqa: E402
from tidecast.spec import load_spec  # noqa: E402


def test_the_spec_is_valid_and_the_data_has_its_columns() -> None:
    spec = load_spec(ROOT)
    data = pd.read_csv(spec.data.source, nrows=5)
    wanted = [spec.data.time_column, spec.data.target_column, *(c.name for c in spec.data.exogenous_columns)]
    if spec.data.series_column:
        wanted.append(spec.data.series_column)
    assert set(wanted) <= set(data.columns)


def _frame(days: int = 10) -> pd.DataFrame:
    ds = pd.date_range("2024-01-01", periods=24 * days, freq="h")
    y = 50 + 10 * np.sin(2 * np.pi * ds.hour / 24) + np.random.default_rng(0).normal(0, 1, len(ds))
    return pd.DataFrame({"unique_id": "a", "ds": ds, "y": y})


def test_the_plugin_model_keeps_the_forecaster_contract() -> None:
    frame = _frame()
    model = build(season_length=24, seasons=3)
    model.name = "profile"
    assert model.fit(frame, FitContext(freq="h", horizon=24, input_window=48)) is model
    out = model.predict(24, quantiles=[0.1, 0.9])
    assert list(out.columns) == ["unique_id", "ds", "yhat", "q0.1", "q0.9"]
    assert len(out) == 24 and out["ds"].iloc[0] == frame["ds"].iloc[-1] + pd.Timedelta(hours=1)
    assert (out["q0.1"] <= out["yhat"]).all() and (out["yhat"] <= out["q0.9"]).all()
    # serving: the forecast starts after the history it is given
    history = frame.iloc[:-24].tail(72)
    served = model.predict(24, history=history)
    assert served["ds"].iloc[0] == history["ds"].iloc[-1] + pd.Timedelta(hours=1)
