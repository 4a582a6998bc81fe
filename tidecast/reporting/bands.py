"""The forecast-with-a-band chart, once per drawing library: :func:`forecast_traces` (plotly) and
:func:`draw_forecast` (matplotlib). The run report, the dashboard, the client report, the
training run's backtest PNGs (:func:`backtest_png`) and ``tidecast predict --plot``
(:func:`forecast_file`) all draw their forecasts and intervals with these two.

Plotly and matplotlib are imported on first use (they are heavy and optional).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tidecast.errors import ServingError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column
from tidecast.reporting.analysis import widest_band

PALETTE = ["#1f6feb", "#d9480f", "#2f9e44", "#ae3ec9", "#e8590c", "#0c8599", "#c2255c", "#5c940d", "#495057"]
ACTUAL = "#1f2933"
PLOT_FORMATS = {".png": "png", ".html": "html", ".htm": "html"}
MAX_PLOTTED_SERIES = 12


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def symmetric_bands(quantiles: Sequence[float]) -> list[tuple[float, float]]:
    """Symmetric quantile pairs, widest first: [0.05, 0.1, 0.9, 0.95] -> [(0.05, 0.95), (0.1, 0.9)]."""
    qs = sorted(quantiles)
    return [(qs[i], qs[-1 - i]) for i in range(len(qs) // 2)]


def band_columns(frame: pd.DataFrame, pairs: Sequence[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The (low, high) quantile columns to shade: ``pairs`` present in ``frame``, else its widest interval."""
    if pairs is not None:
        return [(lo, hi) for lo, hi in pairs if lo in frame.columns and hi in frame.columns]
    band = widest_band(frame) if len(frame) else None
    return [band] if band is not None else []


# ------------------------------------------------------------------------------------ plotly
def forecast_traces(
    forecast: pd.DataFrame,
    *,
    colour_hex: str = PALETTE[0],
    name: str = "forecast",
    band_name: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    legend: bool = True,
    group: str = "",
    width: float = 2.0,
    alpha: float = 0.18,
) -> list[Any]:
    """The plotly traces of a forecast: its intervals (shaded, widest first) and its point forecast."""
    import plotly.graph_objects as go

    traces: list[Any] = []
    if forecast.empty:
        return traces
    for k, (lo, hi) in enumerate(band_columns(forecast, pairs)):
        label = band_name or f"interval {lo}–{hi}"
        traces += [
            go.Scatter(x=forecast[TIME], y=forecast[hi], mode="lines", line={"width": 0}, showlegend=False,
                       hoverinfo="skip", legendgroup=group or f"band{k}"),
            go.Scatter(x=forecast[TIME], y=forecast[lo], mode="lines", line={"width": 0}, fill="tonexty",
                       fillcolor=rgba(colour_hex, alpha + 0.1 * k), name=label if k == 0 or pairs is None else f"{lo}–{hi}",
                       showlegend=legend, hoverinfo="skip", legendgroup=group or f"band{k}"),
        ]
    traces.append(
        go.Scatter(x=forecast[TIME], y=forecast[POINT], mode="lines", name=name, showlegend=legend,
                   line={"color": colour_hex, "width": width}, legendgroup=group or "forecast")
    )
    return traces


# -------------------------------------------------------------------------------- matplotlib
def draw_forecast(
    ax: Any,
    forecast: pd.DataFrame,
    *,
    colour_hex: str = PALETTE[0],
    name: str | None = "forecast",
    band_label: bool = True,
    pairs: Sequence[tuple[str, str]] | None = None,
    width: float = 1.4,
    alpha: float = 0.2,
) -> None:
    """A forecast on matplotlib axes: its intervals (shaded, widest first) and its point forecast."""
    for k, (lo, hi) in enumerate(band_columns(forecast, pairs)):
        ax.fill_between(
            forecast[TIME], forecast[lo], forecast[hi], color=colour_hex, alpha=alpha + 0.1 * k, linewidth=0,
            label=f"interval {lo}–{hi}" if band_label else None,
        )
    ax.plot(forecast[TIME], forecast[POINT], color=colour_hex, linewidth=width, label=name)


