"""What the client report and the dashboard read: the registry, the training runs, the prediction
store and the drift checks, the same stores ``tidecast run``/``serve``/``monitor`` write.

Every reader returns plain frames/dataclasses and never writes; a store that does not exist yet
reads as empty (the callers say so plainly) rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tidecast.errors import TrackingError, closest
from tidecast.frames import ID, POINT, TARGET, TIME, finite_float, quantiles_in
from tidecast.reporting.analysis import widest_band
from tidecast.serving.history import read_history
from tidecast.serving.store import store_for
from tidecast.tracking.records import training_runs
from tidecast.tracking.store import active_uris, connect, experiment_name, retry_locked

CHAMPION = "champion"


# ------------------------------------------------------------------------------------ registry
@dataclass
class ModelInUse:
    """A registered model version an alias points at, with what the registry recorded about it."""

    name: str
    version: str
    alias: str | None
    run_id: str | None
    created: pd.Timestamp | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    """Every alias of the registered model: ``alias -> version``."""

    @property
    def metric(self) -> str | None:
        return self.tags.get("tidecast.metric")

    def backtest(self, metric: str) -> float | None:
        return finite_float(self.tags.get(f"tidecast.backtest_{metric}"))

    def holdout(self, metric: str) -> float | None:
        return finite_float(self.tags.get(f"tidecast.holdout_{metric}"))

    @property
    def winner(self) -> str | None:
        return self.tags.get("tidecast.winner")

    @property
    def trained_until(self) -> str | None:
        return self.tags.get("tidecast.trained_until")

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" + (f" ({self.alias})" if self.alias else "")


def _ms(value: Any) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(int(value), unit="ms") if value else None
    except (TypeError, ValueError):
        return None


def client_for(spec: Any) -> Any:
    return connect(spec)


def registered_names(client: Any) -> list[str]:
    return sorted(m.name for m in retry_locked(lambda: client.search_registered_models(max_results=1000)))


def resolve_model(
    spec: Any, name: str | None = None, alias: str | None = CHAMPION, *, client: Any = None
) -> ModelInUse:
    """The version ``name@alias`` points at (``alias`` may also be a version number).

    Raises :class:`TrackingError` naming the known models or aliases when either is unknown.
    """
    from mlflow.exceptions import MlflowException

    client = client or client_for(spec)
    name = name or spec.model_name
    alias = alias or CHAMPION
    with active_uris(spec):
        try:
            registered = retry_locked(lambda: client.get_registered_model(name))
        except MlflowException:
            known = registered_names(client)
            close = closest(name, known)
            hint = (
                f" (did you mean '{close}'?)"
                if close
                else (
                    f" (registered: {', '.join(known)})" if known else " (none is registered yet: run 'tidecast run')"
                )
            )
            raise TrackingError(f"no registered model named '{name}'{hint}") from None
        aliases = {str(k): str(v) for k, v in (getattr(registered, "aliases", None) or {}).items()}
        if alias in aliases:
            version = aliases[alias]
        elif str(alias).isdigit():
            version = str(alias)
        else:
            listed = ", ".join(f"{a} → v{v}" for a, v in sorted(aliases.items())) or "none"
            raise TrackingError(f"model '{name}' has no alias '{alias}' (aliases: {listed})")
        try:
            mv = retry_locked(lambda: client.get_model_version(name, version))
        except MlflowException:
            raise TrackingError(f"model '{name}' has no version {version}") from None
    return ModelInUse(
        name=name,
        version=str(mv.version),
        alias=alias
        if not str(alias).isdigit()
        else next((a for a, v in aliases.items() if v == str(mv.version)), None),
        run_id=getattr(mv, "run_id", None),
        created=_ms(getattr(mv, "creation_timestamp", None)),
        tags=dict(getattr(mv, "tags", None) or {}),
        aliases=aliases,
    )


def registry_versions(spec: Any, name: str | None = None, *, client: Any = None, limit: int = 20) -> pd.DataFrame:
    """The registered versions, newest first: ``version, aliases, created, winner, gate, <metric> (held-out), reason``."""
    from mlflow.exceptions import MlflowException

    columns = ["version", "aliases", "created", "winner", "gate", "holdout", "metric", "reason", "run_id"]
    client = client or client_for(spec)
    name = name or spec.model_name
    try:
        registered = retry_locked(lambda: client.get_registered_model(name))
        versions = retry_locked(lambda: client.search_model_versions(f"name = '{name}'", max_results=limit * 5))
    except MlflowException:
        return pd.DataFrame(columns=columns)
    by_version: dict[str, list[str]] = {}
    for alias, version in (getattr(registered, "aliases", None) or {}).items():
        by_version.setdefault(str(version), []).append(str(alias))
    rows = []
    for mv in versions:
        tags = dict(mv.tags or {})
        metric = tags.get("tidecast.metric") or ""
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ", ".join(sorted(by_version.get(str(mv.version), []))),
                "created": _ms(mv.creation_timestamp),
                "winner": tags.get("tidecast.winner", ""),
                "gate": tags.get("tidecast.gate", ""),
                "holdout": finite_float(tags.get(f"tidecast.holdout_{metric}")),
                "metric": metric,
                "reason": tags.get("tidecast.gate_reason", ""),
                "run_id": mv.run_id,
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("version", ascending=False).head(limit).reset_index(drop=True)


def recent_trainings(spec: Any, *, client: Any = None, limit: int = 10) -> pd.DataFrame:
    """The last training runs, newest first: ``started, run_id, status, winner, metric, holdout, version, alias, verdict``."""
    columns = ["started", "run_id", "status", "winner", "metric", "holdout", "version", "alias", "verdict"]
    client = client or client_for(spec)
    experiment = retry_locked(lambda: client.get_experiment_by_name(experiment_name(spec)))
    if experiment is None:
        return pd.DataFrame(columns=columns)
    runs = training_runs(client, [experiment.experiment_id], max_results=limit)
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        metric = tags.get("tidecast.metric") or ""
        gate = tags.get("tidecast.gate")
        status = str(run.info.status)
        if status == "FAILED":
            verdict = "failed: " + (tags.get("tidecast.error") or "")[:160]
        elif gate == "passed":
            verdict = "promoted"
        elif gate == "failed":
            verdict = "gate failed: " + (tags.get("tidecast.gate_reason") or "")[:160]
        else:
            verdict = status.lower()
        rows.append(
            {
                "started": _ms(run.info.start_time),
                "run_id": run.info.run_id,
                "status": status,
                "winner": tags.get("tidecast.winner", ""),
                "metric": metric,
                "holdout": metrics.get(f"holdout_{metric}"),
                "version": tags.get("tidecast.registry.version", ""),
                "alias": tags.get("tidecast.registry.alias", ""),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------- drift
@dataclass
class DriftView:
    """The drift checks the monitoring writes: the latest status and the history (empty: none yet)."""

    history: pd.DataFrame
    """``checked_at, kind ('data'/'model'), drifted (bool), detail`` (+ whatever numbers it records)."""
    source: str = ""

    @property
    def empty(self) -> bool:
        return self.history is None or self.history.empty

    def latest(self, kind: str | None = None) -> pd.Series | None:
        if self.empty:
            return None
        frame = self.history if kind is None else self.history[self.history["kind"] == kind]
        if frame.empty:
            return None
        return frame.sort_values("checked_at").iloc[-1]

    def status_line(self) -> str:
        """One sentence: 'no drift checks yet', or the latest verdict of each kind."""
        if self.empty:
            return "no drift checks yet"
        parts = []
        for kind in ("data", "model"):
            row = self.latest(kind)
            if row is None:
                continue
            when = pd.Timestamp(row["checked_at"]).strftime("%Y-%m-%d %H:%M")
            checked = row.get("state")  # ok/drift/stale/unknown; absent in histories before verdicts had states
            state = "DRIFT" if bool(row["drifted"]) else {"stale": "STALE", "unknown": "UNCHECKED"}.get(checked, "no drift")
            detail = f" ({row['detail']})" if row.get("detail") else ""
            parts.append(f"{kind}: {state} at {when}{detail}")
        return "; ".join(parts) or "no drift checks yet"


DRIFT_COLUMNS = ["checked_at", "kind", "drifted", "detail"]


def drift_history(spec: Any, model_name: str | None = None) -> DriftView:
    """The drift checks of ``tidecast monitor`` (``.tidecast/monitor-history.jsonl``), one row per
    run and kind (``data``, ``model``); empty, reading "no drift checks yet", when none ran."""
    rows = []
    for entry in read_history(spec):
        when = entry.get("as_of") or entry.get("finished") or entry.get("started")
        if not when:
            continue
        for kind in ("data", "model"):
            key = f"{kind}_drift"
            if key in entry:
                rows.append(
                    {
                        "checked_at": when,
                        "kind": kind,
                        "drifted": bool(entry.get(key)),
                        "state": entry.get(f"{kind}_check")
                        or ("unknown" if entry.get(key) is None else "drift" if entry.get(key) else "ok"),
                        "detail": str(entry.get("verdict") or ""),
                        "status": str(entry.get("status") or ""),
                        "champion": entry.get("champion_after") or entry.get("champion_before"),
                    }
                )
    frame = normalise_drift(pd.DataFrame(rows))
    return DriftView(frame, source="monitor history" if rows else "")


def normalise_drift(frame: Any) -> pd.DataFrame:
    """A drift history with the columns this module reads (``checked_at, kind, drifted, detail``)."""
    if frame is None:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    frame = pd.DataFrame(frame).copy()
    if frame.empty:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    renames = {"time": "checked_at", "created_at": "checked_at", "at": "checked_at", "drift": "drifted", "type": "kind"}
    frame = frame.rename(columns={k: v for k, v in renames.items() if k in frame.columns and v not in frame.columns})
    if "checked_at" not in frame.columns or "drifted" not in frame.columns:
        return pd.DataFrame(columns=DRIFT_COLUMNS)
    frame["checked_at"] = pd.to_datetime(frame["checked_at"], utc=True).dt.tz_localize(None)
    if "kind" not in frame.columns:
        frame["kind"] = "data"
    if "detail" not in frame.columns:
        frame["detail"] = ""
    frame["drifted"] = frame["drifted"].astype(bool)
    return frame.sort_values("checked_at").reset_index(drop=True)


# ----------------------------------------------------------------------------- predictions
def store(spec: Any) -> Any:
    return store_for(spec)


def latest_batch(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows of the most recently made forecast batch."""
    if predictions.empty:
        return predictions
    last = predictions.sort_values("id").iloc[-1]["batch_id"]
    return predictions[predictions["batch_id"] == last].sort_values([ID, TIME]).reset_index(drop=True)


