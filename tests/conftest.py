"""Shared fixtures: small, fast projects built from tidecast.datasets (real files, no mocks)."""

from __future__ import annotations

from pathlib import Path

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
