"""The monitor says when it could not look (issue 15, item 4), through the real CLI.

One project of two hourly meters (``a``, ``b``) is trained once by ``tidecast run`` on its first 30
days; the data file then grows to 36 days and each test runs ``tidecast monitor --fail-on-drift
--no-retrain`` on a case where a check cannot run: too few points in the window, a missing column,
a new series, a feed that stopped. Each must give its state (``unknown``/``stale``) with the reason
and the documented exit code (3 drift, 4 stale, 5 unknown, 0 ok), where tidecast used to answer
``ok`` and exit 0. The tests run in order on the one project and restore what they change.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e.cli import tidecast

SPEC = """\
project: meters-watch
data:
  source: data/meters.csv
  time_column: timestamp
  target_column: power_kw
  series_column: meter
  frequency: 1h
  timezone: Europe/Paris
  exogenous: [{name: temperature, known_in_future: false}]
clean:
  gaps: {method: interpolate, max_gap: 6h}
forecast: {input_window: 24h, horizon: 24h, quantiles: [0.1, 0.9]}
backtest: {folds: 2}
selection: {metric: mase}
models:
  - {name: naive, kind: naive}
  - {name: seasonal_naive, kind: seasonal_naive, params: {season_length: 1d}}
monitoring:  # weather moves a lot from day to day: docs/monitoring.md's advice, wider thresholds for it
  data_drift: {columns: {temperature: {wasserstein: 6.0, profile_shift: 2.0}}}
