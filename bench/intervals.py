"""Interval calibration: tidecast's calibrated intervals against the libraries' own (issue 18).

For each dataset, on the same windows (the spec's rolling backtest folds, one horizon apart, then
the held-out stretch: ``--holdout-horizons`` horizons, 3 by default, each forecast by a model trained
on everything before it), nominal 80 % intervals, scored by coverage, mean width and the
interval (Winkler) score (:func:`tidecast.evaluation.metrics.interval_score`):

* **tidecast**: what ``tidecast run`` does: every candidate backtested and calibrated
  (:func:`tidecast.training.candidate_results`: calibration windows before the first fold, each
  fold calibrated on what precedes its cut-off), the winner by the spec's metric scored on the
  held-out horizon (:func:`tidecast.training.holdout_scores`, calibrated on the windows and folds);
* **statsforecast native**: ``StatsForecast.cross_validation(level=[80])``;
* **statsforecast conformal**: the same model with ``prediction_intervals=ConformalIntervals(h, n_windows=5)``;
* **mlforecast conformal**: LightGBM over the dataset's lags with ``PredictionIntervals(n_windows=5, h)``.

The library runs use ``cross_validation(n_windows=folds + holdout, step_size=h)``: its last windows are
the held-out stretch, the others are tidecast's folds (the cut-offs are checked).

Datasets: ``power`` (examples/power: 5-minute, 288 steps; ``--power-days`` keeps the last days),
``meters`` (tidecast.datasets.make_meters, hourly, 24 steps; ``--meters`` series), ``co2``
(statsmodels, weekly Mauna Loa CO2 from 1980, 52 steps) and ``elnino`` (statsmodels, monthly sea
surface temperature, 12 steps).

    .venv/bin/python bench/intervals.py [--datasets co2,elnino,meters,power] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LEVEL = 80
ALPHA = 1 - LEVEL / 100


@dataclass
class Dataset:
    name: str
    frame: pd.DataFrame  # unique_id, ds, y (+ temperature)
    spec: dict[str, Any]  # the tidecast spec (data.source filled in)
    h: int
    folds: int
    season: int
    stats_model: Any = None  # a callable returning the statsforecast model compared
    input_size: int | None = None
    lags: list[int] = field(default_factory=list)
    note: str = ""
    holdout: int = 1  # horizons held out after the folds (``backtest.holdout``)


# ------------------------------------------------------------------------------------ datasets
def power(days: int | None) -> Dataset:
    from statsforecast.models import MSTL, AutoETS

    raw = pd.read_csv(ROOT / "examples" / "power" / "data" / "power.csv")
    if days:
        raw = raw.tail(days * 288)
    import yaml

    spec = yaml.safe_load((ROOT / "examples" / "power" / "tidecast.yaml").read_text())
    for key in ("envs", "serving", "plugin_paths", "registry"):
        spec.pop(key, None)
    spec["models"] = [m for m in spec["models"] if m["name"] in {"seasonal_naive", "mstl", "lightgbm", "mlp"}]
    frame = raw.rename(columns={"timestamp": "ds", "power_kw": "y"})
    return Dataset(
        "power",
        frame,
        spec,
        h=288,
        folds=3,
        season=288,
        stats_model=lambda: MSTL(season_length=[288, 2016], trend_forecaster=AutoETS(model="ZZN")),
        input_size=28 * 288,
        lags=[1, 2, 3, 6, 12, 288],
        note=f"examples/power, {f'last {days} days' if days else 'all 400 days'}, 5-minute, h = 288",
    )


def meters(n: int) -> Dataset:
    from statsforecast.models import AutoETS

    from tidecast.datasets import make_meters

    frame = make_meters(n_series=n, days=75, freq="h", seed=0)
    frame = frame.rename(columns={"series_id": "unique_id", "timestamp": "ds", "load": "y"})[["unique_id", "ds", "y"]]
    import yaml

    spec = yaml.safe_load((ROOT / "examples" / "meters" / "tidecast.yaml").read_text())
    spec.pop("envs", None)
    spec.pop("executor", None)
    spec["data"] = {
        "source": "data.csv",
        "series_column": "unique_id",
        "time_column": "ds",
        "target_column": "y",
        "frequency": "h",
    }
    spec["backtest"] = {"folds": 3}
    return Dataset(
        "meters",
        frame,
        spec,
        h=24,
        folds=3,
        season=24,
        stats_model=lambda: AutoETS(season_length=24),
        input_size=14 * 24,
        lags=[1, 2, 24, 48, 168],
        note=f"tidecast.datasets.make_meters, {n} hourly meters of different lengths, h = 24",
    )


def co2() -> Dataset:
    import statsmodels.api as sm
    from statsforecast.models import AutoETS

    series = sm.datasets.co2.load_pandas().data["co2"].loc["1980":].interpolate()
    frame = pd.DataFrame({"ds": series.index, "y": series.to_numpy()})
    spec = _small_spec("W-SAT", "104 weeks", "52 weeks", folds=5, season=52)
    return Dataset(
        "co2",
        frame,
        spec,
        h=52,
        folds=5,
        season=52,
        stats_model=lambda: AutoETS(season_length=52),
        lags=[1, 2, 52],
        note="statsmodels co2 (Mauna Loa, weekly, 1980-2001, gaps interpolated), h = 52 weeks",
    )


def elnino() -> Dataset:
    import statsmodels.api as sm
    from statsforecast.models import AutoETS

    wide = sm.datasets.elnino.load_pandas().data
    long = wide.melt(id_vars="YEAR", var_name="month", value_name="y")
    long["ds"] = pd.to_datetime(long["YEAR"].astype(int).astype(str) + "-" + long["month"], format="%Y-%b")
    frame = long.sort_values("ds")[["ds", "y"]].reset_index(drop=True)
    spec = _small_spec("MS", "36 months", "12 months", folds=8, season=12)
    return Dataset(
        "elnino",
        frame,
        spec,
        h=12,
        folds=8,
        season=12,
        stats_model=lambda: AutoETS(season_length=12),
        lags=[1, 2, 12],
        note="statsmodels elnino (monthly sea surface temperature, 1950-2010), h = 12 months",
    )


def _small_spec(freq: str, window: str, horizon: str, *, folds: int, season: int) -> dict[str, Any]:
    return {
        "data": {"source": "data.csv", "time_column": "ds", "target_column": "y", "frequency": freq},
        "forecast": {"input_window": window, "horizon": horizon, "quantiles": [0.1, 0.9]},
        "backtest": {"folds": folds},
        "selection": {"metric": "mase"},
        "models": [
            {"name": "seasonal_naive", "kind": "seasonal_naive"},
            {"name": "autoets", "kind": "autoets"},
            {"name": "lightgbm", "kind": "lightgbm", "params": {"n_estimators": 100}},
        ],
    }


# ------------------------------------------------------------------------------------- scoring
def scores(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, float]:
    from tidecast.evaluation.metrics import coverage, interval_score, interval_width

    return {
        "coverage": coverage(y, lo, hi),
        "width": interval_width(lo, hi),
        "interval_score": interval_score(y, lo, hi, ALPHA),
    }


def split_scores(cv: pd.DataFrame, holdout: int, lo: str, hi: str) -> dict[str, Any]:
    """Scores of the folds (every window but the last ``holdout``) and of the held-out windows."""
    cutoffs = sorted(cv["cutoff"].unique())
    first_held = cutoffs[-holdout]
    folds = cv[cv["cutoff"] < first_held]
    last = cv[cv["cutoff"] >= first_held]
    return {
        "folds": scores(folds["y"].to_numpy(float), folds[lo].to_numpy(float), folds[hi].to_numpy(float)),
        "holdout": scores(last["y"].to_numpy(float), last[lo].to_numpy(float), last[hi].to_numpy(float)),
        "cutoffs": [str(c) for c in cutoffs],
    }


# ------------------------------------------------------------------------------------ tidecast
def run_tidecast(ds: Dataset, workdir: Path) -> dict[str, Any]:
    import yaml

    from tidecast.data.clean import clean
    from tidecast.data.features import add_time_features
    from tidecast.data.long_format import to_long
    from tidecast.data.sources import read_source
    from tidecast.evaluation.metrics import interval_pairs
    from tidecast.evaluation.selection import select_winner
    from tidecast.spec import parse_spec
    from tidecast.training import candidate_results, factory_for, fit_context, min_history
    from tidecast.training.factories import interval_day_kinds
    from tidecast.training.holdout import holdout_run

    root = workdir / ds.name
    root.mkdir(parents=True, exist_ok=True)
    frame = ds.frame.copy()
    if "unique_id" in frame and ds.spec["data"].get("series_column") is None:
        frame = frame.drop(columns="unique_id")
    frame.to_csv(root / "data.csv", index=False)
    data = {"project": f"bench-{ds.name}", **ds.spec}
    data["backtest"] = {**data.get("backtest", {}), "holdout": ds.holdout * ds.h}
    if ds.name == "power":
        data["data"] = {**data["data"], "source": "data.csv", "time_column": "ds", "target_column": "y"}
    (root / "tidecast.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    spec = parse_spec(data, root=root)
    long = to_long(read_source(spec.data), spec.data, spec.target, source_name="data.csv")
    cleaned = clean(long, spec.clean, spec.data.frequency, min_length=min_history(spec))
    kept = cleaned.frame[~cleaned.frame["unique_id"].isin(cleaned.summary["series_too_short"])].reset_index(drop=True)
    features = add_time_features(kept, spec.features, timezone=spec.data.timezone, freq=spec.data.frequency)
    started = time.perf_counter()
    backtested = candidate_results(features, spec)
    board = backtested["leaderboard"]
    winner = select_winner(board, backtested["metric"])
    entry = backtested["results"][winner]
    candidate = next(c for c in spec.models if c.name == winner)
    ctx = fit_context(spec, features)
    holdout, held_forecasts, _scales = holdout_run(factory_for(candidate, entry.params, spec), features, ctx, spec, entry)
    level = interval_pairs(spec.forecast.quantiles)[0][2]
    before = _before(entry.backtest.forecasts, list(spec.forecast.quantiles), level)
    day_kinds = interval_day_kinds(spec)
    rotated = _each_window_held_out(
        entry.backtest.forecasts, entry.backtest.calibration, list(spec.forecast.quantiles), day_kinds
    )
    cutoffs = sorted(str(c) for c in entry.backtest.forecasts["cutoff"].unique())
    per_candidate = {
        str(row["candidate"]): {
            "mase": float(row.get("mase", float("nan"))),
            "coverage": float(row.get("coverage", float("nan"))),
            "width": float(row.get("interval_width", float("nan"))),
            "interval_score": float(row.get("interval_score", float("nan"))),
        }
        for _, row in board.iterrows()
        if row["status"] == "ok"
    }
    return {
        "winner": winner,
        "folds": per_candidate[winner],
        "holdout": {
            "coverage": holdout.get(f"coverage_{level}"),
            "width": holdout.get(f"width_{level}"),
            "interval_score": holdout.get(f"interval_score_{level}"),
        },
        "candidates": per_candidate,
        "before": before,
        "variants": {
            variant: _variant(
                entry.backtest.forecasts,
                entry.backtest.calibration,
                held_forecasts,
                list(spec.forecast.quantiles),
                **{"day_kinds": day_kinds, **options},
            )
            for variant, options in VARIANTS.items()
        },
        "each_window_held_out": rotated,
        "cutoffs": cutoffs,
        "calibration_windows": int(entry.backtest.calibration["cutoff"].nunique())
        if entry.backtest.calibration is not None and len(entry.backtest.calibration)
        else 0,
        "calibration_fits": _calibration_fits(backtested["folds"], features, ctx, spec),
        "seconds": time.perf_counter() - started,
    }


def _calibration_fits(folds: list[dict[str, Any]], frame: pd.DataFrame, ctx: Any, spec: Any) -> int:
    """How many models forecast the calibration windows (``backtest.calibration_fits``, ``auto`` resolved)."""
    from tidecast.evaluation.calibration import calibration_groups, calibration_windows
    from tidecast.evaluation.folds import Fold

    window, _ = spec.forecast_steps()
    windows = calibration_windows([Fold(**f) for f in folds], frame, ctx, spec.backtest.calibration_windows, min_train=window)
    return len(calibration_groups(windows, frame, spec.backtest.calibration_fits))


VARIANTS: dict[str, dict[str, Any]] = {
    "signed residual quantiles": {"symmetric": False},
    "symmetric residual quantiles": {"symmetric": True},
    "signed residual quantiles, one width for every kind of day": {"symmetric": False, "day_kinds": None},
}
"""Conformal options scored on the winner's same forecasts (folds without look-ahead, held-out from
the windows and every fold): residual quantiles of ``y - yhat`` by sign, or of ``|y - yhat|``; by
kind of day as the spec says (``backtest.day_kinds``) unless the variant sets ``day_kinds``."""


def _variant(
    forecasts: pd.DataFrame, calibration: pd.DataFrame | None, held: pd.DataFrame, quantiles: list[float], **options: Any
) -> dict[str, Any]:
    """The winner's fold and held-out scores with other conformal ``options``, on the same point forecasts."""
    from tidecast.evaluation.calibration import calibrate_folds, interval_residuals
    from tidecast.frames import ID, POINT, TIME, quantile_column
    from tidecast.models.conformal import ConformalForecaster

    lo_q, hi_q = min(quantiles), max(quantiles)
    lo, hi = quantile_column(lo_q), quantile_column(hi_q)
    point = forecasts.drop(columns=[quantile_column(q) for q in quantiles])
    folds, _ = calibrate_folds(point, calibration, quantiles, **options)

    class _Residuals:
        name = "residuals"

    calibrator = ConformalForecaster(_Residuals(), interval_residuals(forecasts, calibration), **options)  # type: ignore[arg-type]
    held = held.copy()
    ids = held[ID].astype(str)
    low, high = np.empty(len(held)), np.empty(len(held))
    for uid, rows in pd.Series(np.arange(len(held))).groupby(ids.to_numpy(), sort=False).indices.items():
        part = held.iloc[rows]
        steps = np.arange(1, len(part) + 1) if "step" not in part else part["step"].to_numpy(int)
        key = uid if uid in calibrator._series else None
        offsets = calibrator.scaled_offsets([lo_q, hi_q], key, steps, part[TIME].to_numpy())
        low[rows] = part[POINT].to_numpy(float) + offsets[:, 0]
        high[rows] = part[POINT].to_numpy(float) + offsets[:, 1]
    return {
        "folds": scores(folds["y"].to_numpy(float), folds[lo].to_numpy(float), folds[hi].to_numpy(float)),
        "holdout": scores(held["y"].to_numpy(float), low, high),
    }


