"""Small, fast inputs for the tracking tests: a seasonal-naive forecaster of our own that speaks the
Forecaster protocol, and the outputs of the backtest/select steps built from it by hand."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tidecast.frames import ID, POINT, TARGET, TIME, future_index, quantile_column
from tidecast.models.base import FitContext
from tidecast.spec import Spec, parse_spec

FREQ = "1h"
SEASON = 24
HORIZON = 24
WINDOW = 48


class SeasonalNaiveHelper:
    """Repeats each series' last season; ``bias`` shifts it (a deliberately worse model); ``exog_coef``
    adds that much of the future ``temperature`` column. Quantiles: normal around yhat."""

    native_intervals = True

    def __init__(
        self, season_length: int = SEASON, bias: float = 0.0, exog_coef: float = 0.0, name: str = "snaive"
    ) -> None:
        self.season_length = season_length
        self.bias = bias
        self.exog_coef = exog_coef
        self.name = name
        self.sigma_: dict[str, float] = {}
        self.last_: pd.DataFrame | None = None
        self.freq = FREQ

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> SeasonalNaiveHelper:
        self.freq = ctx.freq
        sig = {}
        for uid, part in df.groupby(ID, observed=True):
            y = part[TARGET].to_numpy(float)
            diffs = y[self.season_length :] - y[: -self.season_length]
            sig[str(uid)] = float(np.std(diffs)) if len(diffs) else 1.0
        self.sigma_ = sig
        self.last_ = df[[ID, TIME, TARGET]].groupby(ID, observed=True).tail(self.season_length).reset_index(drop=True)
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        from statistics import NormalDist

        base = history if history is not None else self.last_
        base = base.groupby(ID, observed=True).tail(self.season_length)
        index = future_index(base[[ID, TIME]], h, self.freq)
        rows = []
        for uid, part in index.groupby(ID, sort=False, observed=True):
            last = base.loc[base[ID] == uid, TARGET].to_numpy(float)
            values = np.resize(last, len(part)) + self.bias
            rows.append(part.assign(**{POINT: values}))
        out = pd.concat(rows, ignore_index=True)
        if self.exog_coef and X_future is not None and "temperature" in X_future:
            out = out.merge(X_future[[ID, TIME, "temperature"]], on=[ID, TIME], how="left")
            out[POINT] = out[POINT] + self.exog_coef * out.pop("temperature").to_numpy(float)
        for q in quantiles:
            z = NormalDist().inv_cdf(q)
            sig = out[ID].map(lambda u: self.sigma_.get(str(u), 1.0)).to_numpy(float)
            out[quantile_column(q)] = out[POINT].to_numpy(float) + z * sig
        return out

    def get_params(self) -> dict[str, Any]:
        return {"season_length": self.season_length, "bias": self.bias, "exog_coef": self.exog_coef}


def whole_frame_features(spec: Spec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """What ingest, clean and features compute for ``spec``, done on the whole frame at once in this
    process (no partitions, no cache): the features frame without the series too short, and the
    clean summary (as JSON gives it back)."""
    from tidecast.data.clean import clean
    from tidecast.data.features import add_time_features
    from tidecast.data.long_format import to_long
    from tidecast.data.sources import read_source
    from tidecast.training import min_history

    frame = to_long(read_source(spec.data), spec.data, spec.target, source_name=Path(spec.data.source).name)
    result = clean(frame, spec.clean, spec.data.frequency, min_length=min_history(spec))
    kept = result.frame[~result.frame["unique_id"].isin(result.summary["series_too_short"])].reset_index(drop=True)
    features = add_time_features(kept, spec.features, timezone=None, freq=spec.data.frequency)
    return features, json.loads(json.dumps(result.summary, default=str))


def make_frame(series: Sequence[str] = ("a", "b"), days: int = 10, seed: int = 0) -> pd.DataFrame:
    """Hourly series with a daily cycle, noise and a temperature column."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, uid in enumerate(series):
        ds = pd.date_range("2024-01-01", periods=days * 24, freq=FREQ)
        hour = ds.hour.to_numpy()
        temperature = 10 + 5 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 0.5, len(ds))
        y = 50 + 10 * k + 8 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 1.0, len(ds))
        frames.append(pd.DataFrame({ID: uid, TIME: ds, TARGET: y, "temperature": temperature}))
    return pd.concat(frames, ignore_index=True)


