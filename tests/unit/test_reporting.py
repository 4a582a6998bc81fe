"""The pieces of the reports: permutation importance, residual analysis, the HTML builder, drift history,
and the project templates (fast; the end-to-end checks are in tests/integration/test_reporting.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tidecast.frames import ID, POINT, TARGET, TIME, future_index
from tidecast.models.base import FitContext
from tidecast.spec import parse_spec

FREQ = "1h"


def _spec(root: Path, exogenous: bool = True) -> Any:
    data = {
        "project": "unit",
        "data": {"source": "x.csv", "frequency": FREQ, **({"exogenous": ["temperature"]} if exogenous else {})},
        "forecast": {"input_window": 48, "horizon": 24},
        "models": [{"name": "snaive", "kind": "seasonal_naive"}],
    }
    return parse_spec(data, root=root)


def _frame(days: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=24 * days, freq=FREQ)
    y = 50 + 10 * np.sin(2 * np.pi * ds.hour / 24) + rng.normal(0, 1, len(ds))
    return pd.DataFrame({ID: "a", TIME: ds, TARGET: y, "temperature": rng.normal(10, 2, len(ds))})


class HourOfDay:
    """Forecasts each hour's training mean: uses the calendar only, never the recent history."""

    native_intervals = False
    name = "hour_of_day"

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> HourOfDay:
        self.freq = ctx.freq
        self.means = df.groupby(df[TIME].dt.hour)[TARGET].mean()
        self.last = df.groupby(ID)[TIME].max().reset_index()
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        base = history[[ID, TIME]] if history is not None else self.last
        out = future_index(base, h, self.freq)
        out[POINT] = self.means.reindex(out[TIME].dt.hour).to_numpy()
        return out

    def get_params(self) -> dict[str, Any]:
        return {}


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cutoff = frame[TIME].max() - pd.Timedelta(hours=24)
    return frame[frame[TIME] <= cutoff].reset_index(drop=True), frame[frame[TIME] > cutoff].reset_index(drop=True)


def test_permutation_importance_finds_what_each_model_uses(tmp_path: Path) -> None:
    from tidecast.models.baselines import SeasonalNaive
    from tidecast.reporting.explain import permutation_importance

    spec = _spec(tmp_path)
    train, test = _split(_frame())
    ctx = FitContext(freq=FREQ, horizon=24, input_window=48, exog_future=("temperature",))
    naive = SeasonalNaive(season_length=24).fit(train, ctx)
    table = permutation_importance(naive, train, test, spec, repeats=2).set_index("group")
    assert list(table.index) == ["lags", "calendar", "exogenous"]
    assert table.loc["lags", "importance"] > 0.5  # scrambled history: much worse
    assert table.loc["calendar", "importance"] == pytest.approx(0, abs=1e-9)  # it never looks at timestamps
    assert table.loc["exogenous", "importance"] == pytest.approx(0, abs=1e-9)

    calendar = HourOfDay().fit(train, ctx)
    table = permutation_importance(calendar, train, test, spec, repeats=2).set_index("group")
    assert table.loc["calendar", "importance"] > 0.5
    assert table.loc["lags", "importance"] == pytest.approx(0, abs=1e-9)


def test_permutation_importance_leaves_out_groups_the_data_lacks(tmp_path: Path) -> None:
    from tidecast.models.baselines import Naive
    from tidecast.reporting.explain import permutation_importance

    spec = _spec(tmp_path, exogenous=False)
    train, test = _split(_frame().drop(columns=["temperature"]))
    model = Naive().fit(train, FitContext(freq=FREQ, horizon=24, input_window=48))
    table = permutation_importance(model, train, test, spec, repeats=1)
    assert list(table["group"]) == ["lags", "calendar"]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # shap's own colormap set-up
def test_shap_on_a_lightgbm_model_and_feature_groups(tmp_path: Path) -> None:
    from tidecast.models.ml import LightGBMModel
    from tidecast.reporting.explain import feature_groups, is_tree_model, shap_values
    from tidecast.spec import FeatureSpec

    spec = _spec(tmp_path)
    frame = _frame(days=15)
    ctx = FitContext(
        freq=FREQ, horizon=24, input_window=48, exog_future=("temperature",), features=FeatureSpec(calendar=["hour"])
    )
    model = LightGBMModel(n_estimators=20, num_leaves=7, lags=[1, 24]).fit(frame, ctx)
    assert is_tree_model(model)
    result = shap_values(model, frame, spec, rows=200)
    assert result.values.shape == (200, len(result.data.columns))
    assert set(result.data.columns) == {"temperature", "hour", "lag1", "lag24"}
    groups = dict(zip(result.importance["feature"], result.importance["group"], strict=True))
    assert groups == {"temperature": "exogenous", "hour": "calendar", "lag1": "lags", "lag24": "lags"}
    # SHAP values add up to the prediction (TreeExplainer is exact)
    estimator = model._fcst.models_["model"]
    predicted = estimator.predict(result.data)
    assert np.allclose(result.values.sum(axis=1) + result.base_value, predicted, atol=1e-6)
    assert feature_groups(["rolling_mean_lag1_window_size3", "fourier_24_sin1", "other"], spec) == {
        "rolling_mean_lag1_window_size3": "lags",
        "fourier_24_sin1": "calendar",
        "other": "other",
    }