"""
TRAIN_END = pd.Timestamp("2024-01-31")  # the training sees the readings before this (the file's local times)
FLAGS = ("--fail-on-drift", "--no-retrain", "--format", "json")


def meter(name: str, seed: int, scale: float) -> pd.DataFrame:
    from tidecast.datasets import make_power

    frame = make_power(days=36, seed=seed, freq="1h")
    return frame.assign(meter=name, power_kw=frame["power_kw"] * scale)[["meter", "timestamp", "power_kw", "temperature"]]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("truth-monitor") / "p"
    (root / "data").mkdir(parents=True)
    (root / "tidecast.yaml").write_text(SPEC)
    full = pd.concat([meter("a", 3, 1.0), meter("b", 4, 0.5)], ignore_index=True)
    full[pd.to_datetime(full["timestamp"]) < TRAIN_END].to_csv(root / "data" / "meters.csv", index=False)
    trained = tidecast("run", cwd=root)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    full.to_csv(root / "data" / "meters.csv", index=False)  # the readings keep arriving
    full.to_csv(root / "full.csv", index=False)
    return root


def monitor(root: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = tidecast("monitor", *args, cwd=root)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 2, result.stderr  # bad input is not what these cases are
    return result, json.loads(result.stdout)


def checks(report: dict[str, Any], state: str) -> dict[str, str]:
    return {c["subject"]: c["reason"] for c in report["checks"] if c["state"] == state}


def write(root: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(root / "data" / "meters.csv", index=False)


def full(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "full.csv")


def test_the_first_run_cannot_judge_the_model_then_all_checks_run(project: Path) -> None:
    # no forecast of v1 has been logged yet: the model check cannot run, the verdict says so
    first, report = monitor(project, "--as-of", "2024-02-01 00:00", *FLAGS)
    assert first.returncode == 5, first.stdout[-2000:]
    assert report["state"] == "unknown" and report["status"] == "unknown"
    assert checks(report, "unknown") == {"v1": "no forecast of v1 in the last 7 window(s): nothing to score yet"}
    assert report["verdict"] == "unknown: no forecast of v1 in the last 7 window(s): nothing to score yet (v1)"
    # the next day the forecast logged by the first run has its actuals: every check runs, ok, exit 0
    second, report = monitor(project, "--as-of", "2024-02-02 00:00", *FLAGS)
    assert second.returncode == 0, second.stdout[-3000:]
    assert report["state"] == "ok" and report["verdict"] == "ok"
    assert {c["state"] for c in report["checks"]} == {"ok"} and len(report["checks"]) == 6  # feed, 2x2 columns, model


def test_too_few_points_in_the_window_is_unknown_with_the_counts(project: Path) -> None:
    frame = full(project)
    ts = pd.to_datetime(frame["timestamp"])
    # meter b's last 18 hours before as_of (2024-02-03 00:00 Paris time) have not arrived: 6 of 24 points
    late = (frame["meter"] == "b") & (ts >= pd.Timestamp("2024-02-02 06:00"))
    write(project, frame[~late])
    try:
        result, report = monitor(project, "--as-of", "2024-02-03 00:00", *FLAGS)
    finally:
        write(project, frame)
    assert result.returncode == 5, result.stdout[-3000:]
    assert report["state"] == "unknown"
    few = "6 of 24 points in the window, at least 12 needed"
    unknown = checks(report, "unknown")
    assert unknown["y[b]"] == few and unknown["temperature[b]"] == few
    assert "y[a]" in checks(report, "ok") and "feed" not in unknown  # the feed still runs: b has actuals today
    assert f"unknown: {few} (y[b], temperature[b])" in report["verdict"]
    columns = {(c["column"], c["series"]): c for c in report["data_drift"]["columns"]}
    assert columns[("y", "b")]["state"] == "unknown" and columns[("y", "b")]["tests"] == {}


def test_a_missing_column_is_unknown_and_named(project: Path) -> None:
    frame = full(project)
    # the weather feed stopped filling its column: the header is there, the values since 2024-02-02 are not
    blank = frame.copy()
    blank.loc[pd.to_datetime(blank["timestamp"]) >= pd.Timestamp("2024-02-02"), "temperature"] = None
    write(project, blank)
    try:
        result, report = monitor(project, "--as-of", "2024-02-04 00:00", *FLAGS)
    finally:
        write(project, frame)
    assert result.returncode == 5, result.stdout[-3000:]
    unknown = checks(report, "unknown")
    reason = "column 'temperature' has no value in the window (0 of 24 points, at least 12 needed)"
    assert unknown == {"temperature[a]": reason, "temperature[b]": reason}
    assert report["verdict"] == f"unknown: {reason} (temperature[a], temperature[b])"


def test_a_new_series_is_unknown_and_named_and_drift_takes_precedence(project: Path) -> None:
    frame = full(project)
    newcomer = meter("c", 9, 2.0)
    newcomer = newcomer[pd.to_datetime(newcomer["timestamp"]) >= pd.Timestamp("2024-01-20")]
    write(project, pd.concat([frame, newcomer], ignore_index=True))
    try:
        result, report = monitor(project, "--as-of", "2024-02-05 00:00", *FLAGS)
        reason = "series 'c' is new since training: not in the champion's reference profile"
        assert result.returncode == 5, result.stdout[-3000:]
        assert checks(report, "unknown") == {"y[c]": reason, "temperature[c]": reason}
        assert report["verdict"] == f"unknown: {reason} (y[c], temperature[c])"
        # the same run with meter a's load up 60 %: drift wins over unknown (exit 3), the reason stays
        shifted = frame.copy()
        when = pd.to_datetime(shifted["timestamp"]) >= pd.Timestamp("2024-02-04")
        shifted.loc[when & (shifted["meter"] == "a"), "power_kw"] *= 1.6
        write(project, pd.concat([shifted, newcomer], ignore_index=True))
        result, report = monitor(project, "--as-of", "2024-02-05 00:00", *FLAGS)
    finally:
        write(project, frame)
    assert result.returncode == 3, result.stdout[-3000:]
    assert report["state"] == "drift" and report["status"] == "drift"
    assert report["verdict"].startswith("data drift: y[a] ") and f"unknown: {reason} (y[c], temperature[c])" in report["verdict"]
    assert "y[a]" in checks(report, "drift")


def test_a_feed_that_stopped_is_stale(project: Path) -> None:
    # the data ends on 2024-02-05 22:00 UTC; four days later nothing has arrived
    result, report = monitor(project, "--as-of", "2024-02-10 00:00", *FLAGS)
    assert result.returncode == 4, result.stdout[-3000:]
    assert report["state"] == "stale" and report["status"] == "stale"
    stale = checks(report, "stale")
    assert stale["actuals"] == (
        "2 of 2 series stopped, newest actual: 'a' 2024-02-05 22:00 UTC, 'b' 2024-02-05 22:00 UTC, older than the "
        "check window (1d) before as_of 2024-02-09 23:00 UTC: the feed stopped"
    )
    unknown = checks(report, "unknown")
    assert unknown["y[a]"].startswith("newest actual 2024-02-05 22:00 is older than the check window (2024-02-08 23:00")
    assert report["verdict"].startswith("stale: 2 of 2 series stopped") and "; unknown: newest actual" in report["verdict"]
    # without --as-of the feed is judged against now: these 2024 readings stopped long ago
    now, report = monitor(project, *FLAGS)
    assert now.returncode == 4 and report["state"] == "stale", now.stdout[-3000:]
    assert "before now (" in checks(report, "stale")["actuals"]
    # the table says it too, and without --fail-on-drift the exit code stays 0
    table = tidecast("monitor", "--as-of", "2024-02-10 00:00", "--no-retrain", cwd=project)
    assert table.returncode == 0, table.stderr
    assert "verdict: stale — stale: 2 of 2 series stopped" in table.stdout
    assert "feed check (actuals): stale" in table.stdout


def test_history_mlflow_and_dashboard_carry_the_states(project: Path) -> None:
    from mlflow import MlflowClient

    from tidecast.reporting.dashboard import drift_kpi
    from tidecast.reporting.data import drift_history
    from tidecast.serving.history import read_history
    from tidecast.spec import load_spec
    from tidecast.tracking.store import tracking_uri

    spec = load_spec(project)
    history = read_history(spec)
    assert [h["state"] for h in history] == ["unknown", "ok", "unknown", "unknown", "unknown", "drift", "stale", "stale", "stale"]
    assert history[-1]["data_check"] == history[-1]["model_check"] == history[-1]["feed_check"] == "stale"
    view = drift_history(spec)
    value, detail, tone = drift_kpi(view)
    assert (value, tone) == ("STALE", "bad") and "stale" in detail  # never "ok" for checks that did not run
    assert view.status_line().startswith("data: STALE at ")
    uri = tracking_uri(spec)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("meters-watch-monitor")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["tidecast.state"] for r in runs] == [h["state"] for h in history]
    last = runs[-1].data
    assert last.tags["tidecast.check.feed.actuals"].startswith("stale: 2 of 2 series stopped")
    assert last.tags["tidecast.check.data.y.a"].startswith("unknown: newest actual")
    assert last.metrics["checks_stale"] == 1.0 and last.metrics["checks_unknown"] >= 4
    first = runs[0].data
    assert first.tags["tidecast.check.model.v1"] == "unknown: no forecast of v1 in the last 7 window(s): nothing to score yet"
    local = client.download_artifacts(runs[-1].info.run_id, "monitor_report.json", str(project / ".tidecast"))
    report = json.loads(Path(local).read_text())
    assert report["state"] == "stale" and any(c["reason"] for c in report["checks"])
