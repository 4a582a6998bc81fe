"""Fuzz the data layer the pipeline runs (read_source -> to_long -> validate_history -> clean -> features)
with generated CSV, Parquet and JSON files: malformed rows, wrong types, NaN/inf, huge values, unsorted
rows, duplicated timestamps, mixed time zones, empty and header-only files, BOMs, latin-1 and UTF-16,
semicolon delimiters, missing or misnamed columns.

Property: every file ends either in a typed tidecast error with a one-line message, or in a result that
is right: the ingested frame is canonical (sorted, UTC-naive ``ds``, float ``y`` without infinities), the
cleaned frame holds every series on a regular hourly grid without duplicates, with finite ``y`` equal to
what the file said at every timestamp it said it unambiguously, and the lag/calendar features agree
with it. Files that can only be wrong (an infinite reading, a timestamp that is not one, a column the
spec names that is not there...) must be refused: accepting them would be a silent wrong result.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz_settings
from tidecast.errors import TidecastError
from tidecast.spec import Spec, parse_spec

STEP = pd.Timedelta("1h")
MAX_GAP = 3  # steps: clean.gaps.max_gap below
WINDOW, HORIZON, FOLDS = 6, 3, 2
NA_TOKENS = ["", "NaN", "nan", "NA", "null", "None", "-", "?"]
GARBAGE = ["abc", "1,5", "12kW", "True", "0x1F", "1.2.3", "--5", "[1]"]
INF_TOKENS = ["inf", "-inf", "Infinity", "-Infinity", "1e400", "-1e999"]
BAD_TIMES = ["not-a-date", "2024-13-45 00:00", "25:00", "2024-02-30T10:00", "yesterday", "0000-00-00 00:00"]
IDS = ["a", "b", "meter-1", "café", "42", "007", " padded ", "Ω"]


@dataclass
class Row:
    series: str
    ts: pd.Timestamp  # UTC, naive
    y: Any  # float, or a token written as text
    temp: Any = 1.0
    exact: bool = True  # the reading is a plain number the cleaned frame must reproduce
    offgrid: bool = False
    ts_text: str | None = None  # how the timestamp is written, when not the default


@dataclass
class Case:
    filename: str
    payload: bytes
    data: dict[str, Any]
    rows: list[Row]
    exog: bool
    must_fail: list[str] = field(default_factory=list)  # why this file can only be refused

    def __repr__(self) -> str:  # what a failing case shows: the file as text, the spec's data options
        text = self.payload[:4000].decode("utf-8", errors="backslashreplace")
        return f"Case({self.filename!r}, data={self.data!r}, must_fail={self.must_fail!r}, payload=\n{text}\n)"


# ------------------------------------------------------------------------------ generation
def _y_value(draw: st.DrawFn, bad: bool = False) -> tuple[Any, bool, str | None]:
    """(value, exact, reason it must fail); ``bad``: an infinite or non-numeric reading."""
    if bad:
        kind = draw(st.sampled_from(["inf", "garbage", "huge"]))
        if kind == "inf":
            return draw(st.sampled_from(INF_TOKENS)), False, "an infinite reading"
        if kind == "huge":  # means, interpolations and squares of these overflow: must be refused
            return draw(st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 9.9e307, -5e151])), False, "a huge value"
        return draw(st.sampled_from(GARBAGE)), False, "a reading that is not a number"
    kind = draw(st.sampled_from(["num"] * 40 + ["big", "na", "int", "tiny"]))
    if kind == "num":
        return round(draw(st.floats(-1e4, 1e4, allow_nan=False)), 3), True, None
    if kind == "big":  # large but computable: must come through unchanged
        return draw(st.sampled_from([1e15, -3.5e12, 1e100, -1e150, 2**53 + 1])), True, None
    if kind == "tiny":
        return draw(st.sampled_from([5e-324, -0.0, 1e-300])), True, None
    if kind == "int":
        return draw(st.integers(-(10**6), 10**6)), True, None
    return draw(st.sampled_from(NA_TOKENS)), False, None


def _ts_text(ts: pd.Timestamp, style: str) -> str:
    if style == "iso":
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    if style == "T":
        return ts.strftime("%Y-%m-%dT%H:%M")
    if style == "Z":
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "+01":
        return (ts + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+01:00")
    if style == "-05":
        return (ts - pd.Timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S-05:00")
    if style == "+0530":
        return (ts + pd.Timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S+0530")
    if style == "dayfirst":
        return ts.strftime("%d/%m/%Y %H:%M")
    raise AssertionError(style)


@st.composite
def frames(draw: st.DrawFn) -> tuple[list[Row], bool, bool, list[str], str]:
    """(rows in file order, multi-series, exogenous column, reasons to fail, timestamp style)."""
    n_series = draw(st.integers(1, 3))
    multi = n_series > 1 or draw(st.booleans())
    ids = draw(st.lists(st.sampled_from(IDS), min_size=n_series, max_size=n_series, unique_by=str.strip))
    if not multi:
        ids = ["series"]
    exog = draw(st.booleans())
    # day-first dates are read day-first only when month-first cannot read them all: start on the 13th
    style = draw(st.sampled_from(["iso", "iso", "T", "Z", "mixed", "dayfirst", "epoch"]))
    start = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=draw(st.integers(0, 24 * 300)))
    if style == "dayfirst":  # 05/02/2024 is May 2 unless some date cannot be month-first: start after the 12th
        start = start.replace(day=draw(st.integers(13, 26)))
    rows: list[Row] = []
    fail: list[str] = []
    for uid in ids:
        n = draw(st.integers(10, 40))
        begin = start + STEP * draw(st.integers(0, 5))
        for i in range(n):
            y, exact, why = _y_value(draw)
            if why:
                fail.append(why)
            rows.append(Row(uid, begin + STEP * i, y, round(draw(st.floats(-30, 40)), 2), exact))
    if style == "mixed":
        for row in rows:
            row.ts_text = _ts_text(row.ts, draw(st.sampled_from(["iso", "Z", "+01", "-05", "+0530"])))
    elif style not in ("epoch",):
        for row in rows:
            row.ts_text = _ts_text(row.ts, style)

    mutations = draw(st.lists(st.sampled_from(
        ["shuffle", "shuffle", "dup", "dup_conflict", "drop", "offgrid", "bad_ts", "bad_y", "temp_na", "temp_inf",
         "temp_garbage"]
    ), max_size=3, unique=True))
    # rows are dropped first: a bad reading placed afterwards is sure to be in the file
    if "drop" in mutations and len(rows) > 3:
        for _ in range(draw(st.integers(1, 4))):
            rows.pop(draw(st.integers(1, len(rows) - 2)))
    if "bad_y" in mutations:
        row = rows[draw(st.integers(0, len(rows) - 1))]
        row.y, row.exact, why = _y_value(draw, bad=True)
        fail.append(str(why))
    if "dup" in mutations or "dup_conflict" in mutations:
        for _ in range(draw(st.integers(1, 3))):
            source = rows[draw(st.integers(0, len(rows) - 1))]
            copy = Row(**vars(source))
            if "dup_conflict" in mutations:
                copy.y, copy.exact, why = _y_value(draw)
                if why:
                    fail.append(why)
            rows.insert(draw(st.integers(0, len(rows))), copy)
    if "offgrid" in mutations and style != "epoch":
        row = rows[draw(st.integers(0, len(rows) - 1))]
        row.ts = row.ts + pd.Timedelta(minutes=draw(st.integers(1, 59)))
        row.offgrid = True
        row.ts_text = _ts_text(row.ts, "iso") if style != "dayfirst" else _ts_text(row.ts, "dayfirst")
    if "bad_ts" in mutations and style != "epoch":
        rows[draw(st.integers(0, len(rows) - 1))].ts_text = draw(st.sampled_from(BAD_TIMES))
        fail.append("a timestamp that is not one")
    if exog and "temp_na" in mutations:
        for _ in range(draw(st.integers(1, 3))):
            rows[draw(st.integers(0, len(rows) - 1))].temp = draw(st.sampled_from(["", "NaN", None]))
    if exog and "temp_inf" in mutations:
        rows[draw(st.integers(0, len(rows) - 1))].temp = draw(st.sampled_from(INF_TOKENS))
        fail.append("an infinite exogenous value")
    if exog and "temp_garbage" in mutations:
        rows[draw(st.integers(0, len(rows) - 1))].temp = draw(st.sampled_from(GARBAGE))
        fail.append("an exogenous value that is not a number")
    if "shuffle" in mutations:
        rows = draw(st.permutations(rows))
    return list(rows), multi, exog, fail, style


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _time_cell(row: Row) -> Any:
    return row.ts_text if row.ts_text is not None else int((row.ts - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s"))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    rows, multi, exog, fail, style = draw(frames())
    fmt = draw(st.sampled_from(["csv"] * 4 + ["parquet"] * 2 + ["json", "jsonl", "special"]))
    header = {"time": "timestamp", "target": "load", "series": "meter", "temp": "temperature"}
    rename = draw(st.sampled_from([None] * 12 + ["drop_target", "drop_time", "drop_temp", "case_target", "drop_series"]))
    columns = ["timestamp", "load"] + (["meter"] if multi else []) + (["temperature"] if exog else [])
    extra = draw(st.booleans())
    if extra:
        columns.append("note")
    written = dict(zip(columns, columns, strict=True))
    if rename == "drop_target":
        columns.remove("load")
        fail.append("no target column")
    elif rename == "drop_time":
        columns.remove("timestamp")
        fail.append("no time column")
    elif rename == "drop_temp" and exog:
        columns.remove("temperature")
        fail.append("no exogenous column")
    elif rename == "drop_series" and multi:
        columns.remove("meter")
        fail.append("no series column")
    elif rename == "case_target":
        written["load"] = "Load"
        fail.append("a misnamed target column")
    del header

    def record(row: Row) -> dict[str, Any]:
        full = {"timestamp": _time_cell(row), "load": row.y, "meter": row.series, "temperature": row.temp,
                "note": "x, \"quoted\"; é"}
        return {written[c]: full[c] for c in columns}

    data: dict[str, Any] = {
        "time_column": "timestamp", "target_column": "load", "series_column": "meter" if multi else None,
        "exogenous": ["temperature"] if exog else [], "read_options": {},
    }
    non_ascii = (any(not r.series.isascii() for r in rows) and "meter" in columns) or extra
    if fmt == "special":
        kind = draw(st.sampled_from(["empty", "blank", "bom", "header", "bom_header", "binary", "nul"]))
        payload = {
            "empty": b"", "blank": b" \n\n  \n", "bom": b"\xef\xbb\xbf", "header": (",".join(columns) + "\n").encode(),
            "bom_header": ("\ufeff" + ",".join(columns) + "\n").encode(), "binary": bytes(range(256)) * 3,
            "nul": b"timestamp,load\n\x00\x00\x00\n",
        }[kind]
        return Case(f"data-{kind}.csv", payload, data, rows, exog, [*fail, f"a {kind} file"])
    if fmt == "csv":
        sep = draw(st.sampled_from([",", ",", ";", "\t"]))
        encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
        if non_ascii and encoding == "latin-1" and any(not all(ord(c) < 256 for c in r.series) for r in rows):
            encoding = "utf-8"  # latin-1 cannot hold the id: write UTF-8
        declare_sep = sep == "," or draw(st.booleans())
        declare_enc = encoding in ("utf-8", "utf-8-sig") or draw(st.booleans())
        if sep != ",":
            if declare_sep:
                data["read_options"]["sep"] = sep
            else:
                fail.append("an undeclared separator")
        if encoding in ("latin-1", "utf-16"):
            if declare_enc:
                data["read_options"]["encoding"] = encoding
            elif encoding == "utf-16" or non_ascii:
                fail.append("an undeclared encoding")
        buffer = io.StringIO()
        buffer.write(sep.join(written[c] for c in columns) + "\n")
        for row in rows:
            values = record(row)
            cells = []
            for c in columns:
                text = _cell(values[written[c]])
                if sep in text or '"' in text or "\n" in text:
                    text = '"' + text.replace('"', '""') + '"'
                cells.append(text)
            buffer.write(sep.join(cells) + draw(st.sampled_from(["\n", "\n", "\r\n"])))
        text = buffer.getvalue()
        if draw(st.sampled_from([False] * 9 + [True])):  # a ragged row
            text += sep.join(["2024-01-01 00:00:00"] + ["1"] * (len(columns) + 2)) + "\n"
            fail.append("a row with too many fields")
        payload = text.encode(encoding)
        return Case("data.csv", payload, data, rows, exog, fail)
    if fmt == "parquet":
        frame = pd.DataFrame([record(r) for r in rows])
        if "timestamp" in columns and style != "epoch":
            choice = draw(st.sampled_from(["text", "naive", "aware"]))
            if choice != "text" and not any(r.ts_text in BAD_TIMES for r in rows):
                stamps = pd.DatetimeIndex([r.ts for r in rows])
                if choice == "aware":
                    stamps = stamps.tz_localize("UTC").tz_convert(draw(st.sampled_from(["Europe/Paris", "Asia/Kolkata", "UTC"])))
                frame["timestamp"] = stamps
        for column in frame.columns:
            if frame[column].dtype == object and column not in ("timestamp", "meter"):
                try:
                    frame[column] = frame[column].astype("float64")  # a typed column where it can be one
                except (TypeError, ValueError):
                    frame[column] = frame[column].map(lambda v: None if v is None else str(v))
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return Case("data.parquet", buffer.getvalue(), data, rows, exog, fail)
    records = [record(r) for r in rows]
    for rec in records:
        for key, value in rec.items():
            if isinstance(value, str) and key in ("load", "temperature") and value in NA_TOKENS:
                rec[key] = None if value == "" else value
    if fmt == "json":
        payload = json.dumps(records, ensure_ascii=draw(st.booleans())).encode()
        return Case("data.json", payload, data, rows, exog, fail)
    payload = "\n".join(json.dumps(r) for r in records).encode() + b"\n"
    return Case("data.jsonl", payload, data, rows, exog, fail)


# ------------------------------------------------------------------------------ the pipeline
def make_spec(root: Path, case: Case) -> Spec:
    return parse_spec(
        {
            "project": "fuzzdata",
            "data": {"source": str(root / case.filename), "frequency": "1h", **case.data},
            "clean": {"duplicates": "mean", "gaps": {"method": "interpolate", "max_gap": f"{MAX_GAP}h"},
                      "outliers": {"method": "none"}},
            "features": {"lags": [1, 2], "rolling": [{"window": 2, "stats": ["mean"]}], "calendar": ["hour", "weekday"]},
            "forecast": {"input_window": WINDOW, "horizon": HORIZON, "quantiles": [0.1, 0.9]},
            "backtest": {"folds": FOLDS},
            "models": [{"name": "naive", "kind": "naive"}],
        },
        root=root,
    )


@dataclass
class Outcome:
    ingested: pd.DataFrame
    cleaned: pd.DataFrame
    summary: dict[str, Any]
    features: pd.DataFrame


def run_data_layer(spec: Spec) -> Outcome:
    """What the ingest, clean and features steps do, in their order."""
    from tidecast.data.clean import clean
    from tidecast.data.features import build_features
    from tidecast.data.long_format import to_long
    from tidecast.data.sources import read_source, source_label
    from tidecast.training import min_history, validate_history

    raw = read_source(spec.data)
    ingested = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))
    validate_history(ingested, spec)
    result = clean(ingested, spec.clean, spec.data.frequency, min_length=min_history(spec))
    too_short = set(result.summary.get("series_too_short") or [])
    cleaned = result.frame[~result.frame["unique_id"].isin(too_short)].reset_index(drop=True)
    feats = build_features(cleaned, spec.features, timezone=spec.data.timezone, freq=spec.data.frequency)
    return Outcome(ingested, cleaned, result.summary, feats)


def check_ingested(df: pd.DataFrame, exog: bool) -> None:
    assert list(df.columns[:3]) == ["unique_id", "ds", "y"], list(df.columns)
    assert df["ds"].dtype == "datetime64[ns]", df["ds"].dtype
    assert df["y"].dtype == "float64"
    assert not np.isinf(df["y"].to_numpy()).any(), "an infinite y got through ingest"
    if exog:
        assert df["temperature"].dtype == "float64"
        assert not np.isinf(df["temperature"].to_numpy()).any()
    keys = df[["unique_id", "ds"]]
    assert keys.equals(keys.sort_values(["unique_id", "ds"], kind="stable")), "ingest is not sorted"


def expected_values(case: Case) -> dict[tuple[str, pd.Timestamp], float]:
    """(series, UTC time) -> the value the cleaned frame must hold there: the mean of the plain numbers
    written for that exact time (clean.duplicates: mean), where no off-grid reading shares its hour."""
    by_key: dict[tuple[str, pd.Timestamp], list[Row]] = {}
    for row in case.rows:
        by_key.setdefault((row.series.strip(), row.ts.floor(STEP)), []).append(row)
    out: dict[tuple[str, pd.Timestamp], float] = {}
    for key, group in by_key.items():
        if any(r.offgrid for r in group) or not all(r.exact or r.y in NA_TOKENS or r.y is None for r in group):
            continue
        numbers = [float(r.y) for r in group if r.exact]
        if numbers:
            out[key] = float(np.mean(np.array(numbers, dtype=np.float64)))
    return out


def check_cleaned(outcome: Outcome, case: Case) -> None:
    df = outcome.cleaned
    assert list(df.columns[:3]) == ["unique_id", "ds", "y"]
    keys = df[["unique_id", "ds"]]
    assert not keys.duplicated().any(), "duplicated (series, time) after cleaning"
    assert keys.equals(keys.sort_values(["unique_id", "ds"], kind="stable")), "cleaned frame is not sorted"
    y = df["y"].to_numpy()
    assert np.isfinite(y).all(), f"y holds {int((~np.isfinite(y)).sum())} NaN/inf after cleaning"
    if case.exog:
        assert np.isfinite(df["temperature"].to_numpy()).all(), "temperature holds NaN/inf after cleaning"
    for uid, part in df.groupby("unique_id", sort=False):
        steps = part["ds"].diff().dropna()
        assert (steps == STEP).all(), f"series {uid!r} is not on a regular hourly grid"
        assert len(part) >= WINDOW + HORIZON, f"series {uid!r} is shorter than the minimum history"

    # every value the file states unambiguously is what the cleaned frame holds there
    expected = expected_values(case)
    got = {(u, t): v for u, t, v in zip(df["unique_id"], df["ds"], df["y"], strict=True)}
    kept = set(df["unique_id"])
    series_in_file = {r.series.strip() for r in case.rows}
    assert kept <= series_in_file, f"series ids changed: {sorted(kept - series_in_file)} not in the file"
    dropped = series_in_file - kept
    listed = set(outcome.summary.get("series_too_short") or []) | set(outcome.summary.get("series_without_values") or [])
    assert dropped <= listed, f"series {sorted(dropped - listed)} vanished without being listed"
    for (uid, ts), value in expected.items():
        if uid not in kept:
            continue
        assert (uid, ts) in got, f"series {uid!r}: the reading at {ts} is missing after cleaning"
        assert math.isclose(got[(uid, ts)], value, rel_tol=1e-9, abs_tol=1e-300), (
            f"series {uid!r} at {ts}: the file says {value!r}, the cleaned frame {got[(uid, ts)]!r}")


def check_features(outcome: Outcome) -> None:
    df = outcome.features
    prev = df.groupby("unique_id", sort=False)["y"].shift(1)
    assert np.allclose(df["lag_1"].to_numpy(), prev.to_numpy(), equal_nan=True), "lag_1 is not y one step back"
    assert (df["hour"].to_numpy() == df["ds"].dt.hour.to_numpy()).all()
    back2 = df.groupby("unique_id", sort=False)["y"].shift(2)
    roll = np.mean(np.stack([prev.to_numpy(), back2.to_numpy()]), axis=0)  # each window on its own
    assert np.allclose(df["roll_2_mean"].to_numpy(), roll, equal_nan=True, rtol=1e-9), "roll_2_mean is off"


def check_error(exc: TidecastError) -> str:
    message = str(exc)
    assert message.strip(), "an empty error message"
    assert "\n" not in message and "\r" not in message, f"a multi-line error message: {message!r}"
    assert "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("data-fuzz")


def _event(text: str) -> None:
    with contextlib.suppress(Exception):  # outside a hypothesis test
        event(text)


def _run_case(root: Path, case: Case) -> Outcome | str:
    path = root / case.filename
    path.write_bytes(case.payload)
    spec = make_spec(root, case)
    try:
        outcome = run_data_layer(spec)
    except TidecastError as exc:
        _event(f"refused: {type(exc).__name__}")
        if os.environ.get("TIDECAST_FUZZ_DEBUG"):
            print("REFUSED", exc)
        return check_error(exc)
    _event("accepted")
    try:
        assert not case.must_fail, f"accepted a file with {case.must_fail}: a silent wrong result"
        check_ingested(outcome.ingested, case.exog)
        check_cleaned(outcome, case)
        check_features(outcome)
    except AssertionError as exc:
        exc.add_note(repr(case))
        raise
    return outcome


@fuzz_settings(default=100, thorough=2500)
@given(cases())
def test_data_files_give_a_right_frame_or_one_clear_error(data_dir: Path, case: Case) -> None:
    _run_case(data_dir, case)


# -------------------------------------------------------------------- the clean path works
def _plain_rows(n: int = 24, series: tuple[str, ...] = ("a", "b")) -> list[Row]:
    start = pd.Timestamp("2024-03-30 12:00")
    return [Row(uid, start + STEP * i, float(i) + 0.5 * k, 10.0 + i, True, False, None)
            for k, uid in enumerate(series) for i in range(n)]


@pytest.mark.parametrize("fmt", ["csv", "csv;", "csv-utf16", "csv-latin1", "csv-bom", "parquet", "json", "jsonl"])
def test_well_formed_files_of_every_format_are_read_right(data_dir: Path, fmt: str) -> None:
    """The fuzz property is not vacuous: clean files of each kind go through and match the file exactly."""
    rows = _plain_rows(series=("a", "café"))
    for row in rows:
        row.ts_text = _ts_text(row.ts, "iso")
    frame = pd.DataFrame({"timestamp": [r.ts_text for r in rows], "load": [r.y for r in rows],
                          "meter": [r.series for r in rows], "temperature": [r.temp for r in rows]})
    data = {"time_column": "timestamp", "target_column": "load", "series_column": "meter",
            "exogenous": ["temperature"], "read_options": {}}
    if fmt.startswith("csv"):
        name = "ok.csv"
        sep = ";" if fmt == "csv;" else ","
        encoding = {"csv-utf16": "utf-16", "csv-latin1": "latin-1", "csv-bom": "utf-8-sig"}.get(fmt, "utf-8")
        payload = frame.to_csv(index=False, sep=sep).encode(encoding)
        if sep != ",":
            data["read_options"]["sep"] = sep
        if encoding in ("utf-16", "latin-1"):
            data["read_options"]["encoding"] = encoding
    elif fmt == "parquet":
        name, buffer = "ok.parquet", io.BytesIO()
        frame.to_parquet(buffer, index=False)
        payload = buffer.getvalue()
    elif fmt == "json":
        name, payload = "ok.json", frame.to_json(orient="records").encode()
    else:
        name, payload = "ok.jsonl", frame.to_json(orient="records", lines=True).encode()
    outcome = _run_case(data_dir, Case(name, payload, data, rows, True))
    assert isinstance(outcome, Outcome), outcome
    assert sorted(outcome.cleaned["unique_id"].unique()) == ["a", "café"]
    assert len(outcome.cleaned) == len(rows)
