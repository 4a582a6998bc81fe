"""The built-in models: protocol, history-based prediction, pickling, determinism, registry errors."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from tests.conftest import future_temp
from tidecast.errors import ModelError
from tidecast.frames import quantile_column
from tidecast.models import BUILTINS, FitWindow, build_forecaster, needs_conformal
from tidecast.models.base import FitContext, Forecaster
from tidecast.spec import FeatureSpec, FourierSpec, RollingSpec

H, W, SEASON = 24, 48, 24


def hourly(n: int = 24 * 14, ids: tuple[str, ...] = ("A", "B"), start: str = "2024-03-01", exog: bool = True) -> pd.DataFrame:
    t = np.arange(n)
    frames = []
    for i, uid in enumerate(ids):
        rng = np.random.default_rng(i)
        temp = 15 + np.cumsum(rng.normal(0, 0.5, n))  # not seasonal, so STL leaves its effect in
        y = 20 + 5 * i + 4 * np.sin(2 * np.pi * t / SEASON) + 0.3 * temp + rng.normal(0, 0.5, n)
        frame = pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=n, freq="h"), "y": y})
        if exog:
            frame["temp"] = temp
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def future_exog(df: pd.DataFrame, h: int = H) -> pd.DataFrame:
    return future_temp(df, h)


def ctx(**kw) -> FitContext:
    base = {
        "freq": "h", "horizon": H, "input_window": W, "exog_future": ("temp",), "seed": 0,
        "features": FeatureSpec(
            lags=[1, 2, 24], rolling=[RollingSpec(window="6h", stats=["mean", "std"])],
            calendar=["hour", "weekday"], fourier=[FourierSpec(period="7d", order=2)],
        ),
    }
    base.update(kw)
    return FitContext(**base)


# candidate kind -> params small enough for a fast test
CASES = {
    "naive": {},
    "seasonal_naive": {"season_length": "1d"},
    "window_average": {"window_size": "12h"},
    "autoets": {},
    "autoarima": {},
    "autotheta": {"season_length": 24},
    "mstl": {"season_length": ["1d"]},
    "croston": {"variant": "sba"},
    "adida": {},
    "imapa": {},
    "tsb": {"alpha_d": 0.2, "alpha_p": 0.1},
    "lightgbm": {"n_estimators": 30, "num_leaves": 8},
    "sklearn": {"estimator": "sklearn.linear_model:Ridge", "alpha": 1.0},
}


def build(kind: str, **extra) -> Forecaster:
    return build_forecaster(kind, kind, {**CASES[kind], **extra}, freq="h")


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return hourly()


@pytest.fixture(scope="module")
def fitted(data: pd.DataFrame) -> dict[str, Forecaster]:
    return {kind: build(kind).fit(data, ctx()) for kind in CASES}


def test_builtins_cover_the_registry() -> None:
    assert set(CASES) | {"mlp"} == set(BUILTINS)


@pytest.mark.parametrize("kind", list(CASES))
def test_fit_predict_protocol(kind: str, data: pd.DataFrame, fitted: dict[str, Forecaster]) -> None:
    model = fitted[kind]
    assert isinstance(model, Forecaster)
    assert model.name == kind
    assert isinstance(model.get_params(), dict)
    qs = (0.1, 0.9) if not needs_conformal(model) else ()
    fc = model.predict(H, X_future=future_exog(data), quantiles=qs)
    assert list(fc.columns) == ["unique_id", "ds", "yhat", *(quantile_column(q) for q in qs)]
    assert len(fc) == 2 * H
    for uid, g in fc.groupby("unique_id"):
        last = data.loc[data["unique_id"] == uid, "ds"].max()
        expected = pd.date_range(last + pd.Timedelta("1h"), periods=H, freq="h")
        assert list(g["ds"]) == list(expected)
    assert fc["yhat"].notna().all()
    # close to the level of the series (sanity, not accuracy)
    levels = data.groupby("unique_id")["y"].mean()
    assert (fc.groupby("unique_id")["yhat"].mean() - levels).abs().max() < 8
    if qs:
        assert (fc["q0.1"] <= fc["q0.9"]).all()
        inside = ((fc["q0.1"] <= fc["yhat"]) & (fc["yhat"] <= fc["q0.9"])).mean()
        assert inside > 0.9


@pytest.mark.parametrize("kind", list(CASES))
def test_predict_from_history(kind: str, data: pd.DataFrame, fitted: dict[str, Forecaster]) -> None:
    """With ``history`` the forecast starts after the history's end, not the training end."""
    model = fitted[kind]
    cut = data["ds"].max() - pd.Timedelta("3D")
    recent = data[(data["ds"] <= cut) & (data["ds"] > cut - pd.Timedelta(hours=W))]
    fc = model.predict(H, history=recent, X_future=future_exog(recent))
    assert len(fc) == 2 * H
    assert fc.groupby("unique_id")["ds"].min().eq(cut + pd.Timedelta("1h")).all()
    assert fc["yhat"].notna().all()


