"""The calendar leaf (families, seasons, anchors, future dates), calendar features and the models and
metrics that calendar series (sales with zeros) need."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tidecast import calendar
from tidecast.data.features import build_features
from tidecast.errors import ModelError, SpecError
from tidecast.evaluation.metrics import evaluate
from tidecast.models.base import FitContext
from tidecast.models.registry import build_forecaster
from tidecast.spec import FeatureSpec, FourierSpec


@pytest.mark.parametrize(
    ("freq", "family", "season"),
    [
        ("5min", "fixed", 288),
        ("h", "fixed", 24),
        ("D", "fixed", 7),
        ("7D", "fixed", 1),
        ("B", "business", 5),
        ("C:US", "business", 5),
        ("W", "weekly", 52),
        ("W-MON", "weekly", 52),
        ("2W", "weekly", 26),
        ("MS", "monthly", 12),
        ("ME", "monthly", 12),
        ("BMS", "monthly", 12),
        ("QS", "quarterly", 4),
        ("QE-MAR", "quarterly", 4),
        ("YS", "yearly", 1),
        ("YE", "yearly", 1),
    ],
)
def test_families_and_natural_seasons(freq: str, family: str, season: int) -> None:
    assert calendar.info(freq).family == family
    assert calendar.season_length(freq) == season


def test_unknown_frequency_names_the_field() -> None:
    with pytest.raises(SpecError, match=r"^data\.frequency: 'fortnightly' is not a pandas frequency"):
        calendar.offset_of("fortnightly")


def test_future_dates_follow_the_anchors_through_month_ends_leap_years_and_holidays() -> None:
    assert calendar.future_dates(pd.Timestamp("2024-01-31"), 2, "ME").tolist() == [
        pd.Timestamp("2024-02-29"),
        pd.Timestamp("2024-03-31"),
    ]
    assert calendar.future_dates(pd.Timestamp("2023-10-01"), 2, "QS").tolist() == [
        pd.Timestamp("2024-01-01"),
        pd.Timestamp("2024-04-01"),
    ]
    assert calendar.future_dates(pd.Timestamp("2024-12-24"), 3, "C:US").strftime("%m-%d").tolist() == [
        "12-26",
        "12-27",
        "12-30",
    ]
    assert calendar.future_dates(pd.Timestamp("2024-03-29"), 1, "B")[0] == pd.Timestamp("2024-04-01")
    assert calendar.future_dates(pd.Timestamp("2024-01-01 23:00"), 2, "h")[1] == pd.Timestamp("2024-01-02 01:00")


def test_anchor_moves_dates_into_their_own_period() -> None:
    ds = pd.Series(pd.to_datetime(["2024-02-15 00:00", "2024-02-29 00:00", "2024-03-01 06:00"]))
    assert calendar.anchor(ds, "MS").dt.strftime("%Y-%m-%d").tolist() == ["2024-02-01", "2024-02-01", "2024-03-01"]
    assert calendar.anchor(ds, "ME").dt.strftime("%Y-%m-%d").tolist() == ["2024-02-29", "2024-02-29", "2024-03-31"]
    assert calendar.anchor(ds, "QS").dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-01", "2024-01-01"]
    assert calendar.anchor(ds, "W-SUN").dt.strftime("%Y-%m-%d").tolist() == ["2024-02-18", "2024-03-03", "2024-03-03"]
    assert calendar.anchor(pd.Series(pd.to_datetime(["2024-03-02"])), "B").isna().all()  # a Saturday


def test_calendar_features_for_monthly_data() -> None:
    df = pd.DataFrame(
        {"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=14, freq="MS"), "y": np.arange(14.0)}
    )
    spec = FeatureSpec(
        lags=[1, "1 year"],
        calendar=["month", "quarter", "week", "days_in_month", "trading_days"],
        fourier=[FourierSpec(period="1 year", order=1)],
    )
    out = build_features(df, spec, timezone="America/New_York", freq="MS")  # dates are not shifted by the zone
    assert out["month"].tolist()[:3] == [1, 2, 3] and out["quarter"].tolist()[3] == 2
    assert out["days_in_month"].tolist()[:2] == [31, 29]  # 2024 is a leap year
    assert out["trading_days"].tolist()[:3] == [23, 21, 21]
    assert out["lag_12"].tolist()[12:] == [0.0, 1.0]
    assert np.allclose(out["fourier_12_sin1"].to_numpy()[[0, 12]], 0.0, atol=1e-12)  # one cycle a year


def _intermittent() -> pd.DataFrame:
    y = np.array([0, 0, 3, 0, 1, 0, 0, 2, 0, 0, 4, 0.0] * 4)
    return pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2020-01-01", periods=len(y), freq="MS"), "y": y})


@pytest.mark.parametrize(
    ("kind", "direct"), [("croston", "CrostonClassic"), ("adida", "ADIDA"), ("imapa", "IMAPA"), ("tsb", "TSB")]
)
def test_intermittent_kinds_equal_statsforecast(kind: str, direct: str) -> None:
    import statsforecast.models as sfm
    from statsforecast import StatsForecast

    df = _intermittent()
    ours = build_forecaster(kind, kind, {}, freq="MS").fit(df, FitContext(freq="MS", horizon=3, input_window=12))
    model = getattr(sfm, direct)(**({"alpha_d": 0.1, "alpha_p": 0.1} if kind == "tsb" else {}))
    theirs = StatsForecast(models=[model], freq="MS").forecast(df=df, h=3)
    out = ours.predict(3)
    assert out["ds"].tolist() == list(pd.date_range("2024-01-01", periods=3, freq="MS"))
    np.testing.assert_allclose(out["yhat"].to_numpy(), theirs[direct].to_numpy())
    early = build_forecaster(kind, kind, {}, freq="MS").fit(
        df.head(36), FitContext(freq="MS", horizon=3, input_window=12)
    )
    again = early.predict(3, history=df.tail(12))  # a year of new history after the fit: refit on all of it
    np.testing.assert_allclose(again["yhat"].to_numpy(), theirs[direct].to_numpy())
    with pytest.raises(ModelError, match="no native prediction intervals"):
        ours.predict(3, quantiles=[0.1, 0.9])
    with pytest.raises(ModelError, match="has no season"):
        build_forecaster(kind, kind, {"season_length": 12}, freq="MS")


def test_mape_says_when_zeros_leave_it_undefined() -> None:
    forecasts = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range("2020-01-01", periods=6, freq="MS"),
            "fold": [0, 0, 0, 1, 1, 1],
            "y": [0, 0, 0, 1, 0, 2.0],
            "yhat": [1.0] * 6,
        }
    )
    result = evaluate(forecasts)
    assert np.isnan(result.per_fold.loc[0, "mape"]) and result.per_fold.loc[1, "mape"] == 0.25
    assert result.aggregate["wape"] == pytest.approx(4 / 3 / 2)  # wape and mae stay defined
    assert result.notes and "4 of 6 actuals are 0, where MAPE is undefined" in result.notes[0]
    assert evaluate(forecasts.assign(y=[1.0, 2, 3, 4, 5, 6])).notes == []


def test_weekly_data_gets_a_fourier_term_for_the_52_18_week_year() -> None:
    df = pd.DataFrame(
        {"unique_id": "a", "ds": pd.date_range("2020-01-05", periods=110, freq="W"), "y": np.arange(110.0)}
    )
    out = build_features(df, FeatureSpec(fourier=[FourierSpec(period="1 year", order=1)]), timezone=None, freq="W")
    sin = out["fourier_52.1775_sin1"].to_numpy()
    assert abs(sin[0]) < 0.02 and abs(sin[52]) < 0.02 and abs(sin[104]) < 0.03  # nearly a year later: nearly in phase
    assert sin[13] > 0.99  # a quarter of the year later: the peak
    with pytest.raises(SpecError, match=r"features\.fourier\[0\]\.period: '1 month' does not fit weekly \(W\) data"):
        build_features(df, FeatureSpec(fourier=[FourierSpec(period="1 month", order=1)]), timezone=None, freq="W")


def test_lightgbm_forecasts_business_days_on_the_us_calendar() -> None:
    import holidays

    closed = sorted(holidays.country_holidays("US", years=range(2022, 2026)))
    days = pd.bdate_range("2023-01-02", "2024-12-20", freq="C", holidays=closed)
    df = pd.DataFrame({"unique_id": "a", "ds": days, "y": np.sin(np.arange(len(days))) + 10})
    ctx = FitContext(freq="C:US", horizon=5, input_window=20, features=FeatureSpec(calendar=["weekday", "month"]))
    model = build_forecaster("lgb", "lightgbm", {"n_estimators": 10}, freq="C:US").fit(df, ctx)
    expected = ["2024-12-23", "2024-12-24", "2024-12-26", "2024-12-27", "2024-12-30"]  # Christmas, the weekend skipped
    assert model.predict(5)["ds"].dt.strftime("%Y-%m-%d").tolist() == expected
    assert model.predict(5, history=df.tail(20))["ds"].dt.strftime("%Y-%m-%d").tolist() == expected


def test_first_irregular_counts_along_the_anchors() -> None:
    months = pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01", "2024-04-01"]))
    assert calendar.first_irregular(months, "MS") == 2  # March is missing
    assert calendar.first_irregular(months.iloc[:2], "MS") is None
    assert calendar.first_irregular(pd.Series(pd.to_datetime(["2024-01-01", "2024-02-15"])), "MS") == 1  # off-anchor
    hours = pd.Series(pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00"]))
    assert calendar.first_irregular(hours, "h") == 2