# ------------------------------------------------------------------------------- whole files
def backtest_png(forecasts: pd.DataFrame, title: str, path: Path, *, max_series: int = 3) -> Path:
    """Forecast vs actual over the backtest folds (first ``max_series`` series), with the widest
    quantile band: the training run's ``plots/backtest_<rank>_<candidate>.png``."""
    from matplotlib.figure import Figure

    ids = list(dict.fromkeys(forecasts[ID].astype(str)))[:max_series]
    fig = Figure(figsize=(10, 2.6 * max(1, len(ids))), dpi=80, layout="constrained")
    axes = fig.subplots(max(1, len(ids)), 1, squeeze=False)[:, 0]
    for ax, uid in zip(axes, ids, strict=False):
        part = forecasts[forecasts[ID].astype(str) == uid].sort_values(TIME)
        ax.plot(part[TIME], part[TARGET], color="black", linewidth=1, label="actual")
        folds = sorted(part["fold"].unique()) if "fold" in part else [None]
        for i, fold in enumerate(folds):
            chunk = part if fold is None else part[part["fold"] == fold]
            draw_forecast(ax, chunk, colour_hex=colour(i), name="forecast" if i == 0 else None, band_label=False,
                          width=1.0)
        ax.set_title(f"{title} · {uid}", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def forecast_file(
    history: pd.DataFrame, forecast: pd.DataFrame, path: str | Path, *, title: str, quantiles: Sequence[float]
) -> Path:
    """History, forecast and intervals of up to 12 series (``tidecast predict --plot``): a PNG
    (matplotlib) or an offline HTML (plotly), by the file's suffix (:data:`PLOT_FORMATS`)."""
    path = Path(path)
    kind = PLOT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ServingError(f"--plot {path}: unknown format (use {', '.join(PLOT_FORMATS)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(dict.fromkeys(forecast[ID].astype(str)))[:MAX_PLOTTED_SERIES]
    pairs = [(quantile_column(lo), quantile_column(hi)) for lo, hi in symmetric_bands(quantiles)]
    parts = [
        (uid, history[history[ID].astype(str) == uid], forecast[forecast[ID].astype(str) == uid]) for uid in ids
    ]
    try:
        return (_forecast_html if kind == "html" else _forecast_png)(parts, path, pairs, title)
    except OSError as exc:
        raise ServingError(f"cannot write {path}: {exc}") from None


def _forecast_png(parts: list[Any], path: Path, pairs: list[tuple[str, str]], title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2 * len(parts)), dpi=100, layout="constrained")
    axes = fig.subplots(max(1, len(parts)), 1, squeeze=False)[:, 0]
    for ax, (uid, hist, fc) in zip(axes, parts, strict=False):
        ax.plot(hist[TIME], hist[TARGET], color="#444444", linewidth=1.0, label="history")
        draw_forecast(ax, fc, colour_hex="#1f77b4", pairs=pairs, alpha=0.15)
        ax.set_title(f"{title} — {uid}", fontsize=10, loc="left")
        ax.set_xlabel("UTC", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, ncols=2 + len(pairs))
    fig.autofmt_xdate()
    fig.savefig(path, dpi=100)
    return path


def _forecast_html(parts: list[Any], path: Path, pairs: list[tuple[str, str]], title: str) -> Path:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = max(1, len(parts))
    fig = make_subplots(rows=n, cols=1, subplot_titles=[uid for uid, _, _ in parts], vertical_spacing=0.25 / n)
    for row, (_uid, hist, fc) in enumerate(parts, start=1):
        first = row == 1
        fig.add_trace(
            go.Scatter(x=hist[TIME], y=hist[TARGET], name="history", line={"color": "#444"}, legendgroup="history",
                       showlegend=first),
            row=row, col=1,
        )
        for trace in forecast_traces(fc, colour_hex="#1f77b4", pairs=pairs, legend=first, width=1.6, alpha=0.15):
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(title=title, height=320 * n + 80, template="plotly_white")
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


__all__ = [
    "ACTUAL",
    "MAX_PLOTTED_SERIES",
    "PALETTE",
    "PLOT_FORMATS",
    "backtest_png",
    "band_columns",
    "colour",
    "draw_forecast",
    "forecast_file",
    "forecast_traces",
    "rgba",
    "symmetric_bands",
]
