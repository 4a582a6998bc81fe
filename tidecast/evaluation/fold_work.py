"""One fold's work in a backtest: its rows sliced from the (sorted) data, the fit and forecast in a
worker (reading its partition there when given one), and its forecasts checked and joined with
the actuals."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.data.partitions import _read, release_arrow_memory
from tidecast.durations import freq_timedelta
from tidecast.errors import BacktestError, ModelError, TidecastError
from tidecast.evaluation.folds import Fold, infer_step
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column
from tidecast.models.base import FitContext, Forecaster


@dataclass
class _FoldTask:
    fold: Fold
    train: pd.DataFrame | None
    X_future: pd.DataFrame | None
    make_model: Callable[[], Forecaster]
    ctx: FitContext
    quantiles: tuple[float, ...]
    partial: bool = False  # one series partition of the fold: no training rows is no work, not an error
    keep_model: bool = False  # send the fitted model back with the forecasts
    source: tuple[Any, tuple[Any, ...] | None] | None = None
    """``(partition file, series ids)``, or ``(every partition file, None)`` for a global model: the
    worker reads its rows there (``train``/``X_future`` are then None)."""


_LAST_READ: list[Any] = []  # [(file, ids), frame]: a worker's partition, kept for the next fold of the same one


def _read_source(files: Any, ids: tuple[Any, ...] | None, until: Any = None) -> pd.DataFrame:
    """The rows of ``ids`` in a partition file (the same rows again for the next fold: one read),
    or, for a global model (``files`` a tuple of every partition, ``ids`` None), every series'
    rows up to ``until``."""
    if isinstance(files, tuple):
        import pyarrow.parquet as pq

        frames = []
        for file in files:  # one at a time: partitions may differ in type (a column all null in one of them)
            try:
                table = pq.read_table(str(file), filters=[(TIME, "<=", until)] if until is not None else None)
            except Exception as exc:
                raise BacktestError(f"backtest: partition {file} cannot be read ({type(exc).__name__}: {exc})") from exc
            frames.append(table.to_pandas())
            del table
            release_arrow_memory()
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    key = (str(files), ids)
    if _LAST_READ and _LAST_READ[0] == key:
        return _LAST_READ[1]
    _LAST_READ.clear()  # one partition per worker at a time
    frame = _read(files, None)
    if ids is not None and frame[ID].nunique() != len(ids):
        frame = frame[frame[ID].isin(list(ids))].reset_index(drop=True)
    _LAST_READ.extend([key, frame])
    return frame


def _materialize(task: _FoldTask) -> _FoldTask:
    if task.source is None:
        return task
    files, ids = task.source
    frame = _read_source(files, ids, until=task.fold.test_end if isinstance(files, tuple) else None)
    exog = tuple(task.ctx.exog_future)
    return replace(task, train=_train_slice(frame, task.fold), X_future=_future_slice(frame, task.fold, exog), source=None)


@dataclass
class _FoldOutput:
    predictions: pd.DataFrame | None
    fit_seconds: float
    predict_seconds: float
    error: str | None = None
    traceback: str = ""
    model: Any = None


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TidecastError) else f"{type(exc).__name__}: {exc}"


def _run_fold(task: _FoldTask) -> _FoldOutput:
    """Fit a fresh model on the fold's training slice and forecast ``gap + h`` steps (in a worker)."""
    fit_s = predict_s = 0.0
    try:
        task = _materialize(task)
    except Exception as exc:
        return _FoldOutput(None, 0.0, 0.0, _error_text(exc), traceback.format_exc())
    assert task.train is not None
    if task.partial and task.train.empty:
        return _FoldOutput(pd.DataFrame({ID: [], TIME: [], POINT: []}), 0.0, 0.0)
    try:
        started = time.perf_counter()
        model = task.make_model()
        model.fit(task.train, task.ctx)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        predictions = model.predict(
            task.fold.gap + task.fold.h, X_future=task.X_future, quantiles=list(task.quantiles)
        )
        predict_s = time.perf_counter() - started
    except Exception as exc:
        return _FoldOutput(None, fit_s, predict_s, _error_text(exc), traceback.format_exc())
    return _FoldOutput(predictions, fit_s, predict_s, model=model if task.keep_model else None)


# ------------------------------------------------------------------------------ slicing and joining
def _is_sorted(df: pd.DataFrame) -> bool:
    """Whether the rows already run by ``unique_id`` then ``ds`` (non-decreasing), cheaply."""
    if len(df) < 2:
        return True
    ids = df[ID]
    kind = ids.dtype.kind if isinstance(ids.dtype, np.dtype) else ""
    if kind not in ("O", "i", "u", "f"):  # categorical, string and other extension ids: let pandas sort
        return False
    values = ids.to_numpy()
    try:
        if kind == "O":  # compare ids only where they change (pandas' object check is slower)
            new = values[1:] != values[:-1]
            if new.any() and not np.all(values[1:][new] > values[:-1][new]):
                return False
        else:
            if not ids.is_monotonic_increasing:
                return False
            new = values[1:] != values[:-1]
        ds = df[TIME].to_numpy()
        later = ds[1:] >= ds[:-1]  # False at NaN/NaT: then sort
    except TypeError:  # mixed types: let sort_values decide
        return False
    return bool(np.all(later | new))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (ID, TIME, TARGET) if c not in df.columns]
    if missing:
        raise BacktestError(f"backtest: the data has no column(s) {', '.join(missing)}")
    if _is_sorted(df):  # a stable sort would keep every row where it is: skip it (df is only read)
        index = df.index
        if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
            return df
        return df.reset_index(drop=True)
    return df.sort_values([ID, TIME], kind="stable", ignore_index=True)


