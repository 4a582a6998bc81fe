"""Bring a raw frame (:func:`tidecast.data.sources.read_source`) to the canonical long format.

>>> df = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))  # doctest: +SKIP
>>> list(df.columns)                                                        # doctest: +SKIP
['unique_id', 'ds', 'y', 'temperature']

The canonical frame holds ``unique_id`` (str), ``ds`` (tz-naive UTC timestamps), ``y`` (float64),
then the exogenous columns (float64) and the static columns, sorted by ``(unique_id, ds)``.
Every problem is a :class:`~tidecast.errors.DataError` whose message names the source, the line
(or row) and the column.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.data.sources import source_format
from tidecast.errors import DataError, SpecError, closest
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import DataSpec, TargetSpec

__all__ = ["MAX_ABS_VALUE", "SINGLE_SERIES_ID", "to_long"]

SINGLE_SERIES_ID = "series"
"""The ``unique_id`` of single-series data (no ``data.series_column``)."""

_NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "?", "#n/a"})
_AWARE_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?|UTC|GMT)\s*$")
_DAY_FIRST_RE = re.compile(r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}\b")
MAX_ABS_VALUE = 1e150
"""Largest magnitude of a target or exogenous value: beyond it, sums, interpolations and squared errors
of float64 overflow to infinity."""


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
    same = [c for c in columns if c.lower().strip() == key]
    same = same or [c for c in columns if key and c.lower().strip().startswith(key)]
    guess = same[0] if same else closest(name, columns)
    return f"did you mean '{guess}'? " if guess else ""

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
    rows = _Rows(data, source_format(data))

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