def accuracy(joined: pd.DataFrame) -> dict[str, float]:
    """MAE, RMSE, WAPE, bias and the widest interval's coverage of forecasts joined with actuals."""
    if joined.empty:
        return {}
    err = joined[TARGET].to_numpy(float) - joined[POINT].to_numpy(float)
    total = float(np.abs(joined[TARGET].to_numpy(float)).sum())
    out = {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wape": float(np.abs(err).sum() / total) if total else float("nan"),
        "bias": float(np.mean(-err)),
        "n": float(len(joined)),
    }
    band = widest_band(joined)
    if band is not None:
        lo, hi = joined[band[0]].to_numpy(float), joined[band[1]].to_numpy(float)
        y = joined[TARGET].to_numpy(float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            out["coverage"] = float(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok])))
            out["nominal"] = max(quantiles_in(band)) - min(quantiles_in(band))
    return out


def rolling_accuracy(joined: pd.DataFrame, *, freq: str = "1D") -> pd.DataFrame:
    """``period, mae, coverage, n`` per ``freq`` bucket of the forecast timestamps."""
    if joined.empty:
        return pd.DataFrame(columns=["period", "mae", "coverage", "n"])
    frame = joined.assign(abs_error=(joined[TARGET] - joined[POINT]).abs())
    band = widest_band(joined)
    if band is not None:
        frame["inside"] = ((frame[TARGET] >= frame[band[0]]) & (frame[TARGET] <= frame[band[1]])).astype(float)
    grouped = frame.groupby(frame[TIME].dt.floor(freq))
    out = pd.DataFrame({"mae": grouped["abs_error"].mean(), "n": grouped.size()})
    out["coverage"] = grouped["inside"].mean() if band is not None else np.nan
    return out.rename_axis("period").reset_index()


__all__ = [
    "CHAMPION",
    "DriftView",
    "ModelInUse",
    "accuracy",
    "drift_history",
    "latest_batch",
    "recent_trainings",
    "registry_versions",
    "resolve_model",
    "rolling_accuracy",
    "store",
]