def make_spec(
    root: Path, *, project: str = "tiny", gate: dict | None = None, tracking: dict | None = None, models=None
) -> Spec:
    data = {
        "project": project,
        "data": {
            "source": "data.csv",
            "frequency": FREQ,
            "series_column": "unique_id",
            "exogenous": [{"name": "temperature", "known_in_future": True}],
        },
        "forecast": {"input_window": WINDOW, "horizon": HORIZON, "quantiles": [0.1, 0.9]},
        "backtest": {"folds": 2},
        "selection": {"metric": "mae"},
        "models": models
        or [
            {"name": "snaive", "kind": "seasonal_naive"},
            {"name": "biased", "kind": "seasonal_naive"},
            {"name": "broken", "kind": "tests.broken:model"},
        ],
        "registry": {"gate": gate or {}},
        "tracking": tracking or {},
    }
    root.mkdir(parents=True, exist_ok=True)
    import yaml

    (root / "tidecast.yaml").write_text(yaml.safe_dump(data, sort_keys=False))  # for the CLI's --spec
    return parse_spec(data, root=root)


def context() -> FitContext:
    return FitContext(freq=FREQ, horizon=HORIZON, input_window=WINDOW, exog_future=("temperature",))


@dataclass
class _Eval:
    per_fold: pd.DataFrame
    per_step: pd.DataFrame
    aggregate: dict[str, float]


@dataclass
class _Backtest:
    forecasts: pd.DataFrame
    fit_seconds: float = 0.01
    predict_seconds: float = 0.01


@dataclass
class _Result:
    name: str
    kind: str
    params: dict[str, Any]
    evaluation: _Eval | None
    backtest: _Backtest | None
    error: str | None = None
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    trials: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


def _holdout(model_factory, frame: pd.DataFrame) -> dict[str, float]:
    ends = frame.groupby(ID)[TIME].transform("max")
    test_mask = frame[TIME] > ends - pd.Timedelta(hours=HORIZON)
    train, test = frame[~test_mask], frame[test_mask]
    model = model_factory().fit(train, context())
    fc = model.predict(HORIZON, X_future=test.drop(columns=[TARGET]), quantiles=[0.1, 0.9])
    joined = fc.merge(test[[ID, TIME, TARGET]], on=[ID, TIME])
    return {
        "mae": _mae(joined[TARGET].to_numpy(), joined[POINT].to_numpy()),
        "rmse": float(np.sqrt(np.mean((joined[TARGET] - joined[POINT]) ** 2))),
    }


