"""``tidecast report | dashboard``: the weekly client report and the live dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tidecast.commands._common import SpecOpt, load
from tidecast.errors import TidecastError


def register(app: typer.Typer, console: Console) -> None:
    """Add the reporting commands to ``app``."""

    @app.command()
    def report(
        spec: SpecOpt = None,
        model: Annotated[
            str | None, typer.Option("--model", "-m", help="Registered model name (default: the spec's).")
        ] = None,
        alias: Annotated[
            str, typer.Option("--alias", "-a", help="Alias (or version number) of the model.")
        ] = "champion",
        period: Annotated[
            str, typer.Option("--period", "-p", help="How far back the report looks: 7d, 24h, 2w.")
        ] = "7d",
        fmt: Annotated[str, typer.Option("--format", "-f", help="html or pdf.")] = "html",
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="File to write (default: .tidecast/reports/client-...).")
        ] = None,
        until: Annotated[
            str | None, typer.Option("--until", help="End of the period, UTC (default: the last actual in the store).")
        ] = None,
    ) -> None:
        """Write the client report: last period's forecasts vs actuals, accuracy vs the backtest, largest misses,
        drift, the model in use and the next forecast.

        Example: [bold]tidecast report --model power-demo --period 7d --format pdf[/bold]
        """
        from tidecast.reporting.client import FORMATS, default_path, gather, write  # lazy: pandas, plotly

        if fmt not in FORMATS:
            raise TidecastError(f"--format: unknown format {fmt!r} (use html or pdf)")
        loaded = load(spec)
        data = gather(loaded, model=model, alias=alias, period=period, until=until)
        path = write(data, output or default_path(loaded, data, fmt), fmt=fmt)
        console.print(f"[green]✓[/green] {data.model.label}: wrote {path}")
        if not data.has_predictions:
            console.print(
                f"[yellow]note:[/yellow] no forecasts of '{data.model.name}' in the prediction store yet; the report says so"
            )
        elif not data.has_actuals:
            console.print("[yellow]note:[/yellow] no actuals in the prediction store yet; the report says so")

    @app.command()
    def dashboard(
        spec: SpecOpt = None,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", "-p", help="Port.")] = 8050,
        refresh: Annotated[float, typer.Option("--refresh", "-r", help="Seconds between page updates.")] = 30.0,
        alias: Annotated[
            str | None, typer.Option("--alias", "-a", help="Alias shown as production (default: serving.model).")
        ] = None,
    ) -> None:
        """Serve the live dashboard of the production model (runs until Ctrl-C).

        Example: [bold]tidecast dashboard --port 8050 --refresh 10[/bold]
        """
        from tidecast.reporting.dashboard import DashboardServer, admin_token, create_app  # lazy: dash, plotly

        loaded = load(spec)
        server = DashboardServer(create_app(loaded, refresh=refresh, alias=alias), host=host, port=port)
        admin = (
            "admin actions need the token" if admin_token(loaded) else f"read-only ({loaded.serving.token_env} unset)"
        )
        console.print(
            f"dashboard for [bold]{loaded.project}[/bold] on {server.url} (refresh every {refresh:g} s, {admin}; Ctrl-C to stop)"
        )
        try:
            server.serve()
        except KeyboardInterrupt:
            return
