"""Backtest overhead: tidecast's backtest against statsforecast/mlforecast called directly (issue 3).

On the power example (5-minute data, 288-step horizon, 3 expanding folds before a held-out final
horizon) every model is backtested twice, on the same data and the same fold cut-offs:

* **tidecast**: what ``tidecast run``'s backtest step does for the candidate: the factory built
  from the spec's candidate (:func:`tidecast.training.factory_for`), the spec's folds
  (:func:`tidecast.evaluation.folds.folds_for_spec`, holdout and ``min_train`` as
  ``candidate_results`` lays them out), the spec's executor, and
  :func:`tidecast.evaluation.backtest.backtest`;
* **direct**: ``StatsForecast(...).cross_validation`` / ``MLForecast(...).cross_validation`` on the
  data without the held-out final horizon (so the cut-offs coincide), configured to do the same
  work as tidecast's adapters:

  - ``autoets`` (season 288 > 24, so deseasonalised): ``MSTL(288, trend_forecaster=AutoETS(model="ZZN"))``
    with R-like LOESS jumps, ``input_size`` = the candidate's ``fit_window``;
  - ``mstl``: ``MSTL([288, 2016], trend_forecaster=AutoETS(model="ZZN"))``, same jumps and ``input_size``;
  - ``lightgbm``: ``LGBMRegressor(**params, verbose=-1, random_state=seed)`` over the spec's lags,
    rolling statistics on lag 1, and the known-future ``temperature`` plus the calendar/Fourier
    columns of the features step as dynamic exogenous columns (tidecast recomputes those from
    ``ds`` inside each fit; the direct call reads them from the frame).

Statistical models run twice: with the spec's quantiles (``level=[80]`` directly) and point only.
LightGBM has no native intervals, so ``tidecast run`` backtests it point-only and derives its
quantiles afterwards from the fold residuals (conformal): only the point variant is timed; the
post-processing (conformal + metrics, the rest of ``tidecast.training._backtest_one``) is timed
once and shown apart, outside the ratio.

Each side is warmed up once (imports, numba compilation), then the two sides alternate
(tidecast, direct, direct, tidecast, ...) and the best of ``--repeat`` runs counts. The script
checks that the cut-offs match and reports the largest absolute difference of the forecasts.

    .venv/bin/python bench/backtest.py [--models autoets,mstl,lightgbm] [--repeat N] [--markdown]
    .venv/bin/python bench/backtest.py --models lightgbm --lightgbm-jobs 1 --repeat 5   # steadier timings
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "power"
MODELS = ("autoets", "mstl", "lightgbm")
STATISTICAL = ("autoets", "mstl")
KEYS = ["unique_id", "ds"]


# ---------------------------------------------------------------------------------------- setup
@dataclass
class Setup:
    spec: Any
    frame: pd.DataFrame  # the features step's output: what the backtest step receives
    ctx: Any
    folds: list[Any]
    h: int
    direct_df: pd.DataFrame  # frame without the held-out final horizon


def load(example: Path) -> Setup:
    from tidecast.evaluation.folds import folds_for_spec
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import run
    from tidecast.spec import load_spec
    from tidecast.training import fit_context

    spec = load_spec(example / "tidecast.yaml")
    # the cached features step (computed on the first run); wait for a run holding the project lock
    frame = run(training_pipeline(), spec, until="features", lock_timeout=600).outputs["features"]
    frame = frame.sort_values(KEYS, kind="stable", ignore_index=True)
    window, horizon = spec.forecast_steps()
    # the folds of tidecast.training.candidate_results: holdout = one horizon, min_train = input window
    folds = folds_for_spec(frame, spec, holdout=True, min_train=window)
    direct_df = frame[frame["ds"] <= folds[-1].test_end].reset_index(drop=True)
    return Setup(spec, frame, fit_context(spec, frame), folds, horizon, direct_df)


def candidate(spec: Any, name: str) -> Any:
    from tidecast.evaluation.search import is_searched

    found = [c for c in spec.models if c.name == name]
    if not found:
        raise SystemExit(f"the spec has no candidate '{name}'")
    if is_searched(found[0].params):
        raise SystemExit(f"candidate '{name}' searches its parameters; this benchmark times one parameter set")
    return found[0]


def steps(spec: Any, value: Any) -> int:
    from tidecast.durations import to_steps

    return to_steps(value, spec.data.frequency)


def levels_for(quantiles: list[float]) -> tuple[list[int], dict[str, str]]:
    """statsforecast levels for the quantiles, and their output columns -> tidecast's ``q`` columns."""
    levels, names = set(), {}
    for q in quantiles:
        level = round(abs(2 * q - 1) * 100)
        if level == 0:
            continue
        levels.add(level)
        names[f"model-{'lo' if q < 0.5 else 'hi'}-{level}"] = f"q{q:g}"
    return sorted(levels), names


