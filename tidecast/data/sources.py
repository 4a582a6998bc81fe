"""Read a data source (file, fsspec URL or SQL database) and bring it to the canonical long format.

>>> raw = read_source(spec.data)                                            # doctest: +SKIP
>>> df = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))  # doctest: +SKIP
>>> list(df.columns)                                                        # doctest: +SKIP
['unique_id', 'ds', 'y', 'temperature']

The canonical frame holds ``unique_id`` (str), ``ds`` (tz-naive UTC timestamps), ``y`` (float64),
then the exogenous columns (float64) and the static columns, sorted by ``(unique_id, ds)``.
Every problem is a :class:`~tidecast.errors.DataError` whose message names the source, the line
(or row) and the column.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import fsspec
import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.errors import DataError, SpecError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import DataSpec, TargetSpec

__all__ = ["SINGLE_SERIES_ID", "content_fingerprint", "read_source", "source_label", "to_long"]

SINGLE_SERIES_ID = "series"
"""The ``unique_id`` of single-series data (no ``data.series_column``)."""

_SQL_DIALECTS = frozenset({
    "sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "duckdb", "snowflake",
    "redshift", "bigquery", "trino", "presto", "clickhouse", "cockroachdb", "databricks", "db2", "teradata",
})
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst", ".tar")
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet", ".parq": "parquet",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
_NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "?", "#n/a"})
_AWARE_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?|UTC|GMT)\s*$")
_DAY_FIRST_RE = re.compile(r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}\b")
_CHUNK = 1 << 20
MAX_ABS_VALUE = 1e150
"""Largest magnitude of a target or exogenous value: beyond it, sums, interpolations and squared errors
of float64 overflow to infinity."""


# ------------------------------------------------------------------------------------ helpers
def _is_sql(source: str) -> bool:
    """True for SQLAlchemy URLs such as ``sqlite:///f.db`` or ``postgresql+psycopg://h/db``."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9]*)(?:\+[A-Za-z0-9_]+)?:", source)
    return bool(match) and match.group(1).lower() in _SQL_DIALECTS


def _is_url(source: str) -> bool:
    return "://" in source and not _is_sql(source)


def _redact(source: str) -> str:
    """``source`` without a password (``user:***@host``)."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", source)


def source_label(source: str) -> str:
    """A short name of a source for messages: a path relative to the working folder when it lies
    below it, else the path or URL (passwords hidden).

    >>> source_label("postgresql://me:secret@db/meters")
    'postgresql://me:***@db/meters'
    """
    if _is_sql(source) or _is_url(source):
        return _redact(source)
    try:
        rel = os.path.relpath(source)
    except ValueError:  # another drive on Windows
        return source
    return source if rel.startswith("..") else rel


def _detect_format(data: DataSpec) -> str | None:
    """``csv``, ``parquet`` or ``json`` for file sources; ``None`` for SQL."""
    if _is_sql(data.source):
        return None
    if data.format:
        return data.format
    name = data.source.split("?", 1)[0].rstrip("/").lower()
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    ext = os.path.splitext(name)[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext == "" and not _is_url(data.source) and Path(data.source).is_dir():
        return "parquet"  # a folder of Parquet files (a partitioned dataset)
    raise DataError(
        f"{source_label(data.source)}: cannot tell the file format from the extension '{ext or '(none)'}' "
        "(set data.format to csv, parquet or json)"
    )


def _split_options(data: DataSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pandas reader options, fsspec storage options) from ``data.read_options``."""
    options = dict(data.read_options)
    storage = options.pop("storage_options", None) or {}
    if not isinstance(storage, dict):
        raise DataError("data.read_options.storage_options must be a mapping")
    return options, storage


