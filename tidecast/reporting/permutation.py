"""Permutation importance of feature groups (see :mod:`tidecast.reporting.explain`), and the
candidates' permutation work run side by side in worker processes (the same numbers as in turn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast.durations import freq_timedelta
from tidecast.frames import ID, POINT, TARGET, TIME
from tidecast.models.registry import kind_property
from tidecast.pipeline.executors import LocalExecutor
from tidecast.reporting.model_parts import unwrap
from tidecast.training.settings import side_by_side

GROUPS = ("lags", "calendar", "exogenous")
#: Times each group is scrambled (the importance is the mean, its spread the standard deviation).
PERMUTATION_REPEATS = 3


def _history_length(model: Any, window: int) -> int:
    """Rows of history per series to pass so the model sees exactly what it would from its own tail."""
    tail = getattr(unwrap(model), "_tail", None)
    if isinstance(tail, pd.DataFrame) and not tail.empty and ID in tail:
        return max(window, int(tail.groupby(ID, observed=True).size().max()))
    return window


def _shift_steps(rng: np.random.Generator, minimum: int, freq: str) -> int:
    """A shift (in steps) above ``minimum`` that is not a whole number of days, weeks or years."""
    step = freq_timedelta(freq)
    periods = [
        int(p / step)
        for p in (pd.Timedelta(days=1), pd.Timedelta(days=7), pd.Timedelta(days=364))
        if p >= step and p % step == pd.Timedelta(0)
    ]
    week = max(periods) if periods else 7
    for _ in range(1000):
        k = int(minimum + 1 + rng.integers(1, max(2, week)))
        if all(k % p != 0 for p in periods if p > 1):
            return k
    return minimum + 1  # pragma: no cover - a frequency without usable periods


def _mae(forecast: pd.DataFrame, test: pd.DataFrame) -> float:
    joined = (
        forecast[[ID, TIME, POINT]]
        .assign(**{ID: forecast[ID].astype(str)})
        .merge(test[[ID, TIME, TARGET]].assign(**{ID: test[ID].astype(str)}), on=[ID, TIME], how="inner")
    )
    errors = (joined[TARGET] - joined[POINT]).abs().to_numpy(float)
    errors = errors[np.isfinite(errors)]
    return float(errors.mean()) if errors.size else float("nan")


def _shuffle_within(frame: pd.DataFrame, columns: list[str], rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    for _, index in out.groupby(ID, sort=False, observed=True).indices.items():
        for column in columns:
            values = out[column].to_numpy()[index]
            out.iloc[index, out.columns.get_loc(column)] = values[rng.permutation(len(values))]
    return out


def permutation_importance(
    model: Any,
    train: pd.DataFrame,
    test: pd.DataFrame,
    spec: Any,
    *,
    repeats: int = PERMUTATION_REPEATS,
    seed: int = 0,
) -> pd.DataFrame:
    """The importance of each feature group for a model fitted on ``train``, measured on ``test``.

    Returns ``group, importance, std, mae, base_mae, repeats`` where ``importance`` is the mean
    relative increase of the MAE when the group is scrambled (0.25: 25 % worse). A group the data
    does not have (no exogenous columns) is left out.
    """
    window, _ = spec.forecast_steps()
    horizon = int(test.groupby(ID, observed=True).size().max())
    exog_future = [c.name for c in spec.data.exogenous_columns if c.known_in_future and c.name in train.columns]
    exog_all = [c.name for c in spec.data.exogenous_columns if c.name in train.columns]
    length = _history_length(model, window)
    history = train.groupby(ID, sort=False, observed=True).tail(length).reset_index(drop=True)
    future = test[[ID, TIME, *exog_future]].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    step = freq_timedelta(spec.data.frequency)

    def forecast(hist: pd.DataFrame, fut: pd.DataFrame) -> pd.DataFrame:
        return model.predict(horizon, history=hist, X_future=fut if exog_future else None, quantiles=())

    base = _mae(forecast(history, future), test)
    rows = []
    for group in GROUPS:
        if group == "exogenous" and not exog_all:
            continue
        scores = []
        for _ in range(max(1, repeats)):
            if group == "lags":
                hist, fut, shift = _shuffle_within(history, [TARGET], rng), future, 0
            elif group == "exogenous":
                hist = _shuffle_within(history, exog_all, rng)
                fut = _shuffle_within(future, exog_future, rng) if exog_future else future
                shift = 0
            else:
                shift = _shift_steps(rng, length, spec.data.frequency)
                hist = history.assign(**{TIME: history[TIME] + shift * step})
                fut = future.assign(**{TIME: future[TIME] + shift * step})
            out = forecast(hist, fut)
            if shift:
                out = out.assign(**{TIME: out[TIME] - shift * step})
            scores.append(_mae(out, test))
        values = np.asarray(scores, float)
        relative = (values - base) / base if base and np.isfinite(base) and base > 0 else values * np.nan
        rows.append(
            {
                "group": group,
                "importance": float(np.nanmean(relative)) if np.isfinite(relative).any() else float("nan"),
                "std": float(np.nanstd(relative)) if np.isfinite(relative).any() else float("nan"),
                "mae": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
                "base_mae": base,
                "repeats": len(scores),
            }
        )
    return pd.DataFrame(rows, columns=["group", "importance", "std", "mae", "base_mae", "repeats"])


@dataclass(frozen=True)
class _Job:
    name: str
    model: Any
    train: pd.DataFrame
    test: pd.DataFrame
    spec: Any
    repeats: int


def _run_job(job: _Job) -> tuple[str, pd.DataFrame | None, str | None]:
    """One candidate's :func:`permutation_importance`: (name, the table, None) or (name, None, the
    error as the explanation's note words it)."""
    try:
        table = permutation_importance(job.model, job.train, job.test, job.spec, repeats=job.repeats, seed=job.spec.seed)
    except Exception as exc:
        return job.name, None, f"{type(exc).__name__}: {exc}"
    return job.name, table, None


def permutations(
    models: dict[str, tuple[str, Any]], train: pd.DataFrame, test: pd.DataFrame, spec: Any, *,
    repeats: int = PERMUTATION_REPEATS,
) -> dict[str, tuple[pd.DataFrame | None, str | None]]:
    """:func:`permutation_importance` of each of ``models`` (name -> (kind, its model of the last
    fold)) on that fold: name -> (the table, None), or (None, the error). Two or more candidates on
    data large enough run side by side, one worker process per core (each model predicts on one
    thread, as here), the slowest kinds started first; ``TIDECAST_PARALLEL_CANDIDATES=0`` runs them
    in turn. Each one's draws come from its own generator (``spec.seed``): the same tables either way."""
    jobs = [_Job(name, model, train, test, spec, repeats) for name, (_, model) in models.items()]
    workers = side_by_side(len(train), len(jobs))
    if workers > 1:
        jobs.sort(key=lambda job: -int(kind_property(models[job.name][0], "forecast_cost", 0)))  # the slowest first
        try:
            done = LocalExecutor(workers).map(_run_job, jobs, desc="permutation importance")
        except Exception:  # a worker that died (memory): the same work in this process
            done = [_run_job(job) for job in jobs]
    else:
        done = [_run_job(job) for job in jobs]
    results = {name: (table, error) for name, table, error in done}
    return {name: results[name] for name in models}

