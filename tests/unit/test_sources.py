"""Reading sources and bringing them to the canonical long format (real files in tmp_path, no mocks)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tidecast.data.long_format import SINGLE_SERIES_ID, to_long
from tidecast.data.sources import content_fingerprint, read_source, source_label
from tidecast.errors import DataError, SpecError
from tidecast.spec import DataSpec, ResampleSpec, TargetSpec


def spec_for(source: Path | str, **kw) -> DataSpec:
    kw.setdefault("target_column", "load")
    kw.setdefault("frequency", "h")
    return DataSpec(source=str(source), **kw)


def load(data: DataSpec, target: TargetSpec | None = None) -> pd.DataFrame:
    return to_long(read_source(data), data, target or TargetSpec(), source_name=source_label(data.source))


def hourly(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
        "load": np.arange(n, dtype=float) + 1.0,
        "temperature": np.linspace(0.0, 5.0, n),
    })


def long_frame() -> pd.DataFrame:
    rows = []
    for sid, kind in (("b", "commercial"), ("a", "residential")):
        for i in range(4):
            rows.append({"meter": sid, "timestamp": f"2024-01-01 0{i}:00", "load": float(i), "kind": kind})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- formats
def test_csv_single_series_to_canonical(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    hourly().to_csv(path, index=False)
    df = load(spec_for(path, exogenous=["temperature"]))
    assert list(df.columns) == ["unique_id", "ds", "y", "temperature"]
    assert (df["unique_id"] == SINGLE_SERIES_ID).all()
    assert df["ds"].dtype == "datetime64[ns]"
    assert df["y"].dtype == "float64" and df["temperature"].dtype == "float64"
    assert df["y"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert df["ds"].iloc[0] == pd.Timestamp("2024-01-01 00:00")  # naive without timezone: taken as UTC


def test_csv_with_bom_and_gzip(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    hourly().to_csv(bom, index=False, encoding="utf-8-sig")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(load(spec_for(bom))) == 6
    gz = tmp_path / "power.csv.gz"
    hourly().to_csv(gz, index=False, compression="gzip")
    assert load(spec_for(gz))["y"].sum() == 21.0


def test_csv_read_options(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("timestamp;load\n2024-01-01 00:00;1,5\n2024-01-01 01:00;2,5\n")
    df = load(spec_for(path, read_options={"sep": ";", "decimal": ","}))
    assert df["y"].tolist() == [1.5, 2.5]


def test_parquet_long_format_with_static(tmp_path: Path) -> None:
    path = tmp_path / "meters.parquet"
    long_frame().to_parquet(path, index=False)
    df = load(spec_for(path, series_column="meter", static_columns=["kind"]))
    assert list(df.columns) == ["unique_id", "ds", "y", "kind"]
    assert df["unique_id"].tolist() == ["a"] * 4 + ["b"] * 4  # sorted by (unique_id, ds)
    assert df.groupby("unique_id")["kind"].first().to_dict() == {"a": "residential", "b": "commercial"}
    assert df.groupby("unique_id")["ds"].is_monotonic_increasing.all()


def test_parquet_native_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "native.parquet"
    frame = hourly()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize("Europe/Paris")
    frame.to_parquet(path, index=False)
    df = load(spec_for(path))
    assert df["ds"].iloc[0] == pd.Timestamp("2023-12-31 23:00")  # tz-aware converted to UTC


def test_json_records_and_lines(tmp_path: Path) -> None:
    records = tmp_path / "power.json"
    hourly().to_json(records, orient="records")
    assert load(spec_for(records))["y"].tolist()[:2] == [1.0, 2.0]
    lines = tmp_path / "power.jsonl"
    hourly().to_json(lines, orient="records", lines=True)
    assert len(load(spec_for(lines))) == 6


def test_format_override(tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    hourly().to_csv(path, index=False)
    with pytest.raises(DataError, match=r"export\.dat: cannot tell the file format.*data\.format"):
        read_source(spec_for(path))
    assert len(load(spec_for(path, format="csv"))) == 6


def _sqlite(tmp_path: Path, table: str = "readings") -> Path:
    db = tmp_path / "meters.db"
    with sqlite3.connect(db) as conn:
        long_frame().to_sql(table, conn, index=False)
    return db


def test_sqlite_table_and_query(tmp_path: Path) -> None:
    db = _sqlite(tmp_path, table="my readings")  # a name that needs quoting
    url = f"sqlite:///{db}"
    by_table = load(spec_for(url, series_column="meter", table="my readings"))
    assert len(by_table) == 8 and set(by_table["unique_id"]) == {"a", "b"}
    by_query = load(spec_for(url, series_column="meter", query='SELECT * FROM "my readings" WHERE meter = \'a\''))
    assert set(by_query["unique_id"]) == {"a"}


def test_sqlite_errors(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    with pytest.raises(DataError, match=r"needs data\.query or data\.table"):
        read_source(spec_for(f"sqlite:///{db}"))
    with pytest.raises(DataError, match=r"table 'nope' failed: no such table"):
        read_source(spec_for(f"sqlite:///{db}", table="nope"))
    with pytest.raises(DataError, match="no such SQLite database file"):
        read_source(spec_for(f"sqlite:///{tmp_path / 'missing.db'}", table="readings"))
    assert not (tmp_path / "missing.db").exists()  # never created as a side effect


def test_fsspec_file_url(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    hourly().to_csv(path, index=False)
    df = load(spec_for(path.as_uri()))
    assert len(df) == 6
    with pytest.raises(DataError, match="no such file"):
        read_source(spec_for((tmp_path / "other.csv").as_uri()))


def test_source_label_hides_passwords() -> None:
    assert source_label("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert "secret" not in source_label("s3://key:secret@bucket/x.csv")


# ----------------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_source(spec_for(tmp_path / "nope.csv"))


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        read_source(spec_for(path))


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("timestamp,load\n")
    with pytest.raises(DataError, match=r"header\.csv: no data rows"):
        read_source(spec_for(path))


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(128, 256)) * 20)
    with pytest.raises(DataError, match=r"garbage\.csv: cannot be read as utf-8-sig text \(invalid byte 0x80\)") as info:
        read_source(spec_for(path))
    assert "\n" not in str(info.value)


def test_binary_file_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "really.csv"
    hourly().to_parquet(path)
    with pytest.raises(DataError, match=r"really\.csv: does not look like CSV text"):
        read_source(spec_for(path))


def test_malformed_csv(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,load\n2024-01-01 00:00,1\n2024-01-01 01:00,2,3,4\n")
    with pytest.raises(DataError, match=r"bad\.csv: malformed CSV: expected 2 fields in line 3, saw 4"):
        read_source(spec_for(path))


def test_garbage_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file"):
        read_source(spec_for(path))


def test_latin1_needs_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("timestamp,load,note\n2024-01-01 00:00,1,café\n".encode("latin-1"))
    with pytest.raises(DataError, match="cannot be read as utf-8-sig"):
        read_source(spec_for(path))
    assert read_source(spec_for(path, read_options={"encoding": "latin-1"}))["note"].iloc[0] == "café"


def test_missing_column_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    hourly().to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load(spec_for(path, target_column="laod"))
    assert str(info.value).endswith(
        "power.csv: no column 'laod' for data.target_column (did you mean 'load'? columns: timestamp, load, temperature)"
    )
    with pytest.raises(DataError, match=r"no column 'temp' for data\.exogenous \(did you mean 'temperature'\?"):
        load(spec_for(path, exogenous=["temp"]))
    with pytest.raises(DataError, match=r"no column 'meter' for data\.series_column"):
        load(spec_for(path, series_column="meter"))


def test_wrong_separator_hint(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("timestamp;load\n2024-01-01 00:00;1\n")
    with pytest.raises(DataError, match="seems to use ';' as separator"):
        load(spec_for(path))


def test_non_numeric_target_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    frame = hourly().astype({"load": object})
    frame.loc[3, "load"] = "n.a.x"
    frame.loc[1, "load"] = ""  # empty cells are gaps, not errors
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"power\.csv: line 5: column 'load': value 'n\.a\.x' is not a number"):
        load(spec_for(path))


def test_decimal_comma_hint(tmp_path: Path) -> None:
    path = tmp_path / "comma.csv"
    path.write_text('timestamp,load\n2024-01-01 00:00,"1,5"\n')
    with pytest.raises(DataError, match=r"line 2: column 'load': value '1,5' is not a number \(for decimal commas"):
        load(spec_for(path))


def test_empty_target_cells_are_nan(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    path.write_text("timestamp,load\n2024-01-01 00:00,1\n2024-01-01 01:00,\n2024-01-01 02:00,NA\n")
    assert load(spec_for(path))["y"].isna().tolist() == [False, True, True]


def test_infinite_target(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    path.write_text("timestamp,load\n2024-01-01 00:00,1\n2024-01-01 01:00,inf\n")
    with pytest.raises(DataError, match=r"power\.csv: line 3: column 'load': value .* is infinite"):
        load(spec_for(path))


def test_unparseable_timestamp_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    frame = hourly()
    frame.loc[4, "timestamp"] = "2024-13-01 04:00:00"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        load(spec_for(path))
    assert str(info.value).endswith("power.csv: line 6: timestamp '2024-13-01 04:00:00' cannot be parsed as a timestamp")


def test_day_first_dates(tmp_path: Path) -> None:
    path = tmp_path / "fr.csv"
    path.write_text("timestamp,load\n01/02/2024 10:00,1\n13/02/2024 10:00,2\n")
    assert load(spec_for(path))["ds"].dt.strftime("%m-%d").tolist() == ["02-01", "02-13"]


def test_empty_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    path.write_text("timestamp,load\n2024-01-01 00:00,1\n,2\n")
    with pytest.raises(DataError, match=r"line 3: column 'timestamp' \(data.time_column\) is empty"):
        load(spec_for(path))


def test_row_numbers_for_non_csv(tmp_path: Path) -> None:
    path = tmp_path / "power.parquet"
    frame = hourly().astype({"load": str})
    frame.loc[2, "load"] = "oops"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"power\.parquet: row 3: column 'load'"):
        load(spec_for(path))


def test_series_column_null(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    frame = long_frame()
    frame["meter"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'meter' \(data\.series_column\) is empty"):
        load(spec_for(path, series_column="meter"))
    frame = long_frame()
    frame.loc[2, "meter"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 4: column 'meter' \(data\.series_column\) is empty"):
        load(spec_for(path, series_column="meter"))


def test_static_column_must_be_constant(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    frame = long_frame()
    frame.loc[1, "kind"] = "industrial"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="static column 'kind' has several values in series 'b'"):
        load(spec_for(path, series_column="meter", static_columns=["kind"]))


# ---------------------------------------------------------------------------------- timestamps
def test_dst_fall_back_and_spring_forward(tmp_path: Path) -> None:
    """Local wall-clock times: October repeats 02:00-02:59, March skips it."""
    fall = pd.date_range("2024-10-27 00:00", "2024-10-27 04:00", freq="30min", tz="Europe/Paris",
                         inclusive="left")
    fall = pd.date_range(fall[0].tz_convert("UTC"), fall[-1].tz_convert("UTC"), freq="30min")
    wall = list(fall.tz_convert("Europe/Paris").tz_localize(None).strftime("%Y-%m-%d %H:%M"))
    assert wall.count("2024-10-27 02:00") == 2
    wall.insert(wall.index("2024-10-27 02:30") + 1, "2024-10-27 02:30")  # a duplicated reading in the first pass
    path = tmp_path / "fall.csv"
    pd.DataFrame({"timestamp": wall, "load": 1.0}).to_csv(path, index=False)
    df = load(spec_for(path, timezone="Europe/Paris", frequency="30min"))
    assert df["ds"].is_monotonic_increasing
    unique = pd.DatetimeIndex(df["ds"].unique())
    assert len(unique) == len(fall) and (unique == fall.tz_localize(None)).all()

    path = tmp_path / "spring.csv"
    pd.DataFrame({"timestamp": ["2024-03-31 01:30", "2024-03-31 02:30", "2024-03-31 03:30"], "load": 1.0}).to_csv(
        path, index=False
    )
    df = load(spec_for(path, timezone="Europe/Paris"))
    # 02:30 does not exist: shifted forward to 03:00 local = 01:00 UTC
    assert df["ds"].dt.strftime("%H:%M").tolist() == ["00:30", "01:00", "01:30"]


def test_fall_back_with_ambiguous_infer_clean_data(tmp_path: Path) -> None:
    path = tmp_path / "fall.csv"
    stamps = ["2024-10-27 01:00", "2024-10-27 02:00", "2024-10-27 02:00", "2024-10-27 03:00"]
    pd.DataFrame({"timestamp": stamps, "load": [1, 2, 3, 4]}).to_csv(path, index=False)
    df = load(spec_for(path, timezone="Europe/Paris"))
    assert df["ds"].dt.strftime("%H:%M").tolist() == ["23:00", "00:00", "01:00", "02:00"]


def test_mixed_offsets_to_utc(tmp_path: Path) -> None:
    path = tmp_path / "offsets.csv"
    stamps = ["2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T02:00:00Z"]
    pd.DataFrame({"timestamp": stamps, "load": [1, 2, 3]}).to_csv(path, index=False)
    df = load(spec_for(path, timezone="America/New_York"))  # offsets win over data.timezone
    assert df["ds"].dt.strftime("%H:%M").tolist() == ["00:00", "01:00", "02:00"]
    assert df["y"].tolist() == [1.0, 2.0, 3.0]


def test_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "epoch.csv"
    pd.DataFrame({"timestamp": [1704067200, 1704070800], "load": [1, 2]}).to_csv(path, index=False)
    assert load(spec_for(path))["ds"].tolist() == [pd.Timestamp("2024-01-01 00:00"), pd.Timestamp("2024-01-01 01:00")]


def test_unknown_timezone(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    hourly().to_csv(path, index=False)
    with pytest.raises(SpecError, match=r"data\.timezone: unknown time zone 'Mars/Olympus'"):
        load(spec_for(path, timezone="Mars/Olympus"))


# ------------------------------------------------------------------------------------- target
def test_sum_of_columns(tmp_path: Path) -> None:
    path = tmp_path / "parts.csv"
    pd.DataFrame({
        "timestamp": ["2024-01-01 00:00", "2024-01-01 01:00"], "a": [1.0, None], "b": [2.0, 5.0],
    }).to_csv(path, index=False)
    df = load(spec_for(path, target_column="total"), TargetSpec(sum_of=["a", "b"]))
    assert df["y"].iloc[0] == 3.0 and np.isnan(df["y"].iloc[1])  # a missing part is a gap


def test_resample(tmp_path: Path) -> None:
    path = tmp_path / "fine.csv"
    stamps = pd.date_range("2024-01-01", periods=8, freq="15min").strftime("%Y-%m-%d %H:%M")
    pd.DataFrame({"timestamp": stamps, "load": np.arange(8.0), "temperature": 1.0}).to_csv(path, index=False)
    data = spec_for(path, exogenous=["temperature"])
    df = load(data, TargetSpec(resample=ResampleSpec(rule="h", agg="sum")))
    assert df["y"].tolist() == [6.0, 22.0] and df["temperature"].tolist() == [4.0, 4.0]
    df = load(data, TargetSpec(resample=ResampleSpec(rule="h", agg="mean")))
    assert df["y"].tolist() == [1.5, 5.5]


# -------------------------------------------------------------------------------- fingerprints
def test_fingerprint_local_file(tmp_path: Path) -> None:
    path = tmp_path / "power.csv"
    hourly().to_csv(path, index=False)
    data = spec_for(path)
    first = content_fingerprint(data)
    assert first.startswith("sha256:") and first == content_fingerprint(data)
    assert content_fingerprint(spec_for(path.as_uri())) == first
    path.write_text(path.read_text().replace("2.0", "2.5"))
    assert content_fingerprint(data) != first
    with pytest.raises(DataError, match="no such file"):
        content_fingerprint(spec_for(tmp_path / "missing.csv"))


def test_fingerprint_sqlite(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    data = spec_for(f"sqlite:///{db}", table="readings")
    first = content_fingerprint(data)
    assert first == content_fingerprint(data)
    assert content_fingerprint(spec_for(f"sqlite:///{db}", query="SELECT * FROM readings")) != first
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE readings SET load = load + 1")
    assert content_fingerprint(data) != first


def test_fingerprint_remote_metadata() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/tidecast-test/power.csv", hourly().to_csv(index=False).encode())
    data = spec_for("memory://tidecast-test/power.csv")
    try:
        first = content_fingerprint(data)
        assert first.startswith("meta:") and first == content_fingerprint(data)
        assert len(load(data)) == 6
        fs.pipe("/tidecast-test/power.csv", hourly(8).to_csv(index=False).encode())
        assert content_fingerprint(data) != first
    finally:
        fs.rm("/tidecast-test", recursive=True)



# ------------------------------------------------------------------------------ target transforms
@pytest.mark.parametrize("name", ["none", "log1p", "sqrt"])
def test_transforms_round_trip(name: str) -> None:
    from tidecast.data.target import apply_transform, invert_transform

    y = pd.Series([0.0, 0.5, 3.0, 100.0, np.nan], index=list("abcde"), name="y")
    forward = apply_transform(y, name)
    assert isinstance(forward, pd.Series) and forward.index.tolist() == list("abcde")
    pd.testing.assert_series_equal(invert_transform(forward, name), y)
    arr = np.array([0.0, 2.0, 9.0])
    np.testing.assert_allclose(invert_transform(apply_transform(arr, name), name), arr)
    assert y.tolist()[:4] == [0.0, 0.5, 3.0, 100.0]  # the input is not modified


def test_transform_domains() -> None:
    from tidecast.data.target import apply_transform, invert_transform

    with pytest.raises(DataError, match=r"target\.transform 'log1p' needs values above -1, but y goes down to -1"):
        apply_transform(np.array([0.0, -1.0]), "log1p")
    with pytest.raises(DataError, match=r"target\.transform 'sqrt' needs values of at least 0, but y goes down to -0\.5"):
        apply_transform(pd.Series([1.0, -0.5]), "sqrt")
    assert apply_transform(np.array([-0.5]), "log1p")[0] == pytest.approx(np.log1p(-0.5))
    assert invert_transform(np.array([-2.0, 3.0]), "sqrt").tolist() == [0.0, 9.0]  # never a positive from a negative
    forecasts = pd.DataFrame({"yhat": [1.0, 2.0], "q0.1": [0.5, 1.0]})
    assert invert_transform(apply_transform(forecasts, "log1p"), "log1p").round(12).equals(forecasts)
    with pytest.raises(SpecError, match="unknown transform 'boxcox'"):
        apply_transform(np.array([1.0]), "boxcox")


def test_utf16_and_folder_hints(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes("timestamp,load\n2024-01-01 00:00,1\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"utf16\.csv: the file is UTF-16 text: set data\.read_options\.encoding"):
        read_source(spec_for(path))
    assert read_source(spec_for(path, read_options={"encoding": "utf-16"}))["load"].tolist() == [1]
    folder = tmp_path / "export.csv"
    folder.mkdir()
    with pytest.raises(DataError, match=r"export\.csv: is a folder, not a csv file"):
        read_source(spec_for(folder))
