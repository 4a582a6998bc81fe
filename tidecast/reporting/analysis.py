"""Numbers behind the report charts: downsampled series views, residuals, autocorrelation, coverage.

Pure pandas/numpy, no plotting: the plotly charts (HTML) and the matplotlib charts (PNG for
MLflow, SVG for the client report) are both drawn from these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tidecast.evaluation.metrics import interval_pairs
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_columns

#: Weeks of the most recent data drawn at full resolution.
RECENT_WEEKS = 8
#: Above this many points a series' overview is drawn as daily means.
OVERVIEW_POINTS = 5000


@dataclass
class SeriesView:
    """One series, ready to draw: an overview of all of it, its recent stretch, and the cleaning marks there."""

    unique_id: str
    overview: pd.DataFrame
    """``ds, y`` (daily means when the series is long, else every point)."""
    overview_label: str
    recent: pd.DataFrame
    """``ds, y``: the last ``RECENT_WEEKS`` weeks at full resolution."""
    changes: pd.DataFrame
    """``ds, kind, original, y`` of the changes inside the recent stretch (``y``: the cleaned value)."""
    counts: dict[str, int]
    """Changes of each kind over the whole series."""


def series_views(
    clean: pd.DataFrame, changes: pd.DataFrame | None, *, max_series: int = 3, weeks: int = RECENT_WEEKS
) -> list[SeriesView]:
    """Views of the first ``max_series`` series (those with the most changes first)."""
    data = clean[[ID, TIME, TARGET]].copy()
    data[ID] = data[ID].astype(str)
    changes = changes if changes is not None else pd.DataFrame(columns=[ID, TIME, "kind", "original"])
    changes = changes.assign(**{ID: changes[ID].astype(str)}) if not changes.empty else changes
    counts_by_series = changes.groupby(ID).size() if not changes.empty else pd.Series(dtype=int)
    ids = list(dict.fromkeys(data[ID]))
    ids.sort(key=lambda u: -int(counts_by_series.get(u, 0)))
    views = []
    for uid in ids[:max_series]:
        part = data[data[ID] == uid].sort_values(TIME)
        end = part[TIME].max()
        recent = part[part[TIME] > end - pd.Timedelta(weeks=weeks)][[TIME, TARGET]].reset_index(drop=True)
        if len(part) > OVERVIEW_POINTS:
            overview = part.set_index(TIME)[TARGET].resample("1D").mean().dropna().reset_index()
            label = "daily mean"
        else:
            overview = part[[TIME, TARGET]].reset_index(drop=True)
            label = "every reading"
        own = changes[changes[ID] == uid] if not changes.empty else changes
        counts = {str(k): int(v) for k, v in own.groupby("kind").size().items()} if not own.empty else {}
        marks = pd.DataFrame(columns=[TIME, "kind", "original", TARGET])
        if not own.empty:
            inside = own[own[TIME] > end - pd.Timedelta(weeks=weeks)][[TIME, "kind", "original"]]
            marks = inside.merge(part[[TIME, TARGET]], on=TIME, how="left")
        views.append(SeriesView(uid, overview, label, recent, marks.reset_index(drop=True), counts))
    return views


def thin(frame: pd.DataFrame, points: int = 2500) -> pd.DataFrame:
    """At most about ``points`` rows: consecutive blocks averaged (the first timestamp of each kept)."""
    if len(frame) <= points:
        return frame
    size = -(-len(frame) // points)
    block = np.arange(len(frame)) // size
    numeric = [c for c in frame.columns if c != TIME and pd.api.types.is_numeric_dtype(frame[c])]
    out = frame[numeric].groupby(block).mean()
    out.insert(0, TIME, frame[TIME].to_numpy()[::size][: len(out)])
    return out.reset_index(drop=True)


def widest_band(frame: pd.DataFrame) -> tuple[str, str] | None:
    """The lowest and highest quantile columns (the widest interval), if any."""
    cols = quantile_columns(frame)
    return (cols[0], cols[-1]) if len(cols) >= 2 else None


def residuals(forecasts: pd.DataFrame) -> pd.DataFrame:
    """``unique_id, fold, step, ds, residual`` (``y - yhat``) of backtest forecasts."""
    data = forecasts[forecasts[TARGET].notna() & forecasts[POINT].notna()]
    out = data[[ID, TIME]].copy()
    out["fold"] = data.get("fold", 0)
    out["step"] = data["step"] if "step" in data else data.groupby(ID).cumcount() + 1
    out["residual"] = data[TARGET].to_numpy(float) - data[POINT].to_numpy(float)
    return out.reset_index(drop=True)


def autocorrelation(res: pd.DataFrame, nlags: int) -> pd.DataFrame:
    """The residuals' autocorrelation for lags ``1..nlags``, pooled over each (fold, series) stretch.

    Returns ``lag, acf, bound`` where ``bound`` is the ±1.96/sqrt(n) band of white noise.
    """
    numerators = np.zeros(nlags + 1)
    denominator = 0.0
    count = 0
    for _, part in res.sort_values(["fold", ID, TIME]).groupby(["fold", ID], sort=False):
        x = part["residual"].to_numpy(float)
        x = x[np.isfinite(x)]
        if len(x) < 3:
            continue
        x = x - x.mean()
        denominator += float(np.dot(x, x))
        count += len(x)
        for lag in range(1, min(nlags, len(x) - 1) + 1):
            numerators[lag] += float(np.dot(x[:-lag], x[lag:]))
    lags = np.arange(1, nlags + 1)
    acf = numerators[1:] / denominator if denominator > 0 else np.full(nlags, np.nan)
    bound = 1.96 / np.sqrt(max(count, 1))
    return pd.DataFrame({"lag": lags, "acf": acf, "bound": bound})


def nominal_levels(quantiles: list[float]) -> dict[str, float]:
    """``coverage_80 -> 0.8`` for every symmetric pair of quantiles (named as the metrics name them)."""
    return {f"coverage_{level}": hi - lo for lo, hi, level in interval_pairs(quantiles)}


def coverage_table(results: dict[str, Any], names: list[str], quantiles: list[float]) -> pd.DataFrame:
    """``candidate, interval, nominal, coverage, width, interval_score`` for every candidate and symmetric pair."""
    levels = nominal_levels(quantiles)
    rows = []
    for name in names:
        evaluation = getattr(results.get(name), "evaluation", None)
        aggregate = dict(getattr(evaluation, "aggregate", {}) or {})
        for key, nominal in levels.items():
            if key in aggregate:
                width = aggregate.get(key.replace("coverage_", "width_"))
                score = aggregate.get(key.replace("coverage_", "interval_score_"))
                rows.append(
                    {
                        "candidate": name,
                        "interval": f"{key.removeprefix('coverage_')} %",
                        "nominal": nominal,
                        "coverage": float(aggregate[key]),
                        "width": float(width) if width is not None else float("nan"),
                        "interval_score": float(score) if score is not None else float("nan"),
                    }
                )
    return pd.DataFrame(rows, columns=["candidate", "interval", "nominal", "coverage", "width", "interval_score"])


def per_step(evaluation: Any, column: str) -> pd.Series | None:
    """One metric of an evaluation by horizon step (index ``step``), if it has it."""
    frame = getattr(evaluation, "per_step", None)
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return None
    if "step" in frame.columns:
        frame = frame.set_index("step")
    if column not in frame.columns:
        return None
    return frame[column].astype(float)


def smooth(values: pd.Series, points: int) -> pd.Series:
    """A centred rolling mean over ``points`` values (at least 1)."""
    return values.rolling(max(1, points), center=True, min_periods=1).mean()


def step_metric(evaluation: Any, preferred: str) -> str:
    """The metric to show by horizon step: the selection metric if it is per step, else MAE."""
    frame = getattr(evaluation, "per_step", None)
    if isinstance(frame, pd.DataFrame) and preferred in frame.columns:
        return preferred
    return "mae"


__all__ = [
    "SeriesView",
    "autocorrelation",
    "coverage_table",
    "nominal_levels",
    "per_step",
    "quantile_columns",
    "residuals",
    "series_views",
    "smooth",
    "step_metric",
    "thin",
    "widest_band",
]
