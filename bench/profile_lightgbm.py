"""Where tidecast's LightGBM backtest of many series spends its time, against mlforecast called directly.

The data and spec of ``bench/many_series.py`` (N hourly series, 60 days, h=24, 3 folds), the
backtest run on Parquet partitions as the pipeline leaves them.

Ratio (default): ``--repeat R`` pairs of runs, each run in a fresh process as in
``bench/many_series.py`` (tidecast with the local executor on every core, loky pool start and
worker imports included; ``MLForecast.cross_validation`` on the same data), the order alternating
from pair to pair so that a change of load hits both sides; prints each pair's ratio with the load
average and the median::

    python bench/profile_lightgbm.py 10000 --repeat 2

Profile (``--profile``): tidecast's backtest in-process (``n_jobs: 1``) and the direct call in
this process, each under cProfile, LightGBM on ``--threads`` threads on both sides (default 1: a
busy machine's thread contention then weighs the same on both); prints each side's top functions
by own time and the seconds outside LightGBM's boosting and Dataset construction (what tidecast
adds shows up there)::

    python bench/profile_lightgbm.py 2000 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TIDECAST_NO_PROGRESS", "1")

import many_series as bench

_LIGHTGBM_OWN = ("basic.py", "engine.py")  # lightgbm's boosting (Booster.update) and Dataset construction


def _spec(n_jobs: int, lgbm: dict[str, Any]) -> object:
    from tidecast.spec import parse_spec

    return parse_spec(
        {
            "project": "bench",
            "data": {"source": "unused.parquet", "frequency": "h", "series_column": "unique_id",
                     "time_column": "ds", "target_column": "y"},
            "features": {"lags": bench.LAGS, "calendar": []},
            "forecast": {"input_window": "7d", "horizon": f"{bench.H}h", "quantiles": []},
            "backtest": {"folds": bench.FOLDS, "n_jobs": n_jobs},
            "selection": {"metric": "mae"},
            "models": [{"name": "lightgbm", "kind": "lightgbm", "params": {**lgbm, "lags": bench.LAGS, "scaling": "none"}}],
        },
        root=Path("."),
    )


def _load() -> str:
    return "load " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def ratio(n: int, repeat: int, timeout: float) -> None:
    """``repeat`` pairs of fresh-process runs (tidecast local, mlforecast direct), order alternating."""
    ratios = []
    for r in range(repeat):
        kinds = ("local", "direct") if r % 2 == 0 else ("direct", "local")
        seconds: dict[str, float] = {}
        for kind in kinds:
            out = bench.measure(kind, n, "lightgbm", timeout)
            if "seconds" not in out:
                print(f"pair {r + 1}: {kind} failed: {out.get('error')}", flush=True)
                return
            seconds[kind] = out["seconds"]
            print(f"pair {r + 1}: {kind:6s} {out['seconds']:8.1f} s  MAE {out['mae']:.4f}  rows {out['rows']}  "
                  f"peak RSS {out['peak_rss_mb']:.0f} MB  {_load()}", flush=True)
        ratios.append(seconds["local"] / seconds["direct"])
        print(f"pair {r + 1}: tidecast local / mlforecast direct = {ratios[-1]:.2f}x", flush=True)
    print(f"N={n}, {os.cpu_count()} cores, {repeat} pair(s): median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


def _outside_lightgbm(stats: pstats.Stats) -> float:
    """Seconds of own time in functions outside LightGBM's training (basic.py / engine.py)."""
    return sum(
        tt for (path, _, _), (_, _, tt, _, _) in stats.stats.items()  # type: ignore[attr-defined]
        if not ("lightgbm" in path and path.endswith(_LIGHTGBM_OWN))
    )


def profile(n: int, threads: int) -> None:
    """tidecast in-process and mlforecast direct under cProfile, one after the other."""
    import lightgbm  # noqa: F401  -- imported before any clock starts, as in bench/many_series.py
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast

    from tidecast.data.partitions import partition_count, write_partitions
    from tidecast.training import candidate_results

    lgbm = {**bench.LGBM, "n_jobs": threads}
    df = bench.make_data(n)
    parts = write_partitions(df, tempfile.mkdtemp(prefix="bench-parts-"), partition_count(n, len(df), os.cpu_count() or 1))
    data = df[df["ds"] <= df["ds"].max() - pd.Timedelta(hours=bench.H)]  # tidecast's holdout

    def tidecast() -> None:
        candidate_results(parts, _spec(1, lgbm))

    def direct() -> None:
        model = MLForecast(models=[LGBMRegressor(verbose=-1, random_state=0, **lgbm)], freq="h", lags=bench.LAGS)
        model.cross_validation(df=data, h=bench.H, n_windows=bench.FOLDS, step_size=bench.H)

    for label, run in (("tidecast in-process", tidecast), ("mlforecast direct", direct)):
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        run()
        profiler.disable()
        seconds = time.perf_counter() - started
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        print(f"{label}: {seconds:.2f} s, of which {_outside_lightgbm(stats):.2f} s outside LightGBM's training "
              f"({_load()})", flush=True)
        stats.sort_stats("tottime").print_stats(25)
        print(text.getvalue()[:7000], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=2000, help="number of series (default 2000)")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs for the ratio (default 1)")
    parser.add_argument("--profile", action="store_true", help="profile in-process instead of timing the ratio")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads in --profile (default 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to each run (default 3600)")
    args = parser.parse_args()
    if args.profile:
        profile(args.n, args.threads)
    else:
        ratio(args.n, args.repeat, args.timeout)


if __name__ == "__main__":
    main()
