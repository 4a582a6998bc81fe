"""The statistics of data drift: seasonal profile cells, PSI, Kolmogorov-Smirnov on effective sample
sizes, Wasserstein, the profile shift, and a column's reference (its profile, the quantiles of its
deseasonalised values, and the worst statistic seen on the windows of its own stretch).

Pure functions of arrays: the training reference (:mod:`tidecast.training.reference`) is built
with them, and the monitor's detection (:mod:`tidecast.monitoring.drift`) compares a recent
window with them; see :mod:`tidecast.monitoring.drift` for the method.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tidecast.durations import freq_timedelta

N_QUANTILES = 200


# ----------------------------------------------------------------------------- seasonal cells
def profile_kind(freq: str) -> str:
    step = freq_timedelta(freq)
    if step < pd.Timedelta(days=1):
        return "hour"
    if step < pd.Timedelta(days=7):
        return "weekday"
    return "none"


def n_cells(kind: str) -> int:
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


# -------------------------------------------------------------------------- a column's reference
def deseasonalise(values: np.ndarray, cells: np.ndarray, profile: list[float | None], fallback: float) -> np.ndarray:
    table = np.array([fallback if v is None else v for v in profile], dtype=float)
    return values - table[np.clip(cells, 0, len(table) - 1)]


def column_reference(values: np.ndarray, cells: np.ndarray, kind: str) -> dict[str, Any] | None:
    ok = np.isfinite(values)
    if ok.sum() < 4:
        return None
    x, c = values[ok], cells[ok]
    mean = float(x.mean())
    std = float(x.std())
    cells_count = n_cells(kind)
    sums = np.bincount(c, weights=x, minlength=cells_count)
    counts = np.bincount(c, minlength=cells_count)
    profile = [float(s / k) if k else None for s, k in zip(sums, counts, strict=True)]
    residuals = deseasonalise(x, c, profile, mean)
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


def window_stats(
    ref: dict[str, Any], values: np.ndarray, cells: np.ndarray
) -> dict[str, float]:
    """The four statistics of one window of values (with their profile cells) against a column reference."""
    ok = np.isfinite(values)
    x, c = values[ok], cells[ok]
    residuals = deseasonalise(x, c, ref["profile"], ref["mean"])
    quantiles = np.asarray(ref["quantiles"], dtype=float)
    _, pvalue = ks_test(quantiles, residuals, rho=ref.get("acf1", 0.0), n_reference=ref["n"])
    return {
        "psi": population_stability_index(quantiles, residuals),
        "ks": pvalue,
        "wasserstein": wasserstein(quantiles, residuals, ref["resid_std"]),
        "profile": profile_shift(residuals, c, ref["scale"]),
    }


def calibrate(ref: dict[str, Any], values: np.ndarray, cells: np.ndarray, window: int) -> dict[str, Any]:
    """The worst value of each statistic over the non-overlapping windows of the reference stretch
    (aligned on its end), each window holding at least half of its points."""
    worst: dict[str, float] = {"psi": 0.0, "ks": 1.0, "wasserstein": 0.0, "profile": 0.0}
    count = 0
    for end in range(len(values), window - 1, -window):
        chunk, chunk_cells = values[end - window : end], cells[end - window : end]
        if np.isfinite(chunk).sum() < max(2, window // 2):
            continue
        stats = window_stats(ref, chunk, chunk_cells)
        count += 1
        for name, value in stats.items():
            if not np.isfinite(value):
                continue
            worst[name] = min(worst[name], value) if name == "ks" else max(worst[name], value)
    return {**worst, "windows": count}


__all__ = [
    "N_QUANTILES",
    "calibrate",
    "column_reference",
    "deseasonalise",
    "effective_size",
    "ks_test",
    "lag1_autocorrelation",
    "n_cells",
    "population_stability_index",
    "profile_kind",
    "profile_shift",
    "psi_bins",
    "seasonal_cells",
    "wasserstein",
    "window_stats",
]
