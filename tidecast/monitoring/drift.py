"""Data drift: a recent window of the target and of each exogenous column against the training reference.

At training time :func:`reference_profile` summarises the feature frame the model was fitted on
and :func:`tidecast.tracking.pyfunc.log_forecaster` stores it with the model as
``reference_profile.json``; the monitor reads it back with :func:`load_reference`, so drift is
computed without the training data.

The reference of each column (per series when there are at most :data:`MAX_SERIES_PROFILES`
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

import copy
import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.durations import freq_timedelta, to_steps
from tidecast.errors import SpecError, TrackingError
from tidecast.frames import ID, TARGET, TIME

if TYPE_CHECKING:
    from tidecast.spec import DriftSpec, Spec

REFERENCE_FILE = "reference_profile.json"
REFERENCE_VERSION = 1
MAX_SERIES_PROFILES = 20
"""Up to this many series get a reference each; beyond, one pooled reference serves them all."""
POOLED = "*"
N_QUANTILES = 200
TESTS = ("psi", "ks", "wasserstein", "profile")
THRESHOLD_KEYS = ("psi", "ks_pvalue", "wasserstein", "profile_shift", "ignore")
_TEST_THRESHOLD = {"psi": "psi", "ks": "ks_pvalue", "wasserstein": "wasserstein", "profile": "profile_shift"}
_PROFILE_LABEL = {"hour": "daily profile shift", "weekday": "weekly profile shift", "none": "level shift"}


# ----------------------------------------------------------------------------- seasonal cells
def _profile_kind(freq: str) -> str:
    step = freq_timedelta(freq)
    if step < pd.Timedelta(days=1):
        return "hour"
    if step < pd.Timedelta(days=7):
        return "weekday"
    return "none"


def _n_cells(kind: str) -> int:
    return {"hour": 48, "weekday": 7, "none": 1}[kind]


def _local(ds: pd.Series, timezone: str | None) -> pd.Series:
    ds = pd.to_datetime(ds)
    if timezone:
        return ds.dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    return ds


def _days_off(local_days: pd.Series, holidays_country: str | None) -> np.ndarray:
    off = (local_days.dt.weekday >= 5).to_numpy()
    if holidays_country and len(local_days):
        import holidays

        years = range(int(local_days.dt.year.min()), int(local_days.dt.year.max()) + 1)
        try:
            calendar = holidays.country_holidays(holidays_country, years=years)
        except NotImplementedError:
            return off
        days = pd.DatetimeIndex([pd.Timestamp(d) for d in calendar])
        off = off | local_days.isin(days).to_numpy()
    return off


def seasonal_cells(ds: pd.Series, kind: str, timezone: str | None, holidays_country: str | None) -> np.ndarray:
    """The profile cell of each timestamp (UTC-naive ``ds``): ``hour`` kind: local hour, +24 on days off;
    ``weekday`` kind: local weekday; ``none``: 0."""
    if kind == "none" or len(ds) == 0:
        return np.zeros(len(ds), dtype=int)
    local = _local(ds, timezone)
    if kind == "weekday":
        return local.dt.weekday.to_numpy(dtype=int)
    off = _days_off(local.dt.normalize(), holidays_country)
    return local.dt.hour.to_numpy(dtype=int) + 24 * off.astype(int)


# ----------------------------------------------------------------------------- the statistics
def _clean(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype="float64").ravel()
    return arr[np.isfinite(arr)]


def lag1_autocorrelation(values: Any) -> float:
    """Lag-1 autocorrelation of a sequence (0 when it cannot be computed)."""
    x = _clean(values)
    if len(x) < 3:
        return 0.0
    x = x - x.mean()
    denom = float(np.dot(x, x))
    if denom <= 0:
        return 0.0
    return float(np.clip(np.dot(x[1:], x[:-1]) / denom, -1.0, 1.0))


def effective_size(n: int, rho: float) -> float:
    """Independent draws worth of ``n`` AR(1)-correlated values: ``n (1 - rho) / (1 + rho)``, at least 1."""
    rho = max(0.0, min(float(rho), 0.999))
    return max(1.0, n * (1.0 - rho) / (1.0 + rho))


def psi_bins(n_recent: int) -> int:
    """Bins of the PSI for a window of ``n_recent`` values: about sqrt(n), between 3 and 10."""
    return int(np.clip(round(math.sqrt(max(n_recent, 1))), 3, 10))


def population_stability_index(reference: Any, recent: Any, bins: int | None = None) -> float:
    """PSI of ``recent`` against ``reference`` on the reference's quantile bins (Laplace-smoothed counts).

    >>> rng = np.random.default_rng(0)
    >>> population_stability_index(rng.normal(size=5000), rng.normal(size=500)) < 0.05
    True
    >>> population_stability_index(rng.normal(size=5000), rng.normal(1.0, size=500)) > 0.5
    True
    """
    ref, new = _clean(reference), _clean(recent)
    if len(ref) == 0 or len(new) == 0:
        return float("nan")
    k = bins or psi_bins(len(new))
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, k + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    ref_counts = np.histogram(ref, edges)[0].astype(float)
    new_counts = np.histogram(new, edges)[0].astype(float)
    kk = len(ref_counts)
    p_ref = (ref_counts + 0.5) / (ref_counts.sum() + 0.5 * kk)
    p_new = (new_counts + 0.5) / (new_counts.sum() + 0.5 * kk)
    return float(np.sum((p_new - p_ref) * np.log(p_new / p_ref)))


def ks_test(reference: Any, recent: Any, *, rho: float = 0.0, n_reference: int | None = None) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample Kolmogorov-Smirnov test, the p-value on effective sample
    sizes (``rho``: lag-1 autocorrelation; ``n_reference``: the reference's real size when ``reference``
    is a quantile summary of it).

    >>> rng = np.random.default_rng(1)
    >>> ks_test(rng.normal(size=2000), rng.normal(size=200))[1] > 0.01
    True
    """
    from scipy.special import kolmogorov
    from scipy.stats import ks_2samp

    ref, new = _clean(reference), _clean(recent)
    if len(ref) == 0 or len(new) == 0:
        return float("nan"), float("nan")
    statistic = float(ks_2samp(new, ref).statistic)
    n = effective_size(len(new), rho)
    m = effective_size(n_reference or len(ref), rho)
    en = math.sqrt(n * m / (n + m))
    return statistic, float(np.clip(kolmogorov(en * statistic), 0.0, 1.0))