# ------------------------------------------------------------------------------------ the sides
def partitions_for(s: Setup, make_model: Any, executor: Any) -> list[list[Any]] | None:
    """The series partitions ``_backtest_one`` would use (None: one piece, as for one series)."""
    try:
        from tidecast.models.registry import fits_per_series
        from tidecast.training.candidates import series_partitions
    except ImportError:  # a tidecast without series partitions
        return None
    kind = getattr(getattr(make_model, "candidate", None), "kind", None)
    if kind is None or not fits_per_series(kind):
        return None
    return series_partitions(s.frame, int(getattr(executor, "n_workers", 1) or 1))


def tidecast_side(s: Setup, make_model: Callable[[], Any], quantiles: list[float], folds: list[Any] | None = None):
    """``tidecast run``'s backtest of one candidate (tidecast.training._backtest_one, before scoring)."""
    from tidecast.evaluation.backtest import backtest
    from tidecast.pipeline.executors import make_executor

    def run() -> pd.DataFrame:
        executor = make_executor(s.spec.executor, s.spec.backtest.n_jobs)
        try:
            extra = {}
            parts = partitions_for(s, make_model, executor)
            if parts is not None:
                extra["partitions"] = parts
            result = backtest(
                make_model, s.frame, s.ctx, folds or s.folds, quantiles=quantiles, executor=executor, **extra
            )
        finally:
            executor.close()
        if result.errors:
            raise RuntimeError(f"tidecast backtest failed: {result.error_summary()}")
        return result.forecasts

    return run


def stl_kwargs(seasons: list[int]) -> dict[str, int]:
    """R's ``stl`` jumps (LOESS every ~tenth point), what tidecast's STL decompositions use."""
    jump = max(1, math.ceil(min(seasons) / 10))
    return {"trend_jump": jump, "low_pass_jump": jump}


def direct_statistical(s: Setup, name: str, quantiles: list[float], n_windows: int | None = None):
    """``StatsForecast.cross_validation`` doing the work of tidecast's adapter for ``name``."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    cand = candidate(s.spec, name)
    day = steps(s.spec, "1d")
    input_size = steps(s.spec, cand.fit_window) if cand.fit_window is not None else None
    levels, rename = levels_for(quantiles)
    df = s.direct_df[["unique_id", "ds", "y"]]  # neither adapter uses exogenous columns

    def model() -> Any:
        if name == "autoets":  # one daily season of 288 steps > 24: STL + non-seasonal ETS
            ets = str(cand.params.get("model", "ZZZ"))
            rest = {k: v for k, v in cand.params.items() if k not in ("season_length", "deseasonalize", "stl_kwargs")}
            trend = AutoETS(season_length=1, **{**rest, "model": ets[:2] + "N"})
            return MSTL(season_length=day, trend_forecaster=trend, stl_kwargs=stl_kwargs([day]), alias="model")
        seasons = [steps(s.spec, v) for v in cand.params.get("season_length", [day])]
        return MSTL(
            season_length=seasons, trend_forecaster=AutoETS(model="ZZN"), stl_kwargs=stl_kwargs(seasons), alias="model"
        )

    def run() -> pd.DataFrame:
        sf = StatsForecast(models=[model()], freq=s.spec.data.frequency, n_jobs=s.spec.backtest.n_jobs)
        cv = sf.cross_validation(
            h=s.h,
            df=df,
            n_windows=n_windows or len(s.folds),
            step_size=s.h,
            input_size=input_size,
            level=levels or None,
        )
        return cv.rename(columns={"model": "yhat", **rename})

    return run


def direct_lightgbm(s: Setup, params: dict[str, Any], n_windows: int | None = None):
    """``MLForecast.cross_validation`` doing the work of tidecast's lightgbm adapter."""
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMax, RollingMean, RollingMin, RollingStd

    from tidecast.data.features import time_feature_names

    spec = s.spec
    lags = sorted({steps(spec, v) for v in spec.features.lags})
    stat = {"mean": RollingMean, "std": RollingStd, "min": RollingMin, "max": RollingMax}
    rolling = [stat[name](window_size=steps(spec, r.window)) for r in spec.features.rolling for name in r.stats]
    exog = [*s.ctx.exog_future, *time_feature_names(spec.features, spec.data.frequency)]
    df = s.direct_df[["unique_id", "ds", "y", *exog]]

    def run() -> pd.DataFrame:
        mlf = MLForecast(
            models={"model": LGBMRegressor(**{"verbose": -1, "random_state": spec.seed, **params})},
            freq=spec.data.frequency,
            lags=lags,
            lag_transforms={1: rolling} if rolling else None,
            num_threads=1,
        )
        cv = mlf.cross_validation(
            df, n_windows=n_windows or len(s.folds), h=s.h, step_size=s.h, static_features=[], dropna=True
        )
        return cv.rename(columns={"model": "yhat"})

    return run


