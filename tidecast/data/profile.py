"""Profile a table of time series for ``tidecast init --data``: which column is the time, the target, the
series id; the frequency, gaps, duplicates, candidate exogenous columns, seasonal periods and length.

Pure logic on a raw DataFrame (read by :func:`tidecast.data.sources.read_source`). Timestamps, ids and
values are brought to the canonical long frame by :func:`tidecast.data.long_format.to_long`, the function
the ``ingest`` step uses, so what the profile finds is what a run reads. A choice the data leaves open
(two time columns, several numeric columns and no target named) is an :class:`AmbiguousDataError`
whose message asks the question and names the flag that answers it.

>>> raw = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=60, freq="D").strftime("%d/%m/%Y"),
...                     "sales": np.tile([5.0, 5, 5, 5, 9, 12, 7], 9)[:60]})
>>> p = profile_frame(raw)
>>> (p.time_column, p.dayfirst, p.target_column, p.frequency, p.seasons)
('day', True, 'sales', 'D', [7])
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tidecast.data.long_format import to_long
from tidecast.data.profile_time import gaps, grid_of, infer_grid, seasonal_periods
from tidecast.errors import DataError, did_you_mean
from tidecast.frames import ID, TIME
from tidecast.spec import DataSpec, ExogenousColumn, TargetSpec

_DAY_MONTH_RE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-]\d{2,4}\b")
_TIME_NAME_RE = re.compile(r"time|date|stamp|^ds$|datetime|period", re.IGNORECASE)
_SAMPLE = 2000  # rows looked at to tell whether a column holds timestamps


class AmbiguousDataError(DataError):
    """The data leaves a choice open; the message asks the question and names the flag that answers it."""


@dataclass(frozen=True)
class Profile:
    """What :func:`profile_frame` found. Lengths, gaps and seasons are in steps of ``frequency``."""

    rows: int
    columns: list[str]
    time_column: str
    dayfirst: bool
    target_column: str
    series_column: str | None
    n_series: int
    frequency: str
    step: pd.Timedelta  # one step (the average one for a calendar frequency)
    fixed: bool  # a fixed frequency (5min, h, D), not a calendar one (MS, B...)
    length: int  # steps from first to last timestamp of the median series
    shortest: int  # the same for the shortest series
    start: pd.Timestamp
    end: pd.Timestamp
    missing_steps: int  # grid steps without a row, all series together
    longest_gap: int  # the longest run of missing steps in one series
    off_grid: int  # rows between the steps of the grid
    duplicates: int  # rows repeating a (series, time) pair
    exogenous: list[str]
    seasons: list[int]  # periods with a clear autocorrelation peak, shortest first
    acf: dict[int, float] = field(default_factory=dict)  # the autocorrelation at each period tried
    frequency_given: bool = False


# ------------------------------------------------------------------------------------ columns
def _check_column(name: str, columns: Sequence[str], flag: str, label: str) -> None:
    if name not in columns:
        raise DataError(
            f"{label}: {flag} {name}: no such column{did_you_mean(name, columns)}; columns: {', '.join(columns)}"
        )


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def day_first(text: pd.Series) -> bool | None:
    """``True`` when dates written ``dd/mm/yyyy`` show a first field above 12, ``False`` when the second
    is (month first), ``None`` when the values are not such dates or do not tell (both at most 12).
    A column where both fields exceed 12 somewhere holds no such dates (``None``).

    >>> day_first(pd.Series(["12/01/2024", "31/01/2024"])), day_first(pd.Series(["01/31/2024"]))
    (True, False)
    """
    parts = text.astype("string").str.extract(_DAY_MONTH_RE)
    if parts.isna().any().any() or parts.empty:
        return None
    first, second = parts[0].astype(int), parts[1].astype(int)
    if (first > 12).any() and (second > 12).any():
        return None
    if (first > 12).any():
        return True
    if (second > 12).any():
        return False
    return None


def _reads_as_times(values: pd.Series, name: str) -> bool:
    """Whether a (sampled) column holds timestamps."""
    values = values.dropna()
    if values.empty or pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values):  # epoch seconds/milliseconds, only under a time-like name
        smallest = float(np.abs(values.to_numpy(dtype="float64")).min())
        return bool(_TIME_NAME_RE.search(name)) and smallest > 1e8
    text = values.astype("string").str.strip()
    if not text.str.contains(r"\d[-/.:T ]\d|\d{1,2}[-/. ][A-Za-z]{3}", regex=True).all() or text.str.len().min() < 6:
        return False
    first = day_first(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text, errors="coerce", utc=True, dayfirst=bool(first))
        if parsed.isna().any():
            parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    return bool(parsed.notna().all())


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= _SAMPLE:
        return frame
    picks = np.unique(np.r_[np.arange(_SAMPLE // 2), np.linspace(0, len(frame) - 1, _SAMPLE // 2).astype(int)])
    return frame.iloc[picks]


def find_time_column(raw: pd.DataFrame, label: str) -> str:
    """The one column holding timestamps; none or several is an error naming ``--time``."""
    sample = _sample(raw)
    found = [c for c in raw.columns if _reads_as_times(sample[c], str(c))]
    if not found:
        raise DataError(
            f"{label}: no column reads as timestamps (columns: {', '.join(map(str, raw.columns))}); "
            "if one holds them, name it with --time NAME"
        )
    if len(found) > 1:
        raise AmbiguousDataError(
            f"{label}: {len(found)} columns hold timestamps ({_listing(found)}): which one is the time axis? "
            f"Say it with --time NAME (e.g. --time {found[0]})"
        )
    return str(found[0])


def _parse_for_profile(values: pd.Series) -> pd.Series:
    """Timestamps for telling series apart (before :func:`to_long` reads them for good)."""
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values
    text = values.astype("string").str.strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.to_datetime(text, errors="coerce", utc=True, dayfirst=bool(day_first(text)))


def find_series_column(raw: pd.DataFrame, time_column: str, label: str) -> str | None:
    """The series id column of long-format data: the one low-cardinality text or integer column that
    makes (id, time) unique where timestamps repeat. ``None`` when timestamps do not repeat much (one
    series, maybe with a few duplicated readings)."""
    times = _parse_for_profile(raw[time_column])
    distinct = times.nunique(dropna=True)
    if distinct == 0 or len(raw) < 1.5 * distinct:
        return None
    found: list[str] = []
    for column in raw.columns:
        values = raw[column]
        if column == time_column or pd.api.types.is_bool_dtype(values) or pd.api.types.is_float_dtype(values):
            continue
        if not (pd.api.types.is_integer_dtype(values) or not pd.api.types.is_numeric_dtype(values)):
            continue
        n = values.nunique(dropna=True)
        if n < 2 or n > len(raw) / 3 or values.isna().any():
            continue
        pairs = pd.DataFrame({"id": values.to_numpy(), "t": times.to_numpy()})
        if pairs.duplicated().sum() <= 0.01 * len(raw):
            found.append(str(column))
    # columns naming the same series (an id and its name) are one choice: keep the first
    distinct_choices: list[str] = []
    for column in found:
        same = any(
            raw.groupby(column, sort=False)[kept].nunique().max() == 1
            and raw.groupby(kept, sort=False)[column].nunique().max() == 1
            for kept in distinct_choices
        )
        if not same:
            distinct_choices.append(column)
    if not distinct_choices:
        raise AmbiguousDataError(
            f"{label}: timestamps repeat ({len(raw)} rows for {distinct} distinct times) and no single column "
            "tells the series apart: which column is the series id? Say it with --series NAME"
        )
    if len(distinct_choices) > 1:
        raise AmbiguousDataError(
            f"{label}: {len(distinct_choices)} columns could be the series id ({_listing(distinct_choices)}): "
            f"which one names the series? Say it with --series NAME (e.g. --series {distinct_choices[0]})"
        )
    return distinct_choices[0]


def _numeric(raw: pd.DataFrame, exclude: set[str]) -> list[str]:
    return [
        str(c)
        for c in raw.columns
        if c not in exclude and pd.api.types.is_numeric_dtype(raw[c]) and not pd.api.types.is_bool_dtype(raw[c])
    ]


def find_target_column(raw: pd.DataFrame, exclude: set[str], label: str) -> str:
    """The one numeric column left; none or several is an error naming ``--target``."""
    numeric = _numeric(raw, exclude)
    if not numeric:
        raise DataError(
            f"{label}: no numeric column to forecast (columns: {', '.join(map(str, raw.columns))}); "
            "name the target with --target NAME"
        )
    if len(numeric) > 1:
        raise AmbiguousDataError(
            f"{label}: {len(numeric)} numeric columns could be the target ({_listing(numeric)}): which one to "
            f"forecast? Say it with --target NAME (e.g. --target {numeric[0]}); the others become exogenous inputs"
        )
    return numeric[0]


def exogenous_candidates(raw: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Other numeric columns with finite values in at least 95 % of the rows."""
    out = []
    for column in _numeric(raw, exclude):
        values = raw[column].to_numpy(dtype="float64")
        if np.isfinite(values).mean() >= 0.95 and not np.isinf(values).any():
            out.append(column)
    return out


