"""Shared fixtures: small, fast projects built from tidecast.datasets (real files, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SMALL_SPEC = """\
project: small
data:
  source: data/power.csv
  time_column: timestamp
  target_column: power_kw
  frequency: 1h
  timezone: Europe/Paris
  exogenous: [{{name: temperature, known_in_future: true}}]
clean:
  gaps: {{method: interpolate, max_gap: 6h}}
  outliers: {{method: hampel, action: clip, threshold: 5, window: 6h}}
features:
  lags: [1, 2, 24]
  calendar: [hour, weekday, holiday]
  holidays_country: FR
forecast: {{input_window: 24h, horizon: 24h, quantiles: [0.1, 0.9]}}
backtest: {{folds: 2}}
selection: {{metric: mase}}
models:
{models}
"""

SMALL_MODELS = """\
  - {name: naive, kind: naive}
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
  - {name: lightgbm, kind: lightgbm, params: {n_estimators: 30, num_leaves: 15}}
"""


def make_project(root: Path, *, days: int = 60, models: str = SMALL_MODELS, extra: str = "") -> Path:
    """A project folder with hourly power data and a spec; returns the folder."""
    from tidecast.datasets import make_power

    (root / "data").mkdir(parents=True, exist_ok=True)
    make_power(days=days, seed=3, freq="1h").to_csv(root / "data" / "power.csv", index=False)
    (root / "tidecast.yaml").write_text(SMALL_SPEC.format(models=models.rstrip("\n")) + extra)
    return root


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj")


def future_temp(df: pd.DataFrame, h: int) -> pd.DataFrame:
    """The ``h`` steps (hourly) after each series of ``df`` (unique_id, ds, temp), ``temp`` held at its
    last value: the known-in-future exogenous frame a model's ``predict`` takes."""
    rows = []
    for uid, g in df.groupby("unique_id"):
        ds = pd.date_range(g["ds"].max() + pd.Timedelta("1h"), periods=h, freq="h")
        rows.append(pd.DataFrame({"unique_id": uid, "ds": ds, "temp": g["temp"].iloc[-1]}))
    return pd.concat(rows, ignore_index=True)


def mixed_meters() -> pd.DataFrame:
    """Hourly meters (series_id, timestamp, load, customer_type) for per-series selection: seasonal
    ones (the seasonal naive is exact on them), random walks (the naive wins) and one, ``late``, that
    starts too late for any backtest fold (enough for clean: input window + horizon, 36 steps)."""
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=24 * 12, freq="h")
    profile = 10 + 5 * np.sin(2 * np.pi * np.arange(24) / 24)
    frames = []
    for i in range(4):
        frames.append(pd.DataFrame({"series_id": f"seasonal_{i}", "timestamp": ds, "load": np.tile(profile, 12) * (i + 1)}))
        frames.append(pd.DataFrame({"series_id": f"walk_{i}", "timestamp": ds, "load": 50 + np.cumsum(rng.normal(0, 3, len(ds)))}))
    late = ds[-40:]
    frames.append(pd.DataFrame({"series_id": "late", "timestamp": late, "load": np.tile(profile, 12)[-40:]}))
    return pd.concat(frames, ignore_index=True).assign(customer_type="x")
