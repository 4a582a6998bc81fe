"""Features: calendar parts in local time, holidays, Fourier consistency, lags, rolling, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidecast.data.features import (
    add_lag_features,
    add_time_features,
    build_features,
    lag_feature_names,
    time_feature_names,
)
from tidecast.errors import DataError, SpecError
from tidecast.spec import FeatureSpec, FourierSpec, RollingSpec


def series(values, *, uid: str = "a", start: str = "2024-01-01", freq: str = "h") -> pd.DataFrame:
    return pd.DataFrame({
        "unique_id": uid,
        "ds": pd.date_range(start, periods=len(values), freq=freq),
        "y": np.asarray(values, dtype="float64"),
    })


def stamps(*values: str) -> pd.DataFrame:
    return pd.DataFrame({"ds": pd.to_datetime(list(values))})


# ------------------------------------------------------------------------------------ calendar
def test_each_calendar_part_in_utc() -> None:
    parts = ["minute", "hour", "weekday", "day", "month", "dayofyear", "weekend"]
    out = add_time_features(stamps("2024-03-09 17:45"), FeatureSpec(calendar=parts), timezone=None, freq="15min")
    assert out.iloc[0][parts].to_dict() == {
        "minute": 45, "hour": 17, "weekday": 5, "day": 9, "month": 3, "dayofyear": 69, "weekend": 1,
    }
    assert all(out[p].dtype == "int64" for p in parts)


def test_calendar_is_local_time() -> None:
    # 23:30 UTC on 31 December is 00:30 on 1 January in Paris: a holiday, another day, month and year
    spec = FeatureSpec(calendar=["hour", "day", "month", "weekday", "holiday"], holidays_country="FR")
    df = stamps("2024-12-31 23:30", "2024-07-01 10:00")
    local = add_time_features(df, spec, timezone="Europe/Paris", freq="30min")
    assert local[["hour", "day", "month", "holiday"]].iloc[0].tolist() == [0, 1, 1, 1]
    assert local["hour"].iloc[1] == 12  # summer time: UTC+2
    utc = add_time_features(df, spec, timezone=None, freq="30min")
    assert utc[["hour", "day", "month", "holiday"]].iloc[0].tolist() == [23, 31, 12, 0]


def test_holidays_by_country() -> None:
    df = stamps("2024-07-14 12:00", "2024-07-04 12:00", "2024-07-15 12:00")
    fr = add_time_features(df, FeatureSpec(calendar=["holiday"], holidays_country="FR"), timezone=None, freq="h")
    us = add_time_features(df, FeatureSpec(calendar=["holiday"], holidays_country="US"), timezone=None, freq="h")
    assert fr["holiday"].tolist() == [1, 0, 0] and us["holiday"].tolist() == [0, 1, 0]


def test_holiday_needs_a_known_country() -> None:
    with pytest.raises(SpecError, match=r"features\.holidays_country: needed"):
        add_time_features(stamps("2024-01-01"), FeatureSpec(calendar=["holiday"]), timezone=None, freq="h")
    with pytest.raises(SpecError, match="unknown country code 'XX'"):
        add_time_features(stamps("2024-01-01"), FeatureSpec(calendar=["holiday"], holidays_country="XX"),
                          timezone=None, freq="h")


def test_time_features_need_ds() -> None:
    with pytest.raises(DataError, match="no column 'ds'"):
        add_time_features(pd.DataFrame({"x": [1]}), FeatureSpec(calendar=["hour"]), timezone=None, freq="h")


# ------------------------------------------------------------------------------------- fourier
def test_fourier_train_and_future_rows_agree() -> None:
    spec = FeatureSpec(fourier=[FourierSpec(period="1d", order=2), FourierSpec(period="7d", order=1)])
    full = series(np.zeros(24 * 10), freq="h")
    train, future = full.iloc[:200], full.iloc[200:][["ds"]]  # future rows: only ds
    whole = add_time_features(full, spec, timezone=None, freq="h")
    parts = pd.concat([
        add_time_features(train, spec, timezone=None, freq="h"),
        add_time_features(future, spec, timezone=None, freq="h"),
    ])
    names = time_feature_names(spec, "h")
    assert names == ["fourier_24_sin1", "fourier_24_cos1", "fourier_24_sin2", "fourier_24_cos2",
                     "fourier_168_sin1", "fourier_168_cos1"]
    np.testing.assert_array_equal(whole[names].to_numpy(), parts[names].to_numpy())
    # one period later, the same value; sin^2 + cos^2 = 1
    np.testing.assert_allclose(whole["fourier_24_sin1"].iloc[24:48].to_numpy(),
                               whole["fourier_24_sin1"].iloc[:24].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(whole["fourier_24_sin1"] ** 2 + whole["fourier_24_cos1"] ** 2, 1.0)


def test_fourier_phase_is_absolute_time() -> None:
    spec = FeatureSpec(fourier=[FourierSpec(period="1d", order=1)])
    out = add_time_features(stamps("2024-05-05 06:00", "1999-01-01 06:00"), spec, timezone=None, freq="h")
    # 06:00 UTC is a quarter of a day after the epoch's midnight on any date
    np.testing.assert_allclose(out["fourier_24_sin1"], 1.0)
    np.testing.assert_allclose(out["fourier_24_cos1"], 0.0, atol=1e-12)


def test_fourier_period_must_be_whole_steps() -> None:
    with pytest.raises(SpecError, match=r"features.fourier\[0\].period"):
        time_feature_names(FeatureSpec(fourier=[FourierSpec(period="90min")]), "h")


# ---------------------------------------------------------------------------------- lag/rolling
def test_lags_and_rolling_values() -> None:
    spec = FeatureSpec(lags=[1, "2h"], rolling=[RollingSpec(window=3, stats=["mean", "std", "min", "max"])])
    out = add_lag_features(series([1.0, 2.0, 4.0, 8.0, 16.0]), spec, "h")
    assert lag_feature_names(spec, "h") == ["lag_1", "lag_2", "roll_3_mean", "roll_3_std", "roll_3_min", "roll_3_max"]
    assert out["lag_1"].tolist()[1:] == [1.0, 2.0, 4.0, 8.0]
    assert out["lag_2"].tolist()[2:] == [1.0, 2.0, 4.0]
    assert out["roll_3_mean"].isna().tolist() == [True, True, True, False, False]
    assert out["roll_3_mean"].tolist()[3:] == [7 / 3, 14 / 3]  # rows 3, 4 see y[0..2], y[1..3]
    assert out["roll_3_min"].tolist()[3:] == [1.0, 2.0] and out["roll_3_max"].tolist()[3:] == [4.0, 8.0]
    assert out["roll_3_std"].iloc[3] == pytest.approx(np.std([1, 2, 4], ddof=1))


def test_lags_follow_the_time_grid_and_series() -> None:
    a = series([1.0, 2.0, 3.0, 4.0]).drop(index=[1])  # 01:00 missing
    b = series([10.0, 20.0], uid="b")
    df = pd.concat([b, a])  # rows out of order
    out = add_lag_features(df, FeatureSpec(lags=[1, 2]), "h")
    assert out.index.tolist() == df.index.tolist()  # rows keep order and index
    got = out.set_index(["unique_id", out["ds"].dt.hour])
    assert np.isnan(got.loc[("a", 2), "lag_1"]) and got.loc[("a", 2), "lag_2"] == 1.0
    assert got.loc[("a", 3), "lag_1"] == 3.0
    assert np.isnan(got.loc[("b", 0), "lag_1"]) and got.loc[("b", 1), "lag_1"] == 10.0  # nothing from series a


def test_past_only_exogenous_become_lag1() -> None:
    df = series([1.0, 2.0, 3.0])
    df["sales"] = [5.0, 6.0, 7.0]
    df["forecast_temp"] = [0.1, 0.2, 0.3]
    out = add_lag_features(df, FeatureSpec(), "h", past_only=["sales"])
    assert "sales" not in out.columns and out["forecast_temp"].tolist() == [0.1, 0.2, 0.3]
    assert out["sales_lag1"].tolist()[1:] == [5.0, 6.0]


def test_lag_zero_and_bad_frames() -> None:
    with pytest.raises(SpecError, match=r"features.lags\[0\]: a lag must be at least one step"):
        add_lag_features(series([1.0, 2.0]), FeatureSpec(lags=[0]), "h")
    dup = pd.concat([series([1.0, 2.0]), series([3.0])])
    with pytest.raises(DataError, match="more than once"):
        add_lag_features(dup, FeatureSpec(lags=[1]), "h")
    off = series([1.0, 2.0, 3.0])
    off.loc[1, "ds"] += pd.Timedelta("10min")
    with pytest.raises(DataError, match="off the h grid"):
        add_lag_features(off, FeatureSpec(lags=[1]), "h")


def test_build_features_on_history_and_future_rows() -> None:
    spec = FeatureSpec(lags=[1, 24], rolling=[RollingSpec(window="6h")], calendar=["hour", "weekend"],
                       fourier=[FourierSpec(period="1d", order=1)])
    hist = series(np.arange(72.0))
    out = build_features(hist, spec, timezone="Europe/Paris", freq="h")
    expected = [*hist.columns, *time_feature_names(spec, "h"), *lag_feature_names(spec, "h")]
    assert list(out.columns) == expected
    assert out["lag_24"].iloc[30] == 6.0 and out["roll_6_mean"].iloc[30] == pytest.approx(26.5)


# ------------------------------------------------------------------------------- no look-ahead
SPEC = FeatureSpec(
    lags=[1, 2, 5],
    rolling=[RollingSpec(window=3, stats=["mean", "std", "min", "max"]), RollingSpec(window=1, stats=["max"])],
    calendar=["hour", "weekday", "weekend"],
    fourier=[FourierSpec(period=4, order=2)],
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(finite, min_size=2, max_size=40),
    cut=st.integers(min_value=0, max_value=39),
    seed=st.integers(min_value=0, max_value=2**16),
    n_series=st.integers(min_value=1, max_value=3),
)
def test_no_feature_depends_on_present_or_future_y(values: list[float], cut: int, seed: int, n_series: int) -> None:
    cut = cut % len(values)
    frames = [series(values, uid=f"s{i}") for i in range(n_series)]
    for i, part in enumerate(frames):
        part["sales"] = np.arange(len(values), dtype=float) + i
    df = pd.concat(frames, ignore_index=True)
    changed = df.copy()
    rng = np.random.default_rng(seed)
    late = changed["ds"] >= changed["ds"].iloc[cut]
    changed.loc[late, "y"] = rng.normal(0, 1e3, int(late.sum()))
    changed.loc[late, "sales"] = rng.normal(0, 1e3, int(late.sum()))  # past-only: also unknown from t on
    before = build_features(df, SPEC, timezone="Europe/Paris", freq="h", past_only=["sales"])
    after = build_features(changed, SPEC, timezone="Europe/Paris", freq="h", past_only=["sales"])
    features = [c for c in before.columns if c not in ("unique_id", "ds", "y")]
    early = ~late
    early = early | (df["ds"] == df["ds"].iloc[cut])  # row t itself must not see y[t]
    pd.testing.assert_frame_equal(before.loc[early, features], after.loc[early, features])