def _before(forecasts: pd.DataFrame, quantiles: list[float], level: str) -> dict[str, float]:
    """The winner's fold scores with tidecast's previous intervals: each fold's quantiles from the
    *other* folds' residuals (plain empirical quantiles, pooled over series), on the same forecasts."""
    from tidecast.evaluation.calibration import cross_fold_intervals as _conformal_cross_fold
    from tidecast.evaluation.metrics import evaluate
    from tidecast.frames import quantile_column

    point = forecasts.drop(columns=[quantile_column(q) for q in quantiles])
    agg = evaluate(_conformal_cross_fold(point, quantiles), quantiles=quantiles).aggregate
    return {
        "coverage": agg[f"coverage_{level}"],
        "width": agg[f"width_{level}"],
        "interval_score": agg[f"interval_score_{level}"],
    }


def _each_window_held_out(
    forecasts: pd.DataFrame, calibration: pd.DataFrame | None, quantiles: list[float], day_kinds: Any = None
) -> dict[str, Any]:
    """A check of the level over many origins (with look-ahead: not how folds are scored): each
    calibration window and fold in turn scored with the conformal quantiles of all the others."""
    from tidecast.evaluation.calibration import interval_residuals
    from tidecast.frames import ID, POINT, TIME
    from tidecast.models.conformal import ConformalForecaster

    pool = interval_residuals(forecasts, calibration).reset_index(drop=True)
    pool[ID] = pool[ID].astype(str)
    lo_q, hi_q = min(quantiles), max(quantiles)
    inside, per_window = 0, []

    class _Residuals:
        name = "residuals"

    for rows in pool.groupby("cutoff", sort=True).groups.values():
        test, rest = pool.loc[rows], pool.drop(index=rows)
        calibrator = ConformalForecaster(_Residuals(), rest, day_kinds=day_kinds)  # type: ignore[arg-type]
        hits = 0
        for uid, part in test.groupby(ID, sort=False):
            key = uid if uid in calibrator._series else None
            offsets = calibrator.scaled_offsets([lo_q, hi_q], key, part["step"].to_numpy(int), part[TIME].to_numpy())
            point, y = part[POINT].to_numpy(float), part["y"].to_numpy(float)
            hits += int(((y >= point + offsets[:, 0]) & (y <= point + offsets[:, 1])).sum())
        inside += hits
        per_window.append(hits / len(test))
    return {
        "coverage": inside / len(pool) if len(pool) else float("nan"),
        "windows": len(per_window),
        "lowest": min(per_window, default=float("nan")),
        "highest": max(per_window, default=float("nan")),
    }


