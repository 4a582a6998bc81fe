"""Accuracy on calendar frequencies: tidecast's backtest against statsforecast called directly on the
same folds, on the real series statsmodels ships (weekly CO2, monthly El Nino, quarterly US GDP,
yearly sunspots).

For each series and model (seasonal naive, AutoETS, AutoTheta, Croston) it prints tidecast's MASE and
MAE over the folds, statsforecast's on the same cut-offs, the largest forecast difference, and the
seconds each took. Run from the repository root:

    .venv/bin/python bench/frequencies.py [--folds 4] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

from tidecast.evaluation.backtest import backtest
from tidecast.evaluation.folds import folds_for_spec
from tidecast.evaluation.metrics import evaluate
from tidecast.models.registry import build_forecaster
from tidecast.spec import parse_spec
from tidecast.training import fit_context, season_length


def series() -> dict[str, tuple[str, pd.DataFrame, str, str]]:
    """name -> (frequency, unique_id/ds/y frame, input window, horizon)."""
    co2 = sm.datasets.co2.load_pandas().data["co2"].loc["1980":].interpolate()
    wide = sm.datasets.elnino.load_pandas().data
    elnino = wide.melt(id_vars="YEAR", var_name="month", value_name="y")
    elnino["ds"] = pd.to_datetime(elnino["YEAR"].astype(int).astype(str) + "-" + elnino["month"], format="%Y-%b")
    macro = sm.datasets.macrodata.load_pandas().data
    quarters = pd.PeriodIndex.from_fields(
        year=macro["year"].astype(int), quarter=macro["quarter"].astype(int), freq="Q"
    )
    sun = sm.datasets.sunspots.load_pandas().data
    frames = {
        "co2 (weekly)": ("W-SAT", pd.DataFrame({"ds": co2.index, "y": co2.to_numpy()}), "104 weeks", "13 weeks"),
        "elnino (monthly)": ("MS", elnino.sort_values("ds")[["ds", "y"]], "3 years", "12 months"),
        "gdp (quarterly)": (
            "QS",
            pd.DataFrame({"ds": quarters.start_time, "y": macro["realgdp"].to_numpy()}),
            "4 years",
            "2 years",
        ),
        "sunspots (yearly)": (
            "YS",
            pd.DataFrame({"ds": pd.to_datetime(sun["YEAR"].astype(int).astype(str)), "y": sun["SUNACTIVITY"]}),
            "20 years",
            "5 years",
        ),
    }
    return {
        k: (f, d.assign(unique_id="s")[["unique_id", "ds", "y"]].reset_index(drop=True), w, h)
        for k, (f, d, w, h) in frames.items()
    }


def direct_model(kind: str, m: int):
    from statsforecast.models import AutoETS, AutoTheta, CrostonClassic, SeasonalNaive

    return {
        "seasonal_naive": lambda: SeasonalNaive(season_length=m),
        "autoets": lambda: AutoETS(season_length=m),
        "autotheta": lambda: AutoTheta(season_length=m),
        "croston": CrostonClassic,
    }[kind]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--models", default="seasonal_naive,autoets,autotheta,croston")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    from statsforecast import StatsForecast

    rows = []
    for name, (freq, df, window, horizon) in series().items():
        spec = parse_spec(
            {
                "project": "bench",
                "data": {"source": "x.csv", "frequency": freq},
                "forecast": {"input_window": window, "horizon": horizon, "quantiles": []},
                "backtest": {"folds": args.folds},
            },
            root=Path("."),
        )
        m, ctx, folds = season_length(spec), fit_context(spec, df), folds_for_spec(df, spec)
        h = spec.forecast_steps()[1]
        for kind in args.models.split(","):
            if kind == "autoets" and m > 24:
                continue  # tidecast deseasonalises seasons above 24 with STL: a different model from AutoETS(m)
            started = time.perf_counter()
            ours = backtest(lambda kind=kind, freq=freq: build_forecaster(kind, kind, {}, freq=freq), df, ctx, folds)
            ours_s = time.perf_counter() - started
            started = time.perf_counter()
            parts = []
            for fold in folds:
                out = StatsForecast(models=[direct_model(kind, m)], freq=freq).forecast(
                    df=df[df["ds"] <= fold.cutoff], h=h
                )
                parts.append(out.rename(columns={out.columns[-1]: "yhat"}).assign(fold=fold.index))
            theirs_s = time.perf_counter() - started
            theirs = pd.concat(parts).merge(df, on=["unique_id", "ds"])
            a = evaluate(ours.forecasts, ours.scales(df, m), season_length=m).aggregate
            b = evaluate(theirs, ours.scales(df, m), season_length=m).aggregate
            joined = ours.forecasts.merge(theirs, on=["unique_id", "ds", "fold"], suffixes=("", "_sf"))
            rows.append(
                {
                    "series": name,
                    "freq": freq,
                    "season": m,
                    "model": kind,
                    "mase": a["mase"],
                    "mase statsforecast": b["mase"],
                    "mae": a["mae"],
                    "mae statsforecast": b["mae"],
                    "max |diff|": float(np.max(np.abs(joined["yhat"] - joined["yhat_sf"]))),
                    "s": ours_s,
                    "s statsforecast": theirs_s,
                }
            )
    table = pd.DataFrame(rows)
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {args.folds} folds")
    print(_markdown(table) if args.markdown else table.to_string(index=False))


def _markdown(table: pd.DataFrame) -> str:
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