def _fs_path(source: str, storage: dict[str, Any]) -> tuple[Any, str]:
    try:
        return fsspec.core.url_to_fs(source, **storage)
    except (ImportError, ValueError) as exc:
        raise DataError(f"{source_label(source)}: cannot open this URL: {_first_line(exc)}") from None


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_exists(source: str, storage: dict[str, Any]) -> tuple[Any, str, bool]:
    """(filesystem, path, is_dir); a missing or empty file is a DataError."""
    label = source_label(source)
    fs, path = _fs_path(source, storage)
    try:
        if not fs.exists(path):
            raise DataError(f"{label}: no such file")
        if fs.isdir(path):
            return fs, path, True
        size = fs.info(path).get("size")
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{label}: cannot read: {_first_line(exc)}") from None
    if size == 0:
        raise DataError(f"{label}: the file is empty")
    return fs, path, False


# ----------------------------------------------------------------------------------- reading
def read_source(data: DataSpec) -> pd.DataFrame:
    """Read ``data.source`` as it is: a CSV/Parquet/JSON file or fsspec URL, or a SQL query.

    ``data.source`` is an absolute path or a URL (``load_spec`` resolves relative paths). The
    format comes from ``data.format`` or the extension (``.csv.gz`` works); ``data.read_options``
    go to the pandas reader (``storage_options`` among them go to fsspec). SQLAlchemy URLs run
    ``data.query`` or ``SELECT * FROM data.table``.

    >>> read_source(DataSpec(source="/data/power.csv", frequency="5min"))   # doctest: +SKIP
    """
    label = source_label(data.source)
    if _is_sql(data.source):
        frame = _read_sql(data, label)
    else:
        fmt = _detect_format(data)
        options, storage = _split_options(data)
        if data.series_column and fmt in ("csv", "json"):
            _ids_as_written(options, data.series_column)
        _fs, _path, is_dir = _check_exists(data.source, storage)
        if fmt == "parquet":
            frame = _read_parquet(data.source, options, storage, label)
        elif is_dir:
            raise DataError(f"{label}: is a folder, not a {fmt} file")
        elif fmt == "json":
            frame = _read_json(data.source, options, storage, label)
        else:
            frame = _read_csv(data.source, options, storage, label)
    if frame.empty:
        raise DataError(f"{label}: no data rows")
    return frame


def _ids_as_written(options: dict[str, Any], column: str) -> None:
    """Read the series column as it is written: pandas would make ids such as ``007`` the number 7."""
    dtype = options.get("dtype")
    if dtype is None:
        options["dtype"] = {column: object}
    elif isinstance(dtype, dict):
        options["dtype"] = {column: object, **dtype}


