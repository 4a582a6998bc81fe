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
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from tidecast.errors import TidecastError
from tidecast.extras import require
from tidecast.reporting.data import (
    client_for,
    store,
)
from tidecast.reporting.html import fmt_number
from tidecast.reporting.snapshot import (
    Snapshot,
    accuracy_figure,
    check_state,
    drift_figure,
    drift_kpi,
    empty_figure,
    forecast_figure,
    load_snapshot,
)
from tidecast.tracking.registry import promote

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
            empty = empty_figure("the tracking store is unreachable")
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