def wasserstein(reference: Any, recent: Any, scale: float = 1.0) -> float:
    """Wasserstein (earth mover's) distance between the two samples, divided by ``scale``.

    >>> round(wasserstein([0.0, 1.0], [1.0, 2.0]), 6)
    1.0
    """
    from scipy.stats import wasserstein_distance

    ref, new = _clean(reference), _clean(recent)
    if len(ref) == 0 or len(new) == 0:
        return float("nan")
    return float(wasserstein_distance(new, ref)) / (scale if scale and scale > 0 else 1.0)


def profile_shift(residuals: Any, cells: Any, scale: float) -> float:
    """Mean over the cells present of ``|mean residual in the cell|``, divided by ``scale``."""
    res = np.asarray(residuals, dtype=float)
    ok = np.isfinite(res)
    if not ok.any():
        return float("nan")
    frame = pd.DataFrame({"r": res[ok], "c": np.asarray(cells)[ok]})
    means = frame.groupby("c")["r"].mean().abs()
    return float(means.mean()) / (scale if scale and scale > 0 else 1.0)


# ------------------------------------------------------------------------------ the reference
def _residuals(values: np.ndarray, cells: np.ndarray, profile: list[float | None], fallback: float) -> np.ndarray:
    table = np.array([fallback if v is None else v for v in profile], dtype=float)
    return values - table[np.clip(cells, 0, len(table) - 1)]


