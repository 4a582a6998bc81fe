"""The interactive (plotly) charts of the run report and the dashboard."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tidecast.frames import TARGET, TIME
from tidecast.reporting.analysis import SeriesView, autocorrelation, residuals, smooth, thin
from tidecast.reporting.bands import ACTUAL, PALETTE, colour, forecast_traces

KIND_STYLE = {
    "filled": ("#2f9e44", "circle-open", "gap filled"),
    "outlier": ("#cf222e", "x", "outlier clipped"),
    "duplicate": ("#ae3ec9", "diamond-open", "duplicate merged"),
}


def _go() -> Any:
    import plotly.graph_objects as go

    return go


_TEMPLATE: dict[str, Any] = {}


def template() -> Any:
    """A small white template (plotly's own "plotly_white" is costly to copy into every figure)."""
    if "t" not in _TEMPLATE:
        import plotly.graph_objects as go

        axis = {
            "gridcolor": "#e9ecef",
            "linecolor": "#adb5bd",
            "zerolinecolor": "#ced4da",
            "ticks": "",
            "automargin": True,
        }
        _TEMPLATE["t"] = go.layout.Template(
            layout={
                "colorway": PALETTE,
                "paper_bgcolor": "white",
                "plot_bgcolor": "white",
                "font": {
                    "family": "-apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif",
                    "color": "#1f2933",
                },
                "xaxis": axis,
                "yaxis": axis,
                "hoverlabel": {"align": "left"},
            }
        )
    return _TEMPLATE["t"]


def _layout(fig: Any, *, title: str = "", height: int = 380, ytitle: str = "", xtitle: str = "") -> Any:
    fig.update_layout(
        template=template(),
        title={"text": title, "x": 0.01, "font": {"size": 14}} if title else None,
        height=height,
        margin={"l": 60, "r": 20, "t": 40 if title else 16, "b": 40},
        legend={
            "orientation": "h",
            "y": -0.12 if not xtitle else -0.22,
            "yanchor": "top",
            "x": 0,
            "xanchor": "left",
            "font": {"size": 11},
        },
        hovermode="x unified",
        font={"size": 12},
    )
    if ytitle:
        fig.update_yaxes(title_text=ytitle)
    if xtitle:
        fig.update_xaxes(title_text=xtitle)
    return fig


# ------------------------------------------------------------------------------- data section
def cleaned_series(view: SeriesView, target: str = "y") -> tuple[Any, Any]:
    """(overview figure, recent-stretch figure with the cleaning marks) of one series."""
    go = _go()
    overview = go.Figure(
        go.Scatter(
            x=view.overview[TIME],
            y=view.overview[TARGET],
            mode="lines",
            name=view.overview_label,
            line={"color": ACTUAL, "width": 1},
        )
    )
    _layout(overview, title=f"{view.unique_id}: the whole series ({view.overview_label})", height=260, ytitle=target)
    overview.update_layout(hovermode="closest")
    recent = go.Figure(
        go.Scatter(
            x=view.recent[TIME], y=view.recent[TARGET], mode="lines", name="cleaned", line={"color": ACTUAL, "width": 1}
        )
    )
    for kind, (hex_colour, symbol, label) in KIND_STYLE.items():
        marks = view.changes[view.changes["kind"] == kind] if not view.changes.empty else view.changes
        if marks.empty:
            continue
        recent.add_trace(
            go.Scatter(
                x=marks[TIME],
                y=marks[TARGET],
                mode="markers",
                name=f"{label} ({len(marks)})",
                marker={"color": hex_colour, "symbol": symbol, "size": 8, "line": {"width": 1.5}},
            )
        )
        if kind == "outlier" and marks["original"].notna().any():
            recent.add_trace(
                go.Scatter(
                    x=marks[TIME],
                    y=marks["original"],
                    mode="markers",
                    name="outlier's original value",
                    marker={"color": hex_colour, "symbol": "circle", "size": 6, "opacity": 0.6},
                )
            )
    _layout(
        recent,
        title=f"{view.unique_id}: last weeks at full resolution, with what cleaning changed",
        height=340,
        ytitle=target,
    )
    recent.update_layout(hovermode="closest")
    return overview, recent


# -------------------------------------------------------------------------------- leaderboard
def leaderboard(board: pd.DataFrame, metric: str, winner: str | None) -> Any:
    go = _go()
    ok = board[board["status"] == "ok"] if "status" in board else board
    ok = ok.sort_values(metric, ascending=True)
    colours = ["#1a7f37" if str(c) == str(winner) else "#8ca0b3" for c in ok["candidate"]]
    fig = go.Figure(
        go.Bar(
            x=ok[metric],
            y=ok["candidate"].astype(str),
            orientation="h",
            marker={"color": colours},
            text=[f"{v:.3g}" for v in ok[metric]],
            textposition="outside",
            name=metric.upper(),
        )
    )
    _layout(
        fig, title=f"{metric.upper()} over the backtest folds (lower is better)", height=max(220, 46 * len(ok) + 80)
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


# ---------------------------------------------------------------------------- backtest folds
def backtest_folds(forecasts: pd.DataFrame, name: str, uid: str, *, index: int = 0) -> Any:
    """Every fold's forecast of one series against the actuals, with the widest interval."""
    go = _go()
    part = forecasts[forecasts["unique_id"].astype(str) == str(uid)].sort_values(TIME)
    fig = go.Figure()
    for i, fold in enumerate(sorted(part["fold"].unique()) if "fold" in part else [0]):
        chunk = part[part["fold"] == fold] if "fold" in part else part
        for trace in forecast_traces(
            chunk, colour_hex=colour(index + i), name=f"fold {fold} forecast", group=f"f{fold}", width=1.6,
            band_name=f"fold {fold} interval",
        ):
            fig.add_trace(trace)
    actual = part.drop_duplicates(TIME)
    fig.add_trace(
        go.Scatter(x=actual[TIME], y=actual[TARGET], mode="lines", name="actual", line={"color": ACTUAL, "width": 1})
    )
    _layout(fig, title=f"{name} · {uid}: backtest folds", height=330)
    return fig


# ------------------------------------------------------------------------- error by horizon
def error_by_step(series: dict[str, pd.Series], metric: str, *, smooth_points: int = 1) -> Any:
    go = _go()
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        shown = smooth(values, smooth_points) if smooth_points > 1 else values
        fig.add_trace(
            go.Scatter(
                x=shown.index, y=shown.to_numpy(), mode="lines", name=name, line={"color": colour(i), "width": 1.6}
            )
        )
    caption = f" (centred mean over {smooth_points} steps)" if smooth_points > 1 else ""
    _layout(
        fig, title=f"{metric.upper()} by horizon step{caption}", height=340, xtitle="steps ahead", ytitle=metric.upper()
    )
    return fig


# -------------------------------------------------------------------------------- residuals
def residual_diagnostics(forecasts: pd.DataFrame, name: str, *, nlags: int, index: int = 0) -> Any:
    """A histogram of the residuals and their autocorrelation, side by side."""
    from plotly.subplots import make_subplots

    go = _go()
    res = residuals(forecasts)
    acf = autocorrelation(res, nlags)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("residuals (y − ŷ)", "autocorrelation of the residuals"))
    fig.add_trace(
        go.Histogram(x=res["residual"], nbinsx=50, marker={"color": colour(index)}, name="residuals", showlegend=False),
        1,
        1,
    )
    fig.add_trace(
        go.Bar(x=acf["lag"], y=acf["acf"], marker={"color": colour(index)}, name="ACF", showlegend=False), 1, 2
    )
    bound = float(acf["bound"].iloc[0]) if len(acf) else 0.0
    for sign in (1, -1):
        fig.add_trace(
            go.Scatter(
                x=acf["lag"],
                y=np.full(len(acf), sign * bound),
                mode="lines",
                line={"color": "#868e96", "dash": "dash", "width": 1},
                showlegend=False,
                hoverinfo="skip",
            ),
            1,
            2,
        )
    mean = float(res["residual"].mean()) if len(res) else float("nan")
    _layout(fig, title=f"{name}: mean residual {mean:.3g}, {len(res):,} points", height=320)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(title_text="lag (steps)", row=1, col=2)
    return fig


# --------------------------------------------------------------------------------- coverage
def coverage(table: pd.DataFrame) -> Any:
    go = _go()
    fig = go.Figure()
    for i, (interval, part) in enumerate(table.groupby("interval", sort=False)):
        fig.add_trace(
            go.Bar(
                x=part["candidate"],
                y=part["coverage"],
                name=f"{interval} interval",
                marker={"color": colour(i)},
                text=[f"{v:.0%}" for v in part["coverage"]],
                textposition="outside",
            )
        )
        nominal = float(part["nominal"].iloc[0])
        fig.add_hline(
            y=nominal,
            line={"dash": "dash", "color": colour(i)},
            annotation_text=f"nominal {nominal:.0%}",
            annotation_position="top left",
        )
    _layout(
        fig, title="Empirical interval coverage on the backtest vs the nominal level", height=340, ytitle="coverage"
    )
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    fig.update_layout(hovermode="closest", barmode="group")
    return fig


def coverage_by_step(series: dict[str, pd.Series], nominal: float, *, smooth_points: int) -> Any:
    go = _go()
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        shown = smooth(values, smooth_points)
        fig.add_trace(go.Scatter(x=shown.index, y=shown.to_numpy(), mode="lines", name=name, line={"color": colour(i)}))
    fig.add_hline(y=nominal, line={"dash": "dash", "color": "#868e96"}, annotation_text=f"nominal {nominal:.0%}")
    _layout(
        fig,
        title=f"Coverage by horizon step (centred mean over {smooth_points} steps)",
        height=300,
        xtitle="steps ahead",
        ytitle="coverage",
    )
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return fig


# ---------------------------------------------------------------------------- explainability
def permutation(tables: dict[str, pd.DataFrame]) -> Any:
    """Grouped bars: the relative MAE increase when each feature group is scrambled, per candidate."""
    go = _go()
    fig = go.Figure()
    for i, (name, table) in enumerate(tables.items()):
        fig.add_trace(
            go.Bar(
                x=table["group"],
                y=table["importance"],
                name=name,
                marker={"color": colour(i)},
                error_y={"type": "data", "array": table["std"].fillna(0).to_numpy(), "visible": True},
                text=[f"{v:+.0%}" for v in table["importance"]],
                textposition="outside",
            )
        )
    _layout(
        fig,
        title="Permutation importance: MAE increase when a feature group is scrambled (last fold)",
        height=360,
        ytitle="relative MAE increase",
    )
    fig.update_yaxes(tickformat=".0%")
    fig.update_layout(barmode="group", hovermode="closest")
    return fig


def shap_summary(result: Any, *, top: int = 15, max_rows: int = 800) -> Any:
    """A beeswarm of SHAP values (one dot per row and feature, coloured by the feature's value)."""
    go = _go()
    order = list(result.importance["feature"].head(top))
    rng = np.random.default_rng(0)
    rows = np.arange(len(result.values))
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    fig = go.Figure()
    for rank, feature in enumerate(order):
        j = list(result.data.columns).index(feature)
        values = result.values[rows, j]
        raw = result.data[feature].to_numpy(float)[rows]
        finite = np.isfinite(raw)
        scaled = np.full(len(raw), 0.5)
        if finite.sum() > 1:
            ranks = pd.Series(raw[finite]).rank(pct=True).to_numpy()
            scaled[finite] = ranks
        y = len(order) - 1 - rank + rng.uniform(-0.3, 0.3, len(values))
        fig.add_trace(
            go.Scatter(
                x=values,
                y=y,
                mode="markers",
                name=feature,
                showlegend=False,
                marker={
                    "size": 4,
                    "color": scaled,
                    "colorscale": "RdBu_r",
                    "cmin": 0,
                    "cmax": 1,
                    "opacity": 0.7,
                    "showscale": rank == 0,
                    "colorbar": {
                        "title": {"text": "feature value"},
                        "tickvals": [0, 1],
                        "ticktext": ["low", "high"],
                        "len": 0.6,
                    },
                },
                customdata=raw,
                hovertemplate=f"{feature}=%{{customdata:.3g}}<br>SHAP %{{x:.3g}}<extra></extra>",
            )
        )
    fig.update_yaxes(tickvals=list(range(len(order))), ticktext=list(reversed(order)))
    _layout(
        fig,
        title=f"SHAP values of {len(result.values):,} rows ({result.model})",
        height=max(300, 26 * len(order) + 90),
        xtitle="contribution to the forecast",
    )
    fig.update_layout(hovermode="closest")
    return fig


def shap_bar(result: Any, *, top: int = 15) -> Any:
    go = _go()
    shown = result.importance.head(top).iloc[::-1]
    groups = {g: colour(i) for i, g in enumerate(["lags", "calendar", "exogenous", "static", "other"])}
    fig = go.Figure(
        go.Bar(
            x=shown["mean_abs_shap"],
            y=shown["feature"],
            orientation="h",
            marker={"color": [groups.get(g, "#868e96") for g in shown["group"]]},
            customdata=shown["group"],
            hovertemplate="%{y} (%{customdata}): %{x:.3g}<extra></extra>",
        )
    )
    _layout(
        fig, title="Mean |SHAP| per feature (colour: lags, calendar, exogenous)", height=max(260, 22 * len(shown) + 90)
    )
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def shap_dependence(result: Any, feature: str, *, index: int = 0) -> Any:
    go = _go()
    j = list(result.data.columns).index(feature)
    fig = go.Figure(
        go.Scatter(
            x=result.data[feature],
            y=result.values[:, j],
            mode="markers",
            marker={"size": 4, "color": colour(index), "opacity": 0.6},
            name=feature,
        )
    )
    _layout(fig, title=f"SHAP dependence: {feature}", height=280, xtitle=feature, ytitle="SHAP value")
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def components(frame: pd.DataFrame, name: str, uid: str) -> Any:
    """The fitted components of one series, stacked."""
    from plotly.subplots import make_subplots

    go = _go()
    part = thin(frame[frame["unique_id"].astype(str) == str(uid)].drop(columns=["unique_id"]))
    columns = [c for c in part.columns if c != TIME]
    fig = make_subplots(rows=len(columns), cols=1, shared_xaxes=True, subplot_titles=columns, vertical_spacing=0.04)
    for i, column in enumerate(columns, start=1):
        fig.add_trace(
            go.Scatter(
                x=part[TIME],
                y=part[column],
                mode="lines",
                line={"color": colour(i - 1), "width": 1},
                name=column,
                showlegend=False,
            ),
            i,
            1,
        )
    _layout(fig, title=f"{name} · {uid}: fitted components", height=150 * len(columns) + 60)
    fig.update_layout(hovermode="x unified")
    return fig


# --------------------------------------------------------------------------------- dashboard
def forecast_over_actuals(actuals: pd.DataFrame, forecast: pd.DataFrame, *, title: str = "") -> Any:
    """The latest forecast with its widest interval, over the recent actuals (one series)."""
    go = _go()
    fig = go.Figure()
    for trace in forecast_traces(forecast):
        fig.add_trace(trace)
    if not actuals.empty:
        fig.add_trace(
            go.Scatter(
                x=actuals[TIME], y=actuals[TARGET], mode="lines", name="actual", line={"color": ACTUAL, "width": 1.2}
            )
        )
    _layout(fig, title=title, height=380)
    return fig


__all__ = [
    "PALETTE",
    "backtest_folds",
    "cleaned_series",
    "colour",
    "components",
    "coverage",
    "coverage_by_step",
    "error_by_step",
    "forecast_over_actuals",
    "leaderboard",
    "permutation",
    "residual_diagnostics",
    "shap_bar",
    "shap_dependence",
    "shap_summary",
]