# ----------------------------------------------------------------------------------- libraries
def _library_frame(ds: Dataset) -> pd.DataFrame:
    frame = ds.frame.copy()
    if "unique_id" not in frame:
        frame.insert(0, "unique_id", "series")
    frame["ds"] = pd.to_datetime(frame["ds"])
    frame = frame.groupby(["unique_id", "ds"], as_index=False)[["y"]].mean()
    return frame.sort_values(["unique_id", "ds"], ignore_index=True)


def _freq(ds: Dataset) -> str:
    return str(ds.spec["data"]["frequency"])


def run_statsforecast(ds: Dataset, conformal: bool) -> dict[str, Any]:
    from statsforecast import StatsForecast
    from statsforecast.utils import ConformalIntervals

    df = _library_frame(ds)
    if ds.name == "power":  # the example's cleaning: regular 5-minute steps, gaps interpolated
        df = _regular(df, "5min")
    model = ds.stats_model()
    kwargs: dict[str, Any] = {}
    if conformal:
        model = type(model)(**{**_init_args(model), "prediction_intervals": ConformalIntervals(h=ds.h, n_windows=5)})
    started = time.perf_counter()
    sf = StatsForecast(models=[model], freq=_freq(ds), n_jobs=1)
    cv = sf.cross_validation(
        df=df, h=ds.h, n_windows=ds.folds + ds.holdout, step_size=ds.h, level=[LEVEL], input_size=ds.input_size, **kwargs
    )
    name = next(c for c in cv.columns if c.endswith(f"-lo-{LEVEL}"))[: -len(f"-lo-{LEVEL}")]
    out = split_scores(cv, ds.holdout, f"{name}-lo-{LEVEL}", f"{name}-hi-{LEVEL}")
    out["model"] = name + (" + ConformalIntervals(n_windows=5)" if conformal else " (native)")
    out["seconds"] = time.perf_counter() - started
    return out


