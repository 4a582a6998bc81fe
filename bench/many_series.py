"""Many-series benchmark: tidecast's backtest (local and Dask executors) against statsforecast /
mlforecast called directly on the same data and folds, and darts / sktime on a subset.

N hourly series of DAYS days (same timestamps), 24-step horizon, 3 folds of 24 steps each, plus
the 24-step holdout tidecast keeps out of every fold (the direct calls are given the data
without it, so both forecast the same 3 x 24 steps of every series).

    python bench/many_series.py                      # N = 100, 1000 (LightGBM), 100 (AutoETS)
    BENCH_N=100,1000,10000 BENCH_ETS_N=100,1000 python bench/many_series.py
    BENCH_CMP_PYTHON=/path/to/python-with-darts-and-sktime python bench/many_series.py

Prints one table: seconds, seconds per series, the ratio to the direct call, and peak RSS
(of the process tree: the bench process and its workers) of each run. Every configuration runs
in its own subprocess so that peak memory is its own.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

H, FOLDS, SEASON = 24, 3, 24
DAYS = int(os.environ.get("BENCH_DAYS", "60"))
LGBM = {"n_estimators": 50, "num_leaves": 31, "learning_rate": 0.1}
LAGS = [1, 24, 168]
CMP_SUBSET = int(os.environ.get("BENCH_CMP_SERIES", "10"))


def make_data(n: int, days: int = DAYS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    hour = np.asarray(ds.hour, float)
    frames = []
    for i in range(n):
        level = rng.uniform(5, 100)
        y = level * (1 + 0.3 * np.sin(2 * np.pi * (hour - rng.uniform(0, 24)) / 24)) + rng.normal(0, level * 0.05, len(ds))
        frames.append(pd.DataFrame({"unique_id": f"s{i:05d}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def _peak_rss_mb() -> float:
    """Peak RSS of this process plus its (waited-for or live) children, in MB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    live = 0.0
    try:
        import psutil

        live = sum(c.memory_info().rss for c in psutil.Process().children(recursive=True)) / 2**20
    except Exception:
        pass
    return own + max(kids, live)


# ------------------------------------------------------------------------------------- runners
def run_tidecast(n: int, model: str, executor: str) -> float:
    from tidecast.spec import parse_spec
    from tidecast.training import candidate_results

    df = make_data(n)
    candidate = (
        {"name": "autoets", "kind": "autoets", "params": {"season_length": SEASON}}
        if model == "autoets"
        else {"name": "lightgbm", "kind": "lightgbm", "params": {**LGBM, "lags": LAGS}}
    )
    spec = parse_spec(
        {
            "project": "bench",
            "data": {"source": "unused.parquet", "frequency": "h", "series_column": "unique_id",
                     "time_column": "ds", "target_column": "y"},
            "features": {"lags": LAGS, "calendar": []},
            "forecast": {"input_window": "7d", "horizon": f"{H}h"},
            "backtest": {"folds": FOLDS, "n_jobs": -1},
            "selection": {"metric": "mae"},
            "models": [candidate],
            "executor": {"kind": executor} if executor == "local" else {"kind": "dask", "n_workers": os.cpu_count()},
        },
        root=Path("."),
    )
    started = time.perf_counter()
    out = candidate_results(df, spec)
    seconds = time.perf_counter() - started
    board = out["leaderboard"]
    if board["status"].iloc[0] != "ok":
        raise RuntimeError(board["error"].iloc[0])
    return seconds


def run_direct(n: int, model: str) -> float:
    df = make_data(n)
    df = df[df["ds"] <= df["ds"].max() - pd.Timedelta(hours=H)]  # tidecast's holdout
    started = time.perf_counter()
    if model == "autoets":
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS

        sf = StatsForecast(models=[AutoETS(season_length=SEASON)], freq="h", n_jobs=-1)
        sf.cross_validation(df=df, h=H, n_windows=FOLDS, step_size=H)
    else:
        from lightgbm import LGBMRegressor
        from mlforecast import MLForecast

        mlf = MLForecast(models=[LGBMRegressor(verbose=-1, random_state=0, **LGBM)], freq="h", lags=LAGS)
        mlf.cross_validation(df=df, h=H, n_windows=FOLDS, step_size=H)
    return time.perf_counter() - started


