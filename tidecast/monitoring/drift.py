"""Data drift detection: a recent window of the target and of each exogenous column against the training reference.

At training time :func:`tidecast.training.reference.reference_profile` summarises the feature
frame the model was fitted on and :func:`tidecast.tracking.pyfunc.log_forecaster` stores it with
the model as ``reference_profile.json``; the monitor reads it back with :func:`load_reference`,
so drift is computed without the training data. The statistics live in
:mod:`tidecast.evaluation.drift_stats`; this module holds the detection.

The reference of each column (per series when there are at most :data:`~tidecast.training.reference.MAX_SERIES_PROFILES`
series, else pooled) holds:

* a seasonal *profile*: the mean by local hour of day, separately for working days and days off
  (weekends and, with ``features.holidays_country``, public holidays) for sub-daily data; the mean
  by weekday for daily data; one overall mean otherwise;
* the distribution of the *deseasonalised* values (value minus its profile cell) as 200
  quantiles, with their standard deviation and lag-1 autocorrelation;
* a *calibration*: the largest value each statistic took on the windows of that same stretch.

:func:`detect_drift` compares the window that ends at ``as_of`` with it through four tests:

* ``psi``: population stability index of the deseasonalised values, on quantile bins of the
  reference (fewer bins for short windows, Laplace-smoothed counts);
* ``ks``: two-sample Kolmogorov-Smirnov p-value, on the effective sample sizes that the lag-1
  autocorrelation leaves (``n (1 - rho) / (1 + rho)``): hourly readings of a slow process are
  not hundreds of independent draws;
* ``wasserstein``: Wasserstein distance in reference (deseasonalised) standard deviations;
* ``profile``: the seasonal-profile shift, the mean absolute difference between the window's
  values and the reference profile at the same cells, relative to the column's typical size
  (``max(mean |x|, std x)``): 0.3 is a 30 % level shift of a positive series.

A test fires when its statistic passes the spec's threshold (``monitoring.data_drift``, with
per-column overrides) *and* the calibrated one (``calibration_margin`` times the worst value seen
on the windows of the reference stretch): a column whose day-to-day variation is large (weather) is judged
against its own variation, not against a fixed number. A column drifts when ``min_tests`` of its
tests fire.

>>> ref = reference_profile(features, spec)              # doctest: +SKIP
>>> report = detect_drift(recent_features, ref, spec.monitoring.data_drift, as_of=ts)  # doctest: +SKIP
>>> report.summary()                                     # doctest: +SKIP
'data drift: y daily profile shift 0.35 > 0.25, y PSI 1.2 > 0.61'
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.durations import freq_timedelta, to_steps
from tidecast.errors import SpecError, TrackingError, closest
from tidecast.evaluation.drift_stats import seasonal_cells, window_stats
from tidecast.frames import ID, TARGET, TIME
from tidecast.tracking.store import active_uris
from tidecast.training.reference import POOLED, REFERENCE_FILE, json_default, read_reference

if TYPE_CHECKING:
    from tidecast.spec import DriftSpec, Spec

TESTS = ("psi", "ks", "wasserstein", "profile")
THRESHOLD_KEYS = ("psi", "ks_pvalue", "wasserstein", "profile_shift", "ignore")
_TEST_THRESHOLD = {"psi": "psi", "ks": "ks_pvalue", "wasserstein": "wasserstein", "profile": "profile_shift"}
_PROFILE_LABEL = {"hour": "daily profile shift", "weekday": "weekly profile shift", "none": "level shift"}


# ------------------------------------------------------------------------ the logged reference
def load_reference(model_uri: str, *, spec: Spec | None = None, label: str | None = None) -> dict[str, Any]:
    """The reference profile stored with a logged model (``models:/name@champion``, ``models:/name/3``...).

    Raises :class:`TrackingError` when the model has none (it was trained before monitoring existed).
    ``spec`` points MLflow at the project's store for the download.
    """
    import mlflow  # lazy: heavy, and only a download needs it

    label = label or model_uri
    # a numbered version's artifacts never change: read each once per process
    key = (str(getattr(spec, "state_dir", "")), model_uri) if re.search(r"^models:/[^@]+/\d+$", model_uri) else None
    if key is not None and key in _LOADED:
        return copy.deepcopy(_LOADED[key])
    context = active_uris(spec) if spec is not None else contextlib.nullcontext()
    with context, tempfile.TemporaryDirectory(prefix="tidecast-ref-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{model_uri.rstrip('/')}/artifacts/{REFERENCE_FILE}", dst_path=tmp
            )
        except Exception:
            raise TrackingError(
                f"model {label} has no reference profile (trained before monitoring existed): retrain it "
                "(tidecast run --force track)"
            ) from None
        reference = read_reference(local, label=label)
    if key is not None:
        if len(_LOADED) > 32:
            _LOADED.clear()
        _LOADED[key] = copy.deepcopy(reference)
    return reference


_LOADED: dict[tuple[str, str], dict[str, Any]] = {}


def clear_reference_cache() -> None:
    """Forget the reference profiles read so far in this process (they are cached per model version)."""
    _LOADED.clear()


# ---------------------------------------------------------------------------------- detection
@dataclass
class TestResult:
    test: str
    value: float
    threshold: float
    """The threshold applied: the spec's, or the calibrated one when it is stricter (larger/smaller)."""
    spec_threshold: float
    fired: bool


