"""The synthetic data sets: deterministic, realistic, and damaged like real meter data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.datasets import make_meters, make_power


@pytest.fixture(scope="module")
def power() -> pd.DataFrame:
    return make_power(days=120, seed=7)


def _utc(frame: pd.DataFrame) -> pd.Series:
    """The readings' instants, read as Europe/Paris wall-clock times (first pass of a repeated hour first)."""
    from tidecast.data.long_format import to_long
    from tidecast.spec import DataSpec, TargetSpec

    data = DataSpec(source="power.csv", target_column="power_kw", frequency="5min", timezone="Europe/Paris")
    return to_long(frame, data, TargetSpec(), source_name="power.csv")["ds"]


def test_columns_and_types(power: pd.DataFrame) -> None:
    assert list(power.columns) == ["timestamp", "power_kw", "temperature"]
    assert power["timestamp"].map(type).eq(str).all()
    assert power["power_kw"].dtype == "float64" and power["temperature"].dtype == "float64"


def test_deterministic_for_a_seed() -> None:
    pd.testing.assert_frame_equal(make_power(days=10, seed=3), make_power(days=10, seed=3))
    assert not make_power(days=10, seed=3).equals(make_power(days=10, seed=4))
    pd.testing.assert_frame_equal(make_meters(3, days=20, seed=1), make_meters(3, days=20, seed=1))


def test_realistic_profile(power: pd.DataFrame) -> None:
    df = power.dropna().copy()
    stamp = pd.to_datetime(df["timestamp"])
    hourly = df.groupby(stamp.dt.hour)["power_kw"].median()
    assert hourly.loc[2:4].max() < hourly.loc[8:9].min()  # night low, morning peak
    assert hourly.loc[18:20].max() > hourly.loc[14:16].min()  # evening peak
    weekend = stamp.dt.weekday >= 5
    assert df.loc[weekend, "power_kw"].median() < df.loc[~weekend, "power_kw"].median()
    # January 1st and May 1st (public holidays) are lower than the working days around them
    day = stamp.dt.normalize()
    daily = df.groupby(day)["power_kw"].median()
    assert daily[pd.Timestamp("2024-01-01")] < daily[pd.Timestamp("2024-01-02")]
    # colder (January) means more load through heating
    assert df.loc[stamp.dt.month == 1, "temperature"].mean() < df.loc[stamp.dt.month == 4, "temperature"].mean()


def test_damage_is_present(power: pd.DataFrame) -> None:
    n_expected = 120 * 288
    # duplicated rows: same timestamp, slightly different value (~0.2 %); beyond the DST repeat
    utc = _utc(power)
    dup = utc.duplicated(keep=False)
    assert 0.001 * n_expected < utc.duplicated().sum() < 0.004 * n_expected
    pairs = power.loc[dup.to_numpy()].groupby(utc[dup].to_numpy())["power_kw"]
    assert (pairs.max() - pairs.min()).gt(0).mean() > 0.5
    # missing readings (~0.5 %), single ones and a gap of several steps
    grid = pd.date_range(utc.min(), utc.max(), freq="5min")
    missing = len(grid) - utc.nunique() + int(power["power_kw"].isna().sum())
    assert 0.003 * n_expected < missing < 0.008 * n_expected
    steps = pd.Series(utc.unique()).diff().dropna() / pd.Timedelta("5min")
    assert (steps == 2).sum() > 20 and steps.max() >= 3 and steps.max() <= 13
    assert power["power_kw"].isna().sum() > 0  # some rows are kept with an empty value
    # spikes: a few values 3-5 times their neighbours
    values = power["power_kw"].to_numpy()
    neighbours = pd.Series(values).rolling(7, center=True, min_periods=3).median().to_numpy()
    assert 1 <= int(np.sum(values > 2.5 * neighbours)) <= 6


def test_dst_in_wall_clock_times() -> None:
    autumn = make_power(days=14, seed=1, start="2024-10-20")
    spring = make_power(days=14, seed=1, start="2024-03-25")
    assert autumn["timestamp"].str.startswith("2024-10-27 02:").sum() >= 2 * 12 - 3  # the hour happens twice
    assert spring["timestamp"].str.startswith("2024-03-31 02:").sum() == 0  # and never


@pytest.fixture(scope="module")
def full_power() -> pd.DataFrame:
    return make_power(seed=7)


def test_full_power_data_set_has_ten_spikes(full_power: pd.DataFrame) -> None:
    assert len(full_power) > 114_000
    values = full_power["power_kw"].to_numpy()
    neighbours = pd.Series(values).rolling(7, center=True, min_periods=3).median().to_numpy()
    assert int(np.sum(values > 2.5 * neighbours)) == 10


def test_other_frequencies() -> None:
    hourly = make_power(days=30, seed=3, freq="h")
    assert 30 * 24 * 0.98 < len(hourly) < 30 * 24 * 1.01


def test_meters() -> None:
    df = make_meters(n_series=6, days=40, seed=2)
    assert list(df.columns) == ["series_id", "timestamp", "load", "customer_type"]
    sizes = df.groupby("series_id").size()
    starts = df.groupby("series_id")["timestamp"].min()
    assert len(sizes) == 6 and sizes.nunique() > 1 and starts.nunique() > 1
    assert df.groupby("series_id")["customer_type"].nunique().eq(1).all()
    assert set(df["customer_type"]) <= {"residential", "commercial", "industrial"}
    assert (df["load"] >= 0).all()


def test_cli_writes_the_csv(tmp_path: Path) -> None:
    out = tmp_path / "data" / "power.csv"
    result = subprocess.run(
        [sys.executable, "-m", "tidecast.datasets", "power", "--out", str(out), "--days", "3", "--seed", "5"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert "wrote" in result.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out), make_power(days=3, seed=5).reset_index(drop=True),
                                  check_dtype=False)


def test_example_csv_matches_the_generator(full_power: pd.DataFrame) -> None:
    """examples/power/data/power.csv is make_power(400 days, seed 7) and fits examples/power/tidecast.yaml."""
    from tidecast.spec import load_spec

    root = Path(__file__).resolve().parents[2] / "examples" / "power"
    spec = load_spec(root / "tidecast.yaml")
    path = Path(spec.data.source)
    if not path.exists():
        pytest.skip("examples/power/data/power.csv is not generated")
    on_disk = pd.read_csv(path)
    assert list(on_disk.columns) == [spec.data.time_column, spec.data.target_column, "temperature"]
    assert [e.name for e in spec.data.exogenous_columns] == ["temperature"]
    pd.testing.assert_frame_equal(on_disk, full_power)