@pytest.mark.parametrize("kind", ["naive", "seasonal_naive", "autoets", "lightgbm", "sklearn"])
def test_history_equal_to_training_tail_gives_the_same_forecast(kind: str, data: pd.DataFrame, fitted) -> None:
    model = fitted[kind]
    tail = data.groupby("unique_id").tail(W)
    a = model.predict(H, X_future=future_exog(data))
    b = model.predict(H, history=tail, X_future=future_exog(data))
    np.testing.assert_allclose(a["yhat"], b["yhat"], rtol=1e-6 if kind != "autoets" else 0.05)


def test_history_moves_the_baseline_forecast(fitted) -> None:
    hist = hourly(n=W, ids=("A",), start="2025-01-01")
    hist["y"] = 100.0
    fc = fitted["naive"].predict(3, history=hist, quantiles=(0.1, 0.9))
    assert fc["yhat"].tolist() == [100.0] * 3
    assert fc["ds"].iloc[0] == pd.Timestamp("2025-01-03 00:00")
    # a series never seen in fit still gets intervals (from the fitted series' spread)
    assert fc["q0.1"].notna().all()


@pytest.mark.parametrize("kind", list(CASES))
def test_pickle_round_trip(kind: str, data: pd.DataFrame, fitted) -> None:
    model = fitted[kind]
    qs = (0.1, 0.9) if not needs_conformal(model) else ()
    before = model.predict(H, X_future=future_exog(data), quantiles=qs)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
        again = loads(dumps(model)).predict(H, X_future=future_exog(data), quantiles=qs)
        pd.testing.assert_frame_equal(before, again)


@pytest.mark.parametrize("kind", ["lightgbm", "sklearn", "autoets", "seasonal_naive"])
def test_deterministic_given_seed(kind: str, data: pd.DataFrame) -> None:
    extra = {"subsample": 0.7, "subsample_freq": 1, "colsample_bytree": 0.7} if kind == "lightgbm" else {}
    a = build(kind, **extra).fit(data, ctx(seed=3)).predict(H, X_future=future_exog(data))
    b = build(kind, **extra).fit(data, ctx(seed=3)).predict(H, X_future=future_exog(data))
    pd.testing.assert_frame_equal(a, b)


def test_many_series_at_once() -> None:
    df = hourly(ids=tuple(f"s{i}" for i in range(6)), exog=False)
    for kind in ("seasonal_naive", "autotheta", "lightgbm"):
        fc = build(kind).fit(df, ctx(exog_future=())).predict(H)
        assert fc["unique_id"].unique().tolist() == [f"s{i}" for i in range(6)]
        assert fc.groupby("unique_id").size().eq(H).all()


def test_many_series_with_different_ends() -> None:
    df = hourly(exog=False)
    df = df[~((df["unique_id"] == "B") & (df["ds"] > df["ds"].max() - pd.Timedelta("5h")))]
    fc = build("seasonal_naive").fit(df, ctx(exog_future=())).predict(H)
    ends = df.groupby("unique_id")["ds"].max()
    assert (fc.groupby("unique_id")["ds"].min() == ends + pd.Timedelta("1h")).all()