@dataclass
class ColumnDrift:
    column: str
    series: str
    n: int
    expected: int
    tests: dict[str, TestResult] = field(default_factory=dict)
    drift: bool = False
    note: str | None = None
    state: str = "ok"
    """``ok`` (tested, no drift), ``drift``, or ``unknown`` (not tested: ``reason`` says why)."""
    reason: str | None = None

    @property
    def label(self) -> str:
        return self.column if self.series in (POOLED, "series", "") else f"{self.column}[{self.series}]"


@dataclass
class DriftReport:
    """What :func:`detect_drift` found in one window."""

    window_start: str
    window_end: str
    columns: list[ColumnDrift]
    drift: bool
    profile_kind: str
    notes: list[str] = field(default_factory=list)

    def reasons(self) -> list[str]:
        """One phrase per fired test of a drifting column, largest excess first."""
        found: list[tuple[float, str]] = []
        for col in self.columns:
            if not col.drift:
                continue
            for t in col.tests.values():
                if t.fired:
                    found.append((_excess(t), f"{col.label} {_describe(t, self.profile_kind)}"))
        return [text for _, text in sorted(found, key=lambda item: -item[0])]

    def column_reasons(self, col: ColumnDrift) -> list[str]:
        """The fired tests of one column (without its label), largest excess first."""
        fired = sorted((t for t in col.tests.values() if t.fired), key=lambda t: -_excess(t))
        return [_describe(t, self.profile_kind) for t in fired]

    @property
    def state(self) -> str:
        """``drift`` when a column drifts, else ``unknown`` when a column could not be tested, else ``ok``."""
        if self.drift:
            return "drift"
        return "unknown" if any(c.state == "unknown" for c in self.columns) else "ok"

    def summary(self, limit: int = 4) -> str:
        """``"ok"``, ``"data drift: temperature PSI 0.41 > 0.2, y daily profile shift 0.35 > 0.25"``, or
        ``"unknown: 2 of 4 columns not tested"`` when some could not be (their ``reason`` says why)."""
        if not self.drift:
            untested = sum(c.state == "unknown" for c in self.columns)
            return f"unknown: {untested} of {len(self.columns)} columns not tested" if untested else "ok"
        reasons = self.reasons()
        more = f" (+{len(reasons) - limit} more)" if len(reasons) > limit else ""
        return "data drift: " + ", ".join(reasons[:limit]) + more

    def metrics(self) -> dict[str, float]:
        """Flat ``drift.<column>.<test>`` values (and ``..._threshold``) for MLflow."""
        out: dict[str, float] = {"data_drift": float(self.drift)}
        for col in self.columns:
            key = col.label.replace("[", ".").replace("]", "")
            out[f"drift.{key}.points"] = float(col.n)
            for name, t in col.tests.items():
                if np.isfinite(t.value):
                    out[f"drift.{key}.{name}"] = float(t.value)
                out[f"drift.{key}.{name}_threshold"] = float(t.threshold)
            out[f"drift.{key}.drift"] = float(col.drift)
            out[f"drift.{key}.tested"] = float(col.state != "unknown")
        out["data_drift_unchecked"] = float(sum(c.state == "unknown" for c in self.columns))
        return out

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=json_default, allow_nan=True).replace("NaN", "null"))