def _column_reference(values: np.ndarray, cells: np.ndarray, kind: str) -> dict[str, Any] | None:
    ok = np.isfinite(values)
    if ok.sum() < 4:
        return None
    x, c = values[ok], cells[ok]
    mean = float(x.mean())
    std = float(x.std())
    n_cells = _n_cells(kind)
    sums = np.bincount(c, weights=x, minlength=n_cells)
    counts = np.bincount(c, minlength=n_cells)
    profile = [float(s / k) if k else None for s, k in zip(sums, counts, strict=True)]
    residuals = _residuals(x, c, profile, mean)
    levels = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
    resid_std = float(residuals.std())
    return {
        "n": len(x),
        "mean": mean,
        "std": std,
        "min": float(x.min()),
        "max": float(x.max()),
        "scale": max(float(np.abs(x).mean()), std, 1e-12),
        "profile": profile,
        "profile_counts": [int(k) for k in counts],
        "resid_std": resid_std if resid_std > 0 else max(std, 1e-12),
        "acf1": lag1_autocorrelation(residuals),
        "quantiles": [float(q) for q in np.quantile(residuals, levels)],
    }


def _window_stats(
    ref: dict[str, Any], values: np.ndarray, cells: np.ndarray
) -> dict[str, float]:
    """The four statistics of one window of values (with their profile cells) against a column reference."""
    ok = np.isfinite(values)
    x, c = values[ok], cells[ok]
    residuals = _residuals(x, c, ref["profile"], ref["mean"])
    quantiles = np.asarray(ref["quantiles"], dtype=float)
    _, pvalue = ks_test(quantiles, residuals, rho=ref.get("acf1", 0.0), n_reference=ref["n"])
    return {
        "psi": population_stability_index(quantiles, residuals),
        "ks": pvalue,
        "wasserstein": wasserstein(quantiles, residuals, ref["resid_std"]),
        "profile": profile_shift(residuals, c, ref["scale"]),
    }