# ------------------------------------------------------------------------------------ measuring
@dataclass
class Row:
    model: str
    variant: str
    tidecast_runs: list[tuple[float, float]]  # (wall s, CPU s) per run
    direct_runs: list[tuple[float, float]]
    max_dyhat: float
    max_dq: float | None
    cutoffs_match: bool
    load: tuple[float, float]
    scoring_s: float | None = None

    @property
    def tidecast_s(self) -> float:
        return min(w for w, _ in self.tidecast_runs)

    @property
    def direct_s(self) -> float:
        return min(w for w, _ in self.direct_runs)

    @property
    def tidecast_cpu(self) -> float:
        return min(c for _, c in self.tidecast_runs)

    @property
    def direct_cpu(self) -> float:
        return min(c for _, c in self.direct_runs)

    @property
    def ratio(self) -> float:
        return self.tidecast_s / self.direct_s

    @property
    def overhead(self) -> float:
        return (self.ratio - 1) * 100

    @property
    def cpu_overhead(self) -> float:
        return (self.tidecast_cpu / self.direct_cpu - 1) * 100


def timed(fn: Callable[[], pd.DataFrame]) -> tuple[tuple[float, float], pd.DataFrame]:
    """((wall s, CPU s of this process, every thread), the result)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def compare(s: Setup, ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[float, float | None, bool]:
    """max |Δyhat|, max |Δquantile| and whether the cut-offs (and rows) coincide."""
    from tidecast.frames import quantile_of

    cutoffs = sorted(pd.to_datetime(theirs["cutoff"].unique())) == [pd.Timestamp(f.cutoff) for f in s.folds]
    merged = ours.merge(theirs, on=KEYS, how="outer", suffixes=("", "_direct"), validate="one_to_one", indicator=True)
    same_rows = bool((merged["_merge"] == "both").all()) and len(ours) == len(theirs)
    same_cut = bool((pd.to_datetime(merged["cutoff"]) == pd.to_datetime(merged["cutoff_direct"])).all())
    dy = float(np.nanmax(np.abs(merged["yhat"] - merged["yhat_direct"])))
    qcols = [c for c in ours.columns if quantile_of(c) is not None and f"{c}_direct" in merged.columns]
    dq = max((float(np.nanmax(np.abs(merged[c] - merged[f"{c}_direct"]))) for c in qcols), default=None)
    return dy, dq, cutoffs and same_rows and same_cut


def measure(model: str, variant: str, s: Setup, ours: Callable, theirs: Callable, repeat: int) -> Row:
    load0 = os.getloadavg()[0]
    runs: dict[str, list[tuple[float, float]]] = {"t": [], "d": []}
    outs: dict[str, pd.DataFrame] = {}
    for r in range(repeat):
        for side in ("t", "d") if r % 2 == 0 else ("d", "t"):  # alternate, so load drift hits both sides
            seconds, outs[side] = timed(ours if side == "t" else theirs)
            runs[side].append(seconds)
    dy, dq, match = compare(s, outs["t"], outs["d"])
    return Row(model, variant, runs["t"], runs["d"], dy, dq, match, (load0, os.getloadavg()[0]))


def scoring_seconds(s: Setup, forecasts: pd.DataFrame, conformal: bool) -> float:
    """What tidecast.training._backtest_one does after the backtest: conformal quantiles, metrics."""
    from tidecast.evaluation.backtest import BacktestResult
    from tidecast.evaluation.calibration import cross_fold_intervals as _conformal_cross_fold
    from tidecast.evaluation.metrics import evaluate
    from tidecast.training.settings import season_length

    quantiles = list(s.spec.forecast.quantiles)
    started = time.perf_counter()
    if conformal:
        forecasts = _conformal_cross_fold(forecasts, quantiles)
    m = season_length(s.spec)
    scales = BacktestResult(forecasts, s.folds, pd.DataFrame()).scales(s.frame, m)
    evaluate(forecasts, scales, season_length=m, quantiles=quantiles)
    return time.perf_counter() - started


def profile(label: str, fn: Callable[[], Any], top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    print(f"\n--- cProfile of the tidecast side: {label} (cumulative, top {top}) ---")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)


def bench_model(
    name: str, s: Setup, repeat: int, point_only: bool, do_profile: bool, lightgbm_jobs: int | None = None
) -> list[Row]:
    from tidecast.models.conformal import needs_conformal
    from tidecast.training import factory_for

    cand = candidate(s.spec, name)
    params = dict(cand.params)
    if name == "lightgbm" and lightgbm_jobs is not None:  # both sides: LGBMRegressor(n_jobs=...)
        params["n_jobs"] = lightgbm_jobs
    factory = factory_for(cand, params, s.spec)
    spec_q = list(s.spec.forecast.quantiles)
    native = not needs_conformal(factory())
    rows: list[Row] = []

    if name in STATISTICAL:
        variants = [("point", [])] if point_only or not spec_q else [(f"quantiles {spec_q}", spec_q), ("point", [])]
        # warm-up: imports and numba compilation, one fold each side
        tidecast_side(s, factory, spec_q, s.folds[-1:])()
        direct_statistical(s, name, spec_q, n_windows=1)()
        for label, qs in variants:
            rows.append(
                measure(
                    name,
                    label,
                    s,
                    tidecast_side(s, factory, qs if native else []),
                    direct_statistical(s, name, qs if native else []),
                    repeat,
                )
            )
            if do_profile:
                profile(f"{name} {label}", tidecast_side(s, factory, qs), 30)
        rows[0].scoring_s = scoring_seconds(s, tidecast_side(s, factory, spec_q if native else [])(), conformal=False)
    else:
        cheap = {**params, "n_estimators": 2}
        tidecast_side(s, factory_for(cand, cheap, s.spec), [], s.folds[-1:])()
        direct_lightgbm(s, cheap, n_windows=1)()
        ours, theirs = tidecast_side(s, factory, []), direct_lightgbm(s, params)
        row = measure(name, "point (quantiles: conformal afterwards)", s, ours, theirs, repeat)
        row.scoring_s = scoring_seconds(s, ours(), conformal=bool(spec_q))
        rows.append(row)
        if do_profile:
            profile(f"{name} point", ours, 30)
    return rows


# --------------------------------------------------------------------------------------- report
def environment() -> dict[str, str]:
    mem = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f"{pages * size / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    libs = ", ".join(
        f"{p} {version(p)}" for p in ("tidecast", "statsforecast", "mlforecast", "lightgbm", "pandas", "numpy")
    )
    return {"python": platform.python_version(), "cpus": str(os.cpu_count()), "memory": mem, "libraries": libs}


def _fmt_q(row: Row) -> str:
    return "-" if row.max_dq is None else f"{row.max_dq:.2g}"


def _cols(row: Row) -> list[str]:
    return [
        row.model,
        row.variant,
        f"{row.tidecast_s:.2f}",
        f"{row.direct_s:.2f}",
        f"{row.ratio:.3f}",
        f"{row.overhead:+.1f} %",
        f"{row.tidecast_cpu:.2f} / {row.direct_cpu:.2f}",
        f"{row.cpu_overhead:+.1f} %",
        f"{row.max_dyhat:.2g}",
        _fmt_q(row),
        "yes" if row.cutoffs_match else "NO",
        f"{row.load[0]:.1f} → {row.load[1]:.1f}",
    ]


HEADERS = [
    "model",
    "variant",
    "tidecast s",
    "direct s",
    "ratio",
    "overhead",
    "CPU s (tc / direct)",
    "CPU overhead",
    "max abs Δyhat",
    "max abs Δq",
    "cut-offs match",
    "load 1 min",
]


def print_table(rows: list[Row], s: Setup, repeat_of: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(200, Console().width))
    table = Table(
        title=f"Backtest: tidecast vs direct statsforecast/mlforecast ({len(s.folds)} folds × {s.h} steps; "
        "best of N, wall clock)"
    )
    for i, name in enumerate(HEADERS):
        table.add_column(name, justify="right" if i >= 2 else "left")
    for row in rows:
        cols = _cols(row)
        cols[5] = f"[{'green' if row.overhead <= 10 else 'red'}]{cols[5]}[/]"
        table.add_row(*cols)
    console.print(table)
    for row in rows:
        runs_t = ", ".join(f"{w:.2f}" for w, _ in row.tidecast_runs)
        runs_d = ", ".join(f"{w:.2f}" for w, _ in row.direct_runs)
        extra = (
            f"; conformal + metrics after the backtest (not in the ratio): {row.scoring_s:.2f} s"
            if row.scoring_s
            else ""
        )
        console.print(f"  {row.model} / {row.variant}: tidecast runs [{runs_t}] s, direct runs [{runs_d}] s{extra}")
    console.print(f"  repeats: {repeat_of}")


def print_markdown(rows: list[Row]) -> None:
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADERS) - 2)) + "|")
    for row in rows:
        print("| " + " | ".join(_cols(row)) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, among {', '.join(MODELS)}")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per side, best counts (default: 1 for statistical models, 3 for lightgbm)",
    )
    parser.add_argument("--example", type=Path, default=EXAMPLE, help="the project folder (default: examples/power)")
    parser.add_argument("--point-only", action="store_true", help="statistical models: skip the quantile variant")
    parser.add_argument("--profile", action="store_true", help="also cProfile one run of the tidecast side")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument(
        "--lightgbm-jobs",
        type=int,
        default=None,
        help="n_jobs for LightGBM on both sides (default: the spec's, i.e. every core); 1 gives steadier "
        "timings on a busy machine",
    )
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose among {', '.join(MODELS)}")

    env = environment()
    print(f"python {env['python']} · {env['cpus']} CPUs · {env['memory']} · {env['libraries']}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    started = time.perf_counter()
    s = load(args.example)
    print(
        f"data: {len(s.frame)} rows, {s.frame['unique_id'].nunique()} series, {s.frame['ds'].min()} .. "
        f"{s.frame['ds'].max()}; folds: "
        + ", ".join(f"cut-off {f.cutoff}" for f in s.folds)
        + f"; holdout from {s.folds[-1].test_end + pd.Timedelta(s.spec.data.frequency)}",
        flush=True,
    )
    rows: list[Row] = []
    repeat_of: dict[str, int] = {}
    for name in models:
        repeat = args.repeat or (1 if name in STATISTICAL else 3)
        repeat_of[name] = repeat
        print(f"timing {name} (best of {repeat}) ...", flush=True)
        rows += bench_model(name, s, repeat, args.point_only, args.profile, args.lightgbm_jobs)
    print_table(rows, s, repeat_of)
    if args.markdown:
        print()
        print_markdown(rows)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    bad = [r for r in rows if not r.cutoffs_match]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
