"""Rolling-origin folds: where each backtest fold trains and what it forecasts.

The cut-offs are timestamps common to every series, counted back from the last timestamp of
the data (the latest over all series)::

    |<---------------- training (expanding) ---------------->|<- gap ->|<--- test h --->| ... |<- holdout ->|
                                                           cutoff                  test_end

* a final ``holdout`` stretch (usually one horizon) is held out of every fold, for the final
  comparison of the winner (:func:`tidecast.evaluation.backtest.holdout_forecast`);
* the last fold's test window ends where the holdout starts; each earlier fold's ends ``step``
  steps before the next one's (``step`` defaults to ``h``: folds that tile the data);
* ``gap`` steps are left out between a fold's cut-off (its last training point) and its first
  forecast step (the model forecasts ``gap + h`` steps and the first ``gap`` are dropped);
* ``window="expanding"`` trains on everything up to the cut-off; ``"sliding"`` on the last
  ``train_window`` steps up to it.

Series may start and end at different times. A series takes part in a fold when it has at least
``min_train`` training points in the fold's training window and data through the fold's last test
step; otherwise it is left out of that fold and listed in :attr:`Fold.excluded`. Series are
assumed regular (one row per step between their first and last timestamp), as the cleaning step
makes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tidecast import calendar
from tidecast.errors import BacktestError, SpecError
from tidecast.frames import ID, TIME

HOLDOUT_FOLD = -1
"""The ``fold`` index of the held-out stretch in forecasts from :func:`holdout_fold`."""

Timestamp = Any  # a pd.Timestamp for datetime data, an int on an integer time axis

_HINT = "reduce backtest.folds or forecast.horizon"


@dataclass(frozen=True)
class Fold:
    """One backtest fold. Timestamps are inclusive; ``cutoff`` is the last training timestamp.

    ``train_start`` is the first training timestamp of a sliding window (``None``: expanding,
    everything up to the cut-off). ``series`` lists the series that take part (``None``: all of
    them); ``excluded`` the series left out for too little history or data that ends early.
    """

    index: int
    cutoff: Timestamp
    test_start: Timestamp
    test_end: Timestamp
    h: int
    train_start: Timestamp | None = None
    gap: int = 0
    series: tuple[Any, ...] | None = None
    excluded: tuple[Any, ...] = ()

    @property
    def n_excluded(self) -> int:
        return len(self.excluded)

    def describe(self) -> str:
        """``fold 2 (cut-off 2024-03-01 23:55:00)``, for messages."""
        return f"fold {self.index} (cut-off {self.cutoff})" if self.index >= 0 else f"holdout (cut-off {self.cutoff})"


@dataclass(frozen=True)
class _Axis:
    """Integer step positions of a time axis: ``timestamp = origin + position * unit``."""

    origin: Any
    unit: Any  # a pd.Timedelta, a calendar frequency (str: steps along its anchors), or 1 for an integer axis
    length: int  # positions 0 .. length - 1

    def at(self, position: int) -> Timestamp:
        if isinstance(self.unit, pd.Timedelta):
            return pd.Timestamp(self.origin + position * self.unit)
        if isinstance(self.unit, str):
            return calendar.shift(self.origin, int(position), self.unit)
        return int(self.origin + position)


def infer_step(ds: pd.Series | pd.Index | np.ndarray) -> pd.Timedelta:
    """The most common distance between consecutive distinct timestamps (the data frequency)."""
    values = np.unique(pd.to_datetime(np.asarray(ds)).to_numpy())
    if len(values) < 2:
        raise BacktestError("backtest: cannot infer the data frequency from fewer than two timestamps")
    diffs = np.diff(values)
    uniq, counts = np.unique(diffs, return_counts=True)
    return pd.Timedelta(uniq[np.argmax(counts)])


def _calendar_freq(freq: str) -> bool:
    try:
        return not calendar.is_fixed(freq)
    except SpecError as exc:
        raise BacktestError(f"backtest: {exc}") from None


def _step_of(freq: str | pd.Timedelta | None, ds: pd.Series) -> pd.Timedelta:
    if freq is None:
        return infer_step(ds)
    if isinstance(freq, pd.Timedelta):
        return freq
    from tidecast.durations import freq_timedelta

    try:
        return freq_timedelta(freq)
    except Exception as exc:  # SpecError: a non-fixed frequency
        raise BacktestError(f"backtest: {exc}") from None


def series_spans(
    data: pd.DataFrame | Mapping[str, int] | Sequence[int] | int, *, freq: str | pd.Timedelta | None = None
) -> tuple[list[Any], np.ndarray, np.ndarray, _Axis]:
    """Each series' first and last positions on a common step axis.

    ``data`` is a long frame (``unique_id, ds``), or series lengths: one int, a sequence, or a
    mapping ``unique_id -> length``; lengths describe series that all end at the same point, on
    an integer time axis whose last position is ``max(length) - 1``.
    """
    if isinstance(data, pd.DataFrame):
        if data.empty:
            raise BacktestError("backtest: the data is empty")
        spans = data.groupby(ID, observed=True, sort=True)[TIME].agg(["min", "max"])
        ids = list(spans.index)
        ds = data[TIME]
        if pd.api.types.is_datetime64_any_dtype(ds) and isinstance(freq, str) and _calendar_freq(freq):
            # raw data (checked at ingest) may sit off the anchors (the 15th of each month): counted on them
            starts, ends = calendar.anchor(spans["min"], freq), calendar.anchor(spans["max"], freq)
            if starts.isna().any() or ends.isna().any():
                raise BacktestError(f"backtest: the series' first or last timestamps are not {freq} dates")
            origin = pd.Timestamp(starts.min())
            first = calendar.positions(origin, starts, freq)
            last = calendar.positions(origin, ends, freq)
            if (first < 0).any() or (last < 0).any():
                raise BacktestError(f"backtest: the series' first or last timestamps are not {freq} dates (clean the data first)")
            return ids, first, last, _Axis(origin, freq, int(last.max()) + 1)
        if pd.api.types.is_datetime64_any_dtype(ds):
            unit = _step_of(freq, ds)
            origin = pd.Timestamp(spans["min"].min())
            first = ((spans["min"] - origin) // unit).to_numpy(dtype=np.int64)
            last = ((spans["max"] - origin) // unit).to_numpy(dtype=np.int64)
            return ids, first, last, _Axis(origin, unit, int(last.max()) + 1)
        if pd.api.types.is_integer_dtype(ds):
            origin = int(spans["min"].min())
            first = spans["min"].to_numpy(dtype=np.int64) - origin
            last = spans["max"].to_numpy(dtype=np.int64) - origin
            return ids, first, last, _Axis(origin, 1, int(last.max()) + 1)
        raise BacktestError(f"backtest: column '{TIME}' must hold timestamps or integers, not {ds.dtype}")
    if isinstance(data, int | np.integer):
        lengths: dict[str, int] = {"0": int(data)}
    elif isinstance(data, Mapping):
        lengths = {str(k): int(v) for k, v in data.items()}
    else:
        lengths = {str(i): int(v) for i, v in enumerate(data)}
    if not lengths or max(lengths.values()) < 1:
        raise BacktestError("backtest: the data is empty")
    total = max(lengths.values())
    ids = list(lengths)
    last = np.full(len(ids), total - 1, dtype=np.int64)
    first = last - np.array([lengths[i] for i in ids], dtype=np.int64) + 1
    return ids, first, last, _Axis(0, 1, total)


def _layout_text(folds: int, h: int, step: int, gap: int, holdout: int) -> str:
    text = f"{folds} fold{'s' if folds != 1 else ''} of {h} steps"
    if folds > 1 and step != h:
        text += f" every {step} steps"
    if gap:
        text += f" after a gap of {gap}"
    if holdout:
        text += f" + holdout {holdout}"
    return text


def make_folds(
    data: pd.DataFrame | Mapping[str, int] | Sequence[int] | int,
    *,
    h: int,
    folds: int = 3,
    step: int | None = None,
    window: Literal["expanding", "sliding"] = "expanding",
    train_window: int | None = None,
    gap: int = 0,
    holdout: int | bool = 0,
    freq: str | pd.Timedelta | None = None,
    min_train: int = 1,
) -> list[Fold]:
    """Lay out ``folds`` rolling-origin folds of ``h`` steps, earliest first.

    ``holdout`` steps at the end are kept out of every fold (``True`` means ``h``). ``freq``
    is the data frequency (inferred from the timestamps when not given). ``min_train`` is the
    least number of training points a series needs to take part in a fold.

    Raises :class:`BacktestError` when the data is too short for the folds.
    """
    holdout = h if holdout is True else int(holdout)
    step = h if step is None else int(step)
    for name, value, low in (("horizon", h, 1), ("folds", folds, 1), ("step", step, 1), ("gap", gap, 0),
                             ("holdout", holdout, 0), ("min_train", min_train, 1)):
        if value < low:
            raise BacktestError(f"backtest: {name} must be at least {low}, got {value}")
    if window not in ("expanding", "sliding"):
        raise BacktestError(f"backtest: window must be 'expanding' or 'sliding', got {window!r}")
    if window == "sliding":
        if train_window is None:
            raise BacktestError("backtest: a sliding window needs backtest.train_window")
        if train_window < min_train:
            raise BacktestError(f"backtest: train_window ({train_window}) is shorter than the {min_train} steps a fold needs")
    ids, first, last, axis = series_spans(data, freq=freq)

    end = axis.length - 1 - holdout  # last position of the last fold's test window
    out: list[Fold] = []
    for k in range(folds):
        test_end = end - (folds - 1 - k) * step
        test_start = test_end - h + 1
        cutoff = test_start - gap - 1
        train_start = cutoff - train_window + 1 if window == "sliding" and train_window is not None else None
        lo = np.maximum(first, train_start) if train_start is not None else first
        n_train = cutoff - lo + 1
        reaches = last >= test_end
        ok = reaches & (n_train >= min_train)
        if not ok.any():
            available = int(max(0, n_train[reaches].max())) if reaches.any() else 0
            if k == 0:
                raise BacktestError(
                    f"backtest: {_layout_text(folds, h, step, gap, holdout)} need at least {min_train} steps of "
                    f"history before the first cut-off; the data has {available}",
                    hint=_HINT,
                )
            raise BacktestError(
                f"backtest: fold {k} (cut-off {axis.at(cutoff)}) has no series with {min_train} steps of history "
                "and data through its last test step",
                hint=_HINT,
            )
        excluded = tuple(i for i, keep in zip(ids, ok, strict=True) if not keep)
        out.append(
            Fold(
                index=k,
                cutoff=axis.at(cutoff),
                test_start=axis.at(test_start),
                test_end=axis.at(test_end),
                h=h,
                train_start=axis.at(train_start) if train_start is not None else None,
                gap=gap,
                series=tuple(i for i, keep in zip(ids, ok, strict=True) if keep) if excluded else None,
                excluded=excluded,
            )
        )
    return out


def holdout_fold(
    data: pd.DataFrame | Mapping[str, int] | Sequence[int] | int,
    h: int,
    *,
    freq: str | pd.Timedelta | None = None,
    train_window: int | None = None,
    min_train: int = 1,
) -> Fold:
    """The final held-out stretch as a fold (index :data:`HOLDOUT_FOLD`): train on everything
    before the last ``h`` steps (or its last ``train_window`` steps), forecast those ``h`` steps."""
    try:
        (fold,) = make_folds(
            data, h=h, folds=1, window="sliding" if train_window else "expanding", train_window=train_window,
            freq=freq, min_train=min_train,
        )
    except BacktestError as exc:
        raise BacktestError(exc.message.replace("1 fold of", "a holdout of"), hint=exc.hint) from None
    return Fold(
        index=HOLDOUT_FOLD, cutoff=fold.cutoff, test_start=fold.test_start, test_end=fold.test_end, h=h,
        train_start=fold.train_start, series=fold.series, excluded=fold.excluded,
    )


def folds_for_spec(data: pd.DataFrame, spec: Any, *, holdout: bool = True, min_train: int = 1) -> list[Fold]:
    """:func:`make_folds` with the settings of a :class:`tidecast.spec.Spec`'s ``backtest`` section."""
    bt = spec.backtest
    _, horizon = spec.forecast_steps()
    return make_folds(
        data,
        h=horizon,
        folds=bt.folds,
        step=spec.steps(bt.step, "backtest.step") if bt.step is not None else None,
        window=bt.window,
        train_window=spec.steps(bt.train_window, "backtest.train_window") if bt.train_window is not None else None,
        gap=spec.steps(bt.gap, "backtest.gap"),
        holdout=(spec.holdout_steps() if hasattr(spec, "holdout_steps") else horizon) if holdout else 0,
        freq=spec.data.frequency,
        min_train=min_train,
    )
