"""Forecast plots of batch prediction: history, forecast and intervals, as PNG (matplotlib) or HTML (plotly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tidecast.errors import ServingError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_column

PLOT_FORMATS = {".png": "png", ".html": "html", ".htm": "html"}
MAX_PLOTTED_SERIES = 12


def _bands(quantiles: list[float]) -> list[tuple[float, float]]:
    """Symmetric quantile pairs, widest first: [0.05, 0.1, 0.9, 0.95] -> [(0.05, 0.95), (0.1, 0.9)]."""
    qs = sorted(quantiles)
    return [(qs[i], qs[-1 - i]) for i in range(len(qs) // 2)]


def draw(
    history: pd.DataFrame, forecast: pd.DataFrame, path: str | Path, *, title: str, quantiles: list[float]
) -> Path:
    """History, forecast and intervals of up to 12 series: a PNG (matplotlib) or an offline HTML (plotly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = list(dict.fromkeys(forecast[ID].astype(str)))[:MAX_PLOTTED_SERIES]
    bands = [
        (lo, hi)
        for lo, hi in _bands(quantiles)
        if quantile_column(lo) in forecast.columns and quantile_column(hi) in forecast.columns
    ]
    if PLOT_FORMATS[path.suffix.lower()] == "html":
        return _draw_html(history, forecast, path, ids, bands, title)
    return _draw_png(history, forecast, path, ids, bands, title)


def _draw_png(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    path: Path,
    ids: list[str],
    bands: list[tuple[float, float]],
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ids), 1, figsize=(11, 3.2 * len(ids)), squeeze=False, sharex=False)
    try:
        for ax, uid in zip(axes[:, 0], ids, strict=True):
            hist = history[history[ID].astype(str) == uid]
            fc = forecast[forecast[ID] == uid]
            ax.plot(hist[TIME], hist[TARGET], color="#444444", linewidth=1.0, label="history")
            for k, (lo, hi) in enumerate(bands):
                ax.fill_between(
                    fc[TIME],
                    fc[quantile_column(lo)],
                    fc[quantile_column(hi)],
                    color="#1f77b4",
                    alpha=0.15 + 0.1 * k,
                    linewidth=0,
                    label=f"{lo:g}–{hi:g}",
                )
            ax.plot(fc[TIME], fc[POINT], color="#1f77b4", linewidth=1.4, label="forecast")
            ax.set_title(f"{title} — {uid}", fontsize=10, loc="left")
            ax.set_xlabel("UTC", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize=8, ncols=2 + len(bands))
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise ServingError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path


def _draw_html(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    path: Path,
    ids: list[str],
    bands: list[tuple[float, float]],
    title: str,
) -> Path:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(ids), cols=1, subplot_titles=ids, vertical_spacing=0.25 / max(1, len(ids)))
    for row, uid in enumerate(ids, start=1):
        hist = history[history[ID].astype(str) == uid]
        fc = forecast[forecast[ID] == uid]
        first = row == 1
        fig.add_trace(
            go.Scatter(
                x=hist[TIME],
                y=hist[TARGET],
                name="history",
                line={"color": "#444"},
                legendgroup="history",
                showlegend=first,
            ),
            row=row,
            col=1,
        )
        for k, (lo, hi) in enumerate(bands):
            x = np.concatenate([fc[TIME].to_numpy(), fc[TIME].to_numpy()[::-1]])
            y = np.concatenate([fc[quantile_column(hi)].to_numpy(), fc[quantile_column(lo)].to_numpy()[::-1]])
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    fill="toself",
                    fillcolor=f"rgba(31,119,180,{0.15 + 0.1 * k})",
                    line={"width": 0},
                    name=f"{lo:g}–{hi:g}",
                    legendgroup=f"band{k}",
                    showlegend=first,
                    hoverinfo="skip",
                ),
                row=row,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=fc[TIME],
                y=fc[POINT],
                name="forecast",
                line={"color": "#1f77b4"},
                legendgroup="forecast",
                showlegend=first,
            ),
            row=row,
            col=1,
        )
    fig.update_layout(title=title, height=320 * len(ids) + 80, template="plotly_white")
    try:
        fig.write_html(path, include_plotlyjs=True, full_html=True)
    except OSError as exc:
        raise ServingError(f"cannot write {path}: {exc}") from None
    return path


__all__ = ["PLOT_FORMATS", "draw"]
