"""Read a data source (file, fsspec URL or SQL database) as a raw frame, and fingerprint its content.

>>> raw = read_source(spec.data)                                            # doctest: +SKIP
>>> df = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))  # doctest: +SKIP

:func:`tidecast.data.long_format.to_long` brings the raw frame to the canonical long format. Every
problem is a :class:`~tidecast.errors.DataError` whose message names the source and the column.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

from tidecast.errors import DataError
from tidecast.spec import DataSpec

__all__ = ["content_fingerprint", "read_source", "source_format", "source_label"]

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
_CHUNK = 1 << 20


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


def source_format(data: DataSpec) -> str | None:
    """``csv``, ``parquet`` or ``json`` for a file source (as :func:`read_source` reads it), ``None``
    for SQL or a format it cannot tell."""
    return None if _is_sql(data.source) else _detect_format(data)


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


