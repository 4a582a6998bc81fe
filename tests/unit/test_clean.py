"""Cleaning: duplicates, frequency checks, regular grid, gaps, outliers, summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tidecast.data.clean import CleanResult, clean
from tidecast.errors import DataError
from tidecast.spec import CleanSpec, GapSpec, OutlierSpec


def frame(values, *, uid: str = "a", start: str = "2024-01-01", freq: str = "h", times=None, **extra) -> pd.DataFrame:
    ds = pd.DatetimeIndex(times) if times is not None else pd.date_range(start, periods=len(values), freq=freq)
    out = pd.DataFrame({"unique_id": uid, "ds": ds, "y": np.asarray(values, dtype="float64")})
    for name, col in extra.items():
        out[name] = col
    return out


def spec(**kw) -> CleanSpec:
    """A clean spec; gaps up to 6 steps are fine unless the test says otherwise."""
    kw.setdefault("gaps", GapSpec(max_gap=6))
    return CleanSpec(**kw)


def wave(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10.0 + np.sin(np.arange(n) * 2 * np.pi / 24) + rng.normal(0, 0.05, n)


# ---------------------------------------------------------------------------------- duplicates
DUP_TIMES = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 01:00", "2024-01-01 02:00"]


@pytest.mark.parametrize(("policy", "expected"), [("mean", 3.0), ("first", 2.0), ("last", 4.0)])
def test_duplicate_policies(policy: str, expected: float) -> None:
    res = clean(frame([1.0, 2.0, 4.0, 5.0], times=DUP_TIMES), spec(duplicates=policy), "h")
    assert res.frame["y"].tolist() == [1.0, expected, 5.0]
    assert res.summary["duplicates"] == 1
    change = res.changes[res.changes["kind"] == "duplicate"]
    assert len(change) == 1 and change["ds"].iloc[0] == pd.Timestamp("2024-01-01 01:00")
    assert change["original"].iloc[0] == (2.0 if policy == "last" else 4.0)  # the reading dropped


def test_duplicate_error() -> None:
    with pytest.raises(DataError) as info:
        clean(frame([1.0, 2.0, 4.0, 5.0], times=DUP_TIMES), spec(duplicates="error"), "h")
    assert str(info.value).startswith("series 'a': timestamp 2024-01-01 01:00:00 UTC appears 2 times")


# ------------------------------------------------------------------------------ frequency/grid
def test_frequency_contradiction_finer() -> None:
    with pytest.raises(DataError, match=r"data.frequency is '5min' but readings in series 'a' are typically 1h apart"):
        clean(frame(wave(30)), spec(), "5min")


def test_frequency_contradiction_coarser() -> None:
    with pytest.raises(DataError, match=r"data.frequency is 'h' but readings in series 'a' are typically 5min apart"):
        clean(frame(wave(30), freq="5min"), spec(), "h")


def test_frequency_checked_before_durations() -> None:
    """A wrong frequency is reported as such, not as 'max_gap is not a whole number of steps'."""
    with pytest.raises(DataError, match=r"data.frequency is 'D' but readings in series 'a' are typically 1h apart"):
        clean(frame(wave(30)), CleanSpec(gaps=GapSpec(max_gap="6h")), "D")


def test_off_grid_readings_are_binned() -> None:
    times = ["2024-01-01 00:01", "2024-01-01 01:02", "2024-01-01 01:40", "2024-01-01 02:03", "2024-01-01 03:00"]
    res = clean(frame([1.0, 2.0, 4.0, 5.0, 6.0], times=times), spec(regularize_agg="mean"), "h")
    assert res.frame["ds"].dt.strftime("%H:%M").tolist() == ["00:00", "01:00", "02:00", "03:00"]
    assert res.frame["y"].tolist() == [1.0, 3.0, 5.0, 6.0]
    assert res.summary["regularized"] == 4
    res = clean(frame([1.0, 2.0, 4.0, 5.0, 6.0], times=times), spec(regularize_agg="sum"), "h")
    assert res.frame["y"].tolist() == [1.0, 6.0, 5.0, 6.0]


# ---------------------------------------------------------------------------------------- gaps
def with_gap(n: int = 48, start: int = 30, length: int = 3) -> pd.DataFrame:
    values = np.arange(n, dtype=float)
    df = frame(values)
    return df.drop(index=range(start, start + length)).reset_index(drop=True)


def test_gap_interpolate() -> None:
    res = clean(with_gap(), spec(gaps=GapSpec(method="interpolate", max_gap="3h")), "h")
    assert len(res.frame) == 48 and res.frame["y"].tolist() == list(np.arange(48.0))
    assert res.summary["gaps_filled"] == 3 and res.summary["longest_gap_steps"] == 3
    filled = res.changes[res.changes["kind"] == "filled"]
    assert filled["ds"].dt.hour.tolist() == [6, 7, 8] and filled["original"].isna().all()


def test_gap_interpolate_is_linear_in_time() -> None:
    df = frame([0.0, 10.0], times=["2024-01-01 00:00", "2024-01-01 04:00"])
    df = pd.concat([df, frame([10.0, 10.0], times=["2024-01-01 05:00", "2024-01-01 06:00"])], ignore_index=True)
    res = clean(df, spec(), "h")
    assert res.frame["y"].tolist() == [0.0, 2.5, 5.0, 7.5, 10.0, 10.0, 10.0]


def test_gap_ffill() -> None:
    res = clean(with_gap(), spec(gaps=GapSpec(method="ffill", max_gap=3)), "h")
    assert res.frame["y"].iloc[30:33].tolist() == [29.0, 29.0, 29.0]


def test_gap_seasonal() -> None:
    values = np.tile([1.0, 5.0, 9.0], 10)
    df = frame(values).drop(index=[13, 14]).reset_index(drop=True)
    res = clean(df, spec(gaps=GapSpec(method="seasonal", season_length=3, max_gap=2)), "h")
    assert res.frame["y"].tolist() == values.tolist()


def test_gap_seasonal_default_is_one_day_with_fallback() -> None:
    values = wave(24 * 3)
    df = frame(values).drop(index=[30, 31, 5]).reset_index(drop=True)
    df.loc[df["ds"] == pd.Timestamp("2024-01-01 07:00"), "y"] = np.nan  # one day before 07:00 on day 2
    res = clean(df, spec(gaps=GapSpec(method="seasonal", max_gap=None)), "h")
    y = res.frame.set_index("ds")["y"]
    assert y[pd.Timestamp("2024-01-02 06:00")] == pytest.approx(values[6])  # copied from a day earlier
    # 07:00 on day 2: a day earlier is missing too -> interpolated between its neighbours
    assert y[pd.Timestamp("2024-01-02 07:00")] == pytest.approx((values[6] + values[32]) / 2)
    assert y[pd.Timestamp("2024-01-01 05:00")] == pytest.approx((values[4] + values[6]) / 2)  # no day before
    assert not res.frame["y"].isna().any()


def test_gap_error_method() -> None:
    with pytest.raises(DataError, match=r"series 'a': no reading at 2024-01-02 06:00:00 UTC \(3 missing in all"):
        clean(with_gap(), spec(gaps=GapSpec(method="error")), "h")


def test_max_gap() -> None:
    df = with_gap(length=5)
    with pytest.raises(DataError) as info:
        clean(df, spec(gaps=GapSpec(max_gap="4h")), "h")
    assert str(info.value) == (
        "series 'a': a gap of 5 steps (5h) starting at 2024-01-02 06:00:00 UTC "
        "is longer than clean.gaps.max_gap (4h, 4 steps)"
    )
    assert clean(df, spec(gaps=GapSpec(max_gap=5)), "h").summary["gaps_filled"] == 5
    assert clean(df, spec(gaps=GapSpec(max_gap=None)), "h").summary["longest_gap_steps"] == 5


def test_leading_and_trailing_nan_dropped() -> None:
    df = frame([np.nan, np.nan, 1.0, np.nan, 3.0, np.nan])
    res = clean(df, spec(), "h")
    assert res.frame["y"].tolist() == [1.0, 2.0, 3.0]
    assert res.summary["trimmed"] == 3 and res.summary["gaps_filled"] == 1


def test_exogenous_gaps_filled() -> None:
    df = frame([1.0, 2.0, np.nan, 4.0, 5.0], temperature=[np.nan, 1.0, np.nan, 3.0, np.nan])
    res = clean(df, spec(), "h")
    assert res.frame["temperature"].tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert res.frame["temperature"].dtype == "float64"


# ------------------------------------------------------------------------------------ outliers
def spiky(n: int = 96) -> tuple[pd.DataFrame, int]:
    values = wave(n)
    values[40] = 100.0
    return frame(values), 40


@pytest.mark.parametrize("method", ["iqr", "zscore", "hampel"])
@pytest.mark.parametrize("action", ["clip", "mark", "interpolate"])
def test_outlier_methods_and_actions(method: str, action: str) -> None:
    df, pos = spiky()
    res = clean(df, spec(outliers=OutlierSpec(method=method, action=action, threshold=3.0, window=6)), "h")
    flagged = res.changes[res.changes["kind"] == "outlier"]
    assert res.summary["outliers"] == len(flagged) == 1
    assert flagged["ds"].iloc[0] == df["ds"].iloc[pos] and flagged["original"].iloc[0] == 100.0
    y = res.frame["y"].to_numpy()
    if action == "mark":
        assert y[pos] == 100.0
    elif action == "interpolate":
        assert y[pos] == pytest.approx((y[pos - 1] + y[pos + 1]) / 2)
    else:
        assert 9.0 < y[pos] < 100.0
    others = np.delete(np.arange(len(y)), pos)
    assert np.allclose(y[others], df["y"].to_numpy()[others])  # nothing else touched


def test_clip_goes_to_the_bound() -> None:
    df, pos = spiky()
    values = df["y"].to_numpy()
    res = clean(df, spec(outliers=OutlierSpec(method="zscore", action="clip", threshold=3.0)), "h")
    bound = values.mean() + 3.0 * values.std(ddof=1)
    assert res.frame["y"].iloc[pos] == pytest.approx(bound)


def test_outliers_none_and_flat_series() -> None:
    df, _ = spiky()
    assert clean(df, spec(), "h").summary["outliers"] == 0
    flat = frame(np.r_[np.zeros(40), [1.0], np.zeros(40)])
    for method in ("iqr", "hampel"):
        assert clean(flat, spec(outliers=OutlierSpec(method=method)), "h").summary["outliers"] == 0


def test_outlier_interpolate_next_to_a_gap() -> None:
    df, pos = spiky()
    df = df.drop(index=[pos + 1, pos + 2]).reset_index(drop=True)
    res = clean(df, spec(outliers=OutlierSpec(method="hampel", action="interpolate", window=8)), "h")
    assert res.frame["y"].max() < 20 and not res.frame["y"].isna().any()


# ------------------------------------------------------------------------------- multi-series
def test_series_are_cleaned_independently() -> None:
    a = with_gap()
    b = frame(wave(60, seed=1) * 100, uid="b", start="2024-02-01")
    b.loc[10, "y"] = 1e5
    b = pd.concat([b, b.iloc[[5]]]).sample(frac=1.0, random_state=0)  # a duplicate, shuffled
    cs = spec(outliers=OutlierSpec(method="hampel", threshold=5))
    together = clean(pd.concat([b, a], ignore_index=True), cs, "h")
    alone = pd.concat([clean(a, cs, "h").frame, clean(b, cs, "h").frame], ignore_index=True)
    pd.testing.assert_frame_equal(together.frame, alone)
    assert together.frame["unique_id"].tolist() == ["a"] * 48 + ["b"] * 60
    per = {s["unique_id"]: s for s in together.summary["per_series"]}
    assert per["a"]["gaps_filled"] == 3 and per["a"]["outliers"] == 0
    assert per["b"]["duplicates"] == 1 and per["b"]["outliers"] == 1


def test_summary_counts_and_types() -> None:
    a = with_gap()
    b = frame(np.r_[wave(40), [np.nan]], uid="b")
    b = pd.concat([b, b.iloc[[3]]], ignore_index=True)
    res = clean(pd.concat([a, b], ignore_index=True), spec(outliers=OutlierSpec(method="iqr")), "h")
    assert isinstance(res, CleanResult)
    s = res.summary
    assert s["rows_in"] == len(a) + len(b) and s["rows_out"] == 48 + 40
    assert (s["series"], s["duplicates"], s["gaps_filled"], s["trimmed"]) == (2, 1, 3, 1)
    assert json.loads(json.dumps(s)) == s  # JSON-able
    assert list(res.changes.columns) == ["unique_id", "ds", "kind", "original"]
    assert res.changes["original"].dtype == "float64" and res.changes["ds"].dtype == "datetime64[ns]"
    assert set(res.changes["kind"]) <= {"filled", "outlier", "duplicate"}
    assert list(res.frame.columns) == ["unique_id", "ds", "y"]
    assert res.frame.dtypes.to_dict() == pd.concat([a, b]).dtypes.to_dict()


def test_per_series_list_is_capped() -> None:
    parts = [frame(wave(6), uid=f"s{i:03d}") for i in range(60)]
    parts[7] = parts[7].drop(index=[2])
    res = clean(pd.concat(parts, ignore_index=True), spec(), "h")
    assert len(res.summary["per_series"]) == 50 and res.summary["per_series_omitted"] == 10
    assert res.summary["per_series"][0]["unique_id"] == "s007"  # most changes first


def test_series_too_short() -> None:
    df = pd.concat([frame(wave(48)), frame(wave(10), uid="b")], ignore_index=True)
    res = clean(df, spec(), "h", min_length=24)
    assert res.summary["series_too_short"] == ["b"] and res.summary["series_too_short_count"] == 1
    assert set(res.frame["unique_id"]) == {"a", "b"}
    with pytest.raises(DataError) as info:
        clean(df, spec(), "h", min_length=100)
    assert str(info.value) == "history has 48 steps but input window + horizon need 100 (series 'a')"
    with pytest.raises(DataError, match=r"but clean\.min_length needs 72"):
        clean(df, spec(min_length="3d"), "h")


def test_series_without_values() -> None:
    df = pd.concat([frame(wave(10)), frame([np.nan] * 5, uid="b")], ignore_index=True)
    res = clean(df, spec(), "h")
    assert set(res.frame["unique_id"]) == {"a"} and res.summary["series_without_values"] == ["b"]
    with pytest.raises(DataError, match="no series has any target value"):
        clean(frame([np.nan] * 5), spec(), "h")


def test_no_nan_guarantee_on_power_sample() -> None:
    from tidecast.data.long_format import to_long
    from tidecast.datasets import make_power
    from tidecast.spec import DataSpec, TargetSpec

    raw = make_power(days=20, seed=11)
    data = DataSpec(source="power.csv", target_column="power_kw", frequency="5min", timezone="Europe/Paris",
                    exogenous=["temperature"])
    df = to_long(raw, data, TargetSpec(), source_name="power.csv")
    cs = CleanSpec(gaps=GapSpec(max_gap="2h"), outliers=OutlierSpec(method="hampel", threshold=5, window="1h"))
    res = clean(df, cs, "5min", min_length=576)
    assert len(res.frame) == 20 * 288 and not res.frame.isna().any().any()
    assert res.summary["duplicates"] > 0 and res.summary["gaps_filled"] > 0 and res.summary["outliers"] >= 1
    assert res.frame["ds"].diff().dropna().eq(pd.Timedelta("5min")).all()


def test_monthly_dates_on_the_15th_are_moved_onto_month_starts_and_missing_months_filled() -> None:
    ds = pd.date_range("2020-01-01", periods=24, freq="MS") + pd.Timedelta(days=14)
    raw = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(24.0)}).drop(index=[5, 6])
    res = clean(raw, CleanSpec(gaps={"max_gap": "2 months"}), "MS")
    assert res.frame["ds"].tolist() == list(pd.date_range("2020-01-01", periods=24, freq="MS"))
    assert res.frame["y"].tolist() == list(np.arange(24.0))  # the two missing months interpolated
    assert res.summary["regularized"] == 22 and res.summary["gaps_filled"] == 2
    assert res.summary["regularized_note"] == (
        "22 reading(s) of series 'a' moved onto the MS anchors (e.g. 2020-01-15 -> 2020-01-01)"
    )
    with pytest.raises(DataError, match=r"a gap of 2 steps \(2 x MS\) starting at 2020-06-01 .*max_gap \(1 month"):
        clean(raw, CleanSpec(gaps={"max_gap": "1 month"}), "MS")


def test_month_starts_under_a_month_end_frequency_go_to_the_same_month_end() -> None:
    raw = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2023-11-01", periods=5, freq="MS"), "y": np.arange(5.0)})
    res = clean(raw, CleanSpec(), "ME")
    assert res.frame["ds"].dt.strftime("%Y-%m-%d").tolist() == [
        "2023-11-30", "2023-12-31", "2024-01-31", "2024-02-29", "2024-03-31",
    ]


def test_business_days_skip_weekends_and_holidays_and_refuse_weekend_readings() -> None:
    days = pd.bdate_range("2024-12-16", "2025-01-10")
    raw = pd.DataFrame({"unique_id": "a", "ds": days, "y": np.arange(len(days), dtype=float)})
    res = clean(raw.drop(index=[3]), CleanSpec(gaps={"max_gap": 2}), "B")
    assert res.frame["ds"].tolist() == list(days) and res.summary["gaps_filled"] == 1
    no_holidays = raw[~raw["ds"].isin(pd.to_datetime(["2024-12-25", "2025-01-01"]))]
    res = clean(no_holidays, CleanSpec(gaps={"max_gap": 1}), "C:US")
    assert res.summary["gaps_filled"] == 0 and len(res.frame) == len(days) - 2
    with pytest.raises(DataError, match=r"series 'a' has a reading on 2024-12-25 \(Wednesday\), which is not a C:US date"):
        clean(raw, CleanSpec(), "C:US")
    weekend = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-12-02", periods=20), "y": np.arange(20.0)})
    with pytest.raises(DataError, match=r"2024-12-07 \(Saturday\), which is not a B date"):
        clean(weekend, CleanSpec(), "B")
