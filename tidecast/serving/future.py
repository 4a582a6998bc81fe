"""Future exogenous values for batch prediction: a file that covers the horizon (a weather forecast).

A model trained with a known-in-future exogenous column (``temperature`` in ``examples/power``)
needs that column's values for every step it forecasts. ``tidecast predict`` takes them, in this
order, from ``--future FILE``, from the input's own rows after its last reading (target empty),
or from the file named by the spec's ``serving.future``. :func:`read_future` reads such a file with
the spec's data settings (time column, series column, time zone, format from the extension; no
target column needed) and :func:`future_rows` checks that it covers each series' horizon, naming
the missing columns or rows in one line.

>>> rows = future_rows(recent, read_future(spec, "weather.csv", ["temperature"]), 288, "5min",
...                    ["temperature"], label="weather.csv")                   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.data.long_format import to_long
from tidecast.data.sources import read_source, source_label
from tidecast.errors import DataError
from tidecast.frames import ID, TARGET, TIME
from tidecast.spec import ExogenousColumn

if TYPE_CHECKING:
    from tidecast.spec import Spec

MAX_NAMED = 5


def read_future(spec: Spec, path: str | Path, columns: list[str], *, what: str = "--future") -> pd.DataFrame:
    """The canonical frame ``unique_id, ds, <columns>`` of a future-values file (``ds`` in UTC).

    The file needs the spec's time column, its series column (for long-format data) and
    ``columns``; a target column is not needed (it is ignored when present). Raises
    :class:`DataError` naming a missing file or the missing columns.
    """
    file = Path(path).expanduser()
    if "://" not in str(path) and not file.exists():
        raise DataError(f"{what} {path}: no such file")
    source = str(file.resolve()) if "://" not in str(path) else str(path)
    data = spec.data.model_copy(
        update={
            "source": source,
            "format": None,
            "query": None,
            "table": None,
            "exogenous": [ExogenousColumn(name=c, known_in_future=True) for c in columns],
            "static_columns": [],
        }
    )
    label = source_label(source)
    raw = read_source(data)
    needed = [data.time_column, *([data.series_column] if data.series_column else []), *columns]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        found = ", ".join(map(str, raw.columns))
        raise DataError(
            f"{label}: no column(s) {', '.join(missing)} (the future values need them; the file has {found})"
        )
    targets = spec.target.sum_of or [data.target_column]
    raw = raw.assign(**{t: np.nan for t in targets})  # future rows: the target is unknown
    frame = to_long(raw, data, spec.target, source_name=label)
    return frame[[ID, TIME, *columns]]


def future_rows(
    recent: pd.DataFrame,
    future: pd.DataFrame,
    steps: int,
    freq: str,
    columns: list[str],
    *,
    label: str,
) -> pd.DataFrame:
    """The ``steps`` rows after each series' last reading in ``recent``, with ``columns`` from ``future``.

    Rows of ``future`` at or before a series' last reading, or beyond its horizon, are left out.
    Raises :class:`DataError` naming the series and the rows that are missing or empty, or a
    duplicated timestamp.
    """
    duplicated = future.duplicated([ID, TIME])
    if duplicated.any():
        row = future[duplicated].iloc[0]
        raise DataError(f"{label}: series '{row[ID]}' has the time {row[TIME]} twice")
    by_series = {uid: part.set_index(TIME) for uid, part in future.groupby(ID, sort=False)}
    frames, problems = [], []
    for uid, last in recent.groupby(ID, sort=False)[TIME].max().items():
        expected = calendar.future_dates(last, steps, freq).rename(TIME)
        part = by_series.get(uid)
        values = (
            part[columns].reindex(expected)
            if part is not None
            else pd.DataFrame(np.nan, index=expected, columns=columns)
        )
        empty = values.isna().any(axis=1)
        if empty.any():
            gone = expected[empty.to_numpy()]
            blank = [c for c in columns if values[c].isna().any()]
            problems.append(
                f"series '{uid}' lacks {int(empty.sum())} of its {steps} rows ({', '.join(blank)}; "
                f"UTC {gone[0]:%Y-%m-%d %H:%M} to {gone[-1]:%Y-%m-%d %H:%M})"
            )
            continue
        frames.append(values.reset_index().assign(**{ID: uid, TARGET: np.nan}))
    if problems:
        shown = "; ".join(problems[:MAX_NAMED]) + (
            f"; and {len(problems) - MAX_NAMED} more" if len(problems) > MAX_NAMED else ""
        )
        raise DataError(f"{label}: no future values for the whole horizon after the last reading: {shown}")
    return pd.concat(frames, ignore_index=True)[[ID, TIME, TARGET, *columns]]


def choose_future(
    spec: Spec,
    recent: pd.DataFrame,
    own: pd.DataFrame,
    future_path: str | Path | None,
    columns: list[str],
    steps: int,
    freq: str,
) -> tuple[pd.DataFrame, str | None]:
    """(the future rows of the model input, where they come from): ``--future``, else the input's
    own future rows, else ``serving.future``; the input's rows as they are when nothing covers them
    (the pyfunc's check then names what is missing)."""
    if future_path is not None:
        path, what = Path(future_path), "--future"
    elif len(own) or not spec.serving.future:
        return own, None
    else:
        path, what = Path(spec.resolve_path(spec.serving.future)), "serving.future"
    frame = read_future(spec, path, columns, what=what)
    label = source_label(str(path))
    return future_rows(recent, frame, steps, freq, columns, label=label), label


__all__ = ["choose_future", "future_rows", "read_future"]