def _read_csv(source: str, options: dict[str, Any], storage: dict[str, Any], label: str) -> pd.DataFrame:
    options.setdefault("encoding", "utf-8-sig")
    options.setdefault("low_memory", False)
    if source.lower().split("?", 1)[0].endswith((".tsv", ".tsv.gz")):
        options.setdefault("sep", "\t")
    try:
        with fsspec.open(source, "rb", compression="infer", **storage) as handle:
            head = handle.read(8192)
            if not head.strip():
                raise DataError(f"{label}: the file is empty")
            plain_utf8 = options["encoding"].lower().replace("-", "").replace("_", "") in ("utf8sig", "utf8")
            if plain_utf8 and head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise DataError(f"{label}: the file is UTF-16 text: set data.read_options.encoding: utf-16")
            if plain_utf8 and b"\x00" in head:
                raise DataError(
                    f"{label}: does not look like CSV text (it holds binary data; set data.format if it is Parquet)"
                )
            handle.seek(0)
            return pd.read_csv(handle, **options)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start:exc.start + 1].hex() if isinstance(exc.object, bytes | bytearray) else "?"
        raise DataError(
            f"{label}: cannot be read as {options['encoding']} text (invalid byte 0x{byte}); "
            "save it as UTF-8 or set data.read_options.encoding (e.g. latin-1)"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty") from None
    except pd.errors.ParserError as exc:
        text = _first_line(exc).removeprefix("Error tokenizing data. C error: ")
        raise DataError(f"{label}: malformed CSV: {text[:1].lower() + text[1:]}") from None
    except TypeError as exc:
        raise DataError(f"{label}: data.read_options: {_first_line(exc)}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{label}: cannot read as CSV: {_first_line(exc)}") from None


def _read_json(source: str, options: dict[str, Any], storage: dict[str, Any], label: str) -> pd.DataFrame:
    name = source.lower().split("?", 1)[0]
    options.setdefault("lines", name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")))
    options.setdefault("convert_dates", False)
    options.setdefault("encoding", "utf-8-sig")
    try:
        with fsspec.open(source, "rb", compression="infer", **storage) as handle:
            frame = pd.read_json(handle, **options)
    except UnicodeDecodeError:
        raise DataError(
            f"{label}: cannot be read as {options['encoding']} text; save it as UTF-8 or set data.read_options.encoding"
        ) from None
    except TypeError as exc:
        raise DataError(f"{label}: data.read_options: {_first_line(exc)}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{label}: not readable JSON: {_first_line(exc)}") from None
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    return frame


def _read_parquet(source: str, options: dict[str, Any], storage: dict[str, Any], label: str) -> pd.DataFrame:
    try:
        if storage:
            options = {**options, "storage_options": storage}
        return pd.read_parquet(source, **options)
    except TypeError as exc:
        raise DataError(f"{label}: data.read_options: {_first_line(exc)}") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{label}: not a readable Parquet file: {_first_line(exc)}") from None
    except Exception as exc:  # pyarrow raises a few other types for corrupt files
        if type(exc).__module__.startswith(("pyarrow", "fastparquet")):
            raise DataError(f"{label}: not a readable Parquet file: {_first_line(exc)}") from None
        raise


def _sqlite_file(source: str) -> str | None:
    """The database file of a ``sqlite:///path`` URL (None for in-memory databases)."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(source)
    except sa.exc.ArgumentError:
        return None
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None
    return url.database


def _read_sql(data: DataSpec, label: str) -> pd.DataFrame:
    import sqlalchemy as sa

    if not data.query and not data.table:
        raise DataError(f"{label}: a SQL source needs data.query or data.table")
    sqlite_file = _sqlite_file(data.source)
    if sqlite_file is not None and not Path(sqlite_file).is_file():
        raise DataError(f"{label}: no such SQLite database file '{sqlite_file}'")
    try:
        engine = sa.create_engine(data.source)
    except sa.exc.NoSuchModuleError as exc:
        raise DataError(f"{label}: no SQLAlchemy driver for this URL ({_first_line(exc)})") from None
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataError(f"{label}: not a usable SQLAlchemy URL: {_first_line(exc)}") from None
    if data.query:
        statement: Any = sa.text(data.query)
        what = "data.query"
    else:
        schema, _, name = str(data.table).rpartition(".")
        statement = sa.select(sa.text("*")).select_from(sa.table(name, schema=schema or None))
        what = f"table '{data.table}'"
    options, _storage = _split_options(data)
    try:
        with engine.connect() as conn:
            return pd.read_sql(statement, conn, **options)
    except sa.exc.DBAPIError as exc:
        raise DataError(f"{label}: {what} failed: {_first_line(exc.orig or exc)}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise DataError(f"{label}: {what} failed: {_first_line(exc)}") from None
    except TypeError as exc:
        raise DataError(f"{label}: data.read_options: {_first_line(exc)}") from None
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- fingerprint
def content_fingerprint(data: DataSpec) -> str:
    """A cheap, stable fingerprint of the source's content, for caching the ingest step.

    Local files (and folders of files): sha256 of their bytes. Other fsspec URLs: a hash of the
    file's metadata (etag, mtime, size). SQL: a hash of the URL and the query, plus the sha256 of
    the database file for SQLite; other databases (PostgreSQL, ...) are fingerprinted by the rows
    the query returns (one read: a database gives no content hash that covers an edited row,
    and a key of the query alone would keep serving yesterday's data after new rows arrive).

    >>> content_fingerprint(DataSpec(source="/data/power.csv", frequency="5min"))  # doctest: +SKIP
    'sha256:4f1c...'
    """
    label = source_label(data.source)
    if _is_sql(data.source):
        digest = hashlib.sha256()
        digest.update(json.dumps([_redact(data.source), data.query, data.table]).encode())
        sqlite_file = _sqlite_file(data.source)
        if sqlite_file is not None:
            if not Path(sqlite_file).is_file():
                raise DataError(f"{label}: no such SQLite database file '{sqlite_file}'")
            digest.update(_sha256_local([Path(sqlite_file)]).encode())
        else:
            rows = _read_sql(data, label)
            digest.update(json.dumps([list(map(str, rows.columns)), [str(t) for t in rows.dtypes]]).encode())
            digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
        return "sql:" + digest.hexdigest()
    _options, storage = _split_options(data)
    fs, path, is_dir = _check_exists(data.source, storage)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        root = Path(path)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if is_dir else [root]
        return "sha256:" + _sha256_local(files, root if is_dir else None)
    try:
        infos = [fs.info(p) for p in sorted(fs.find(path))] if is_dir else [fs.info(path)]
    except (OSError, ValueError) as exc:
        raise DataError(f"{label}: cannot read: {_first_line(exc)}") from None
    keys = ("name", "size", "ETag", "etag", "md5", "md5Hash", "crc32c", "mtime", "LastModified",
            "last_modified", "updated", "version_id", "VersionId", "generation")
    meta = [{k: str(info[k]) for k in keys if k in info} for info in infos]
    return "meta:" + hashlib.sha256(json.dumps([_redact(data.source), meta], sort_keys=True).encode()).hexdigest()


def _sha256_local(files: Sequence[Path], root: Path | None = None) -> str:
    digest = hashlib.sha256()
    for file in files:
        if root is not None:
            digest.update(str(file.relative_to(root)).encode() + b"\x00")
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- long format
class _Rows:
    """Turns row positions of the raw frame into 'line N' (CSV) or 'row N' (other sources)."""

    def __init__(self, data: DataSpec, fmt: str | None) -> None:
        self.csv = fmt == "csv"
        first = 1
        if self.csv:
            header = data.read_options.get("header", "infer")
            skip = data.read_options.get("skiprows")
            first = 1 if header is None else 2
            if isinstance(skip, int) and not isinstance(skip, bool):
                first += skip
        self.first = first

    def __call__(self, position: int) -> str:
        return f"line {position + self.first}" if self.csv else f"row {position + 1}"


def _did_you_mean(name: str, columns: Sequence[str]) -> str:
    """A suggestion: the same name in other case/spacing, a column it abbreviates, or the closest."""
    key = name.lower().strip()
    close = [c for c in columns if c.lower().strip() == key]
    close = close or [c for c in columns if key and c.lower().strip().startswith(key)]
    close = close or difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? " if close else ""


def _missing_column(label: str, name: str, field: str, columns: Sequence[str]) -> DataError:
    shown = ", ".join(columns[:30]) + (f", ... ({len(columns)} in all)" if len(columns) > 30 else "")
    hint = _did_you_mean(name, columns)
    if len(columns) == 1:
        for sep, word in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
            if sep in columns[0]:
                hint += f"the file seems to use {word} as separator: set data.read_options.sep; "
                break
    return DataError(f"{label}: no column '{name}' for {field} ({hint}columns: {shown})")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``inf``, not ``np.float64(inf)``, in messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_float(values: pd.Series, column: str, label: str, rows: _Rows) -> pd.Series:
    """``values`` as float64; non-numbers and infinities are errors naming the first bad line."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        out = values.astype("float64")
    else:
        text = values.astype("string").str.strip()
        out = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = out.isna() & text.notna() & ~text.str.lower().isin(_NA_TOKENS)
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            value = values.iloc[pos]
            hint = ""
            if isinstance(value, str) and re.fullmatch(r"\s*-?\d+,\d+\s*", value):
                hint = " (for decimal commas set data.read_options.decimal: ',')"
            raise DataError(f"{label}: {rows(pos)}: column '{column}': value {str(value)!r} is not a number{hint}")
    inf = np.isinf(out.to_numpy())
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise DataError(f"{label}: {rows(pos)}: column '{column}': value {_plain(values.iloc[pos])!r} is infinite")
    with np.errstate(invalid="ignore"):
        huge = np.abs(out.to_numpy()) > MAX_ABS_VALUE
    if huge.any():
        pos = int(np.flatnonzero(huge)[0])
        raise DataError(
            f"{label}: {rows(pos)}: column '{column}': value {_plain(values.iloc[pos])!r} is too large to compute with "
            f"(at most {MAX_ABS_VALUE:g} in magnitude: means, gaps and errors of larger values overflow)"
        )
    return out


def _epoch_unit(values: pd.Series) -> str:
    top = float(np.nanmax(np.abs(values.to_numpy(dtype="float64")))) if len(values) else 0.0
    return "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"


def _parse_iso(values: pd.Series) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")


def _parse_text(text: pd.Series) -> pd.Series:
    """Timestamps written as text, as UTC (NaT where unreadable): the format pandas infers, then ISO 8601
    for the rest (several formats in one column), then day-first when only that reads every value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text, errors="coerce", utc=True)
        failed = parsed.isna()
        if failed.any():
            parsed = parsed.where(~failed, _parse_iso(text[failed]))
            failed = parsed.isna()
        if failed.any() and text.str.match(_DAY_FIRST_RE).all():  # day-first dates such as 13/02/2024
            dayfirst = pd.to_datetime(text, errors="coerce", utc=True, dayfirst=True)
            if dayfirst.notna().all():
                parsed = dayfirst
    return parsed


def _apart(values: pd.Series, aware: np.ndarray, parse: Any) -> pd.Series:
    """``parse`` the values with an offset and those without one separately: parsed together, pandas
    gives a naive time the offset of an aware one read before it (``10:00-05:00`` then ``09:00`` reads
    the second as 14:00 UTC)."""
    if aware.all() or not aware.any():
        return parse(values)
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    for mask in (aware, ~aware):
        part = parse(values[mask])
        parsed[mask] = part.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return parsed


def _parse_times(values: pd.Series, column: str, label: str, rows: _Rows) -> tuple[pd.Series, np.ndarray]:
    """(wall or UTC times as naive datetime64[ns], mask of rows that carried their own offset)."""
    empty = values.isna()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        empty |= values.astype("string").str.strip().fillna("").eq("")
    if empty.any():
        pos = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{label}: {rows(pos)}: column '{column}' (data.time_column) is empty")

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed.astype("datetime64[ns]"), np.ones(len(values), dtype=bool)
    if pd.api.types.is_datetime64_dtype(values):
        return values.astype("datetime64[ns]"), np.zeros(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        parsed = pd.to_datetime(values, unit=_epoch_unit(values), errors="coerce", utc=True)
        aware = np.ones(len(values), dtype=bool)
        text = values.astype("string")
    else:
        is_text = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if is_text.all():
            text = values.astype("string").str.strip()
            aware = text.str.contains(_AWARE_RE, regex=True).fillna(False).to_numpy(dtype=bool)
            parsed = _apart(text, aware, _parse_text)
        else:  # python datetimes / Timestamps (JSON, SQL drivers), maybe mixed with strings
            aware = np.array([getattr(v, "tzinfo", None) is not None or (isinstance(v, str) and bool(
                _AWARE_RE.search(v.strip()))) for v in values], dtype=bool)
            text = values.astype("string")
            iso = values.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v)
            parsed = _apart(iso, aware, _parse_iso)
    failed = parsed.isna().to_numpy()
    if failed.any():
        pos = int(np.flatnonzero(failed)[0])
        raise DataError(
            f"{label}: {rows(pos)}: {column} {str(text.iloc[pos]).strip()!r} cannot be parsed as a timestamp"
        )
    return parsed.dt.tz_localize(None).astype("datetime64[ns]"), aware


def _localize(wall: pd.Series, tz: str, groups: pd.Series) -> pd.Series:
    """Naive local wall-clock times -> naive UTC, per series, in file order.

    Spring-forward times that do not exist are shifted forward. A fall-back wall time is summer
    time until the clock is seen going back within the repeated hour, winter time after it
    (``02:00 02:30 02:00 02:30``); when the clock never goes back (hourly data: ``02:00 02:00``)
    a repeat of a wall time is its winter-time occurrence. This is what ``ambiguous='infer'``
    does for clean data, and it also copes with duplicated readings, gaps and a single pass.
    """
    index = pd.DatetimeIndex(wall)
    probe = index.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
    ambiguous = np.asarray(probe.isna())
    flags = np.ones(len(wall), dtype=bool)
    if ambiguous.any():
        positions = np.flatnonzero(ambiguous)
        sub = pd.DataFrame({
            "g": groups.to_numpy()[positions],
            "day": wall.to_numpy()[positions].astype("datetime64[D]"),
            "t": wall.to_numpy()[positions],
        })
        keys = [sub["g"], sub["day"]]
        went_back = (sub.groupby(keys, sort=False)["t"].diff() < pd.Timedelta(0)).astype(int)
        after = went_back.groupby(keys, sort=False).cummax()
        jumped = after.groupby(keys, sort=False).transform("max").to_numpy(dtype=bool)
        repeated = sub.duplicated(subset=["g", "day", "t"]).to_numpy(dtype=bool)
        after = after.to_numpy(dtype=bool) | (~jumped & repeated)
        flags[positions] = ~after
    local = index.tz_localize(tz, ambiguous=flags, nonexistent="shift_forward")
    return pd.Series(local.tz_convert("UTC").tz_localize(None), index=wall.index).astype("datetime64[ns]")


def _series_ids(values: pd.Series, column: str, label: str, rows: _Rows) -> pd.Series:
    if values.isna().all():
        raise DataError(f"{label}: column '{column}' (data.series_column) is empty")
    if values.isna().any():
        positions = np.flatnonzero(values.isna().to_numpy())
        named = ", ".join(rows(int(p)) for p in positions[:5])
        more = f" and {len(positions) - 5} more" if len(positions) > 5 else ""
        raise DataError(
            f"{label}: {named}{more}: column '{column}' (data.series_column) is empty "
            f"({len(positions)} of {len(values)} rows have no series id)"
        )
    if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.to_numpy(), 1) == 0):
        values = values.astype("int64")
    elif values.dtype == object:  # numbers from a typed source (JSON): 7.0 is the id 7, as in a float column
        values = values.map(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)
    return values.astype(str).str.strip().astype(object)


def to_long(raw: pd.DataFrame, data: DataSpec, target: TargetSpec, *, source_name: str) -> pd.DataFrame:
    """The canonical long frame ``unique_id, ds, y, <exogenous>, <static>`` from a raw frame.

    ``y`` is ``target_column`` (or the sum of ``target.sum_of``); ``ds`` is UTC: naive times are
    wall-clock times of ``data.timezone`` (UTC when unset), times with an offset are converted.
    Single-series data gets the id ``"series"``. ``target.resample`` aggregates each series.

    >>> raw = pd.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 01:00"], "load": [1, 2]})
    >>> to_long(raw, DataSpec(source="x.csv", target_column="load", frequency="h"), TargetSpec(),
    ...         source_name="x.csv")[["unique_id", "y"]].to_dict("list")
    {'unique_id': ['series', 'series'], 'y': [1.0, 2.0]}
    """
    label = source_name
    if raw.empty:
        raise DataError(f"{label}: no data rows")
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).lstrip("\ufeff") for c in raw.columns]
    columns = list(raw.columns)
    rows = _Rows(data, _detect_format(data) if not _is_sql(data.source) else None)

    # -- every named column must exist
    wanted: list[tuple[str, str]] = [(data.time_column, "data.time_column")]
    if target.sum_of:
        wanted += [(c, "target.sum_of") for c in target.sum_of]
    else:
        wanted.append((data.target_column, "data.target_column"))
    if data.series_column:
        wanted.append((data.series_column, "data.series_column"))
    exog = [e.name for e in data.exogenous_columns]
    wanted += [(c, "data.exogenous") for c in exog]
    wanted += [(c, "data.static_columns") for c in data.static_columns]
    for name, field in wanted:
        if name not in raw.columns:
            raise _missing_column(label, name, field, columns)
    reserved = {ID, TIME, TARGET}
    clash = [c for c in [*exog, *data.static_columns] if c in reserved]
    if clash:
        raise DataError(f"{label}: column '{clash[0]}' cannot be exogenous or static: the name is reserved")

    # -- series ids, target, exogenous
    if data.series_column:
        ids = _series_ids(raw[data.series_column], data.series_column, label, rows)
    else:
        ids = pd.Series(SINGLE_SERIES_ID, index=raw.index, dtype=object)
    if target.sum_of:
        parts = pd.concat([_as_float(raw[c], c, label, rows) for c in target.sum_of], axis=1)
        y = parts.sum(axis=1, min_count=len(target.sum_of))
    else:
        y = _as_float(raw[data.target_column], data.target_column, label, rows)
    out = pd.DataFrame({ID: ids, TIME: pd.NaT, TARGET: y.astype("float64")})
    for name in exog:
        out[name] = _as_float(raw[name], name, label, rows)
    for name in data.static_columns:
        out[name] = raw[name].to_numpy()

    # -- timestamps to UTC
    parsed, aware = _parse_times(raw[data.time_column], data.time_column, label, rows)
    if data.timezone and not aware.all() and calendar.is_fixed(data.frequency):  # calendar series are dates: kept naive
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SpecError(f"data.timezone: unknown time zone '{data.timezone}' (use e.g. 'Europe/Paris')") from None
        naive = ~aware
        local = _localize(parsed[naive], data.timezone, ids[naive])
        parsed = parsed.copy()
        parsed[naive] = local
    out[TIME] = parsed.astype("datetime64[ns]")

    for name in data.static_columns:
        varying = out.groupby(ID, sort=False)[name].nunique(dropna=True)
        if (varying > 1).any():
            uid = varying.index[int(np.argmax(varying.to_numpy() > 1))]
            raise DataError(f"{label}: static column '{name}' has several values in series '{uid}'")

    if target.resample is not None:
        out = _resample(out, target.resample.rule, target.resample.agg, exog, list(data.static_columns))
    out = out.sort_values([ID, TIME], kind="stable").reset_index(drop=True)
    return out


def _resample(df: pd.DataFrame, rule: str, agg: str, exog: list[str], static: list[str]) -> pd.DataFrame:
    try:
        pd.tseries.frequencies.to_offset(rule)
    except ValueError:
        raise SpecError(f"target.resample.rule: {rule!r} is not a pandas frequency (use e.g. 'h', '15min', 'D')") from None
    grouped = df.groupby([ID, pd.Grouper(key=TIME, freq=rule)], sort=True)
    values = grouped[[TARGET, *exog]]
    result = values.sum(min_count=1) if agg == "sum" else getattr(values, agg)()
    size = grouped.size()
    result = result[size.reindex(result.index).fillna(0).to_numpy() > 0]
    if static:
        result = result.join(grouped[static].first())
    result = result.reset_index()
    result[ID] = result[ID].astype(object)
    return result[[ID, TIME, TARGET, *exog, *static]]
