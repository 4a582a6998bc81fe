"""What the dashboard shows: one :class:`Snapshot` of the stores per refresh
(:func:`load_snapshot`), the figures drawn from it and the drift indicator's states. The Dash
page itself is :mod:`tidecast.reporting.dashboard`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from tidecast.frames import ID, TARGET, TIME
from tidecast.reporting import charts
from tidecast.reporting.data import (
    DriftView,
    ModelInUse,
    accuracy,
    drift_history,
    latest_batch,
    recent_trainings,
    registry_versions,
    resolve_model,
    rolling_accuracy,
    store,
)

#: Days of actuals drawn before the latest forecast.
CONTEXT_DAYS = 3
#: Days of rolling accuracy shown.
ACCURACY_DAYS = 30


@dataclass
class Snapshot:
    """What one refresh of the page shows, read from the stores."""

    model: ModelInUse | None
    model_error: str | None
    forecast: pd.DataFrame
    batch: dict[str, Any]
    actuals: pd.DataFrame
    daily: pd.DataFrame
    live: dict[str, float]
    drift: DriftView
    versions: pd.DataFrame
    trainings: pd.DataFrame
    read_at: str
    errors: list[str] = field(default_factory=list)


def load_snapshot(spec: Any, *, alias: str | None = None, client: Any = None, db: Any = None) -> Snapshot:
    """Read everything the page shows; a store that fails is recorded in ``errors``, the rest still shows.

    ``client`` (an MlflowClient) and ``db`` (a PredictionStore) are made from the spec when not given."""
    errors: list[str] = []
    alias = alias or str(spec.serving.model or "champion")
    name = spec.model_name
    model, model_error = None, None
    try:
        model = resolve_model(spec, name, alias, client=client)
    except Exception as exc:
        model_error = str(exc)
    forecast, actuals, daily, live, batch = pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {}, {}
    try:
        db = db or store(spec)
        predictions = db.predictions(name)
        forecast = latest_batch(predictions)
        if not forecast.empty:
            first = forecast[TIME].min()
            made = forecast["created_at"].iloc[0]
            batch = {
                "id": str(forecast["batch_id"].iloc[0]),
                "created_at": pd.Timestamp(made),
                "version": str(forecast["model_version"].iloc[0]),
                "start": first,
                "end": forecast[TIME].max(),
                "source": str(forecast["source"].iloc[0]),
            }
            uids = list(dict.fromkeys(forecast[ID].astype(str)))
            actuals = db.actuals(since=first - pd.Timedelta(days=CONTEXT_DAYS), unique_ids=uids[:1])
            joined = db.joined(name, since=first - pd.Timedelta(days=ACCURACY_DAYS))
            daily = rolling_accuracy(joined, freq="1D")
            recent = joined[joined[TIME] > joined[TIME].max() - pd.Timedelta(days=1)] if not joined.empty else joined
            live = accuracy(recent)
    except Exception as exc:
        errors.append(f"prediction store: {exc}")
    try:
        versions = registry_versions(spec, name, client=client)
    except Exception as exc:
        versions = pd.DataFrame()
        errors.append(f"registry: {exc}")
    try:
        trainings = recent_trainings(spec, client=client)
    except Exception as exc:
        trainings = pd.DataFrame()
        errors.append(f"training runs: {exc}")
    try:
        drift = drift_history(spec, name)
    except Exception as exc:
        drift = DriftView(pd.DataFrame(columns=["checked_at", "kind", "drifted", "detail"]))
        errors.append(f"drift checks: {exc}")
    return Snapshot(
        model=model,
        model_error=model_error,
        forecast=forecast,
        batch=batch,
        actuals=actuals,
        daily=daily,
        live=live,
        drift=drift,
        versions=versions,
        trainings=trainings,
        read_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        errors=errors,
    )


# -------------------------------------------------------------------------------- the figures
def empty_figure(text: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(
        text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14, "color": "#61707f"}
    )
    fig.update_layout(
        template=charts.template(),
        height=300,
        xaxis={"visible": False},
        yaxis={"visible": False},
        margin={"l": 20, "r": 20, "t": 20, "b": 20},
    )
    return fig


def forecast_figure(snap: Snapshot) -> Any:
    if snap.forecast.empty:
        return empty_figure("no forecasts logged yet: serve the model or run batch predictions")
    uid = str(snap.forecast[ID].astype(str).iloc[0])
    part = snap.forecast[snap.forecast[ID].astype(str) == uid]
    acts = snap.actuals[snap.actuals[ID].astype(str) == uid] if not snap.actuals.empty else snap.actuals
    made = snap.batch.get("created_at")
    title = f"{uid}: latest forecast (v{snap.batch.get('version')}, made {pd.Timestamp(made):%Y-%m-%d %H:%M} UTC)"
    return charts.forecast_over_actuals(
        acts if not acts.empty else pd.DataFrame(columns=[TIME, TARGET]), part, title=title
    )


def accuracy_figure(snap: Snapshot) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if snap.daily.empty:
        return empty_figure("no forecast has a matching actual yet")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Bar(x=snap.daily["period"], y=snap.daily["mae"], name="daily MAE", marker={"color": charts.PALETTE[0]})
    )
    if snap.daily["coverage"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=snap.daily["period"],
                y=snap.daily["coverage"],
                name="interval coverage",
                mode="lines+markers",
                line={"color": charts.PALETTE[2]},
            ),
            secondary_y=True,
        )
        fig.update_yaxes(range=[0, 1.05], dtick=0.2, tickformat=".0%", secondary_y=True, title_text="coverage")
    baseline = snap.model.backtest("mae") if snap.model is not None else None
    if baseline is not None:
        fig.add_hline(
            y=baseline,
            line={"dash": "dash", "color": charts.PALETTE[1]},
            annotation_text=f"backtest MAE {baseline:.3g}",
        )
    fig.update_layout(
        template=charts.template(),
        height=320,
        margin={"l": 50, "r": 50, "t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.15, "x": 0},
        title={"text": "Rolling accuracy", "x": 0.01, "font": {"size": 14}},
    )
    fig.update_yaxes(title_text="MAE", secondary_y=False)
    return fig


def drift_figure(snap: Snapshot) -> Any:
    import plotly.graph_objects as go

    if snap.drift.empty:
        return empty_figure("no drift checks yet")
    history = snap.drift.history
    fig = go.Figure()
    for kind, part in history.groupby("kind", sort=True):
        states = [check_state(row) for _, row in part.iterrows()]
        labels = {"ok": "ok", "drift": "drift", "stale": "stale", "unknown": "unchecked"}
        fig.add_trace(
            go.Scatter(
                x=part["checked_at"],
                y=[kind] * len(part),
                mode="markers",
                name=f"{kind} drift",
                marker={
                    "size": 12,
                    "symbol": "square",
                    "color": [STATE_COLOURS[s] for s in states],
                },
                customdata=[[labels[s], d] for s, d in zip(states, part["detail"], strict=True)],
                hovertemplate="%{x}<br>%{customdata[0]}: %{customdata[1]}<extra></extra>",
            )
        )
    fig.update_layout(
        template=charts.template(),
        height=220,
        margin={"l": 60, "r": 20, "t": 34, "b": 30},
        showlegend=False,
    )
    return fig


# ------------------------------------------------------------------------------ drift states
#: The colour of each check state in the drift chart.
STATE_COLOURS = {"ok": "#1a7f37", "drift": "#cf222e", "stale": "#bc4c00", "unknown": "#8c959f"}
_SEVERITY = {"ok": 0, "unknown": 1, "stale": 2, "drift": 3}


def check_state(row: Any) -> str:
    """The state of one drift-history row: ``ok``, ``drift``, ``stale`` or ``unknown`` (a check that did not run)."""
    state = row.get("state") if hasattr(row, "get") else None
    if isinstance(state, str) and state in _SEVERITY:
        return state
    return "drift" if bool(row["drifted"]) else "ok"


def drift_kpi(drift: DriftView) -> tuple[str, str, str]:
    """(value, detail, tone) of the drift tile: the worst state of the latest data and model checks, shown
    as ``DRIFT``, ``STALE``, ``UNCHECKED`` or ``ok``; a check that did not run is never shown ``ok``."""
    if drift.empty:
        return "no checks", "no drift checks yet", "warn"
    rows = [row for kind in ("data", "model") if (row := drift.latest(kind)) is not None]
    state = max((check_state(row) for row in rows), key=_SEVERITY.__getitem__, default="unknown")
    value = {"ok": "ok", "drift": "DRIFT", "stale": "STALE", "unknown": "UNCHECKED"}[state]
    tone = {"ok": "good", "drift": "bad", "stale": "bad", "unknown": "warn"}[state]
    when = f"last check {pd.Timestamp(drift.latest()['checked_at']):%Y-%m-%d %H:%M}"
    if state in ("stale", "unknown"):
        shown = "stale: the feed stopped" if state == "stale" else "unchecked: a check could not run"
        return value, f"{when} · {shown}", tone
    return value, when, tone


__all__ = [
    "ACCURACY_DAYS",
    "CONTEXT_DAYS",
    "STATE_COLOURS",
    "Snapshot",
    "accuracy_figure",
    "check_state",
    "drift_figure",
    "drift_kpi",
    "empty_figure",
    "forecast_figure",
    "load_snapshot",
]