# ----------------------------------------------------------------------------------- profile
def profile_frame(
    raw: pd.DataFrame,
    *,
    time: str | None = None,
    target: str | None = None,
    series: str | None = None,
    frequency: str | None = None,
    label: str = "data",
    data_format: str = "csv",
) -> Profile:
    """Profile ``raw`` (a table as read from the user's file). ``time``, ``target``, ``series`` and
    ``frequency`` replace what would be inferred; ``data_format`` (csv, parquet, json) numbers the rows
    in messages as :func:`to_long` does. Raises :class:`DataError` for data that cannot be
    forecast as it is, :class:`AmbiguousDataError` for a choice left open."""
    if raw.empty:
        raise DataError(f"{label}: no data rows")
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).lstrip("\ufeff") for c in raw.columns]
    columns = list(raw.columns)
    if len(columns) < 2:
        only = columns[0] if columns else ""
        hint = next((f" (it looks separated by {s!r})" for s in (";", "\t", "|") if s in only), "")
        raise DataError(
            f"{label}: a single column ('{only}'){hint}: a forecast needs a time column and a numeric column"
        )
    for name, flag in ((time, "--time"), (target, "--target"), (series, "--series")):
        if name is not None:
            _check_column(name, columns, flag, label)
    time_column = time or find_time_column(raw, label)
    series_column = series if series is not None else find_series_column(raw, time_column, label)
    used = {time_column, *([series_column] if series_column else [])}
    target_column = target or find_target_column(raw, used, label)
    if target_column in used:
        raise DataError(f"{label}: --target {target_column} is already the time or the series column")
    exogenous = exogenous_candidates(raw, used | {target_column})

    data = DataSpec(
        source=label,
        format=data_format,
        time_column=time_column,
        target_column=target_column,
        series_column=series_column,
        frequency="h",
        exogenous=[ExogenousColumn(name=c, known_in_future=False) for c in exogenous],
    )
    long = to_long(raw, data, TargetSpec(), source_name=label)
    grid = grid_of(frequency, label) if frequency is not None else infer_grid(long, label)
    span, missing, longest, off_grid = gaps(long, grid)
    seasons, acf = seasonal_periods(long, grid)
    text = raw[time_column]
    dayfirst = not pd.api.types.is_numeric_dtype(text) and bool(day_first(text.dropna().astype("string")))
    return Profile(
        rows=len(raw),
        columns=columns,
        time_column=time_column,
        dayfirst=dayfirst,
        target_column=target_column,
        series_column=series_column,
        n_series=int(long[ID].nunique()),
        frequency=grid.freq,
        step=grid.step,
        fixed=grid.fixed,
        length=int(span.median()),
        shortest=int(span.min()),
        start=pd.Timestamp(long[TIME].min()),
        end=pd.Timestamp(long[TIME].max()),
        missing_steps=missing,
        longest_gap=longest,
        off_grid=off_grid,
        duplicates=int(long.duplicated([ID, TIME]).sum()),
        exogenous=exogenous,
        seasons=seasons,
        acf=acf,
        frequency_given=frequency is not None,
    )


__all__ = [
    "AmbiguousDataError",
    "Profile",
    "day_first",
    "exogenous_candidates",
    "find_series_column",
    "find_target_column",
    "find_time_column",
    "profile_frame",
]