def test_autocorrelation_sees_structure_and_not_noise() -> None:
    from tidecast.reporting.analysis import autocorrelation

    rng = np.random.default_rng(1)
    noise = pd.DataFrame(
        {ID: "a", "fold": 0, TIME: pd.date_range("2024", periods=2000, freq="h"), "residual": rng.normal(size=2000)}
    )
    acf = autocorrelation(noise, 10)
    assert (acf["acf"].abs() < 3 * acf["bound"]).all()
    ar = noise.copy()
    values = np.zeros(2000)
    for i in range(1, 2000):
        values[i] = 0.8 * values[i - 1] + rng.normal()
    ar["residual"] = values
    assert autocorrelation(ar, 3)["acf"].iloc[0] == pytest.approx(0.8, abs=0.06)


def test_coverage_table_names_the_pairs_as_the_metrics_do() -> None:
    from tidecast.reporting.analysis import coverage_table, nominal_levels

    assert nominal_levels([0.1, 0.9, 0.25, 0.75]) == pytest.approx({"coverage_80": 0.8, "coverage_50": 0.5})
    assert nominal_levels([0.1]) == {}

    class Result:
        evaluation = type("E", (), {"aggregate": {"coverage_80": 0.7, "width_80": 3.0, "interval_score_80": 5.5}})()

    table = coverage_table({"m": Result()}, ["m"], [0.1, 0.9])
    assert table.to_dict("records") == [
        {"candidate": "m", "interval": "80 %", "nominal": pytest.approx(0.8), "coverage": 0.7, "width": 3.0,
         "interval_score": 5.5}
    ]


def test_html_document_is_self_contained() -> None:
    import plotly.graph_objects as go

    from tidecast.reporting.html import Document

    doc = Document("T <1>", subtitle="s")
    part = doc.section("a", "A")
    part.plotly(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), name="one")
    part.plotly(go.Figure(go.Bar(x=[1], y=[1])), name="two")
    part.table(pd.DataFrame({"name": ["x"], "value": [1.23456]}))
    part.empty("nothing yet")
    html = doc.render()
    assert html.count("Plotly.newPlot") == 2
    assert html.count('<script type="text/javascript">') == 1  # plotly.js inlined once
    assert "<script src=" not in html and "T &lt;1&gt;" in html and "1.23" in html and 'data-empty="1"' in html


def test_drift_history_reads_the_monitor_history(tmp_path: Path) -> None:
    from tidecast.reporting.data import drift_history

    spec = _spec(tmp_path)
    assert drift_history(spec).empty and drift_history(spec).status_line() == "no drift checks yet"
    spec.state_dir.mkdir(parents=True)
    lines = [
        {"as_of": "2024-07-01T00:00:00Z", "status": "ok", "verdict": "ok", "data_drift": False, "model_drift": False},
        {
            "as_of": "2024-07-02T00:00:00Z",
            "status": "drift",
            "verdict": "power_kw: PSI 0.4 > 0.2",
            "data_drift": True,
            "model_drift": False,
        },
    ]
    (spec.state_dir / "monitor-history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    view = drift_history(spec)
    assert len(view.history) == 4 and set(view.history["kind"]) == {"data", "model"}
    assert bool(view.latest("data")["drifted"]) and not bool(view.latest("model")["drifted"])
    assert view.status_line().startswith("data: DRIFT at 2024-07-02 00:00")


def test_scaffold_writes_a_project_that_loads(tmp_path: Path) -> None:
    from tidecast.errors import TidecastError
    from tidecast.spec import load_spec
    from tidecast.templates import TEMPLATES, scaffold

    for name in TEMPLATES:
        result = scaffold(tmp_path / f"p-{name}", template=name)
        spec = load_spec(result.path)
        assert spec.project == f"p-{name}"
        assert (result.path / "Makefile").read_text().count("\t$(TIDECAST)") >= 5
        assert "{{" not in (result.path / "README.md").read_text() + (result.path / "tidecast.yaml").read_text()
        assert any(m.kind == "custom_models:build" for m in spec.models)
        assert Path(spec.data.source).is_file()
    with pytest.raises(TidecastError, match="not empty"):
        scaffold(tmp_path / "p-power")
    with pytest.raises(TidecastError, match="cannot name a project"):
        scaffold(tmp_path / "bad name")