def backtest_and_select(frame: pd.DataFrame, *, winner_bias: float = 0.0, folds: int = 2) -> tuple[dict, dict]:
    """Hand-made outputs of the backtest and select steps for two ok candidates and one failed one."""
    models = {
        "snaive": lambda: SeasonalNaiveHelper(bias=winner_bias),
        "biased": lambda: SeasonalNaiveHelper(bias=winner_bias + 5.0),
    }
    results: dict[str, Any] = {}
    rows = []
    ends = frame[TIME].max()
    for name, factory in models.items():
        forecasts = []
        for fold in range(folds):
            cutoff = ends - pd.Timedelta(hours=HORIZON * (folds - fold + 1))
            train = frame[frame[TIME] <= cutoff]
            test = frame[(frame[TIME] > cutoff) & (frame[TIME] <= cutoff + pd.Timedelta(hours=HORIZON))]
            fc = (
                factory()
                .fit(train, context())
                .predict(HORIZON, X_future=test.drop(columns=[TARGET]), quantiles=[0.1, 0.9])
            )
            fc = fc.merge(test[[ID, TIME, TARGET]], on=[ID, TIME])
            fc["fold"], fc["cutoff"] = fold, cutoff
            fc["step"] = fc.groupby(ID).cumcount() + 1
            forecasts.append(fc)
        fcs = pd.concat(forecasts, ignore_index=True)
        err = (fcs[TARGET] - fcs[POINT]).abs()
        per_fold = fcs.assign(ae=err).groupby("fold", as_index=False)["ae"].mean().rename(columns={"ae": "mae"})
        per_fold["rmse"] = fcs.assign(se=err**2).groupby("fold")["se"].mean().pow(0.5).to_numpy()
        per_step = fcs.assign(ae=err).groupby("step", as_index=False)["ae"].mean().rename(columns={"ae": "mae"})
        aggregate = {"mae": float(per_fold["mae"].mean()), "rmse": float(per_fold["rmse"].mean()), "coverage": 0.8}
        results[name] = _Result(
            name,
            "seasonal_naive",
            {"season_length": SEASON},
            _Eval(per_fold, per_step, aggregate),
            _Backtest(fcs),
            None,
            0.02,
            0.01,
            3 if name == "snaive" else 1,
        )
        rows.append(
            {
                "candidate": name,
                "kind": "seasonal_naive",
                "params": json.dumps({"season_length": SEASON}),
                **aggregate,
                "fit_seconds": 0.02,
                "predict_seconds": 0.01,
                "status": "ok",
                "error": None,
            }
        )
    results["broken"] = _Result("broken", "tests.broken:model", {}, None, None, "candidate 'broken': boom", 0.0, 0.0, 0)
    rows.append(
        {
            "candidate": "broken",
            "kind": "tests.broken:model",
            "params": "{}",
            "mae": np.nan,
            "rmse": np.nan,
            "coverage": np.nan,
            "fit_seconds": 0.0,
            "predict_seconds": 0.0,
            "status": "failed",
            "error": "candidate 'broken': boom",
        }
    )
    board = pd.DataFrame(rows).sort_values("mae", na_position="last").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    details = {
        "snaive": {
            "params": {"season_length": SEASON},
            "seconds": 0.1,
            "trials": [
                {
                    "params": {"season_length": 24},
                    "value": results["snaive"].evaluation.aggregate["mae"],
                    "seconds": 0.01,
                    "error": None,
                },
                {"params": {"season_length": 12}, "value": 9.9, "seconds": 0.01, "error": None},
                {
                    "params": {"season_length": 0},
                    "value": None,
                    "seconds": None,
                    "error": "season_length must be positive",
                },
            ],
        },
        "biased": {
            "params": {"season_length": SEASON},
            "seconds": 0.1,
            "trials": [
                {
                    "params": {"season_length": 24},
                    "value": results["biased"].evaluation.aggregate["mae"],
                    "seconds": 0.01,
                    "error": None,
                }
            ],
        },
    }
    backtest = {
        "leaderboard": board,
        "metric": "mae",
        "folds": [{"index": i} for i in range(folds)],
        "season_length": SEASON,
        "results": results,
        "details": details,
    }
    started = time.perf_counter()
    model = SeasonalNaiveHelper(bias=winner_bias).fit(frame, context())
    holdout = _holdout(models["snaive"], frame)
    baseline_holdout = _holdout(lambda: SeasonalNaiveHelper(bias=0.0), frame)
    select = {
        "winner": "snaive",
        "kind": "seasonal_naive",
        "params": {"season_length": SEASON},
        "metric": "mae",
        "backtest_metrics": dict(results["snaive"].evaluation.aggregate),
        "holdout_metrics": holdout,
        "baseline": "snaive",
        "baseline_holdout_metrics": baseline_holdout,
        "improvement_over_baseline": 0.0,
        "refit_seconds": time.perf_counter() - started,
        "horizon": HORIZON,
        "quantiles": [0.1, 0.9],
        "context": context(),
        "model": model,
        "trained_until": str(frame[TIME].max()),
        "n_series": int(frame[ID].nunique()),
    }
    return backtest, select


# ------------------------------------------------------------------------------------ helpers
import os  # noqa: E402
import sys  # noqa: E402

import cloudpickle  # noqa: E402

# pickled forecasters carry this module's classes by value: a subprocess or `mlflow models serve`
# loads them without these tests on its path, as it would a tidecast model
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def store_uri(spec: Spec) -> str:
    return f"sqlite:///{(spec.state_dir / 'mlflow.db').resolve()}"


def child_env(spec: Spec | None = None) -> dict[str, str]:
    """Environment for a subprocess: the venv's bin on PATH (mlflow starts uvicorn by name)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    if spec is not None:
        env["MLFLOW_TRACKING_URI"] = store_uri(spec)
        env["MLFLOW_REGISTRY_URI"] = store_uri(spec)
    return env


def window_input(frame: pd.DataFrame, *, with_future: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(model input, history, future exog) for forecasting the last HORIZON steps of ``frame``."""
    data = frame.sort_values([ID, TIME])
    pos = data.groupby(ID).cumcount(ascending=False)
    future = data[pos < HORIZON].drop(columns=[TARGET]).reset_index(drop=True)
    history = data[(pos >= HORIZON) & (pos < HORIZON + WINDOW)].reset_index(drop=True)
    if not with_future:
        return history, history, future
    model_input = pd.concat([history, future.assign(**{TARGET: np.nan})], ignore_index=True)
    model_input = model_input.sort_values([ID, TIME]).reset_index(drop=True)[[ID, TIME, TARGET, "temperature"]]
    return model_input, history, future
