"""Calendar frequencies end to end on real data shipped with statsmodels: weekly CO2 (Mauna Loa),
monthly El Niño sea temperatures, quarterly US GDP, and a generated business-day series on the US
holiday calendar. Each runs ``tidecast run`` and ``tidecast predict`` in a subprocess and checks that
the forecasts sit on the frequency's anchors; each is also served over HTTP and monitored. The
backtests of seasonal naive and AutoETS equal statsforecast called directly on the same folds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml

from tests.e2e.cli import CLI, assert_clean_failure, tidecast

pytestmark = pytest.mark.slow


def _project(root: Path, frame: pd.DataFrame, spec: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "data.csv", index=False)
    (root / "tidecast.yaml").write_text(yaml.safe_dump({"project": root.name, **spec}, sort_keys=False))
    return root


def _run_and_predict(project: Path) -> pd.DataFrame:
    run = tidecast("run", cwd=project, timeout=600)
    assert run.returncode == 0, run.stderr + run.stdout
    assert f"registry: {project.name} v1" in run.stdout  # champion or challenger, as the gate says
    out = tidecast("predict", "--model", project.name, "--version", "1", "--output", "forecast.csv", cwd=project)
    assert out.returncode == 0, out.stderr + out.stdout
    return pd.read_csv(project / "forecast.csv", parse_dates=["ds"])


def _data(spec_frequency: str, **forecast: object) -> dict:
    return {
        "data": {"source": "data.csv", "time_column": "date", "target_column": "value", "frequency": spec_frequency},
        "forecast": {**forecast, "quantiles": [0.1, 0.9]},
        "backtest": {"folds": 2},
        "models": [
            {"name": "seasonal_naive", "kind": "seasonal_naive"},
            {"name": "autoets", "kind": "autoets"},
        ],
    }


# ------------------------------------------------------------------------------------- weekly
def test_weekly_co2_runs_and_predicts_on_saturdays(tmp_path: Path) -> None:
    co2 = sm.datasets.co2.load_pandas().data["co2"]  # weekly, Saturdays, 59 weeks missing
    tail = co2.loc["1990":]
    frame = pd.DataFrame({"date": tail.index.strftime("%Y-%m-%d"), "value": tail.to_numpy()})
    frame = frame.dropna().drop(index=[200, 201, 400])  # missing weeks: gaps for the cleaning step to fill
    spec = _data("W-SAT", input_window="104 weeks", horizon="8 weeks")
    spec["models"].append({"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 30}})
    project = _project(tmp_path / "co2", frame, spec)
    out = _run_and_predict(project)
    last = pd.Timestamp(frame["date"].iloc[-1])
    expected = pd.date_range(last + pd.Timedelta(days=7), periods=8, freq="W-SAT")
    assert out["ds"].tolist() == list(expected)
    assert (out["ds"].dt.dayofweek == 5).all()
    assert np.isfinite(out["yhat"]).all() and (out["yhat"].between(340, 380)).all()
    history = frame.tail(104).assign(date=lambda f: pd.to_datetime(f["date"]))  # the last two years have no gap
    _champion(project)
    _serve_and_check(project, history, expected)
    _monitor(project, str(expected[0].date()))


# ------------------------------------------------------------------------------- business day
def test_business_days_skip_weekends_and_us_holidays(tmp_path: Path) -> None:
    days = pd.bdate_range("2022-01-03", "2024-12-20", freq="C", holidays=_us_holidays())
    rng = np.random.default_rng(3)
    level = 100 + np.cumsum(rng.normal(0, 0.5, len(days)))
    weekday_effect = np.array([3.0, 1.0, 0.0, -1.0, -3.0])[days.dayofweek]
    frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "value": level + weekday_effect})
    frame = frame.drop(index=[100, 101])  # two missing trading days: gaps
    spec = _data("C:US", input_window="60 business days", horizon="2w")
    project = _project(tmp_path / "trading", frame, spec)
    out = _run_and_predict(project)
    expected = pd.bdate_range("2024-12-23", periods=10, freq="C", holidays=_us_holidays())
    assert out["ds"].tolist() == list(expected)
    dates = set(out["ds"].dt.strftime("%Y-%m-%d"))
    assert not dates & {"2024-12-25", "2025-01-01"}  # Christmas and New Year skipped
    assert (out["ds"].dt.dayofweek < 5).all()
    history = frame.tail(60).assign(date=lambda f: pd.to_datetime(f["date"]))  # the dropped days are years back
    _champion(project)
    _serve_and_check(project, history, expected)
    _monitor(project, "2024-12-23")


def _us_holidays() -> list[pd.Timestamp]:
    import holidays

    return sorted(pd.Timestamp(d) for d in holidays.country_holidays("US", years=range(2021, 2026)))


# -------------------------------------------------------------------------------------- monthly
def _elnino() -> pd.DataFrame:
    wide = sm.datasets.elnino.load_pandas().data
    long = wide.melt(id_vars="YEAR", var_name="month", value_name="value")
    long["date"] = pd.to_datetime(long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b")
    return long.sort_values("date")[["date", "value"]].reset_index(drop=True)


def test_monthly_elnino_on_the_15th_is_regularised_served_and_monitored(tmp_path: Path) -> None:
    frame = _elnino()
    frame["date"] = (frame["date"] + pd.Timedelta(days=14)).dt.strftime("%Y-%m-%d")  # the 15th of each month
    frame = frame.drop(index=[300])  # a missing month
    spec = _data("MS", input_window="3 years", horizon="12 months")
    spec["models"].append({"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 30}})
    project = _project(tmp_path / "elnino", frame, spec)
    out = _run_and_predict(project)
    assert out["ds"].tolist() == list(pd.date_range("2011-01-01", periods=12, freq="MS"))

    (summary,) = project.glob(".tidecast/cache/clean/*/artifacts/summary.json")
    cleaned = json.loads(summary.read_text())
    assert cleaned["regularized"] == len(frame) and cleaned["gaps_filled"] == 1
    assert "moved onto the MS anchors (e.g. 1950-01-15 -> 1950-01-01)" in cleaned["regularized_note"]

    _serve_and_check(project, _elnino().tail(36), pd.date_range("2011-01-01", periods=12, freq="MS"), gap_check=True)
    _monitor(project, "2011-01-01")


def _champion(project: Path) -> None:
    """Version 1 as the champion, by hand when the gate kept it a challenger (``tidecast promote``)."""
    run = tidecast("promote", project.name, "1", cwd=project)
    assert run.returncode == 0, run.stderr + run.stdout


def _monitor(project: Path, first: str) -> None:
    """``tidecast monitor`` on the project: it forecasts from the first step after the data."""
    monitored = tidecast("monitor", cwd=project, timeout=600)
    assert monitored.returncode == 0, monitored.stderr + monitored.stdout
    assert f"forecast {first}" in " ".join(monitored.stdout.split()), monitored.stdout


def _serve_and_check(
    project: Path, history: pd.DataFrame, expected: pd.DatetimeIndex, *, gap_check: bool = False
) -> None:
    """``tidecast serve`` on the project: /forecast on ``history`` answers on ``expected``'s anchors."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TIDECAST_ADMIN_TOKEN": "secret", "NO_COLOR": "1"}
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            time.sleep(0.5)
        body = {
            "series": [
                {
                    "id": "series",
                    "timestamps": history["date"].dt.strftime("%Y-%m-%dT00:00:00").tolist(),
                    "values": history["value"].tolist(),
                }
            ]
        }
        answer = httpx.post(f"{base}/forecast", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        stamps = pd.to_datetime([t.rstrip("Z") for t in answer.json()["forecasts"][0]["timestamps"]])
        assert list(stamps) == list(expected)
        if not gap_check:
            return
        gapped = {
            "series": [
                {
                    **body["series"][0],
                    "timestamps": [*body["series"][0]["timestamps"][:-2], "2010-11-15T00:00:00", "2010-12-01T00:00:00"],
                }
            ]
        }
        refused = httpx.post(f"{base}/forecast", json=gapped, timeout=60)
        assert refused.status_code == 422, refused.text
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


# ------------------------------------------------------------------------------------ quarterly
def test_quarterly_gdp_runs_and_predicts_on_quarter_starts(tmp_path: Path) -> None:
    macro = sm.datasets.macrodata.load_pandas().data
    dates = pd.PeriodIndex.from_fields(year=macro["year"].astype(int), quarter=macro["quarter"].astype(int), freq="Q")
    frame = pd.DataFrame({"date": dates.start_time.strftime("%Y-%m-%d"), "value": macro["realgdp"].to_numpy()})
    project = _project(tmp_path / "gdp", frame, _data("QS", input_window="4 years", horizon="2 years"))
    out = _run_and_predict(project)
    expected = pd.date_range("2009-10-01", periods=8, freq="QS")
    assert out["ds"].tolist() == list(expected)
    assert (out["ds"].dt.month.isin([1, 4, 7, 10]) & (out["ds"].dt.day == 1)).all()
    _champion(project)
    _serve_and_check(project, frame.tail(16).assign(date=lambda f: pd.to_datetime(f["date"])), expected)
    _monitor(project, "2009-10-01")


# ----------------------------------------------------------------------------------- bad input
def test_calendar_bad_input_is_one_line(tmp_path: Path) -> None:
    frame = _elnino().assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    cases = [
        ({"frequency": "MQ"}, {}, "data.frequency"),
        ({}, {"horizon": "90 minutes"}, "forecast.horizon"),
    ]
    for i, (data, forecast, needle) in enumerate(cases):
        spec = _data("MS", input_window="3 years", horizon="12 months")
        spec["data"].update(data)
        spec["forecast"].update(forecast)
        project = _project(tmp_path / f"bad{i}", frame, spec)
        assert_clean_failure(tidecast("run", cwd=project), project, needle)
    # business days on a series with weekend readings: no anchor to move them to
    days = pd.date_range("2024-01-01", periods=200, freq="D")
    daily = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "value": np.arange(200.0)})
    project = _project(tmp_path / "weekend", daily, _data("B", input_window=20, horizon=5))
    line = assert_clean_failure(tidecast("run", cwd=project), project, "data.frequency")
    assert "Saturday" in line or "apart" in line


