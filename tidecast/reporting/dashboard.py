"""``tidecast dashboard``: a live Dash page on the production model.

It reads the stores the other commands write and refreshes itself every ``refresh`` seconds:

* the latest forecast (with its widest interval) over the recent actuals;
* rolling accuracy (daily MAE of the logged forecasts against the actuals, and interval coverage)
  against the model's backtest MAE;
* data/model drift indicators with their history (from the monitoring's checks);
* the registry's versions and which one serves (``serving.model``, default ``champion``);
* the last training runs with their verdicts.

The page is read-only. Its one write action, pointing ``champion`` at another version, needs the
admin token (the environment variable named by ``serving.token_env``); without that variable set
the action is disabled.

>>> app = create_app(spec, refresh=30)            # doctest: +SKIP
>>> DashboardServer(app, port=8050).serve()       # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from tidecast.extras import require
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
from tidecast.reporting.html import fmt_number

#: Days of actuals drawn before the latest forecast.
CONTEXT_DAYS = 3
#: Days of rolling accuracy shown.
ACCURACY_DAYS = 30

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0; background: #f6f8fa; color: #1f2933; }
.top { background: #0d1b2a; color: #fff; padding: 14px 24px; display: flex; justify-content: space-between; align-items: baseline; }
.top h1 { margin: 0; font-size: 20px; font-weight: 600; }
.top .meta { color: #c9d3dd; font-size: 13px; }
.wrap { padding: 8px 24px 32px; }
.row { display: flex; gap: 16px; flex-wrap: wrap; }
.card { background: #fff; border: 1px solid #e3e8ee; border-radius: 8px; padding: 12px 16px; margin-top: 14px; flex: 1 1 420px; }
.card h2 { font-size: 15px; margin: 0 0 6px; }
.kpis { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 14px; }
.kpi { background: #fff; border: 1px solid #e3e8ee; border-radius: 8px; padding: 10px 14px; min-width: 170px; }
.kpi .label { font-size: 11px; color: #61707f; text-transform: uppercase; letter-spacing: .03em; }
.kpi .value { font-size: 20px; font-weight: 600; }
.kpi .detail { font-size: 12px; color: #61707f; }
.kpi.good .value { color: #1a7f37; } .kpi.warn .value { color: #9a6700; } .kpi.bad .value { color: #cf222e; }
table.grid { border-collapse: collapse; font-size: 13px; width: 100%; }
table.grid th, table.grid td { border-bottom: 1px solid #e3e8ee; padding: 4px 8px; text-align: left; }
table.grid th { background: #f6f8fa; }
tr.serving td { font-weight: 600; background: #eef7f0; }
.empty { padding: 10px 12px; background: #fff8e5; border: 1px solid #f0d58c; border-radius: 6px; font-size: 13px; }
.admin { display: flex; gap: 8px; align-items: center; }
.admin input { padding: 4px 6px; width: 180px; border: 1px solid #ced4da; border-radius: 4px; }
.admin button { padding: 4px 10px; }
.status { font-size: 12px; color: #61707f; margin-top: 8px; }
"""

INDEX = (
    """<!DOCTYPE html>
<html><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>"""
    + STYLE
    + """</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>"""
)


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
def _empty_figure(text: str) -> Any:
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
        return _empty_figure("no forecasts logged yet: serve the model or run batch predictions")
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
        return _empty_figure("no forecast has a matching actual yet")
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
        return _empty_figure("no drift checks yet")
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


# ------------------------------------------------------------------------------------ the app
def _table(frame: pd.DataFrame, columns: list[tuple[str, str]], *, highlight: Any = None, table_id: str = "") -> Any:
    from dash import html

    if frame is None or frame.empty:
        return html.Div("nothing recorded yet", className="empty")
    head = html.Tr([html.Th(label) for _, label in columns])
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for key, _ in columns:
            value = row.get(key)
            if isinstance(value, pd.Timestamp):
                text = value.strftime("%Y-%m-%d %H:%M")
            elif isinstance(value, float):
                text = fmt_number(value)
            else:
                text = "" if value is None or (isinstance(value, float) and value != value) else str(value)
            cells.append(html.Td(text))
        rows.append(html.Tr(cells, className="serving" if highlight is not None and highlight(row) else ""))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="grid", id=table_id)


def _kpi(label: str, value: str, detail: str = "", tone: str = "", kpi_id: str = "") -> Any:
    from dash import html

    return html.Div(
        [html.Div(label, className="label"), html.Div(value, className="value"), html.Div(detail, className="detail")],
        className=f"kpi {tone}",
        id=kpi_id or None,
    )


def admin_token(spec: Any) -> str | None:
    """The admin token from the environment variable ``serving.token_env`` (None: admin actions off)."""
    value = os.environ.get(spec.serving.token_env or "TIDECAST_ADMIN_TOKEN")
    return value or None