def _newest_actuals(frame: pd.DataFrame, end: pd.Timestamp, *, pooled: bool) -> dict[str, pd.Timestamp]:
    """The newest time with an observed target before ``end``, per series (``*``: of all series when pooled)."""
    observed = frame[frame[TARGET].notna() & (frame[TIME] < end)] if TARGET in frame.columns else frame.iloc[:0]
    if observed.empty:
        return {}
    if pooled:
        return {POOLED: pd.Timestamp(observed[TIME].max())}
    newest = observed.groupby(observed[ID].astype(str), sort=False)[TIME].max()
    return {str(k): pd.Timestamp(v) for k, v in newest.items()}


def _too_few(
    n: int, expected: int, needed: int, newest: pd.Timestamp | None, start: pd.Timestamp, end: pd.Timestamp, key: str
) -> str:
    """Why a column was not tested: its window holds fewer than ``needed`` points."""
    if n == 0 and newest is None:
        return "no actual of this series in the new data" if key != POOLED else "no actual in the new data"
    if n == 0 and newest < start:
        return f"newest actual {newest:%Y-%m-%d %H:%M} is older than the check window ({start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC)"
    return f"{n} of {expected} points in the window, at least {needed} needed"


def _excess(t: TestResult) -> float:
    if t.test == "ks":
        return math.log10(max(t.threshold, 1e-300)) - math.log10(max(t.value, 1e-300))
    return t.value / t.threshold if t.threshold > 0 else t.value


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if value != 0 and abs(value) < 0.001:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _describe(t: TestResult, kind: str) -> str:
    if t.test == "ks":
        return f"KS p {_fmt(t.value)} < {_fmt(t.threshold)}"
    if t.test == "psi":
        return f"PSI {_fmt(t.value)} > {_fmt(t.threshold)}"
    if t.test == "wasserstein":
        return f"Wasserstein {_fmt(t.value)}σ > {_fmt(t.threshold)}"
    return f"{_PROFILE_LABEL.get(kind, 'profile shift')} {_fmt(t.value)} > {_fmt(t.threshold)}"


def column_thresholds(drift_spec: DriftSpec, column: str) -> dict[str, float]:
    """The spec's thresholds for ``column``: the defaults, overridden by ``columns: {name: {...}}``.

    Raises :class:`SpecError` for an override key that is not a threshold.
    """
    base = {
        "psi": float(drift_spec.psi),
        "ks_pvalue": float(drift_spec.ks_pvalue),
        "wasserstein": float(drift_spec.wasserstein),
        "profile_shift": float(drift_spec.profile_shift),
        "ignore": 0.0,
    }
    for key, value in (drift_spec.columns.get(column) or {}).items():
        if key not in THRESHOLD_KEYS:
            close = closest(key, THRESHOLD_KEYS, cutoff=0.5)
            hint = f" (did you mean '{close}'?)" if close else f" (use {', '.join(THRESHOLD_KEYS)})"
            raise SpecError(f"monitoring.data_drift.columns.{column}: unknown threshold '{key}'{hint}")
        base[key] = float(value)
    return base


def check_columns(drift_spec: DriftSpec) -> None:
    """Validate every per-column override (unknown keys are a SpecError)."""
    for column in drift_spec.columns:
        column_thresholds(drift_spec, column)


