"""Where tidecast's LightGBM backtest of many series spends its time, against mlforecast called directly.

The data and spec of ``bench/many_series.py`` (N hourly series, 60 days, h=24, 3 folds), the
backtest run on Parquet partitions as the pipeline leaves them: first with the local executor
(every core), then in-process under cProfile (the top of the profile is printed), then
``MLForecast.cross_validation`` on the same data::

    python bench/profile_lightgbm.py 10000
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TIDECAST_NO_PROGRESS", "1")

import many_series as bench


def _spec(n_jobs: int) -> object:
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
            "models": [{"name": "lightgbm", "kind": "lightgbm", "params": {**bench.LGBM, "lags": bench.LAGS, "scaling": "none"}}],
        },
        root=Path("."),
    )


def main(n: int) -> None:
    import lightgbm  # noqa: F401  -- imported before any clock starts, as in bench/many_series.py
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast

    from tidecast.data.partitions import partition_count, write_partitions
    from tidecast.training import candidate_results

    df = bench.make_data(n)
    parts = write_partitions(df, tempfile.mkdtemp(prefix="bench-parts-"), partition_count(n, len(df), os.cpu_count() or 1))
    for label, n_jobs, profile in (("tidecast local, every core", -1, False), ("tidecast in-process", 1, True)):
        profiler = cProfile.Profile()
        started = time.perf_counter()
        if profile:
            profiler.enable()
        out = candidate_results(parts, _spec(n_jobs))
        if profile:
            profiler.disable()
        timings = out["results"]["lightgbm"].backtest.timings
        print(f"{label}: {time.perf_counter() - started:.2f} s (fit {timings['fit_seconds'].sum():.2f} s, "
              f"predict {timings['predict_seconds'].sum():.2f} s, summed over folds)", flush=True)
        if profile:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
            print(text.getvalue()[:9000])
    data = df[df["ds"] <= df["ds"].max() - pd.Timedelta(hours=bench.H)]  # tidecast's holdout
    started = time.perf_counter()
    model = MLForecast(models=[LGBMRegressor(verbose=-1, random_state=0, **bench.LGBM)], freq="h", lags=bench.LAGS)
    model.cross_validation(df=data, h=bench.H, n_windows=bench.FOLDS, step_size=bench.H)
    print(f"mlforecast direct: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
