"""Data and model drift statistics: PSI/KS/Wasserstein/profile shift, the reference profile, the alarm tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.errors import SpecError, TrackingError
from tidecast.evaluation.drift_stats import (
    effective_size,
    ks_test,
    lag1_autocorrelation,
    population_stability_index,
    profile_shift,
    seasonal_cells,
    wasserstein,
)
from tidecast.monitoring.drift import detect_drift
from tidecast.monitoring.model_drift import assess, baseline_from_tags, model_drift, score_windows
from tidecast.monitoring.retrain import retrain_policy
from tidecast.serving.store import PredictionStore
from tidecast.spec import ModelDriftSpec, parse_spec
from tidecast.training.reference import read_reference, reference_profile, write_reference


def make_spec(tmp_path: Path, **monitoring):
    data = {
        "project": "drifty",
        "data": {"source": "x.csv", "frequency": "1h", "exogenous": ["temperature"]},
        "forecast": {"input_window": 24, "horizon": 24},
        "models": [{"name": "snaive", "kind": "seasonal_naive", "params": {"season_length": 24}}],
        "monitoring": monitoring,
    }
    return parse_spec(data, root=tmp_path)


def make_frame(days: int = 42, seed: int = 0, start: str = "2024-03-04") -> pd.DataFrame:
    """Hourly load with a daily shape (lower on weekends) and AR noise, and a temperature column."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(start, periods=days * 24, freq="h")
    hour = ds.hour.to_numpy()
    weekend = ds.weekday.to_numpy() >= 5
    shape = 30 + 15 * np.exp(-0.5 * ((hour - 9) / 2.0) ** 2) + 20 * np.exp(-0.5 * ((hour - 19) / 2.0) ** 2)
    shape = np.where(weekend, 0.7 * shape, shape)
    noise = np.zeros(len(ds))
    for i in range(1, len(ds)):
        noise[i] = 0.6 * noise[i - 1] + rng.normal(0, 1.5)
    temperature = 15 + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.8, len(ds))
    return pd.DataFrame({"unique_id": "series", "ds": ds, "y": shape + noise, "temperature": temperature})


# ------------------------------------------------------------------------------- the statistics
def test_psi_ks_wasserstein_on_known_samples() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    same, shifted = rng.normal(size=400), rng.normal(0.8, 1.0, size=400)
    assert population_stability_index(ref, same) < 0.05
    assert population_stability_index(ref, shifted) > 0.3
    assert ks_test(ref, same)[1] > 0.01
    assert ks_test(ref, shifted)[1] < 1e-6
    assert wasserstein(ref, shifted, scale=1.0) == pytest.approx(0.8, abs=0.15)
    assert np.isnan(population_stability_index(ref, []))
    # autocorrelation: 400 values with rho 0.9 are worth about 21 independent ones, the p-value rises
    assert effective_size(400, 0.9) == pytest.approx(400 * 0.1 / 1.9)
    assert ks_test(ref, shifted, rho=0.9)[1] > ks_test(ref, shifted)[1]
    walk = np.cumsum(rng.normal(size=2000))
    assert lag1_autocorrelation(walk) > 0.9
    assert abs(lag1_autocorrelation(rng.normal(size=2000))) < 0.1


def test_profile_shift_is_relative_to_the_scale() -> None:
    residuals = np.array([3.0, 3.0, -1.0, -1.0])
    cells = np.array([0, 0, 1, 1])
    assert profile_shift(residuals, cells, scale=10.0) == pytest.approx((3 + 1) / 2 / 10)


def test_seasonal_cells_split_days_off_and_follow_the_time_zone() -> None:
    ds = pd.Series(pd.to_datetime(["2024-07-12 08:00", "2024-07-13 08:00", "2024-07-14 08:00"]))  # Fri, Sat, Sun (holiday)
    assert seasonal_cells(ds, "hour", None, None).tolist() == [8, 32, 32]
    assert seasonal_cells(ds, "hour", "Europe/Paris", None).tolist() == [10, 34, 34]
    monday = pd.Series(pd.to_datetime(["2024-07-15 08:00", "2024-05-01 08:00"]))  # a Monday, May Day (a Wednesday)
    assert seasonal_cells(monday, "hour", None, "FR").tolist() == [8, 32]
    assert seasonal_cells(monday, "weekday", None, None).tolist() == [0, 2]