def test_statistical_quantiles_follow_levels(data, fitted) -> None:
    fc = fitted["autoets"].predict(H, quantiles=(0.05, 0.25, 0.5, 0.75, 0.95))
    cols = ["q0.05", "q0.25", "q0.5", "q0.75", "q0.95"]
    assert (fc[cols].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    np.testing.assert_allclose(fc["q0.5"], fc["yhat"])


def test_autoarima_uses_future_exogenous(data, fitted) -> None:
    fx = future_exog(data)
    hot = fx.assign(temp=fx["temp"] + 20)
    base = fitted["autoarima"].predict(H, X_future=fx)["yhat"]
    warm = fitted["autoarima"].predict(H, X_future=hot)["yhat"]
    assert (warm - base).mean() > 3  # y depends on 0.3 * temp
    with pytest.raises(ModelError, match="X_future"):
        fitted["autoarima"].predict(H)


def test_ml_uses_future_exogenous_and_requires_it(data, fitted) -> None:
    with pytest.raises(ModelError, match="X_future with column"):
        fitted["sklearn"].predict(H)
    fx = future_exog(data)
    short = fx.groupby("unique_id").head(H - 2)
    with pytest.raises(ModelError, match="no value for temp"):
        fitted["sklearn"].predict(H, X_future=short)


def test_ml_models_have_no_native_intervals(fitted) -> None:
    assert needs_conformal(fitted["lightgbm"]) and needs_conformal(fitted["sklearn"])
    assert not needs_conformal(fitted["autoets"]) and not needs_conformal(fitted["naive"])
    with pytest.raises(ModelError, match="ConformalForecaster"):
        fitted["lightgbm"].predict(H, X_future=future_exog(hourly()), quantiles=(0.1,))


def test_ml_direct_strategy(data) -> None:
    model = build("lightgbm", strategy="direct", n_estimators=10, lags=[1, 24])
    short = ctx(horizon=4)
    fc = model.fit(data, short).predict(4, X_future=future_exog(data, 4))
    assert len(fc) == 8
    with pytest.raises(ModelError, match="direct strategy was trained for 4 steps"):
        model.predict(5, X_future=future_exog(data, 5))


def test_ml_lag_longer_than_input_window(data) -> None:
    with pytest.raises(ModelError, match=r"candidate 'lightgbm': lag 168 is longer than the input window \(48 steps\)"):
        build("lightgbm", lags=["7d"]).fit(data, ctx())
    with pytest.raises(ModelError, match="rolling window 72"):
        build("lightgbm", lags=[1], rolling=[{"window": "3d"}]).fit(data, ctx())


def test_ml_short_history_is_an_error(fitted, data) -> None:
    recent = data.groupby("unique_id").head(10)
    with pytest.raises(ModelError, match="needs at least 24 readings of history, got 10"):
        fitted["sklearn"].predict(H, history=recent, X_future=future_exog(recent))


def test_season_longer_than_history() -> None:
    short = hourly(n=100, exog=False)
    with pytest.raises(ModelError, match=r"candidate 'autoets': season_length 168 is longer than the history \(100 steps\)"):
        build_forecaster("autoets", "autoets", {"season_length": "7d"}, freq="h").fit(short, ctx(exog_future=()))
    with pytest.raises(ModelError, match=r"season_length 168 is longer than the history \(100 steps\)"):
        build_forecaster("m", "mstl", {"season_length": ["1d", "7d"]}, freq="h").fit(short, ctx(exog_future=()))
    with pytest.raises(ModelError, match="season_length 168 is longer"):
        build_forecaster("s", "seasonal_naive", {"season_length": "7d"}, freq="h").fit(short, ctx(exog_future=()))
    # statsforecast silently drops a season seen less than twice
    with pytest.raises(ModelError, match=r"season_length 168 needs at least two seasons of history \(336 steps\), got 300"):
        build_forecaster("t", "autotheta", {"season_length": "7d"}, freq="h").fit(hourly(n=300, exog=False), ctx(exog_future=()))


def test_served_history_after_a_gap_stands_alone(fitted, data) -> None:
    """History that does not join the training data is used alone (no stitching across a gap)."""
    later = hourly(n=W, start="2024-06-01", exog=True)
    with pytest.raises(ModelError, match="needs at least two seasons of history"):
        fitted["autotheta"].predict(H, history=later.groupby("unique_id").head(30))
    fc = fitted["autotheta"].predict(H, history=later)
    assert (fc.groupby("unique_id")["ds"].min() == later["ds"].max() + pd.Timedelta("1h")).all()


def test_long_season_is_deseasonalised_for_ets() -> None:
    from statsforecast.models import MSTL, AutoETS

    model = build_forecaster("e", "autoets", {"season_length": 48}, freq="h")
    assert isinstance(model._build([48]), MSTL)
    assert isinstance(model._build([24]), AutoETS)
    native = build_forecaster("e", "autoets", {"season_length": 48, "deseasonalize": False}, freq="h")
    assert isinstance(native._build([48]), AutoETS)


def test_default_season_is_one_day(data) -> None:
    model = build_forecaster("s", "seasonal_naive", {}, freq="h").fit(data, ctx())
    assert model._steps == 24
    assert build_forecaster("e", "autoets", {}, freq="h").fit(data, ctx())._season == [24]


# ------------------------------------------------------------------------------- registry errors
def test_unknown_kind_suggests() -> None:
    with pytest.raises(ModelError, match=r"candidate 'x': unknown model kind 'lgbm' \(did you mean 'lightgbm'\? built-ins: naive, "):
        build_forecaster("x", "lgbm", {}, freq="h")
    with pytest.raises(ModelError, match="did you mean 'autoets'"):
        build_forecaster("x", "auto_ets", {}, freq="h")
    with pytest.raises(ModelError, match="unknown model kind 'qqq' \\(built-ins"):
        build_forecaster("x", "qqq", {}, freq="h")


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("autoets", {"foo": 1}, "candidate 'c': autoets does not accept parameter 'foo'"),
        ("autoets", {"model": "XYZ"}, "candidate 'c': parameter 'model' of autoets must be three letters"),
        ("mstl", {"trend_forecaster": "prophet"}, "candidate 'c': parameter 'trend_forecaster' must be one of"),
        ("mstl", {"trend_params": {"bogus": 1}}, "candidate 'c': autoets does not accept parameter 'bogus'"),
        ("autoarima", {"max_p": 3, "bad": 1}, "autoarima does not accept parameter 'bad'"),
        ("naive", {"season_length": 3}, "candidate 'c': naive does not accept parameter 'season_length'"),
        ("lightgbm", {"n_estimatorz": 3}, "candidate 'c': lightgbm does not accept parameter 'n_estimatorz'"),
        ("lightgbm", {"strategy": "sideways"}, "strategy must be 'recursive' or 'direct'"),
        ("sklearn", {"estimator": "sklearn.linear_model:Ridge", "alpah": 1}, "does not accept parameter 'alpah'"),
        ("sklearn", {"estimator": "sklearn.linear_model:Rigde"}, "has no attribute 'Rigde' \\(did you mean 'Ridge'\\?\\)"),
        ("seasonal_naive", {"season_length": "90min"}, "not a whole number of h steps"),
        ("seasonal_naive", {"season_length": True}, "must be a step count or a duration"),
    ],
)
def test_rejected_parameters(kind: str, params: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_forecaster("c", kind, params, freq="h")


def test_durations_become_steps() -> None:
    model = build_forecaster("m", "mstl", {"season_length": ["1d", "7d"]}, freq="5min", fit_window="28d")
    assert model.season_length == [288, 2016]
    assert model.fit_window == 28 * 288
    lgb = build_forecaster("l", "lightgbm", {"lags": [1, "1h"], "rolling": [{"window": "1h"}]}, freq="5min")
    assert lgb.lags == [1, 12] and lgb.rolling == [{"window": 12}]


def test_fit_window_trims_training(data) -> None:
    model = build_forecaster("s", "seasonal_naive", {"season_length": 24}, freq="h", fit_window="3d").fit(data, ctx())
    assert model.fit_window == 72
    ets = build_forecaster("e", "autoets", {}, freq="h", fit_window="4d").fit(data, ctx())
    assert ets._tail.groupby("unique_id").size().eq(96).all()


def test_fit_window_wrapper(data) -> None:
    seen = {}

    class Spy:
        name = "spy"
        native_intervals = False

        def fit(self, df, ctx):
            seen["rows"] = df.groupby("unique_id").size().tolist()
            return self

        def predict(self, h, *, history=None, X_future=None, quantiles=()):
            return pd.DataFrame({"unique_id": [], "ds": [], "yhat": []})

        def get_params(self):
            return {}

    FitWindow(Spy(), 30).fit(data, ctx())
    assert seen["rows"] == [30, 30]


def test_mlp_without_torch_is_a_clear_error(monkeypatch) -> None:
    import tidecast.models.neural as neural

    monkeypatch.setattr(neural.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"candidate 'mlp' needs torch: pip install 'tidecast\[neural\]'"):
        build_forecaster("mlp", "mlp", {}, freq="h")