def detect_drift(
    frame: pd.DataFrame,
    reference: dict[str, Any],
    drift_spec: DriftSpec,
    *,
    as_of: Any = None,
) -> DriftReport:
    """Compare the window ``(as_of - window, as_of)`` of ``frame`` (the clean feature frame, long format)
    with ``reference``; ``as_of`` defaults to one step after the last timestamp. Exclusive of ``as_of``."""
    check_columns(drift_spec)
    freq = reference["freq"]
    step = freq_timedelta(freq)
    window = max(2, to_steps(drift_spec.window, freq, field="monitoring.data_drift.window"))
    end = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(frame[TIME].max()) + step
    start = end - window * step
    recent = frame[(frame[TIME] >= start) & (frame[TIME] < end)]
    kind = reference["profile_kind"]
    notes: list[str] = []
    calibrated = drift_spec.calibrate
    if calibrated and int(reference.get("window_steps") or 0) != window:
        notes.append(
            f"the reference was calibrated on windows of {reference.get('window_steps')} steps, the spec now asks "
            f"for {window}: calibration not used"
        )
        calibrated = False
    margin = float(drift_spec.calibration_margin)
    groups = reference["groups"]
    ids = recent[ID].astype(str)
    newest = _newest_actuals(frame, end, pooled=bool(reference.get("pooled")))
    series_list = [POOLED] if reference.get("pooled") else sorted(set(ids) | set(groups) if len(groups) else set(ids))
    results: list[ColumnDrift] = []
    for key in series_list:
        if key not in groups:
            reason = f"series '{key}' is new since training: not in the champion's reference profile"
            notes.append(f"{reason}: not checked")
            count = int((ids == key).sum())
            for column in reference.get("columns") or [TARGET]:
                results.append(
                    ColumnDrift(column, key, count, window, note=reason, state="unknown", reason=reason)
                )
            continue
        part = recent if key == POOLED else recent[ids == key]
        expected = window * (int(reference.get("n_series") or 1) if key == POOLED else 1)
        cells = seasonal_cells(part[TIME], kind, reference.get("timezone"), reference.get("holidays_country"))
        for column, ref in groups[key].items():
            thresholds = column_thresholds(drift_spec, column)
            if thresholds["ignore"]:
                continue
            values = part[column].to_numpy(dtype="float64") if column in part.columns else np.array([])
            n = int(np.isfinite(values).sum())
            col = ColumnDrift(column=column, series=key, n=n, expected=expected)
            needed = max(2, math.ceil(drift_spec.min_points * expected))
            if column not in frame.columns:
                col.state, col.reason = "unknown", f"column '{column}' is missing from the new data"
            elif n == 0 and column != TARGET and part[TARGET].notna().any():
                col.state = "unknown"
                col.reason = f"column '{column}' has no value in the window (0 of {expected} points, at least {needed} needed)"
            elif n < needed:
                col.state = "unknown"
                col.reason = _too_few(n, expected, needed, newest.get(key), start, end, key)
            if col.state == "unknown":
                col.note = col.reason
                notes.append(f"{col.label}: {col.reason}: not tested")
            else:
                stats = window_stats(ref, values, cells)
                cal = ref.get("calibration") or {}
                fired = 0
                for name in TESTS:
                    spec_t = thresholds[_TEST_THRESHOLD[name]]
                    value = stats[name]
                    if name == "ks":
                        threshold = spec_t
                        if calibrated and cal.get("windows"):
                            threshold = min(spec_t, float(cal.get("ks", 1.0)) / margin)
                        hit = bool(np.isfinite(value) and value < threshold)
                    else:
                        threshold = spec_t
                        if calibrated and cal.get("windows"):
                            threshold = max(spec_t, float(cal.get(name, 0.0)) * margin)
                        hit = bool(np.isfinite(value) and value > threshold)
                    col.tests[name] = TestResult(name, float(value), float(threshold), float(spec_t), hit)
                    fired += hit
                col.drift = fired >= drift_spec.min_tests
                col.state = "drift" if col.drift else "ok"
            results.append(col)
    return DriftReport(
        window_start=str(start),
        window_end=str(end),
        columns=results,
        drift=any(c.drift for c in results),
        profile_kind=kind,
        notes=notes,
    )


__all__ = [
    "ColumnDrift",
    "DriftReport",
    "TestResult",
    "clear_reference_cache",
    "column_thresholds",
    "detect_drift",
    "load_reference",
]
