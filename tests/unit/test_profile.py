"""Profiling a user's table for ``tidecast init --data`` and planning a project from the profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tidecast.data.profile import AmbiguousDataError, day_first, profile_frame
from tidecast.data.profile_time import _spec_accepts
from tidecast.errors import DataError, SpecError
from tidecast.spec import parse_spec
from tidecast.templates.from_data import duration, plan, render, write_project

RNG = np.random.default_rng(3)


def hourly(days: int = 28, *, weekly: bool = True, extra: bool = False) -> pd.DataFrame:
    t = pd.date_range("2024-01-01", periods=24 * days, freq="h")
    y = (
        10
        + 3 * np.sin(2 * np.pi * t.hour / 24)
        + (2.0 * (t.weekday >= 5) if weekly else 0)
        + RNG.normal(0, 0.5, len(t))
    )
    frame = pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M"), "load": y})
    if extra:
        frame["temp"] = RNG.normal(size=len(t))
    return frame


def daily_long(stores: int = 5, days: int = 90) -> pd.DataFrame:
    t = pd.date_range("2023-01-01", periods=days, freq="D")
    week = np.tile([5.0, 5, 5, 5, 9, 12, 7], days // 7 + 1)[:days]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "date": t.strftime("%Y-%m-%d"),
                    "store": f"s{k}",
                    "units": week * (k + 1) + RNG.normal(0, 0.3, days),
                    "store_name": f"Store {k}",
                    "promo": RNG.integers(0, 2, days),
                }
            )
            for k in range(stores)
        ],
        ignore_index=True,
    )


def test_hourly_finds_columns_frequency_and_both_seasons() -> None:
    p = profile_frame(hourly())
    assert (p.time_column, p.target_column, p.series_column, p.frequency) == ("timestamp", "load", None, "h")
    assert p.seasons == [24, 168] and p.length == 24 * 28 and p.n_series == 1
    assert (p.missing_steps, p.duplicates, p.exogenous) == (0, 0, [])


def test_no_weekly_pattern_keeps_only_the_day() -> None:
    assert profile_frame(hourly(weekly=False)).seasons == [24]


def test_random_walk_has_no_season() -> None:
    walk = pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=1000, freq="h"), "v": np.cumsum(RNG.normal(size=1000))}
    )
    p = profile_frame(walk)
    assert p.seasons == [] and 24 in p.acf


def test_five_minute_day_season_and_gaps_duplicates() -> None:
    t = pd.date_range("2024-01-01", periods=288 * 4, freq="5min")
    y = 10 + 3 * np.sin(2 * np.pi * (t.hour * 60 + t.minute) / 1440) + RNG.normal(0, 0.3, len(t))
    frame = pd.DataFrame({"ts": t, "kw": y}).drop(index=range(100, 106))  # a 30-minute gap
    frame = pd.concat([frame, frame.iloc[[10, 20]]], ignore_index=True)  # two repeated readings
    p = profile_frame(frame)
    assert p.frequency == "5min" and p.seasons == [288]
    assert (p.missing_steps, p.longest_gap, p.duplicates) == (6, 6, 2)


def test_day_first_dates() -> None:
    assert day_first(pd.Series(["01/02/2024", "13/02/2024"])) is True
    assert day_first(pd.Series(["02/13/2024"])) is False
    assert day_first(pd.Series(["01/02/2024"])) is None
    t = pd.date_range("2024-01-01", periods=70, freq="D")
    frame = pd.DataFrame({"date": t.strftime("%d/%m/%Y"), "sales": np.tile([5.0, 5, 5, 5, 9, 12, 7], 10)})
    p = profile_frame(frame)
    assert p.dayfirst and p.frequency == "D" and p.start == pd.Timestamp("2024-01-01") and p.seasons == [7]


def test_long_format_series_column_and_target_question() -> None:
    frame = daily_long()
    with pytest.raises(AmbiguousDataError, match=r"--target NAME.*units|'units', 'promo'.*--target"):
        profile_frame(frame)
    p = profile_frame(frame, target="units")
    # store and store_name name the same series: one choice, not a question
    assert (p.series_column, p.n_series, p.exogenous, p.length) == ("store", 5, ["promo"], 90)


def test_two_independent_id_columns_is_a_series_question() -> None:
    frame = daily_long(stores=4)
    store, day = frame["store"].str[1:].astype(int), frame.index % 90
    frame["sensor"] = "m" + ((store + day) % 4).astype(str)  # also unique per date, but not the same series
    frame = frame.drop(columns="store_name")
    with pytest.raises(AmbiguousDataError, match="--series"):
        profile_frame(frame, target="units")


def test_two_time_columns_is_a_question() -> None:
    frame = hourly(days=5)
    frame["issued"] = pd.to_datetime(frame["timestamp"]) - pd.Timedelta("1h")
    with pytest.raises(AmbiguousDataError, match="--time NAME"):
        profile_frame(frame)
    assert profile_frame(frame, time="timestamp").time_column == "timestamp"


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (pd.DataFrame({"a": [1, 2, 3]}), "a single column"),
        (pd.DataFrame({"a;b": ["2024-01-01;1"]}), "separated by ';'"),
        (pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]}), "no column reads as timestamps"),
        (pd.DataFrame({"t": ["2024-01-01", "2024-01-02"], "name": ["a", "b"]}), "no numeric column"),
    ],
)
def test_unusable_tables(frame: pd.DataFrame, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        profile_frame(frame)


def test_irregular_needs_frequency() -> None:
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.cumsum(RNG.integers(1, 600, 300)), unit="s")
    frame = pd.DataFrame({"t": times, "v": RNG.normal(size=300)})
    with pytest.raises(DataError, match=r"irregular timestamps.*--frequency"):
        profile_frame(frame)
    p = profile_frame(frame, frequency="1h")
    assert p.frequency_given and p.frequency == "h" and p.off_grid > 0


def test_unknown_override_column_names_it() -> None:
    with pytest.raises(DataError, match=r"--target lod: no such column.*did you mean 'load'"):
        profile_frame(hourly(days=3), target="lod")


def test_monthly_is_refused_or_profiled_as_the_spec_allows() -> None:
    frame = pd.DataFrame(
        {"month": pd.date_range("2015-01-01", periods=60, freq="MS"), "v": np.tile(np.arange(12.0), 5)}
    )
    if _spec_accepts("MS") is None:
        p = profile_frame(frame)
        assert (p.frequency, p.fixed, p.seasons) == ("MS", False, [12])
    else:
        with pytest.raises(DataError, match=r"monthly.*calendar frequency that data.frequency does not accept"):
            profile_frame(frame)


def test_weekly_data_is_a_fixed_seven_day_step_without_calendar_support() -> None:
    frame = pd.DataFrame({"week": pd.date_range("2020-01-05", periods=120, freq="W-SUN"), "v": RNG.normal(size=120)})
    p = profile_frame(frame)
    assert p.frequency in ("7D", "W-SUN")


# -------------------------------------------------------------------------------------- plan
def test_plan_hourly_fits_the_spec_and_uses_the_seasons(tmp_path: Path) -> None:
    p = profile_frame(hourly(), target="load")
    chosen = plan(p)
    assert (chosen.horizon, chosen.season, chosen.folds) == (24, 24, 3)
    kinds = [c["kind"] for c in chosen.candidates]
    assert kinds == ["naive", "seasonal_naive", "autoets", "mstl", "lightgbm"]
    mstl = chosen.candidates[3]
    assert mstl["params"]["season_length"] == [24, 168] and mstl["fit_window"] <= p.length - 4 * 24
    assert chosen.candidates[4]["features"]["lags"] == [1, 2, 3, 24]

    spec = parse_spec(
        yaml.safe_load(render(p, chosen, project="x", source="data/x.csv", origin="x.csv")), root=tmp_path
    )
    assert spec.forecast_steps() == (48, 24) and spec.models[3].fit_window == "24d"


def test_odd_column_names_read_back(tmp_path: Path) -> None:
    frame = hourly(days=5).rename(columns={"timestamp": "Date Time", "load": "Power (kW): total #1"})
    frame["2024"] = RNG.normal(size=len(frame))
    p = profile_frame(frame, target="Power (kW): total #1")
    text = render(p, plan(p), project="123", source="/data/my file #2.csv", origin="x")
    spec = parse_spec(yaml.safe_load(text), root=tmp_path)
    assert (spec.project, spec.data.source, spec.data.time_column) == ("123", "/data/my file #2.csv", "Date Time")
    assert spec.data.target_column == "Power (kW): total #1" and spec.data.exogenous_columns[0].name == "2024"


def test_plan_horizon_override_and_too_short() -> None:
    p = profile_frame(hourly(days=10))
    assert plan(p, horizon="12h").horizon == 12 and plan(p, horizon="36").horizon == 36
    with pytest.raises(DataError, match=r"too short.*--horizon"):
        plan(p, horizon="5d")
    with pytest.raises(DataError, match="--horizon"):
        plan(p, horizon="90min")


def test_plan_short_data_shrinks_the_horizon() -> None:
    t = pd.date_range("2024-01-01", periods=288 * 3, freq="5min")
    p = profile_frame(pd.DataFrame({"t": t, "v": RNG.normal(size=len(t))}))
    assert plan(p).horizon == 144  # a day does not fit six times: half a day


def test_durations_read_back() -> None:
    p = profile_frame(hourly(days=3))
    assert [duration(n, p) for n in (24, 36, 168, 336, 7)] == ["1d", "36h", "7d", "2w", "7h"]


def test_write_project_leaves_nothing_when_the_spec_is_refused(tmp_path: Path) -> None:
    def bad_spec(folder: Path) -> None:
        (folder / "data").mkdir()
        (folder / "data" / "x.csv").write_text("t,v\n")
        (folder / "tidecast.yaml").write_text("project: p\ndata: {source: data/x.csv, frequency: h}\n")  # no forecast

    with pytest.raises(SpecError, match="forecast"):
        write_project(tmp_path / "p", bad_spec)
    assert list(tmp_path.iterdir()) == []