# ------------------------------------------------------------------------ parity with statsforecast
def _parity_cases() -> list[tuple[str, pd.DataFrame, dict]]:
    macro = sm.datasets.macrodata.load_pandas().data
    quarters = pd.PeriodIndex.from_fields(
        year=macro["year"].astype(int), quarter=macro["quarter"].astype(int), freq="Q"
    )
    sun = sm.datasets.sunspots.load_pandas().data
    elnino = _elnino()
    return [
        ("QS", pd.DataFrame({"ds": quarters.start_time, "y": macro["realgdp"].to_numpy()}), {"horizon": "2 years"}),
        (
            "ME",
            pd.DataFrame({"ds": elnino["date"] + pd.offsets.MonthEnd(0), "y": elnino["value"]}),
            {"horizon": "1 year"},
        ),
        (
            "YS",
            pd.DataFrame({"ds": pd.to_datetime(sun["YEAR"].astype(int).astype(str)), "y": sun["SUNACTIVITY"]}),
            {"horizon": 5},
        ),
    ]


@pytest.mark.parametrize("freq", ["QS", "ME", "YS"])
def test_backtest_forecasts_equal_statsforecast_on_the_same_folds(freq: str) -> None:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    from tidecast.evaluation.backtest import backtest
    from tidecast.evaluation.folds import folds_for_spec
    from tidecast.models.registry import build_forecaster
    from tidecast.spec import parse_spec
    from tidecast.training import fit_context, season_length

    _, frame, forecast = next(case for case in _parity_cases() if case[0] == freq)
    df = frame.assign(unique_id="s")[["unique_id", "ds", "y"]]
    spec = parse_spec(
        {
            "project": "parity",
            "data": {"source": "x.csv", "frequency": freq},
            "forecast": {"input_window": 8, **forecast},
            "backtest": {"folds": 3, "step": 2},
        },
        root=Path("."),
    )
    m = season_length(spec)
    assert m == {"QS": 4, "ME": 12, "YS": 1}[freq]
    ctx, folds = fit_context(spec, df), folds_for_spec(df, spec)
    h = spec.forecast_steps()[1]
    for kind, direct in (("seasonal_naive", SeasonalNaive(season_length=m)), ("autoets", AutoETS(season_length=m))):
        ours = backtest(lambda kind=kind: build_forecaster(kind, kind, {}, freq=freq), df, ctx, folds).forecasts
        assert len(ours) == len(folds) * h and not ours["yhat"].isna().any()
        assert sorted(ours["step"].unique()) == list(range(1, h + 1))
        for fold in folds:
            train = df[df["ds"] <= fold.cutoff]
            theirs = StatsForecast(models=[direct], freq=freq).forecast(df=train, h=h)
            mine = ours[ours["fold"] == fold.index].sort_values("ds")
            assert mine["ds"].tolist() == list(pd.date_range(fold.test_start, periods=h, freq=freq))
            assert pd.DatetimeIndex(theirs["ds"]).equals(pd.DatetimeIndex(mine["ds"]))
            np.testing.assert_allclose(mine["yhat"].to_numpy(), theirs.iloc[:, -1].to_numpy(), rtol=1e-9, err_msg=kind)


# ------------------------------------------------------------------------------------ templates
@pytest.mark.parametrize(
    ("template", "freq", "horizon"), [("emissions-monthly", "MS", 12), ("retail-weekly", "W-SUN", 8)]
)
def test_calendar_templates_run_at_once(tmp_path: Path, template: str, freq: str, horizon: int) -> None:
    made = tidecast("init", "demo", "--template", template, cwd=tmp_path)
    assert made.returncode == 0, made.stderr + made.stdout
    project = tmp_path / "demo"
    out = _run_and_predict(project)
    for _, part in out.groupby("unique_id"):
        stamps = pd.DatetimeIndex(part["ds"].sort_values())
        assert len(stamps) == horizon
        assert list(stamps) == list(pd.date_range(stamps[0], periods=horizon, freq=freq))
        assert calendar_on_offset(stamps, freq)


def calendar_on_offset(stamps: pd.DatetimeIndex, freq: str) -> bool:
    offset = pd.tseries.frequencies.to_offset(freq)
    return all(offset.is_on_offset(t) for t in stamps)
