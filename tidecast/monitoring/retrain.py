"""Retraining on drift: the policy that decides (:func:`retrain_policy`) and the retrain itself
(:func:`retrain`), the training pipeline on the data known at ``as_of``.

A retrain with ``as_of``/``--input`` trains on a copy of the source's rows before ``as_of``
written under ``.tidecast/monitor/data/`` (the data spec otherwise unchanged, so time zones, sums
and resampling apply as in training); the registry's gate decides the promotion.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tidecast.data.long_format import to_long
from tidecast.data.sources import read_source, source_label
from tidecast.errors import DataError
from tidecast.flows import training_pipeline
from tidecast.frames import TIME
from tidecast.monitoring.run_spec import monitor_spec, step_of
from tidecast.pipeline import run as run_pipeline
from tidecast.spec import ExogenousColumn, Spec, TargetSpec
from tidecast.training import preflight

MONITOR_DIRNAME = "monitor"
SNAPSHOTS_KEPT = 3
_ROW = "__tidecast_row__"


def _write_snapshot(raw: pd.DataFrame, folder: Path, stamp: str) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"asof-{stamp}.parquet"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        raw.to_parquet(tmp, index=False)
        fmt = "parquet"
    except (ValueError, TypeError, ImportError, Exception):  # pyarrow cannot type a mixed column
        path = path.with_suffix(".csv")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        raw.to_csv(tmp, index=False)
        fmt = "csv"
    os.replace(tmp, path)
    snapshots = sorted(folder.glob("asof-*"), key=lambda p: p.stat().st_mtime)
    for old in snapshots[:-SNAPSHOTS_KEPT]:
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
    return path, fmt


def training_spec(spec: Spec, *, as_of: Any = None, input: str | os.PathLike[str] | None = None) -> Spec:
    """The spec a retrain runs with: the project's, or, with ``as_of``/``input``, one whose source is a
    copy of the raw rows before ``as_of`` (of ``input`` if given) under ``.tidecast/monitor/data/``.

    The copy keeps the source's own columns and formats (the data spec's time zone, sums and
    resampling still apply as in any training); a row's time is read with the same code as
    ingest (:func:`tidecast.data.long_format.to_long`), so time zones and DST are handled alike.
    """
    mspec = monitor_spec(spec, as_of=as_of, input=input)
    base = mspec.base()
    run = mspec.run
    if run.as_of is None and run.input is None:
        return base
    data = base.data
    raw = read_source(data)
    if run.as_of is not None:
        cut = pd.Timestamp(run.as_of)
        marked = raw.reset_index(drop=True)
        marked[_ROW] = np.arange(len(marked), dtype="float64")
        probe = data.model_copy(update={"exogenous": [*data.exogenous_columns, ExogenousColumn(name=_ROW, known_in_future=False)]})
        long = to_long(marked, probe, TargetSpec(sum_of=list(base.target.sum_of)), source_name=source_label(data.source))
        keep = np.sort(long.loc[long[TIME] < cut, _ROW].to_numpy(dtype="int64"))
        if len(keep) == 0:
            raise DataError(f"{source_label(data.source)}: no data before as_of {cut}")
        raw = raw.reset_index(drop=True).iloc[keep]
        stamp = cut.strftime("%Y%m%dT%H%M%S")
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path, fmt = _write_snapshot(raw, spec.state_dir / MONITOR_DIRNAME / "data", stamp)
    copy = data.model_copy(update={"source": str(path), "format": fmt, "read_options": {}, "query": None, "table": None})
    out = base.model_copy(update={"data": copy})
    out.root = spec.root
    out.source_file = spec.source_file
    return out


def retrain(
    spec: Spec,
    *,
    as_of: Any = None,
    input: str | os.PathLike[str] | None = None,
    callbacks: Any = None,
    report: bool = True,
) -> dict[str, Any]:
    """Run the training pipeline on the data known at ``as_of`` (see :func:`training_spec`); the
    registry's gate decides the promotion. Returns ``{"version", "promoted", "alias", "reason",
    "run_id", "executed"}`` (``version`` None when every step was cached: nothing new to train on)."""
    train = training_spec(spec, as_of=as_of, input=input)
    preflight(train)
    try:
        pipeline = training_pipeline(report=report)
    except TypeError:  # a training pipeline without the report steps
        pipeline = training_pipeline()
    result = run_pipeline(pipeline, train, callbacks=callbacks, lock_timeout=0.0)
    out: dict[str, Any] = {"executed": list(result.executed), "version": None, "promoted": False, "alias": None,
                           "reason": "nothing new to train on: every training step was cached", "run_id": None,
                           "data": train.data.source}
    if "track" in result.executed:
        tracked = result.outputs["track"]
        registration = tracked.get("registration") or {}
        out.update(
            version=registration.get("version"),
            promoted=bool(registration.get("promoted")),
            alias=registration.get("alias"),
            reason=registration.get("reason"),
            run_id=tracked.get("run_id"),
        )
    return out


# ------------------------------------------------------------------------------- the decision
@dataclass
class RetrainDecision:
    retrain: bool
    trigger: str | None
    """What asked for it ("data drift: ...", "model drift: ...")."""
    note: str | None = None
    """Why not, when there is drift but no retrain."""


def _duration(spec: Spec, value: Any, field_name: str) -> pd.Timedelta:
    return spec.steps(value, field_name) * step_of(spec)


def retrain_policy(
    spec: Spec,
    *,
    as_of: pd.Timestamp,
    data_drift: bool,
    model_alarm: bool,
    trigger: str | None,
    history: list[dict[str, Any]],
    allowed: bool = True,
) -> RetrainDecision:
    """Retrain or not (times are data times: each run's ``as_of``):

    * never without drift, or when retraining is off (``--no-retrain``, ``retrain_on_drift: false``);
    * once the drift (data or model, in an unbroken run of monitor runs) has lasted ``retrain_after``,
      so that the retrain's backtest folds and held-out stretch see the new regime;
    * on data drift alone, not within ``retrain_cooldown`` of the last retrain attempt (the new
      champion's reference needs time to catch up with a lasting change); model drift, measured on
      the current champion's own forecasts, is not held back by the cooldown.
    """
    mon = spec.monitoring
    if not (data_drift or model_alarm):
        return RetrainDecision(False, None)
    if not allowed:
        return RetrainDecision(False, trigger, "retrain off (--no-retrain)")
    if not mon.retrain_on_drift:
        return RetrainDecision(False, trigger, "retrain off (monitoring.retrain_on_drift: false)")
    past = sorted(
        (h for h in history if h.get("as_of") and pd.Timestamp(h["as_of"]) < as_of and h.get("status") != "failed"),
        key=lambda h: pd.Timestamp(h["as_of"]),
    )
    after = _duration(spec, mon.retrain_after, "monitoring.retrain_after")
    if after > pd.Timedelta(0):
        start = as_of
        for entry in reversed(past):
            if not (entry.get("data_drift") or entry.get("model_drift")):
                break
            start = pd.Timestamp(entry["as_of"])
        if as_of - start < after:
            return RetrainDecision(
                False, trigger, f"retrain when the drift has lasted {mon.retrain_after}: at {start + after} UTC"
            )
    if model_alarm:
        return RetrainDecision(True, trigger)
    if mon.retrain_cooldown is not None:
        cooldown = _duration(spec, mon.retrain_cooldown, "monitoring.retrain_cooldown")
        last = next((pd.Timestamp(h["as_of"]) for h in reversed(past) if h.get("retrain_attempted")), None)
        if last is not None and as_of - last < cooldown:
            return RetrainDecision(
                False, trigger, f"retrain skipped: the last one was at {last} UTC, cooldown {mon.retrain_cooldown}"
            )
    return RetrainDecision(True, trigger)


__all__ = ["MONITOR_DIRNAME", "RetrainDecision", "retrain", "retrain_policy", "training_spec"]
