"""Static (matplotlib) charts: PNGs logged to MLflow (its UI shows them inline) and the SVG figures
of the client report (which also print and convert to PDF).

Uses :class:`matplotlib.figure.Figure` directly, never pyplot: no global state, no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tidecast.frames import TARGET, TIME
from tidecast.reporting.analysis import SeriesView, autocorrelation, residuals, smooth, thin
from tidecast.reporting.bands import ACTUAL, PALETTE, colour, draw_forecast
from tidecast.reporting.charts import KIND_STYLE

_MARKERS = {"circle-open": "o", "x": "x", "diamond-open": "D"}


def figure(width: float = 10, height: float = 3.2, *, rows: int = 1, cols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A new figure and its axes (a 2-D array when ``rows``/``cols`` > 1)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=rows == 1 and cols == 1, **kwargs)
    return fig, axes


def _style(ax: Any, title: str = "", *, ylabel: str = "", xlabel: str = "") -> None:
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e9ecef", linewidth=0.6)
    ax.set_axisbelow(True)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=9)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=9)


def save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------------- run report
def cleaned_series(view: SeriesView) -> Any:
    fig, ax = figure(10, 3.2)
    ax.plot(view.recent[TIME], view.recent[TARGET], color=ACTUAL, linewidth=0.7, label="cleaned")
    for kind, (hex_colour, symbol, label) in KIND_STYLE.items():
        marks = view.changes[view.changes["kind"] == kind] if not view.changes.empty else view.changes
        if not marks.empty:
            marker = _MARKERS.get(symbol, "o")
            style = (
                {"color": hex_colour}
                if marker == "x"
                else {"facecolors": "none" if symbol.endswith("open") else hex_colour, "edgecolors": hex_colour}
            )
            ax.scatter(
                marks[TIME],
                marks[TARGET],
                s=22,
                marker=marker,
                label=f"{label} ({len(marks)})",
                linewidths=1.2,
                zorder=3,
                **style,
            )
    _style(ax, f"{view.unique_id}: recent data, with what cleaning changed")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def leaderboard(board: pd.DataFrame, metric: str, winner: str | None) -> Any:
    ok = board[board["status"] == "ok"] if "status" in board else board
    ok = ok.sort_values(metric, ascending=False)
    fig, ax = figure(8, max(2.0, 0.42 * len(ok) + 0.8))
    colours = ["#1a7f37" if str(c) == str(winner) else "#8ca0b3" for c in ok["candidate"]]
    ax.barh(ok["candidate"].astype(str), ok[metric], color=colours)
    for y, value in enumerate(ok[metric]):
        ax.text(value, y, f" {value:.3g}", va="center", fontsize=8)
    _style(ax, f"{metric.upper()} over the backtest folds (lower is better)")
    return fig


def error_by_step(series: dict[str, pd.Series], metric: str, *, smooth_points: int = 1) -> Any:
    fig, ax = figure(10, 3.2)
    for i, (name, values) in enumerate(series.items()):
        shown = smooth(values, smooth_points) if smooth_points > 1 else values
        ax.plot(shown.index, shown.to_numpy(), color=colour(i), linewidth=1.3, label=name)
    _style(ax, f"{metric.upper()} by horizon step", xlabel="steps ahead", ylabel=metric.upper())
    ax.legend(fontsize=8)
    return fig


def residual_diagnostics(items: list[tuple[str, pd.DataFrame]], *, nlags: int) -> Any:
    fig, axes = figure(10, 2.6 * len(items), rows=len(items), cols=2)
    axes = np.atleast_2d(axes)
    for i, (name, forecasts) in enumerate(items):
        res = residuals(forecasts)
        acf = autocorrelation(res, nlags)
        axes[i, 0].hist(res["residual"], bins=50, color=colour(i))
        _style(axes[i, 0], f"{name}: residuals (y − ŷ)")
        axes[i, 1].bar(acf["lag"], acf["acf"], color=colour(i), width=0.8)
        bound = float(acf["bound"].iloc[0]) if len(acf) else 0.0
        axes[i, 1].axhline(bound, color="#868e96", linestyle="--", linewidth=0.8)
        axes[i, 1].axhline(-bound, color="#868e96", linestyle="--", linewidth=0.8)
        _style(axes[i, 1], f"{name}: autocorrelation", xlabel="lag (steps)")
    return fig


def coverage(table: pd.DataFrame) -> Any:
    fig, ax = figure(9, 3.2)
    intervals = list(dict.fromkeys(table["interval"]))
    names = list(dict.fromkeys(table["candidate"]))
    width = 0.8 / max(1, len(intervals))
    x = np.arange(len(names))
    for i, interval in enumerate(intervals):
        part = table[table["interval"] == interval].set_index("candidate").reindex(names)
        ax.bar(x + i * width, part["coverage"], width=width, color=colour(i), label=f"{interval} interval")
        ax.axhline(float(part["nominal"].dropna().iloc[0]), color=colour(i), linestyle="--", linewidth=1)
    ax.set_xticks(x + width * (len(intervals) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    _style(ax, "Interval coverage on the backtest (dashed: nominal)")
    ax.legend(fontsize=8)
    return fig


def permutation(tables: dict[str, pd.DataFrame]) -> Any:
    fig, ax = figure(9, 3.2)
    groups = list(dict.fromkeys(g for t in tables.values() for g in t["group"]))
    width = 0.8 / max(1, len(tables))
    x = np.arange(len(groups))
    for i, (name, table) in enumerate(tables.items()):
        part = table.set_index("group").reindex(groups)
        ax.bar(
            x + i * width,
            part["importance"],
            width=width,
            yerr=part["std"].fillna(0),
            color=colour(i),
            label=name,
            capsize=2,
        )
    ax.set_xticks(x + width * (len(tables) - 1) / 2, groups)
    ax.axhline(0, color="#495057", linewidth=0.8)
    _style(ax, "Permutation importance (relative MAE increase, last fold)")
    ax.legend(fontsize=8)
    return fig


def shap_summary(result: Any, *, top: int = 15, max_rows: int = 800) -> Any:
    order = list(result.importance["feature"].head(top))
    fig, ax = figure(9, max(2.5, 0.32 * len(order) + 0.9))
    rng = np.random.default_rng(0)
    rows = np.arange(len(result.values))
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    scatter = None
    for rank, feature in enumerate(order):
        j = list(result.data.columns).index(feature)
        raw = result.data[feature].to_numpy(float)[rows]
        scaled = pd.Series(raw).rank(pct=True).fillna(0.5).to_numpy()
        y = len(order) - 1 - rank + rng.uniform(-0.3, 0.3, len(rows))
        scatter = ax.scatter(
            result.values[rows, j], y, c=scaled, cmap="RdBu_r", vmin=0, vmax=1, s=5, alpha=0.7, linewidths=0
        )
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.axvline(0, color="#495057", linewidth=0.6)
    _style(ax, "SHAP values (colour: feature value, low → high)", xlabel="contribution to the forecast")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, ticks=[0, 1], shrink=0.6)
        bar.ax.set_yticklabels(["low", "high"], fontsize=7)
    return fig


def components(frame: pd.DataFrame, name: str, uid: str) -> Any:
    part = thin(frame[frame["unique_id"].astype(str) == str(uid)].drop(columns=["unique_id"]))
    columns = [c for c in part.columns if c != TIME]
    fig, axes = figure(10, 1.5 * len(columns) + 0.5, rows=len(columns), cols=1, sharex=True)
    axes = np.atleast_1d(axes).ravel()
    for i, column in enumerate(columns):
        axes[i].plot(part[TIME], part[column], color=colour(i), linewidth=0.7)
        _style(axes[i], f"{name}: {column}" if i == 0 else column)
    return fig


# ----------------------------------------------------------------------------- client report
def forecast_vs_actual(joined: pd.DataFrame, *, title: str, misses: pd.DataFrame | None = None) -> Any:
    """The forecast (and its widest interval) against what happened."""
    fig, ax = figure(10, 3.3)
    draw_forecast(ax, joined, alpha=0.18, width=1.2)
    ax.plot(joined[TIME], joined[TARGET], color=ACTUAL, linewidth=0.9, label="actual")
    if misses is not None and not misses.empty:
        ax.scatter(
            misses[TIME],
            misses[TARGET],
            s=28,
            facecolors="none",
            edgecolors="#cf222e",
            linewidths=1.4,
            label="largest misses",
            zorder=3,
        )
    _style(ax, title)
    ax.legend(fontsize=8, loc="upper right", ncols=4)
    fig.autofmt_xdate()
    return fig


def daily_error(daily: pd.DataFrame, baseline: float | None, *, metric: str = "MAE") -> Any:
    fig, ax = figure(10, 2.6)
    labels = [pd.Timestamp(d).strftime("%a %d %b") for d in daily["day"]]
    ax.bar(labels, daily["mae"], color=PALETTE[0])
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(baseline, color="#d9480f", linestyle="--", linewidth=1.2, label=f"backtest {metric} {baseline:.3g}")
        ax.legend(fontsize=8)
    _style(ax, f"{metric} per day", ylabel=metric)
    return fig


def forecast_ahead(history: pd.DataFrame, forecast: pd.DataFrame, *, title: str) -> Any:
    fig, ax = figure(10, 3.1)
    if not history.empty:
        ax.plot(history[TIME], history[TARGET], color=ACTUAL, linewidth=0.9, label="recent actuals")
    draw_forecast(ax, forecast)
    _style(ax, title)
    ax.legend(fontsize=8, loc="upper right", ncols=3)
    fig.autofmt_xdate()
    return fig


__all__ = [
    "cleaned_series",
    "components",
    "coverage",
    "daily_error",
    "error_by_step",
    "figure",
    "forecast_ahead",
    "forecast_vs_actual",
    "leaderboard",
    "permutation",
    "residual_diagnostics",
    "save",
    "shap_summary",
]