_CMP_CODE = r"""
import sys, time, numpy as np, pandas as pd, warnings
warnings.filterwarnings("ignore")
lib, path, H, FOLDS, SEASON = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
df = pd.read_parquet(path)
df = df[df["ds"] <= df["ds"].max() - pd.Timedelta(hours=H)]
started = time.perf_counter()
if lib == "darts":
    from darts import TimeSeries
    from darts.models import AutoETS
    for uid, g in df.groupby("unique_id"):
        s = TimeSeries.from_dataframe(g, time_col="ds", value_cols="y", freq="h")
        AutoETS(season_length=SEASON).historical_forecasts(
            s, start=len(s) - FOLDS * H, forecast_horizon=H, stride=H, retrain=True, last_points_only=False, verbose=False)
else:
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.forecasting.model_selection import ExpandingWindowSplitter
    from sktime.forecasting.statsforecast import StatsForecastAutoETS
    for uid, g in df.groupby("unique_id"):
        y = g.set_index("ds")["y"].asfreq("h")
        cv = ExpandingWindowSplitter(fh=list(range(1, H + 1)), initial_window=len(y) - FOLDS * H, step_length=H)
        evaluate(StatsForecastAutoETS(season_length=SEASON), cv, y)
print(time.perf_counter() - started)
"""


def run_other(lib: str, n: int) -> float:
    python = os.environ.get("BENCH_CMP_PYTHON", "/tmp/venv_cmp/bin/python")
    if not Path(python).exists():
        raise RuntimeError(f"no python with {lib} at {python} (set BENCH_CMP_PYTHON)")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_cmp_{n}.parquet"
    make_data(n).to_parquet(path, index=False)
    done = subprocess.run(
        [python, "-c", _CMP_CODE, lib, str(path), str(H), str(FOLDS), str(SEASON)],
        capture_output=True, text=True, timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return float(done.stdout.strip().splitlines()[-1])


def child(kind: str, n: int, model: str) -> None:
    """One configuration, in a fresh process: prints a JSON line with seconds and peak RSS."""
    if kind in ("local", "dask"):
        seconds = run_tidecast(n, model, kind)
    elif kind == "direct":
        seconds = run_direct(n, model)
    else:
        seconds = run_other(kind, n)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}))


def measure(kind: str, n: int, model: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(n), model], capture_output=True, text=True, timeout=3600
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"error": tail[:120]}
    return json.loads(lines[-1])


def main() -> None:
    sizes = [int(x) for x in os.environ.get("BENCH_N", "100,1000").split(",") if x]
    ets_sizes = [int(x) for x in os.environ.get("BENCH_ETS_N", "100").split(",") if x]
    others = [x for x in os.environ.get("BENCH_OTHERS", "darts,sktime").split(",") if x]
    rows = []
    plan = [("lightgbm", n) for n in sizes] + [("autoets", n) for n in ets_sizes]
    for model, n in plan:
        base = measure("direct", n, model)
        kinds = ["direct", "local", "dask"]
        results = {"direct": base, "local": measure("local", n, model), "dask": measure("dask", n, model)}
        if model == "autoets":
            for lib in others:
                kinds.append(lib)
                results[lib] = measure(lib, min(n, CMP_SUBSET), model)
        for kind in kinds:
            r = results[kind]
            series = min(n, CMP_SUBSET) if kind in others else n
            label = {"direct": "statsforecast" if model == "autoets" else "mlforecast"}.get(kind, kind)
            if kind in ("local", "dask"):
                label = f"tidecast {kind}"
            if "error" in r:
                rows.append((model, n, label, series, None, None, None, None, r["error"]))
                continue
            ratio = r["seconds"] / base["seconds"] if "seconds" in base and kind not in others else None
            per = r["seconds"] / series
            rows.append((model, n, label, series, r["seconds"], per, ratio, r["peak_rss_mb"], ""))
        for row in rows[-len(kinds):]:  # as they come, in case a long run is cut short
            print("...", row, file=sys.stderr, flush=True)

    print(f"\nmany-series backtest: {DAYS} days hourly, h={H}, {FOLDS} folds; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    head = f"| {'model':8} | {'N':>6} | {'runner':15} | {'series':>6} | {'seconds':>8} | {'ms/series':>9} | {'x direct':>8} | {'peak RSS MB':>11} | note"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:]))
    for model, n, label, series, secs, per, ratio, rss, note in rows:
        fmt = lambda v, f: (f"{v:{f}}" if v is not None else "–")  # noqa: E731
        print(f"| {model:8} | {n:>6} | {label:15} | {series:>6} | {fmt(secs, '8.1f'):>8} | "
              f"{fmt(None if per is None else per * 1000, '9.1f'):>9} | {fmt(ratio, '8.2f'):>8} | {fmt(rss, '11.0f'):>11} | {note}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
