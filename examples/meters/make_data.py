"""Write data/meters.parquet: 1,000 hourly meters (tidecast.datasets.make_meters, seed 0) of
different start dates and lengths, plus three meters with only a few days of readings, which the
pipeline skips (and lists) as too short for the input window.

    python examples/meters/make_data.py [--series 1000] [--days 75]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tidecast.datasets import make_meters


def build(series: int = 1000, days: int = 75, seed: int = 0) -> pd.DataFrame:
    frame = make_meters(n_series=series, days=days, freq="h", seed=seed)
    short = make_meters(n_series=3, days=4, freq="h", seed=seed + 1)
    short["series_id"] = short["series_id"].str.replace("meter_", "short_", regex=False)
    # the short meters end with the others, so that they are skipped for length, not for being stale
    end = frame["timestamp"].max()
    short["timestamp"] = short["timestamp"] + (end - short.groupby("series_id")["timestamp"].transform("max"))
    return pd.concat([frame, short], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=75)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "meters.parquet")
    args = parser.parse_args()
    frame = build(args.series, args.days)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    print(f"{args.out}: {frame['series_id'].nunique():,} meters, {len(frame):,} rows")


if __name__ == "__main__":
    main()