def _series_mask(df: pd.DataFrame, fold: Fold) -> pd.Series | bool:
    return df[ID].isin(fold.series) if fold.series is not None else True


def _rows(df: pd.DataFrame, mask: pd.Series, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``df.loc[mask, columns].reset_index(drop=True)`` (a copy); a contiguous block of rows, as
    one series of a sorted frame gives, is copied as a slice, several times faster than a take."""
    keep = np.flatnonzero(mask.to_numpy(dtype=bool))
    if len(keep) and keep[-1] - keep[0] + 1 == len(keep):
        block = df.iloc[keep[0] : keep[-1] + 1]
        out = (block if columns is None else block[list(columns)]).copy()
        out.index = pd.RangeIndex(len(out))
        return out
    picked = df.loc[mask] if columns is None else df.loc[mask, list(columns)]
    return picked.reset_index(drop=True)


def _train_slice(df: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    ds = df[TIME]
    mask = (ds <= fold.cutoff) & _series_mask(df, fold)
    if fold.train_start is not None:
        mask &= ds >= fold.train_start
    return _rows(df, mask)


def _future_slice(df: pd.DataFrame, fold: Fold, exog: Sequence[str]) -> pd.DataFrame | None:
    if not exog:
        return None
    ds = df[TIME]
    mask = (ds > fold.cutoff) & (ds <= fold.test_end) & _series_mask(df, fold)
    return _rows(df, mask, [ID, TIME, *exog])


def _actuals(df: pd.DataFrame, fold: Fold) -> pd.DataFrame:
    ds = df[TIME]
    mask = (ds >= fold.test_start) & (ds <= fold.test_end) & _series_mask(df, fold)
    return _rows(df, mask, [ID, TIME, TARGET])


def _unit(df: pd.DataFrame, ctx: FitContext) -> Any:
    if not pd.api.types.is_datetime64_any_dtype(df[TIME]):
        return 1
    try:
        return freq_timedelta(ctx.freq) if calendar.is_fixed(ctx.freq) else ctx.freq
    except Exception:
        return infer_step(df[TIME])


def _assemble(
    fold: Fold, output: _FoldOutput, actuals: pd.DataFrame, unit: Any, quantiles: Sequence[float]
) -> pd.DataFrame:
    """Check the model's forecasts for the fold's test rows and join them with the actuals."""
    pred = output.predictions
    if not isinstance(pred, pd.DataFrame):
        raise ModelError(f"predict returned a {type(pred).__name__}, not a DataFrame")
    missing = [c for c in (ID, TIME, POINT) if c not in pred.columns]
    if missing:
        raise ModelError(f"predict returned no column(s) {', '.join(missing)}")
    qcols = [quantile_column(q) for q in quantiles if quantile_column(q) in pred.columns]
    pred = pred[[ID, TIME, POINT, *qcols]]
    if pred[TIME].dtype != actuals[TIME].dtype:
        pred = pred.assign(**{TIME: pred[TIME].astype(actuals[TIME].dtype)})
    if pred[ID].dtype != actuals[ID].dtype:
        pred = pred.assign(**{ID: pred[ID].astype(actuals[ID].dtype)})
    pred = pred[(pred[TIME] >= fold.test_start) & (pred[TIME] <= fold.test_end)]
    if _same_keys(actuals, pred):  # the usual case (unique keys, in order): the join is a column copy
        out = actuals.copy()
        for col in (POINT, *qcols):
            out[col] = pred[col].to_numpy()
    else:
        if pred.duplicated([ID, TIME]).any():
            raise ModelError("predict returned several forecasts for the same series and timestamp")
        out = actuals.merge(pred, on=[ID, TIME], how="left", validate="one_to_one")
    bad = out[POINT].isna().to_numpy()
    if bad.any():
        series = pd.unique(out.loc[bad, ID].astype(str))
        shown = ", ".join(series[:3]) + (f" and {len(series) - 3} more" if len(series) > 3 else "")
        raise ModelError(
            f"predict returned no (or NaN) forecast for {int(bad.sum())} of {len(out)} test points (series {shown})"
        )
    if isinstance(unit, str):  # a calendar frequency: steps along its anchors
        step = calendar.positions(fold.test_start, out[TIME], unit) + 1
    else:
        offset = out[TIME] - fold.test_start
        step = (offset // unit if isinstance(unit, pd.Timedelta) else offset).to_numpy(dtype=np.int64) + 1
    out.insert(2, "fold", fold.index)
    out.insert(3, "cutoff", fold.cutoff)
    out.insert(4, "step", step)
    return out


def _same_keys(actuals: pd.DataFrame, pred: pd.DataFrame) -> bool:
    """Whether ``pred`` has exactly the (unique) ``unique_id, ds`` rows of ``actuals``, in its order."""
    if len(actuals) != len(pred) or len(actuals) == 0:
        return False
    ids, ds = actuals[ID].to_numpy(), actuals[TIME].to_numpy()
    try:
        if not (np.array_equal(ds, pred[TIME].to_numpy()) and bool(np.all(ids == pred[ID].to_numpy()))):
            return False
        if len(ids) < 2:
            return True
        new = ids[1:] != ids[:-1]  # strictly increasing keys, so unique
        return bool(np.all(new | (ds[1:] > ds[:-1]))) and (not new.any() or bool(np.all(ids[1:][new] > ids[:-1][new])))
    except TypeError:
        return False