def _calibrate(ref: dict[str, Any], values: np.ndarray, cells: np.ndarray, window: int) -> dict[str, Any]:
    """The worst value of each statistic over the non-overlapping windows of the reference stretch
    (aligned on its end), each window holding at least half of its points."""
    worst: dict[str, float] = {"psi": 0.0, "ks": 1.0, "wasserstein": 0.0, "profile": 0.0}
    count = 0
    for end in range(len(values), window - 1, -window):
        chunk, chunk_cells = values[end - window : end], cells[end - window : end]
        if np.isfinite(chunk).sum() < max(2, window // 2):
            continue
        stats = _window_stats(ref, chunk, chunk_cells)
        count += 1
        for name, value in stats.items():
            if not np.isfinite(value):
                continue
            worst[name] = min(worst[name], value) if name == "ks" else max(worst[name], value)
    return {**worst, "windows": count}


def drift_columns(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """The columns data drift watches: the target and every numeric exogenous column present."""
    columns = [TARGET]
    for column in spec.data.exogenous_columns:
        if column.name in frame.columns and pd.api.types.is_numeric_dtype(frame[column.name]):
            columns.append(column.name)
    return columns


def _trailing(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    window = spec.monitoring.data_drift.reference_window
    if window is None:
        return frame
    steps = spec.steps(window, "monitoring.data_drift.reference_window")
    return frame.groupby(ID, observed=True, sort=False).tail(steps)


def reference_profile(features: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """The training reference that data drift is measured against (a JSON-able dict, see the module doc).

    ``features`` is the frame the model was fitted on (``unique_id, ds, y`` + exogenous columns).
    """
    from tidecast.training import season_length

    if not {ID, TIME, TARGET} <= set(features.columns):
        raise TrackingError(f"reference profile: the frame lacks {sorted({ID, TIME, TARGET} - set(features.columns))}")
    data = features.sort_values([ID, TIME], kind="stable")
    freq = spec.data.frequency
    kind = _profile_kind(freq)
    tz = spec.data.timezone
    country = spec.features.holidays_country
    window = max(2, spec.steps(spec.monitoring.data_drift.window, "monitoring.data_drift.window"))
    columns = drift_columns(data, spec)
    ids = data[ID].astype(str)
    n_series = ids.nunique()
    pooled = n_series > MAX_SERIES_PROFILES
    stretch = _trailing(data, spec).reset_index(drop=True)  # the reference stretch, still sorted
    cells = seasonal_cells(stretch[TIME], kind, tz, country)
    stretch_ids = stretch[ID].astype(str)
    groups: dict[str, dict[str, Any]] = {}
    keys = [(POOLED, np.ones(len(stretch), dtype=bool))] if pooled else [
        (str(uid), (stretch_ids == uid).to_numpy()) for uid in pd.unique(ids)
    ]
    for key, mask in keys:
        entry: dict[str, Any] = {}
        for column in columns:
            values = stretch[column].to_numpy(dtype="float64")
            ref = _column_reference(values[mask], cells[mask], kind)
            if ref is None:
                continue
            # windows of the reference stretch, one series at a time (pooled: the pooled sequence in time order)
            order = np.flatnonzero(mask)
            if pooled:
                order = order[np.argsort(stretch[TIME].to_numpy()[order], kind="stable")]
            ref["calibration"] = _calibrate(ref, values[order], cells[order], window * (n_series if pooled else 1))
            entry[column] = ref
        groups[key] = entry
    m = season_length(spec)
    y = data[TARGET].astype(float)
    scale = (y - y.groupby(ids, sort=False).shift(m)).abs().groupby(ids, sort=True).mean()
    return {
        "version": REFERENCE_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "project": spec.project,
        "freq": freq,
        "timezone": tz,
        "holidays_country": country,
        "profile_kind": kind,
        "window_steps": window,
        "reference_window": spec.monitoring.data_drift.reference_window,
        "start": str(data[TIME].min()),
        "end": str(data[TIME].max()),
        "rows": len(data),
        "n_series": int(n_series),
        "pooled": pooled,
        "columns": columns,
        "groups": groups,
        "season_length": int(m),
        "mase_scale": {str(k): float(v) for k, v in scale.items() if np.isfinite(v)},
    }


def write_reference(reference: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(reference, separators=(",", ":"), allow_nan=False, default=_json_default), encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def load_reference(model_uri: str, *, spec: Spec | None = None, label: str | None = None) -> dict[str, Any]:
    """The reference profile stored with a logged model (``models:/name@champion``, ``models:/name/3``...).

    Raises :class:`TrackingError` when the model has none (it was trained before monitoring existed).
    ``spec`` points MLflow at the project's store for the download.
    """
    import contextlib
    import tempfile

    import mlflow

    from tidecast.tracking.store import active_uris

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


def read_reference(path: str | Path, *, label: str | None = None) -> dict[str, Any]:
    """A reference profile from a local JSON file, checked for its version."""
    label = label or str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrackingError(f"model {label}: cannot read its reference profile ({exc}): retrain it") from None
    if not isinstance(data, dict) or data.get("version") != REFERENCE_VERSION or "groups" not in data:
        raise TrackingError(
            f"model {label}: its reference profile has version {data.get('version') if isinstance(data, dict) else None!r}, "
            f"this tidecast reads version {REFERENCE_VERSION}: retrain it"
        )
    return data


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
        return json.loads(json.dumps(asdict(self), default=_json_default, allow_nan=True).replace("NaN", "null"))


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
            close = difflib.get_close_matches(key, THRESHOLD_KEYS, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (use {', '.join(THRESHOLD_KEYS)})"
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
                stats = _window_stats(ref, values, cells)
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
    "REFERENCE_FILE",
    "ColumnDrift",
    "DriftReport",
    "TestResult",
    "clear_reference_cache",
    "column_thresholds",
    "detect_drift",
    "drift_columns",
    "effective_size",
    "ks_test",
    "lag1_autocorrelation",
    "load_reference",
    "population_stability_index",
    "profile_shift",
    "read_reference",
    "reference_profile",
    "seasonal_cells",
    "wasserstein",
    "write_reference",
]
