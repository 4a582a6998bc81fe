"""Model drift: the champion's logged forecasts against the actuals that arrived, versus its backtest.

Forecasts and actuals live in the prediction store (:mod:`tidecast.serving.store`). For the
``model_drift.windows`` windows of ``model_drift.window`` that end at ``as_of``, the latest
forecast of each (series, timestamp) made by the model version is joined with its actual; a
window counts when at least ``min_actuals`` of its forecasts have one (actuals that arrive late
are counted by the next run: windows are always recomputed from the store). Per window: MAE,
MASE (scaled by the training data's seasonal-naive error, stored in the reference profile),
interval coverage of the widest quantile pair, and the ratio of the MAE to the model's baseline.

The baseline is the model's out-of-sample MAE at training time: the backtest folds and the
held-out stretch pooled (``(folds * backtest + holdout) / (folds + 1)``, from the registered
version's tags), so that one lucky fold does not make every live day look degraded.

The alarm: the last ``consecutive`` complete windows all have an MAE ratio above
``error_ratio`` (windows without enough actuals are skipped, neither breaking nor extending the
run), or, with ``min_coverage``, all have a coverage below it.

>>> report = model_drift(store, spec, model_name="power", version="3", baseline={"mae": 2.1}, as_of=ts)  # doctest: +SKIP
>>> report.summary()                                                                              # doctest: +SKIP
'model drift: MAE ratio 1.8 > 1.5 for 2 windows'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.durations import freq_timedelta
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_of

if TYPE_CHECKING:
    from tidecast.serving.store import PredictionStore
    from tidecast.spec import ModelDriftSpec, Spec


@dataclass
class WindowScore:
    start: str
    end: str
    forecasts: int
    actuals: int
    complete: bool
    mae: float | None = None
    mase: float | None = None
    coverage: float | None = None
    ratio: float | None = None
    degraded: bool | None = None
    note: str | None = None


@dataclass
class ModelDriftReport:
    model_version: str | None
    baseline_mae: float | None
    baseline_coverage: float | None
    windows: list[WindowScore] = field(default_factory=list)
    """Newest first."""
    alarm: bool = False
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    consecutive: int = 1
    """Complete degraded windows in a row that raise the alarm (``model_drift.consecutive``)."""
    coverage_floor: float | None = None
    """``model_drift.min_coverage``."""

    @property
    def latest(self) -> WindowScore | None:
        """The newest complete window."""
        return next((w for w in self.windows if w.complete), None)

    def summary(self) -> str:
        """``"ok"``, ``"model drift: MAE ratio 1.8 > 1.5 for 2 windows"`` or ``"no actuals yet"``-style notes."""
        if self.alarm and self.reason:
            return f"model drift: {self.reason}"
        if self.state == "unknown":
            return f"unknown: {self.state_reason}"
        return "ok"

    @property
    def state(self) -> str:
        """``drift`` (the alarm), ``ok`` (the newest complete window is within the thresholds), or
        ``unknown`` (no window could be scored, no baseline, or too few windows to decide)."""
        return self._state()[0]

    @property
    def state_reason(self) -> str | None:
        return self._state()[1]

    def _state(self) -> tuple[str, str | None]:
        if self.alarm:
            return "drift", self.reason
        latest = self.latest
        version = f"v{self.model_version}"
        if latest is None:
            pending = next((w.note for w in self.windows if w.forecasts), None)
            if pending:
                return "unknown", f"no window of {version}'s forecasts can be scored yet ({pending})"
            return "unknown", f"no forecast of {version} in the last {len(self.windows)} window(s): nothing to score yet"
        if latest.ratio is None:
            return "unknown", f"{version} has no backtest MAE: the error ratio cannot be computed"
        complete = [w for w in self.windows if w.complete]
        floor = self.coverage_floor
        low = floor is not None and all(w.coverage is not None and w.coverage < floor for w in complete)
        if len(complete) < self.consecutive and (all(w.degraded for w in complete) or low):
            return "unknown", (
                f"{len(complete)} scored window(s) of {version}, all beyond the thresholds (newest MAE ratio "
                f"{latest.ratio:.2f}): {self.consecutive} in a row are needed to decide"
            )
        return "ok", f"MAE ratio {latest.ratio:.2f} in the newest window"

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"model_drift": float(self.alarm), "model_drift_checked": float(self.state != "unknown")}
        latest = self.latest
        if latest is not None:
            for name in ("mae", "mase", "coverage", "ratio"):
                value = getattr(latest, name)
                if value is not None and math.isfinite(value):
                    out[f"live_{name}" if name != "ratio" else "mae_ratio"] = float(value)
        if self.baseline_mae is not None:
            out["baseline_mae"] = float(self.baseline_mae)
        out["windows_complete"] = float(sum(w.complete for w in self.windows))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state, "state_reason": self.state_reason}


# ----------------------------------------------------------------------------------- baseline
def _tag_float(tags: dict[str, str], key: str) -> float | None:
    try:
        value = float(tags[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def baseline_from_tags(tags: dict[str, str], folds: int = 1) -> dict[str, float | None]:
    """The out-of-sample MAE (and coverage) of a registered version from its ``tidecast.backtest_*`` and
    ``tidecast.holdout_*`` tags, backtest folds and held-out stretch pooled."""
    out: dict[str, float | None] = {}
    for name in ("mae", "coverage", "mase"):
        backtest = _tag_float(tags, f"tidecast.backtest_{name}")
        holdout = _tag_float(tags, f"tidecast.holdout_{name}")
        if backtest is not None and holdout is not None:
            out[name] = (folds * backtest + holdout) / (folds + 1)
        else:
            out[name] = backtest if backtest is not None else holdout
    return out


# ------------------------------------------------------------------------------------ scoring
def _interval_columns(frame: pd.DataFrame) -> tuple[str, str] | None:
    qs = sorted((q, c) for c in frame.columns if (q := quantile_of(c)) is not None)
    for lo, lo_col in qs:
        if lo >= 0.5:
            break
        hi = next((c for q, c in qs if abs(q - (1 - lo)) < 1e-9), None)
        if hi is not None and frame[lo_col].notna().any():
            return lo_col, hi
    return None


def score_windows(
    joined: pd.DataFrame,
    *,
    end: pd.Timestamp,
    window: pd.Timedelta,
    n_windows: int,
    baseline_mae: float | None,
    error_ratio: float,
    min_actuals: float,
    scales: dict[str, float] | None = None,
) -> list[WindowScore]:
    """Scores of the ``n_windows`` windows ending at ``end`` (newest first). ``joined`` holds the
    forecasts (``unique_id, ds, yhat`` + quantiles) and ``y`` where an actual arrived (NaN otherwise)."""
    out: list[WindowScore] = []
    interval = _interval_columns(joined) if len(joined) else None
    for i in range(n_windows):
        hi = end - i * window
        lo = hi - window
        part = joined[(joined[TIME] >= lo) & (joined[TIME] < hi)]
        has = part[part[TARGET].notna()] if len(part) else part
        score = WindowScore(str(lo), str(hi), len(part), len(has), False)
        if len(part) == 0:
            score.note = "no forecasts"
            out.append(score)
            continue
        if len(has) < max(1, math.ceil(min_actuals * len(part))):
            score.note = f"{len(has)} of {len(part)} forecasts have an actual (late or missing): not scored yet"
            out.append(score)
            continue
        score.complete = True
        err = (has[TARGET].to_numpy(float) - has[POINT].to_numpy(float))
        score.mae = float(np.mean(np.abs(err)))
        if scales:
            per = has.assign(ae=np.abs(err)).groupby(has[ID].astype(str))["ae"].mean()
            scaled = [per[u] / scales[u] for u in per.index if scales.get(u)]
            score.mase = float(np.mean(scaled)) if scaled else None
        if interval is not None:
            lo_v, hi_v = has[interval[0]].to_numpy(float), has[interval[1]].to_numpy(float)
            ok = np.isfinite(lo_v) & np.isfinite(hi_v)
            if ok.any():
                y = has[TARGET].to_numpy(float)[ok]
                score.coverage = float(np.mean((lo_v[ok] <= y) & (y <= hi_v[ok])))
        if baseline_mae:
            score.ratio = score.mae / baseline_mae
            score.degraded = score.ratio > error_ratio
        out.append(score)
    return out


def assess(
    windows: list[WindowScore], drift_spec: ModelDriftSpec
) -> tuple[bool, str | None]:
    """(alarm, reason) from scored windows (newest first): the last ``consecutive`` complete windows
    all degraded (MAE ratio), or all below ``min_coverage``."""
    need = drift_spec.consecutive
    complete = [w for w in windows if w.complete]
    recent = complete[:need]
    if len(recent) < need:
        return False, None
    if all(w.degraded for w in recent):
        worst = min(w.ratio for w in recent if w.ratio is not None)
        latest = recent[0].ratio or worst
        return True, (
            f"MAE ratio {latest:.2f} > {drift_spec.error_ratio:g} for {need} window{'s' if need > 1 else ''}"
            + (f" (lowest {worst:.2f})" if need > 1 and abs(worst - latest) > 0.005 else "")
        )
    if drift_spec.min_coverage is not None and all(
        w.coverage is not None and w.coverage < drift_spec.min_coverage for w in recent
    ):
        latest = recent[0].coverage
        return True, (
            f"interval coverage {latest:.2f} < {drift_spec.min_coverage:g} for {need} window{'s' if need > 1 else ''}"
        )
    return False, None


def joined_forecasts(
    store: PredictionStore, model_name: str, version: str | None, *, since: Any, until: Any
) -> pd.DataFrame:
    """The latest forecast of each (series, timestamp) by ``version`` in ``[since, until)``, with its actual
    (``y`` NaN where none arrived yet)."""
    preds = store.predictions(model_name, since=since, until=until, version=version, latest_only=True)
    if preds.empty:
        return pd.DataFrame(columns=[ID, TIME, POINT, TARGET])
    preds = preds[preds[TIME] < pd.Timestamp(until)]
    acts = store.actuals(since=since, until=until)
    acts[ID] = acts[ID].astype(str)
    preds[ID] = preds[ID].astype(str)
    return preds.merge(acts, on=[ID, TIME], how="left").sort_values([ID, TIME]).reset_index(drop=True)


def model_drift(
    store: PredictionStore,
    spec: Spec,
    *,
    model_name: str,
    version: str | None,
    baseline: dict[str, float | None],
    as_of: Any,
    scales: dict[str, float] | None = None,
) -> ModelDriftReport:
    """Score the recent windows of ``version``'s forecasts and apply the alarm test (see the module doc)."""
    ms = spec.monitoring.model_drift
    window = spec.steps(ms.window, "monitoring.model_drift.window") * freq_timedelta(spec.data.frequency)
    end = pd.Timestamp(as_of)
    since = end - ms.windows * window
    joined = joined_forecasts(store, model_name, version, since=since, until=end)
    baseline_mae = baseline.get("mae")
    report = ModelDriftReport(
        model_version=version,
        baseline_mae=baseline_mae,
        baseline_coverage=baseline.get("coverage"),
        consecutive=ms.consecutive,
        coverage_floor=ms.min_coverage,
    )
    if not baseline_mae:
        report.notes.append(f"model version {version} has no backtest MAE tag: MAE ratio not computed")
    report.windows = score_windows(
        joined,
        end=end,
        window=window,
        n_windows=ms.windows,
        baseline_mae=baseline_mae,
        error_ratio=ms.error_ratio,
        min_actuals=ms.min_actuals,
        scales=scales,
    )
    late = [w for w in report.windows if not w.complete and w.forecasts]
    if late:
        report.notes.append(f"{len(late)} window(s) still lack actuals ({late[0].note})")
    report.alarm, report.reason = assess(report.windows, ms)
    return report


__all__ = [
    "ModelDriftReport",
    "WindowScore",
    "assess",
    "baseline_from_tags",
    "joined_forecasts",
    "model_drift",
    "score_windows",
]