def check_token(spec: Any, given: str | None) -> str | None:
    """None when ``given`` is the admin token, else why the action is refused."""
    expected = admin_token(spec)
    if expected is None:
        return f"admin actions are disabled: {spec.serving.token_env} is not set where the dashboard runs"
    if not given or not hmac.compare_digest(str(given).encode(), expected.encode()):
        return "wrong or missing admin token: nothing was changed"
    return None


def create_app(spec: Any, *, refresh: float = 30.0, alias: str | None = None) -> Any:
    """The Dash app of ``spec``'s production model (``refresh``: seconds between updates)."""
    require("dash", "tidecast dashboard")
    from dash import Dash, Input, Output, State, dcc, html

    alias = alias or str(spec.serving.model or "champion")
    app = Dash(
        __name__,
        title=f"{spec.project} · tidecast",
        update_title=None,
        serve_locally=True,
        include_assets_files=False,
        index_string=INDEX,
    )
    state: dict[str, Any] = {"client": None, "db": None}
    lock = threading.Lock()

    def client() -> Any:
        with lock:
            if state["client"] is None:
                from tidecast.reporting.data import client_for

                state["client"] = client_for(spec)
            return state["client"]

    def db() -> Any:
        with lock:
            if state["db"] is None:
                state["db"] = store(spec)
            return state["db"]

    graph_config = {"displaylogo": False, "responsive": True}
    app.layout = html.Div(
        [
            html.Div(
                [html.H1(f"{spec.project} · {spec.model_name}@{alias}"), html.Div(id="updated", className="meta")],
                className="top",
            ),
            html.Div(
                [
                    dcc.Interval(id="tick", interval=max(0.5, float(refresh)) * 1000, n_intervals=0),
                    html.Div(id="kpis", className="kpis"),
                    html.Div(
                        [
                            html.Div(
                                [dcc.Graph(id="forecast-graph", config=graph_config, style={"height": "400px"})],
                                className="card",
                            )
                        ],
                        className="row",
                    ),
                    html.Div(
                        [
                            html.Div(
                                [dcc.Graph(id="accuracy-graph", config=graph_config, style={"height": "330px"})],
                                className="card",
                            ),
                            html.Div(
                                [
                                    html.H2("Drift checks (red: drift, orange: stale, grey: unchecked)"),
                                    html.Div(id="drift-status"),
                                    dcc.Graph(id="drift-graph", config=graph_config, style={"height": "240px"}),
                                ],
                                className="card",
                            ),
                        ],
                        className="row",
                    ),
                    html.Div(
                        [
                            html.Div([html.H2("Registry"), html.Div(id="registry")], className="card"),
                            html.Div([html.H2("Last training runs"), html.Div(id="runs")], className="card"),
                        ],
                        className="row",
                    ),
                    html.Div(
                        [
                            html.H2("Admin"),
                            html.Div(
                                [
                                    dcc.Input(
                                        id="admin-token",
                                        type="password",
                                        placeholder="admin token",
                                        autoComplete="off",
                                        style={"width": "220px"},
                                    ),
                                    dcc.Input(
                                        id="admin-version", type="text", placeholder="version", style={"width": "90px"}
                                    ),
                                    html.Button("Make champion", id="admin-promote", n_clicks=0),
                                ],
                                className="admin",
                            ),
                            html.Div(id="admin-result", className="status"),
                        ],
                        className="card",
                    ),
                    html.Div(id="errors", className="status"),
                ],
                className="wrap",
            ),
        ]
    )

    @app.callback(
        Output("updated", "children"),
        Output("kpis", "children"),
        Output("forecast-graph", "figure"),
        Output("accuracy-graph", "figure"),
        Output("drift-graph", "figure"),
        Output("drift-status", "children"),
        Output("registry", "children"),
        Output("runs", "children"),
        Output("errors", "children"),
        Input("tick", "n_intervals"),
        Input("admin-result", "children"),
    )
    def refresh_page(_: int, __: Any) -> tuple[Any, ...]:
        try:
            mlflow_client = client()
        except Exception as exc:
            mlflow_client = None
            snap_error = str(exc)
        else:
            snap_error = ""
        try:
            handle = db()
        except Exception:  # load_snapshot records the store's error
            handle = None
        snap = load_snapshot(spec, alias=alias, client=mlflow_client, db=handle) if mlflow_client is not None else None
        if snap is None:
            empty = _empty_figure("the tracking store is unreachable")
            return (f"read failed {datetime.now(UTC):%H:%M:%S} UTC", [], empty, empty, empty, "", "", "", snap_error)
        kpis = []
        if snap.model is not None:
            kpis.append(
                _kpi("serving", f"v{snap.model.version}", f"{alias} · {snap.model.winner or ''}", "good", "kpi-serving")
            )
        else:
            kpis.append(_kpi("serving", "none", snap.model_error or "", "warn", "kpi-serving"))
        if snap.batch:
            kpis.append(
                _kpi(
                    "latest forecast",
                    f"{pd.Timestamp(snap.batch['created_at']):%m-%d %H:%M}",
                    f"{snap.batch['start']:%m-%d %H:%M} → {snap.batch['end']:%m-%d %H:%M} · {snap.batch['id'][:8]}",
                    "",
                    "kpi-latest",
                )
            )
        else:
            kpis.append(_kpi("latest forecast", "none", "no forecasts logged yet", "warn", "kpi-latest"))
        if snap.live:
            base = snap.model.backtest("mae") if snap.model is not None else None
            ratio = snap.live["mae"] / base if base else None
            tone = "" if ratio is None else ("good" if ratio <= 1.2 else "warn" if ratio <= 1.5 else "bad")
            kpis.append(
                _kpi(
                    "MAE, last 24 h",
                    fmt_number(snap.live["mae"]),
                    f"backtest {fmt_number(base)}" + (f" · {ratio:.2f}×" if ratio else ""),
                    tone,
                    "kpi-mae",
                )
            )
            if "coverage" in snap.live:
                kpis.append(
                    _kpi(
                        "coverage, last 24 h",
                        f"{snap.live['coverage']:.0%}",
                        f"nominal {snap.live.get('nominal', 0):.0%}",
                        "",
                        "kpi-coverage",
                    )
                )
        else:
            kpis.append(_kpi("live accuracy", "n/a", "no actuals for the forecasts yet", "warn", "kpi-mae"))
        kpis.append(_kpi("drift", *drift_kpi(snap.drift), "kpi-drift"))
        serving_version = snap.model.version if snap.model is not None else None
        registry = _table(
            snap.versions,
            [
                ("version", "version"),
                ("aliases", "aliases"),
                ("created", "registered"),
                ("winner", "model"),
                ("gate", "gate"),
                ("holdout", "held-out"),
                ("metric", "metric"),
            ],
            highlight=lambda row: serving_version is not None and str(row.get("version")) == str(serving_version),
            table_id="registry-table",
        )
        runs = _table(
            snap.trainings,
            [
                ("started", "started"),
                ("status", "status"),
                ("winner", "winner"),
                ("holdout", "held-out"),
                ("version", "version"),
                ("verdict", "verdict"),
            ],
            table_id="runs-table",
        )
        batch_note = f" · latest forecast batch {snap.batch['id']}" if snap.batch else ""
        updated = html.Span(
            f"updated {snap.read_at}{batch_note}", id="updated-text", **{"data-batch": snap.batch.get("id", "")}
        )
        return (
            updated,
            kpis,
            forecast_figure(snap),
            accuracy_figure(snap),
            drift_figure(snap),
            html.Div("" if snap.drift.empty else snap.drift.status_line(), className="status"),
            registry,
            runs,
            "; ".join(snap.errors),
        )

    @app.callback(
        Output("admin-result", "children"),
        Input("admin-promote", "n_clicks"),
        State("admin-token", "value"),
        State("admin-version", "value"),
        prevent_initial_call=True,
    )
    def promote_version(clicks: int, token: str | None, version: str | None) -> str:
        refused = check_token(spec, token)
        if refused:
            return refused
        if not version or not str(version).strip().isdigit():
            return "give the version number to make champion"
        from tidecast.tracking.registry import promote

        try:
            action = promote(spec, str(version).strip(), reason="promoted from the dashboard")
        except Exception as exc:
            return f"not promoted: {exc}"
        return f"{action.model_name}@champion → v{action.to_version}" + (
            f" (was v{action.from_version})" if action.from_version else ""
        )

    return app


def _quiet_handler() -> type:
    from werkzeug.serving import WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        """Requests are not logged to the terminal (the library never prints); errors still are."""

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            return None

    return Quiet


class DashboardServer:
    """The app on a werkzeug server: ``serve()`` blocks (the CLI), ``start()``/``stop()`` run it in a thread (tests)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 8050) -> None:
        from werkzeug.serving import make_server

        from tidecast.errors import TidecastError

        handler = _quiet_handler()

        try:
            self._server = make_server(host, port, app.server, threaded=True, request_handler=handler)
        except OSError as exc:
            raise TidecastError(f"dashboard: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def serve(self) -> None:
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="tidecast-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


__all__ = [
    "DashboardServer",
    "Snapshot",
    "accuracy_figure",
    "admin_token",
    "check_state",
    "check_token",
    "create_app",
    "drift_figure",
    "drift_kpi",
    "forecast_figure",
    "load_snapshot",
]