def _init_args(model: Any) -> dict[str, Any]:
    import inspect

    names = [p for p in inspect.signature(type(model).__init__).parameters if p not in ("self", "prediction_intervals")]
    return {n: getattr(model, n) for n in names if hasattr(model, n)}


def _regular(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    out = []
    for uid, g in df.groupby("unique_id"):
        g = g.set_index("ds").asfreq(freq)
        g["y"] = g["y"].interpolate(limit_direction="both")
        out.append(g.reset_index().assign(unique_id=uid))
    return pd.concat(out, ignore_index=True)[["unique_id", "ds", "y"]]


def run_mlforecast(ds: Dataset) -> dict[str, Any]:
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.utils import PredictionIntervals

    df = _library_frame(ds)
    if ds.name == "power":
        df = _regular(df, "5min")
    started = time.perf_counter()
    mlf = MLForecast(
        models={"lgbm": LGBMRegressor(n_estimators=100, verbose=-1, random_state=0)},
        freq=_freq(ds),
        lags=ds.lags,
        num_threads=1,
    )
    cv = mlf.cross_validation(
        df,
        n_windows=ds.folds + ds.holdout,
        h=ds.h,
        step_size=ds.h,
        level=[LEVEL],
        prediction_intervals=PredictionIntervals(n_windows=5, h=ds.h),
        static_features=[],
    )
    out = split_scores(cv, ds.holdout, f"lgbm-lo-{LEVEL}", f"lgbm-hi-{LEVEL}")
    out["model"] = "LightGBM + PredictionIntervals(n_windows=5)"
    out["seconds"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------------------------- main
def bench(ds: Dataset, workdir: Path, *, libraries: bool = True, only: set[str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"dataset": ds.name, "note": ds.note, "rows": {}}
    result["rows"]["tidecast"] = run_tidecast(ds, workdir)
    runs = (
        ("statsforecast native", lambda: run_statsforecast(ds, conformal=False)),
        ("statsforecast conformal", lambda: run_statsforecast(ds, conformal=True)),
        ("mlforecast conformal", lambda: run_mlforecast(ds)),
    )
    for label, fn in runs if libraries else ():
        if only is not None and label.replace(" ", "-") not in only:
            continue
        try:
            result["rows"][label] = fn()
        except Exception as exc:  # a library option that cannot run here is reported, not fatal
            result["rows"][label] = {"error": f"{type(exc).__name__}: {exc}"}
    ours = result["rows"]["tidecast"]["cutoffs"]
    for label, row in result["rows"].items():
        if label != "tidecast" and "cutoffs" in row:
            theirs = [str(pd.Timestamp(c)) for c in row["cutoffs"][: -ds.holdout]]
            row["same_windows"] = [str(pd.Timestamp(c)) for c in ours] == theirs
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['dataset']}**: {result['note']}",
        "",
        "| method | coverage, folds | width, folds | interval score, folds | coverage, held-out | width, held-out | interval score, held-out |",
        "|---|---|---|---|---|---|---|",
    ]

    def fmt(value: Any, pct: bool = False) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "–"
        return f"{100 * value:.1f} %" if pct else f"{value:.4g}"

    for label, row in result["rows"].items():
        if "error" in row:
            lines.append(f"| {label} | failed: {row['error'][:80]} | | | | | |")
            continue
        name = f"{label}: {row.get('winner') or row.get('model')}"
        if label == "tidecast":
            fits = row.get("calibration_fits")
            name += f" (winner, {row['calibration_windows']} calibration windows" + (f", {fits} fits)" if fits else ")")
        f, h = row["folds"], row["holdout"]
        lines.append(
            f"| {name} | {fmt(f['coverage'], True)} | {fmt(f['width'])} | {fmt(f['interval_score'])} "
            f"| {fmt(h['coverage'], True)} | {fmt(h['width'])} | {fmt(h['interval_score'])} |"
        )
        if label == "tidecast" and row.get("before"):
            b = row["before"]
            lines.append(
                f"| tidecast before (each fold from the other folds' residuals), same forecasts | "
                f"{fmt(b['coverage'], True)} | {fmt(b['width'])} | {fmt(b['interval_score'])} | – | – | – |"
            )
        for variant, v in (row.get("variants") or {}).items() if label == "tidecast" else ():
            f, h = v["folds"], v["holdout"]
            lines.append(
                f"| tidecast, {variant}, same forecasts | {fmt(f['coverage'], True)} | {fmt(f['width'])} "
                f"| {fmt(f['interval_score'])} | {fmt(h['coverage'], True)} | {fmt(h['width'])} | {fmt(h['interval_score'])} |"
            )
        if label == "tidecast" and row.get("each_window_held_out"):
            r = row["each_window_held_out"]
            lines.append(
                f"| tidecast, each of its {r['windows']} windows and folds held out in turn (a check of the level, "
                f"with look-ahead) | {fmt(r['coverage'], True)} (single windows {fmt(r['lowest'], True)} to "
                f"{fmt(r['highest'], True)}) | | | | | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="co2,elnino,meters,power")
    parser.add_argument("--power-days", type=int, default=None, help="keep the last N days of examples/power")
    parser.add_argument("--meters", type=int, default=300, help="meters generated (a few percent reach the end)")
    parser.add_argument(
        "--holdout-horizons", type=int, default=3,
        help="horizons held out after the folds (one horizon is one correlated stretch: 92 %% of 12 months is 11)",
    )
    parser.add_argument("--models", default=None, help="only these tidecast candidates (comma-separated)")
    parser.add_argument("--no-libraries", action="store_true", help="tidecast's side only")
    parser.add_argument(
        "--libraries", default=None,
        help="only these library runs: statsforecast-native, statsforecast-conformal, mlforecast-conformal",
    )
    parser.add_argument(
        "--calibration-windows", type=int, default=None,
        help="tidecast's backtest.calibration_windows (default: the spec's, 20)",
    )
    parser.add_argument(
        "--calibration-fits", type=lambda v: v if v == "auto" else int(v), default=None,
        help="tidecast's backtest.calibration_fits (default: the spec's)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", "")
    makers = {
        "power": lambda: power(args.power_days),
        "meters": lambda: meters(args.meters),
        "co2": co2,
        "elnino": elnino,
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            started = time.perf_counter()
            ds = makers[name]()
            ds.holdout = max(1, args.holdout_horizons)
            ds.note += f", held out: the last {ds.holdout} horizon(s)"
            if args.models:
                keep = set(args.models.split(","))
                ds.spec["models"] = [m for m in ds.spec["models"] if m["name"] in keep]
            if args.calibration_windows is not None:
                ds.spec["backtest"] = {**ds.spec.get("backtest", {}), "calibration_windows": args.calibration_windows}
            if args.calibration_fits is not None:
                ds.spec["backtest"] = {**ds.spec.get("backtest", {}), "calibration_fits": args.calibration_fits}
            only = set(args.libraries.split(",")) if args.libraries else None
            result = bench(ds, Path(tmp), libraries=not args.no_libraries, only=only)
            result["seconds"] = time.perf_counter() - started
            results.append(result)
            print(markdown(result) if args.markdown else json.dumps(result, indent=1, default=str), flush=True)
            print(f"({name}: {result['seconds']:.0f} s)\n", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}; "
        f"{time.strftime('%Y-%m-%d')}"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