# ------------------------------------------------------------------------------- the reference
def test_reference_profile_round_trips_and_holds_calibration(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    frame = make_frame()
    ref = reference_profile(frame, spec)
    assert ref["columns"] == ["y", "temperature"] and ref["profile_kind"] == "hour"
    col = ref["groups"]["series"]["y"]
    assert len(col["profile"]) == 48 and len(col["quantiles"]) == 200
    assert col["n"] == 28 * 24  # reference_window: 28d of the 42 days
    assert col["calibration"]["windows"] == 28  # one window per day of that stretch
    assert ref["mase_scale"]["series"] > 0
    path = write_reference(ref, tmp_path / "ref.json")
    assert read_reference(path) == ref
    (tmp_path / "old.json").write_text('{"version": 0}')
    with pytest.raises(TrackingError, match=r"version 0.*retrain it"):
        read_reference(tmp_path / "old.json")


def test_detects_a_level_shift_and_not_the_unchanged_continuation(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    frame = make_frame(days=56)
    train_end = frame["ds"].min() + pd.Timedelta(days=42)
    ref = reference_profile(frame[frame["ds"] < train_end], spec)
    drift_spec = spec.monitoring.data_drift
    alarms = 0
    for day in range(1, 15):
        as_of = train_end + pd.Timedelta(days=day)
        alarms += detect_drift(frame[frame["ds"] < as_of], ref, drift_spec, as_of=as_of).drift
    assert alarms == 0

    shifted = frame.copy()
    shifted.loc[shifted["ds"] >= train_end, "y"] *= 1.3
    as_of = train_end + pd.Timedelta(days=1)
    report = detect_drift(shifted[shifted["ds"] < as_of], ref, drift_spec, as_of=as_of)
    assert report.drift
    summary = report.summary()
    assert summary.startswith("data drift: y ") and "daily profile shift" in summary
    assert "temperature" not in summary  # the exogenous column did not move
    y = next(c for c in report.columns if c.column == "y")
    assert y.tests["profile"].fired and y.tests["profile"].value == pytest.approx(0.3, abs=0.08)
    metrics = report.metrics()
    assert metrics["data_drift"] == 1.0 and "drift.y.profile" in metrics and "drift.temperature.psi" in metrics


def test_per_column_thresholds_ignore_and_bad_keys(tmp_path: Path) -> None:
    frame = make_frame(days=43)
    train_end = frame["ds"].min() + pd.Timedelta(days=42)
    shifted = frame.copy()
    shifted.loc[shifted["ds"] >= train_end, "temperature"] += 10
    as_of = train_end + pd.Timedelta(days=1)
    spec = make_spec(tmp_path)
    ref = reference_profile(frame[frame["ds"] < train_end], spec)
    assert "temperature" in detect_drift(shifted, ref, spec.monitoring.data_drift, as_of=as_of).summary()
    ignored = make_spec(tmp_path, data_drift={"columns": {"temperature": {"ignore": 1}}})
    assert not detect_drift(shifted, ref, ignored.monitoring.data_drift, as_of=as_of).drift
    typo = make_spec(tmp_path, data_drift={"columns": {"temperature": {"pis": 0.5}}})
    with pytest.raises(SpecError, match=r"columns\.temperature: unknown threshold 'pis' \(did you mean 'psi'\?\)"):
        detect_drift(shifted, ref, typo.monitoring.data_drift, as_of=as_of)


def test_a_window_without_enough_points_is_not_tested(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    frame = make_frame(days=43)
    train_end = frame["ds"].min() + pd.Timedelta(days=42)
    ref = reference_profile(frame[frame["ds"] < train_end], spec)
    as_of = train_end + pd.Timedelta(days=1)
    late = frame[frame["ds"] < train_end + pd.Timedelta(hours=6)]  # 6 of 24 hours arrived
    report = detect_drift(late, ref, spec.monitoring.data_drift, as_of=as_of)
    assert not report.drift and report.state == "unknown"
    assert report.summary() == "unknown: 2 of 2 columns not tested"  # never "ok"
    for col in report.columns:
        assert col.state == "unknown" and col.reason == "6 of 24 points in the window, at least 12 needed"
    assert any("6 of 24 points in the window, at least 12 needed: not tested" in note for note in report.notes)
    assert report.metrics()["data_drift_unchecked"] == 2.0 and report.metrics()["drift.y.tested"] == 0.0
    # the window is empty: the newest actual is older than it
    stopped = frame[frame["ds"] < train_end - pd.Timedelta(days=2)]
    [y, _] = detect_drift(stopped, ref, spec.monitoring.data_drift, as_of=as_of).columns
    assert y.state == "unknown" and y.reason.startswith("newest actual 2024-04-12 23:00 is older than the check window")
    # enough points: tested, ok
    full = detect_drift(frame, ref, spec.monitoring.data_drift, as_of=as_of)
    assert full.state == "ok" and {c.state for c in full.columns} == {"ok"} and full.summary() == "ok"


def test_a_missing_column_and_a_new_series_are_unknown_and_named(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    frame = make_frame(days=43)
    train_end = frame["ds"].min() + pd.Timedelta(days=42)
    ref = reference_profile(frame[frame["ds"] < train_end], spec)
    as_of = train_end + pd.Timedelta(days=1)
    report = detect_drift(frame.drop(columns=["temperature"]), ref, spec.monitoring.data_drift, as_of=as_of)
    temperature = next(c for c in report.columns if c.column == "temperature")
    assert temperature.state == "unknown" and temperature.reason == "column 'temperature' is missing from the new data"
    assert report.state == "unknown" and not report.drift
    newcomer = frame.assign(unique_id="meter_9")
    both = pd.concat([frame, newcomer], ignore_index=True)
    report = detect_drift(both, ref, spec.monitoring.data_drift, as_of=as_of)
    new = [c for c in report.columns if c.series == "meter_9"]
    assert [c.label for c in new] == ["y[meter_9]", "temperature[meter_9]"]
    assert {c.reason for c in new} == {"series 'meter_9' is new since training: not in the champion's reference profile"}
    assert {c.state for c in report.columns if c.series == "series"} == {"ok"} and report.state == "unknown"


# -------------------------------------------------------------------------------- model drift
def _forecasts(start: str, hours: int, yhat: float = 10.0) -> pd.DataFrame:
    ds = pd.date_range(start, periods=hours, freq="h")
    return pd.DataFrame({"unique_id": "series", "ds": ds, "yhat": yhat, "q0.1": yhat - 2, "q0.9": yhat + 2})


def test_model_drift_windows_with_gaps_and_late_actuals(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, model_drift={"window": "1d", "error_ratio": 1.5, "consecutive": 2, "windows": 3})
    store = PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")
    store.log_forecast(_forecasts("2024-01-01", 72), model_name="drifty", model_version="1", source="monitor")
    ds = pd.date_range("2024-01-01", periods=72, freq="h")
    actuals = pd.DataFrame({"unique_id": "series", "ds": ds, "y": 10.0 + np.where(ds.day >= 2, 5.0, 0.5)})
    # day 3 has only 6 of 24 actuals so far (a gap, or late data)
    store.log_actuals(actuals[actuals["ds"] < pd.Timestamp("2024-01-03 06:00")])
    baseline = {"mae": 2.0}
    as_of = pd.Timestamp("2024-01-04")
    report = model_drift(store, spec, model_name="drifty", version="1", baseline=baseline, as_of=as_of)
    newest, middle, oldest = report.windows
    assert not newest.complete and "6 of 24 forecasts have an actual" in newest.note
    assert middle.complete and middle.ratio == pytest.approx(2.5) and middle.degraded
    assert oldest.ratio == pytest.approx(0.25) and not oldest.degraded
    assert not report.alarm  # one degraded complete window, then a good one: not 2 in a row
    assert report.state == "ok" and report.latest is middle  # two windows scored: the alarm rule could run
    assert middle.coverage == 0.0 and oldest.coverage == 1.0
    # the late actuals arrive: day 3 is scored, two degraded windows in a row raise the alarm
    store.log_actuals(actuals)
    report = model_drift(store, spec, model_name="drifty", version="1", baseline=baseline, as_of=as_of)
    assert report.alarm and report.summary() == "model drift: MAE ratio 2.50 > 1.5 for 2 windows"
    assert report.metrics()["mae_ratio"] == pytest.approx(2.5)
    # another version's forecasts are not this one's
    other = model_drift(store, spec, model_name="drifty", version="2", baseline=baseline, as_of=as_of)
    assert not other.alarm and other.state == "unknown"
    assert other.state_reason == "no forecast of v2 in the last 3 window(s): nothing to score yet"
    assert other.summary() == f"unknown: {other.state_reason}"


def test_assess_skips_incomplete_windows_and_checks_coverage() -> None:
    from tidecast.monitoring.model_drift import WindowScore

    def w(complete: bool, ratio: float | None = None, coverage: float | None = None) -> WindowScore:
        return WindowScore("a", "b", 24, 24 if complete else 3, complete, mae=1.0, ratio=ratio,
                           degraded=None if ratio is None else ratio > 1.5, coverage=coverage)

    spec = ModelDriftSpec(consecutive=2, min_coverage=0.6)
    assert assess([w(True, 2.0), w(False), w(True, 1.8)], spec)[0]
    assert not assess([w(True, 2.0), w(True, 1.0), w(True, 1.8)], spec)[0]
    alarm, reason = assess([w(True, 1.0, 0.3), w(True, 1.0, 0.5)], spec)
    assert alarm and reason == "interval coverage 0.30 < 0.6 for 2 windows"
    assert not assess([w(True, 2.0)], spec)[0]  # fewer complete windows than 'consecutive'


def test_baseline_pools_backtest_and_holdout() -> None:
    tags = {"tidecast.backtest_mae": "2.0", "tidecast.holdout_mae": "4.0", "tidecast.backtest_coverage": "0.8"}
    base = baseline_from_tags(tags, folds=3)
    assert base["mae"] == pytest.approx((3 * 2.0 + 4.0) / 4) and base["coverage"] == pytest.approx(0.8)
    assert baseline_from_tags({}, folds=3)["mae"] is None


def test_score_windows_without_baseline_has_no_ratio() -> None:
    joined = _forecasts("2024-01-01", 24).assign(y=11.0)
    [score] = score_windows(joined, end=pd.Timestamp("2024-01-02"), window=pd.Timedelta("1D"), n_windows=1,
                            baseline_mae=None, error_ratio=1.5, min_actuals=0.8)
    assert score.complete and score.mae == pytest.approx(1.0) and score.ratio is None and score.degraded is None


# ----------------------------------------------------------------------------- retrain policy
def test_retrain_policy_waits_cools_down_and_obeys_switches(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, retrain_after="2d", retrain_cooldown="7d")
    t = pd.Timestamp("2024-07-02")

    def decide(history, *, data=True, model=False, allowed=True, at=t):
        return retrain_policy(spec, as_of=at, data_drift=data, model_alarm=model, trigger="x", history=history,
                              allowed=allowed)

    assert not decide([], data=False).retrain
    first = decide([])
    assert not first.retrain and "lasted 2d" in first.note
    history = [{"as_of": "2024-06-30", "data_drift": True}, {"as_of": "2024-07-01", "data_drift": True}]
    assert decide(history).retrain
    broken = [{"as_of": "2024-06-30", "data_drift": True}, {"as_of": "2024-07-01", "data_drift": False}]
    assert not decide(broken).retrain
    assert not decide([], model=True).retrain  # model drift waits for retrain_after too...
    assert decide(history, model=True).retrain
    assert not decide(history, model=True, allowed=False).retrain
    model_streak = [{"as_of": "2024-06-30", "model_drift": True}, {"as_of": "2024-07-01", "data_drift": True}]
    assert decide(model_streak).retrain  # a streak of drift of either kind counts
    cooled = [*history, {"as_of": "2024-06-28", "data_drift": True, "retrain_attempted": True}]
    decision = decide(cooled)
    assert not decision.retrain and "cooldown 7d" in decision.note
    assert decide(cooled, model=True).retrain  # ...but not for the cooldown
    many = [{"as_of": str(d.date()), "data_drift": True} for d in pd.date_range("2024-06-28", "2024-07-05")]
    many[0]["retrain_attempted"] = True
    assert decide(many, at=pd.Timestamp("2024-07-04")).note.startswith("retrain skipped")
    assert decide(many, at=pd.Timestamp("2024-07-06")).retrain  # 8 days after the last attempt
    off = make_spec(tmp_path, retrain_on_drift=False)
    assert "retrain_on_drift" in retrain_policy(off, as_of=t, data_drift=True, model_alarm=False, trigger="x",
                                                history=[]).note


def test_future_exogenous_values_are_regularised_or_named_missing(tmp_path: Path) -> None:
    from tidecast.errors import DataError
    from tidecast.monitoring.steps import future_exogenous

    spec = make_spec(tmp_path)  # clean.gaps.max_gap: 1h by default
    history = pd.DataFrame({"unique_id": "series", "ds": pd.date_range("2024-01-01", periods=3, freq="h"), "y": 1.0})
    ds = pd.date_range("2024-01-01 03:00", periods=4, freq="h")
    rows = pd.DataFrame({"unique_id": "series", "ds": ds, "y": np.nan, "temperature": [1.0, 2.0, 3.0, 4.0]})
    duplicated = pd.concat([rows, rows.iloc[[1]].assign(temperature=4.0)]).drop(index=[2])  # 05:00 missing
    out = future_exogenous(duplicated, history, ["temperature"], 4, spec)
    assert out["ds"].tolist() == list(ds) and out["temperature"].tolist() == [1.0, 3.0, 3.5, 4.0]
    assert out["unique_id"].tolist() == ["series"] * 4
    with pytest.raises(DataError, match="next 4 values of temperature after 2024-01-01 02:00:00; the data has 3"):
        future_exogenous(rows.iloc[:3], history, ["temperature"], 4, spec)


# ------------------------------------------------------------------------------------ verdicts
def test_verdict_precedence_and_exit_codes() -> None:
    from tidecast.monitoring.verdicts import EXIT_CODES, worst

    assert worst([]) == "ok" and worst(["ok", "ok"]) == "ok"
    assert worst(["ok", "unknown"]) == "unknown"
    assert worst(["unknown", "stale", "ok"]) == "stale"
    assert worst(["stale", "drift", "unknown"]) == "drift"
    assert EXIT_CODES == {"ok": 0, "drift": 3, "stale": 4, "unknown": 5}
    assert len(set(EXIT_CODES.values())) == 4 and 2 not in EXIT_CODES.values()  # 2 is bad input


def test_feed_check_is_stale_when_the_newest_actual_is_older_than_the_window() -> None:
    from tidecast.monitoring.verdicts import feed_check

    ds = pd.date_range("2024-01-01", periods=48, freq="h")  # actuals up to 2024-01-02 23:00
    frame = pd.DataFrame({"unique_id": "series", "ds": ds, "y": 1.0})
    day = pd.Timedelta("1D")
    now = pd.Timestamp("2030-01-01")

    def check(as_of: str | None, data: pd.DataFrame = frame):
        return feed_check(data, as_of=None if as_of is None else pd.Timestamp(as_of), now=now, window=day,
                          window_label="1d")

    assert check("2024-01-03 00:00").state == "ok"
    assert check("2024-01-03 23:00").state == "ok"  # the newest actual is inside the window
    stale = check("2024-01-05 00:00")
    assert stale.state == "stale"
    assert stale.reason == ("newest actual 2024-01-02 23:00 UTC, older than the check window (1d) before as_of "
                            "2024-01-05 00:00 UTC: the feed stopped")
    assert check(None).state == "stale" and "before now (2030-01-01 00:00 UTC)" in check(None).reason
    # future rows (y blank) do not count as arrived; a second series that stopped is named
    future = pd.DataFrame({"unique_id": "series", "ds": pd.date_range("2024-01-03", periods=72, freq="h"), "y": np.nan})
    assert check("2024-01-05 00:00", pd.concat([frame, future])).state == "stale"
    other = frame.assign(unique_id="b", y=1.0)
    other = other[other["ds"] < "2024-01-01 12:00"]
    two = check("2024-01-03 00:00", pd.concat([frame, other]))
    assert two.state == "stale" and two.reason.startswith("1 of 2 series stopped, newest actual: 'b' 2024-01-01 11:00 UTC")
    assert check("2024-01-03 00:00", frame.iloc[:0]).reason == "no actual before as_of 2024-01-03 00:00 UTC"


def test_verdict_text_names_each_reason_and_kind_states() -> None:
    from tidecast.monitoring.verdicts import Check, check_tags, kind_state, overall, verdict_text

    ok = [Check("feed", "actuals", "ok", "fresh"), Check("data", "y", "ok"), Check("model", "v1", "ok", "fine")]
    assert overall(ok) == "ok" and verdict_text(None, ok) == "ok"
    few = "6 of 24 points in the window, at least 12 needed"
    unknown = [*ok[:1], Check("data", "y[b]", "unknown", few), Check("data", "temperature[b]", "unknown", few),
               Check("model", "v1", "unknown", "no forecast of v1 yet")]
    assert overall(unknown) == "unknown"
    assert verdict_text(None, unknown) == (
        f"unknown: {few} (y[b], temperature[b]); no forecast of v1 yet (v1)"
    )
    assert kind_state(unknown, "data") == "unknown" and kind_state(unknown, "feed") == "ok"
    stale = [Check("feed", "actuals", "stale", "the feed stopped"), *unknown[1:]]
    assert overall(stale) == "stale"
    assert verdict_text(None, stale).startswith("stale: the feed stopped; unknown: ")
    assert kind_state(stale, "data") == kind_state(stale, "model") == "stale"
    drift = [*stale, Check("data", "y[a]", "drift", "PSI 1 > 0.2")]
    assert overall(drift) == "drift" and kind_state(drift, "data") == "drift"
    assert verdict_text("data drift: y[a] PSI 1 > 0.2", drift).startswith("data drift: y[a] PSI 1 > 0.2; stale: ")
    tags = check_tags([c.to_dict() for c in drift])
    assert tags["tidecast.checks"] == "1 drift, 1 stale, 3 unknown"
    assert tags["tidecast.check.data.y.a"] == "drift: PSI 1 > 0.2" and tags["tidecast.check.feed.actuals"].startswith("stale")
    assert "tidecast.check.data.y" not in tags  # ok checks are counted, not tagged


def test_model_drift_with_fewer_windows_than_needed_is_unknown(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, model_drift={"window": "1d", "error_ratio": 1.5, "consecutive": 2, "windows": 3})
    store = PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")
    store.log_forecast(_forecasts("2024-01-03", 24), model_name="drifty", model_version="1", source="monitor")
    ds = pd.date_range("2024-01-03", periods=24, freq="h")
    store.log_actuals(pd.DataFrame({"unique_id": "series", "ds": ds, "y": 15.0}))
    as_of = pd.Timestamp("2024-01-04")
    degraded = model_drift(store, spec, model_name="drifty", version="1", baseline={"mae": 2.0}, as_of=as_of)
    assert not degraded.alarm and degraded.state == "unknown"
    assert "1 scored window(s) of v1, all beyond the thresholds (newest MAE ratio 2.50): 2 in a row" in degraded.state_reason
    fine = model_drift(store, spec, model_name="drifty", version="1", baseline={"mae": 20.0}, as_of=as_of)
    assert fine.state == "ok"  # one good window: the alarm (2 degraded in a row) cannot hold
    blind = model_drift(store, spec, model_name="drifty", version="1", baseline={"mae": None}, as_of=as_of)
    assert blind.state == "unknown" and "no backtest MAE" in blind.state_reason
    assert blind.to_dict()["state"] == "unknown"


def test_values_filled_by_the_cleaning_do_not_count_as_arrived() -> None:
    from tidecast.monitoring.verdicts import observed_only

    ds = pd.date_range("2024-01-01", periods=4, freq="h")
    cleaned = pd.DataFrame({"unique_id": pd.Categorical(["a"] * 4), "ds": ds, "y": [1.0, 2.0, 3.0, 4.0],
                            "temperature": 5.0})
    arrived = pd.DataFrame({"unique_id": ["a"] * 5, "ds": [*ds, ds[0]], "y": [1.0, np.nan, 3.0, 4.0, 1.2],
                            "temperature": [5.0, np.nan, np.nan, np.nan, np.nan]})
    out = observed_only(cleaned, arrived, ["y", "temperature"])
    assert out["y"].tolist()[::2] == [1.0, 3.0] and np.isnan(out["y"].iloc[1])  # the interpolated gap is blank
    assert out["temperature"].notna().tolist() == [True, False, False, False]  # forward-filled values are blank
    assert cleaned["temperature"].notna().all()  # the input is not modified
