"""``tidecast ui | compare | promote | rollback | reproduce``: the tracking store and the model registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tidecast.commands._common import SpecOpt, load, num
from tidecast.errors import TrackingError
from tidecast.render import format_metric, is_percent

if TYPE_CHECKING:
    from tidecast.tracking.reproduce import ReproduceReport


class TableFormat(StrEnum):
    """``--format`` of ``compare``: a bad value is a usage error (click lists the choices)."""

    table = "table"
    csv = "csv"
    json = "json"


class ReportFormat(StrEnum):
    """``--format`` of ``reproduce``."""

    table = "table"
    json = "json"


def register(app: typer.Typer, console: Console) -> None:
    """Add the tracking/registry commands to ``app``."""

    @app.command()
    def ui(
        spec: SpecOpt = None,
        port: Annotated[int, typer.Option("--port", "-p", help="Port of the MLflow UI.")] = 5000,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    ) -> None:
        """Open the MLflow UI on the project's tracking store (runs until Ctrl-C).

        Example: [bold]tidecast ui --port 5001[/bold]
        """
        from tidecast.tracking.store import artifact_location, connect, registry_uri, tracking_uri  # lazy: MLflow

        loaded = load(spec)
        uri = tracking_uri(loaded)
        if uri.startswith(("http://", "https://")):
            console.print(f"the tracking store is a server already: open [bold]{uri}[/bold]")
            return
        connect(loaded)  # creates the store if needed, and fails fast if it is unusable
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--registry-store-uri",
            registry_uri(loaded),
            "--host",
            host,
            "--port",
            str(port),
        ]
        root = artifact_location(loaded)
        if root:
            command += ["--default-artifact-root", root]
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        console.print(f"MLflow UI for [bold]{loaded.project}[/bold] on http://{host}:{port} (Ctrl-C to stop)")
        try:
            code = subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return
        except OSError as exc:
            raise TrackingError(f"cannot start the MLflow UI: {exc}") from None
        if code not in (0, -2, 130):
            raise TrackingError(f"the MLflow UI exited with status {code}")

    @app.command()
    def compare(
        spec: SpecOpt = None,
        experiment: Annotated[
            str | None, typer.Option("--experiment", "-e", help="Experiment (default: the project's).")
        ] = None,
        last: Annotated[int, typer.Option("--last", "-n", help="How many trainings, newest first.")] = 10,
        metric: Annotated[
            str | None, typer.Option("--metric", "-m", help="Metric shown (default: the selection metric).")
        ] = None,
        fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="table, csv or json.")] = TableFormat.table,
    ) -> None:
        """Compare the last trainings and their candidates side by side.

        Tables show ratio metrics (mape, smape, wape) as percentages; csv and json keep the stored
        fractions. held-out: the last horizon, scored as the registry's gate does; backtest and the
        candidates' columns: the mean over the backtest folds.

        Example: [bold]tidecast compare --last 5 --metric mae --format csv[/bold]
        """
        from tidecast.tracking.compare import compare_runs, to_format  # lazy: pandas, MLflow

        frame = compare_runs(load(spec), experiment=experiment, last=last, metric=metric)
        if fmt is not TableFormat.table:
            sys.stdout.write(to_format(frame, fmt.value) + ("" if fmt is TableFormat.csv else "\n"))
            return
        if frame.empty:
            console.print("no trainings recorded yet (run 'tidecast run')")
            return
        shown = sorted({str(m) for m in frame["metric"]})
        unit = ", in %" if all(is_percent(m) for m in shown) else ""
        table = Table(
            title=f"Last {len(frame)} training(s), {' / '.join(m.upper() for m in shown)}{unit} "
            "(held-out: the last horizon; backtest and candidates: mean over the folds)",
            title_justify="left",
        )

        def fig(row: object, value: object) -> str:
            chosen = str(row["metric"])  # type: ignore[index]
            return format_metric(chosen, value) if is_percent(chosen) else num(value)

        fixed = ["run", "started", "status", "winner", "held-out", "backtest", "registry"]
        candidates = list(frame.columns[frame.columns.get_loc("git_commit") + 1 :])
        for column in [*fixed, *candidates]:
            table.add_column(column, justify="right" if column in ("held-out", "backtest", *candidates) else "left")
        for _, row in frame.iterrows():
            registry = f"v{row['registry_version']} {row['registry_alias']}" if row["registry_version"] else ""
            cells = [
                str(row["run_id"])[:8],
                str(row["started"])[:19],
                str(row["status"]),
                str(row["winner"] or ""),
                fig(row, row["holdout"]),
                fig(row, row["backtest"]),
                registry,
            ]
            cells += [fig(row, row[c]) for c in candidates]
            table.add_row(*cells)
        console.print(table)

    @app.command()
    def promote(
        name: Annotated[str, typer.Argument(help="Registered model name.")],
        version: Annotated[str, typer.Argument(help="Model version to promote.")],
        spec: SpecOpt = None,
        alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to move.")] = "champion",
        reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in MLflow).")] = None,
    ) -> None:
        """Point an alias (default: champion) at a model version by hand, bypassing the gate.

        Example: [bold]tidecast promote power 3 --reason "validated on last week"[/bold]
        """
        from tidecast.tracking.registry import promote as do_promote  # lazy: pandas, MLflow

        action = do_promote(load(spec), version, alias=alias, reason=reason, name=name)
        before = f" (was v{action.from_version})" if action.from_version else ""
        console.print(f"[green]✓[/green] {name}@{alias} → v{action.to_version}{before}")

    @app.command()
    def rollback(
        name: Annotated[str, typer.Argument(help="Registered model name.")],
        spec: SpecOpt = None,
        reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in MLflow).")] = None,
    ) -> None:
        """Move champion back to the previous champion version.

        Example: [bold]tidecast rollback power --reason "bad forecasts since v4"[/bold]
        """
        from tidecast.tracking.registry import rollback as do_rollback  # lazy: pandas, MLflow

        action = do_rollback(load(spec), reason=reason, name=name)
        console.print(
            f"[green]✓[/green] {name}@champion → v{action.to_version} (rolled back from v{action.from_version})"
        )

    @app.command()
    def reproduce(
        run_id: Annotated[str, typer.Argument(help="The training's parent run id.")],
        spec: SpecOpt = None,
        fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="table or json.")] = ReportFormat.table,
    ) -> None:
        """Re-run a logged training with its recorded spec and check the metrics match (exit 1 if not).

        Example: [bold]tidecast reproduce 3c9f0e2b7a6d4e51[/bold]
        """
        from tidecast.tracking import reproduce as reproduction  # lazy: pandas, MLflow, the models

        report = reproduction.reproduce(load(spec), run_id)
        if fmt is ReportFormat.json:
            sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        else:
            _print_reproduction(console, report, rtol=reproduction.RTOL, atol=reproduction.ATOL)
        if not report.matches:
            raise typer.Exit(1)


def _print_reproduction(console: Console, report: ReproduceReport, *, rtol: float, atol: float) -> None:
    """The figures compared (only those that differ, when some do), the verdict, and when the run
    does not reproduce, its inputs logged vs now (the differing ones marked)."""
    frame = report.comparison
    failed = frame[~frame["match"].astype(bool)]
    shown = failed if len(failed) else frame
    title = f"Reproducing run {report.run_id[:8]}" + (f": {len(failed)} of {len(frame)} figures differ" if len(failed) else "")
    table = Table(title=title, title_justify="left")
    for column in ("candidate", "scope", "metric", "logged", "reproduced", "difference", "allowed", ""):
        table.add_column(column, justify="right" if column in ("logged", "reproduced", "difference", "allowed") else "left")
    for _, row in shown.iterrows():
        table.add_row(
            str(row["candidate"]),
            str(row["scope"]),
            str(row["metric"]),
            num(row["logged"], 10),
            num(row["reproduced"], 10),
            f"{row['abs_diff']:.1e}",
            f"{row['allowed']:.1e}",
            "[green]✓[/green]" if row["match"] else "[red]✗[/red]",
        )
    console.print(table)
    verdict = "[green]reproduced[/green]" if report.matches else "[red]NOT reproduced[/red]"
    console.print(
        f"{verdict}: winner {report.winner_logged} → {report.winner_now}, max relative difference "
        f"{report.max_rel_diff:.2e} (tolerance: relative {rtol:g} plus absolute {atol:g}, "
        f"× mean |y| for metrics in the target's unit)",
        highlight=False,
    )
    if report.matches:
        return
    inputs = Table(title="What the run was computed from, logged vs now", title_justify="left")
    for column in ("input", "logged", "now", ""):
        inputs.add_column(column)
    for row in report.inputs:
        mark = {True: "[green]same[/green]", False: "[red]differs[/red]", None: "[yellow]cannot tell[/yellow]"}
        inputs.add_row(row["input"], escape(str(row["logged"])), escape(str(row["now"])), mark[row["same"]])
    console.print(inputs)
    differ = [row["input"] for row in report.inputs if row["same"] is False]
    console.print(
        "inputs that differ: " + ", ".join(differ)
        if differ
        else "no logged input differs: the difference comes from the computation itself (a non-deterministic model?)",
        highlight=False,
    )
