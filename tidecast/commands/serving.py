"""``tidecast serve | predict``: the REST server, and batch prediction by model name and version."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tidecast.commands._common import STATE, SpecOpt, load
from tidecast.errors import ServingError

SPEC_ENV = "TIDECAST_SERVE_SPEC"
MODEL_ENV = "TIDECAST_SERVE_MODEL"


def register(app: typer.Typer, console: Console) -> None:
    """Add the serving commands to ``app``."""

    @app.command()
    def serve(
        spec: SpecOpt = None,
        model: Annotated[
            str | None,
            typer.Option("--model", "-m", help="Alias (champion) or version number to serve (default: serving.model)."),
        ] = None,
        host: Annotated[
            str | None, typer.Option("--host", help="Address to listen on (default: serving.host).")
        ] = None,
        port: Annotated[int | None, typer.Option("--port", "-p", help="Port (default: serving.port).")] = None,
        workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")] = 1,
        access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = False,
    ) -> None:
        """Serve the registered model over REST, reloading it when the registry moves the alias (until Ctrl-C).

        POST /forecast and /invocations; GET /health, /ready, /metadata, /metrics; POST /admin/reload.

        Example: [bold]tidecast serve --model champion --port 8000[/bold]
        """
        # one forecast is small: parallelise across requests (--workers), not inside one with OpenMP
        # threads that spin between requests and take the CPU the next request needs
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # lazy: uvicorn and the serving modules (MLflow, FastAPI) stay out of `tidecast --help`
        import uvicorn

        from tidecast.serving.app import create_app
        from tidecast.serving.loader import parse_model_ref, registry_client, resolve_version

        loaded = load(spec)
        settings = loaded.serving
        ref = parse_model_ref(model if model is not None else settings.model, loaded.model_name)
        version = resolve_version(registry_client(loaded), ref)  # an unknown model fails here, in one line
        bind_host = host or settings.host
        bind_port = port if port is not None else settings.port
        token = "on" if os.environ.get(settings.token_env) else f"off (set {settings.token_env})"
        console.print(
            f"serving [bold]{ref.uri}[/bold] (now v{version.version}) on http://{bind_host}:{bind_port} "
            f"with {workers} worker{'s' if workers > 1 else ''}; docs at /docs; admin endpoints {token}"
        )
        options = {
            "host": bind_host,
            "port": bind_port,
            "access_log": access_log,
            "log_level": "debug" if STATE["debug"] else "info",
            "timeout_graceful_shutdown": 15,
        }
        if workers == 1:
            uvicorn.run(create_app(loaded, model=model), **options)
            return
        os.environ[SPEC_ENV] = str(loaded.source_file or (loaded.root / "tidecast.yaml"))
        if model is not None:
            os.environ[MODEL_ENV] = model
        if STATE["env"]:
            os.environ["TIDECAST_ENV"] = STATE["env"]
        uvicorn.run("tidecast.commands.serving:app_from_env", factory=True, workers=workers, **options)

    @app.command()
    def predict(
        model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
        spec: SpecOpt = None,
        version: Annotated[str | None, typer.Option("--version", "-v", help="Model version.")] = None,
        alias: Annotated[str | None, typer.Option("--alias", "-a", help="Model alias (default: champion).")] = None,
        input_file: Annotated[
            Path | None, typer.Option("--input", "-i", help="Data file (default: the spec's data source).")
        ] = None,
        future: Annotated[
            Path | None,
            typer.Option(
                "--future",
                help="Future values of the known-in-future exogenous columns for the horizon, e.g. a weather "
                "forecast (default: the input's rows after its last reading, else serving.future of the spec).",
            ),
        ] = None,
        history: Annotated[
            str | None,
            typer.Option("--history", help="History per series, e.g. 24h (default: the model's input window)."),
        ] = None,
        horizon: Annotated[
            str | None, typer.Option("--horizon", help="Forecast length, e.g. 24h (default: the model's horizon).")
        ] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the forecasts (.csv or .parquet).")
        ] = None,
        plot: Annotated[Path | None, typer.Option("--plot", help="Draw history + forecast (.png or .html).")] = None,
        no_log: Annotated[bool, typer.Option("--no-log", help="Do not log to the prediction store.")] = False,
    ) -> None:
        """Forecast every series of a data file with a registered model, by name and version or alias.

        Example: [bold]tidecast predict --model power-demo --future data/weather_forecast.csv --output forecast.csv --plot forecast.png[/bold]
        """
        from tidecast.reporting.bands import PLOT_FORMATS, forecast_file  # lazy: pandas
        from tidecast.serving.batch import predict_batch, route_of  # lazy: pandas, SQLAlchemy, MLflow

        if plot is not None and plot.suffix.lower() not in PLOT_FORMATS:
            raise ServingError(f"--plot {plot}: unknown format (use {', '.join(PLOT_FORMATS)})")
        loaded = load(spec)
        result = predict_batch(
            loaded,
            model_name=model,
            version=version,
            alias=alias,
            input_path=input_file,
            future_path=future,
            history=history,
            horizon=horizon,
            output=output,
            log_predictions=not no_log,
        )
        m = result.model
        if plot is not None:
            title = f"{m.name} v{m.version}"
            result.plot = forecast_file(result.history, result.forecast, plot, title=title, quantiles=m.quantiles)
        label = f"{m.name} v{m.version}" + (f" (@{m.alias})" if m.alias else "")
        table = Table(
            title=f"{label}: {result.horizon} steps ahead, from {escape(result.source)}", title_justify="left"
        )
        for column in ("series", "history", "forecast from", "to (UTC)", "mean yhat", "mean width"):
            table.add_column(column, justify="right" if column in ("history", "mean yhat", "mean width") else "left")
        summary = result.summary()
        for _, row in summary.head(20).iterrows():
            width = "" if row["mean_width"] != row["mean_width"] else f"{row['mean_width']:.3g}"
            table.add_row(
                escape(str(row["series"])),
                str(row["history"]),
                f"{row['from']:%Y-%m-%d %H:%M}",
                f"{row['to']:%Y-%m-%d %H:%M}",
                f"{row['mean_yhat']:.4g}",
                width,
            )
        console.print(table)
        if result.future_source:
            console.print(f"[dim]future exogenous values from {escape(result.future_source)}[/dim]", soft_wrap=True)
        if len(summary) > 20:
            console.print(f"[dim]… and {len(summary) - 20} more series[/dim]")
        if result.skipped:
            console.print(f"[yellow]skipped {len(result.skipped)} series shorter than the input window[/yellow]")
        if "model" in result.forecast.columns:  # a per-series model: who forecast what
            ids = [str(u) for u in result.forecast["unique_id"].unique()]
            spread = result.forecast.drop_duplicates("unique_id")["model"].value_counts()
            console.print("per-series model: " + ", ".join(f"{name} {n}" for name, n in spread.items()) + " series")
            unknown = [u for u in ids if route_of(m.card, u)[1]]  # type: ignore[index]
            if unknown:
                shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
                fallback = (m.card.get("per_series") or {}).get("fallback")
                console.print(
                    f"[yellow]{len(unknown)} series without a per-series winner, forecast by the fallback "
                    f"{fallback}: {escape(shown)}[/yellow]"
                )
        if result.output:
            console.print(f"[green]✓[/green] wrote {result.output} ({len(result.forecast)} rows)")
        if result.plot:
            console.print(f"[green]✓[/green] drew {result.plot}")
        if result.batch_id:
            console.print(f"[dim]logged to the prediction store as batch {result.batch_id}[/dim]")


def app_from_env():
    """The app of a ``tidecast serve --workers N`` worker process (spec and model from the environment)."""
    # lazy: this module is imported by every `tidecast` command; FastAPI is for the server's workers
    from tidecast.serving.app import create_app
    from tidecast.spec import load_spec

    return create_app(load_spec(os.environ[SPEC_ENV]), model=os.environ.get(MODEL_ENV) or None)
