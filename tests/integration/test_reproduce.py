"""``reproduce`` judged on the right scale: every built-in kind, ratio metrics, a half-hourly series.

Each test trains a tiny half-hourly project through the real pipeline into a real MLflow store,
then re-runs it with :func:`tidecast.tracking.reproduce.reproduce`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SMALL_SPEC
from tidecast.models.registry import BUILTINS

#: Small, fast parameters for every built-in kind (a new kind must be added here).
KIND_PARAMS = {
    "naive": "{}",
    "seasonal_naive": "{season_length: 1d}",
    "window_average": "{window_size: 1d}",
    "autoets": "{season_length: 1d}",
    "autoarima": "{season_length: 1}",
    "autotheta": "{season_length: 1d}",
    "mstl": "{season_length: [1d]}",
    "lightgbm": "{n_estimators: 20, num_leaves: 7}",
    "sklearn": "{estimator: 'sklearn.linear_model:Ridge', alpha: 1.0}",
    "mlp": "{hidden: [8], epochs: 2, patience: 1}",
    "croston": "{}",
    "adida": "{}",
    "imapa": "{}",
    "tsb": "{}",
}


def half_hourly_project(root: Path, models: str, *, days: int = 9) -> Path:
    from tidecast.datasets import make_power

    (root / "data").mkdir(parents=True, exist_ok=True)
    make_power(days=days, seed=5, freq="30min").to_csv(root / "data" / "power.csv", index=False)
    text = SMALL_SPEC.format(models=models.rstrip("\n"))
    text = text.replace("frequency: 1h", "frequency: 30min").replace("lags: [1, 2, 24]", "lags: [1, 2, 48]")
    text = text.replace("forecast: {input_window: 24h, horizon: 24h", "forecast: {input_window: 24h, horizon: 12h")
    (root / "tidecast.yaml").write_text(text.replace("selection: {metric: mase}", "selection: {metric: mape}"))
    return root


def train(root: Path, mlflow_template: Path) -> str:
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import run
    from tidecast.spec import load_spec

    (root / ".tidecast").mkdir(exist_ok=True)
    shutil.copy(mlflow_template, root / ".tidecast" / "mlflow.db")
    result = run(training_pipeline(report=False), load_spec(root))
    return str(result.outputs["track"]["run_id"])


@pytest.fixture(autouse=True)
def _own_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)


def test_every_builtin_kind_has_parameters_here() -> None:
    assert set(KIND_PARAMS) == set(BUILTINS)


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_every_builtin_kind_reproduces(kind: str, tmp_path: Path, mlflow_template: Path) -> None:
    from tidecast.tracking.reproduce import reproduce

    root = half_hourly_project(tmp_path / kind, f"  - {{name: {kind}, kind: {kind}, params: {KIND_PARAMS[kind]}}}\n")
    run_id = train(root, mlflow_template)
    report = reproduce(root, run_id)
    assert report.matches, report.comparison[~report.comparison["match"]].to_string()
    assert report.winner_now == kind
    ratios = report.comparison[report.comparison["metric"].isin(["mape", "smape", "wape"])]
    assert set(ratios["scope"]) == {"backtest", "holdout"} and len(ratios) == 6
    assert all(row["same"] for row in report.inputs if row["input"] in ("data", "spec", "libraries", "seed"))


def test_ratio_metrics_are_judged_on_their_own_scale() -> None:
    from tidecast.tracking.reproduce import close, tolerance

    # the 10 decimals of leaderboard.json cost a MAPE of 0.007 a relative 7e-9: still the same figure
    rtol, atol = tolerance("mape")
    assert close(0.0071234567891234, 0.0071234568, rtol, atol)
    # a real change in the 4th significant digit is not
    assert not close(0.007123, 0.007124, rtol, atol)
    # a bias near zero in kW: judged against the target's size, not relative to ~0
    rtol, atol = tolerance("bias", scale=50.0)
    assert atol == pytest.approx(5e-8) and close(1e-12, -2e-8, rtol, atol)
    assert not close(1e-3, -1e-3, rtol, atol)
    assert tolerance("coverage_80", scale=50.0) == tolerance("mape")
