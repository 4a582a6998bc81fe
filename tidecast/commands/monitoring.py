"""``tidecast monitor | schedule``: drift checks, the prediction pipeline, and running pipelines on a schedule."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tidecast.commands._common import STATE, ProgressCallbacks, SpecOpt, load, num
from tidecast.errors import SpecError


def _colour(status: str) -> str:
    return {
        "ok": "green", "retrained": "cyan", "drift": "yellow", "retrain_failed": "red", "stale": "red", "unknown": "yellow"
    }.get(status, "white")


EXIT_HELP = (
    "Exit non-zero unless every check ran and found nothing (for alerting from cron): "
    "3 drift, 4 stale (the feed stopped), 5 unknown (a check could not run); 0 ok; 2 is bad input."
)


def render_monitor(console: Console, result: Any) -> None:
    """The verdict, the drift tests and the model-drift windows of a monitor run."""
    data = result.data_drift
    table = Table(
        title=f"Data drift, window {data['window_start']} → {data['window_end']} (UTC)", title_justify="left"
    )
    for column in ("column", "points", "PSI", "KS p", "Wasserstein σ", "profile shift", "drift"):
        table.add_column(column, justify="left" if column in ("column", "drift") else "right")
    for col in data["columns"]:
        tests = col.get("tests") or {}

        def cell(name: str, tests: dict[str, Any] = tests) -> str:
            t = tests.get(name)
            if not t:
                return ""
            text = f"{num(t['value'], 3)} / {num(t['threshold'], 3)}"
            return f"[red]{text}[/red]" if t["fired"] else text

        label = col["column"] if col["series"] in ("*", "series", "") else f"{col['column']}[{col['series']}]"
        state = col.get("state") or ("drift" if col["drift"] else "ok")
        if state == "drift":
            mark = "[red]drift[/red]"
        elif state == "unknown":
            mark = "[yellow]unknown[/yellow]: " + escape(col.get("reason") or col.get("note") or "not tested")
        else:
            mark = "[green]ok[/green]"
        table.add_row(
            label, f"{col['n']}/{col['expected']}", cell("psi"), cell("ks"), cell("wasserstein"), cell("profile"), mark
        )
    console.print(table)
    model = result.model_drift
    windows = [w for w in model["windows"] if w["forecasts"]]
    if windows:
        mt = Table(
            title=f"Model drift of v{model['model_version']} (baseline MAE {num(model['baseline_mae'], 4)})",
            title_justify="left",
        )
        for column in ("window end", "forecasts", "actuals", "MAE", "ratio", "MASE", "coverage", ""):
            mt.add_column(column, justify="left" if column in ("window end", "") else "right")
        for w in windows:
            flag = "[red]degraded[/red]" if w.get("degraded") else ("" if w["complete"] else f"[dim]{escape(w.get('note') or '')}[/dim]")
            mt.add_row(
                str(w["end"])[:16], str(w["forecasts"]), str(w["actuals"]), num(w["mae"], 4), num(w["ratio"], 3),
                num(w["mase"], 3), num(w["coverage"], 3), flag,
            )
        console.print(mt)
    for note in result.notes:
        if not note.endswith((": not tested", ": not checked")):  # those are in the table and the checks below
            console.print(f"[dim]note: {escape(note)}[/dim]")
    for check in result.checks:
        if check["kind"] in ("feed", "model") or (check["kind"] == "data" and check["subject"].startswith("series ")):
            colour = _colour(check["state"])
            console.print(
                f"{check['kind']} check ({escape(check['subject'])}): [{colour}]{check['state']}[/{colour}]"
                + (f" — {escape(check['reason'])}" if check.get("reason") else ""),
                soft_wrap=True,
            )
    forecast = result.forecast or {}
    if forecast:
        console.print(
            f"[dim]forecast {forecast.get('start')} → {forecast.get('end')} by v{forecast.get('version')} "
            f"logged to the prediction store ({forecast.get('rows')} rows); MLflow run {result.run_id}[/dim]"
        )
    colour = _colour(result.state)
    console.print(
        f"[bold]verdict:[/bold] [{colour}]{result.state}[/{colour}] — {escape(result.verdict)}", soft_wrap=True
    )


def register(app: typer.Typer, console: Console) -> None:
    """Add the monitoring commands to ``app``."""

    @app.command()
    def monitor(
        spec: SpecOpt = None,
        as_of: Annotated[
            str | None,
            typer.Option(
                "--as-of",
                help="Simulate time: only data before this instant is seen (in data.timezone unless it has an offset).",
            ),
        ] = None,
        input_file: Annotated[
            Path | None, typer.Option("--input", "-i", help="Read this data file instead of data.source.")
        ] = None,
        no_retrain: Annotated[bool, typer.Option("--no-retrain", help="Check and predict, never retrain.")] = False,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
        fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help=EXIT_HELP)] = False,
    ) -> None:
        """Run the prediction pipeline: new data → drift checks → retrain on drift → forecast and log it.

        Every check ends ok, drift, stale (the newest actual is older than the check window before --as-of,
        or now) or unknown (it could not run: too few points, a missing column, a new series...); the
        verdict is the worst, drift > stale > unknown > ok. With --fail-on-drift the exit code is
        0 ok, 3 drift, 4 stale, 5 unknown (2: bad input).

        Example: [bold]tidecast monitor --as-of "2024-03-01 00:00" --fail-on-drift[/bold]
        """
        from tidecast.monitoring.run import monitor as run_monitor  # lazy: pandas, MLflow, the models

        if fmt not in ("table", "json"):
            raise SpecError(f"monitor: unknown format {fmt!r} (use table or json)")
        loaded = load(spec)
        with ProgressCallbacks() as callbacks:
            result = run_monitor(loaded, as_of=as_of, input=input_file, retrain_allowed=not no_retrain, callbacks=callbacks)
        if fmt == "json":
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
        else:
            render_monitor(console, result)
        if fail_on_drift and result.state != "ok":
            from tidecast.monitoring.verdicts import exit_code  # lazy: pandas

            raise typer.Exit(exit_code(result.state))

    @app.command()
    def schedule(
        spec: SpecOpt = None,
        print_cron: Annotated[
            bool, typer.Option("--print-cron", help="Print the equivalent crontab lines and systemd units, then exit.")
        ] = False,
        once: Annotated[bool, typer.Option("--once", help="Run every scheduled job once now, then exit.")] = False,
    ) -> None:
        """Run the training and/or monitoring pipelines on the cron expressions of the spec's schedule section.

        Runs until SIGTERM or Ctrl-C (the running job is finished first); one job at a time, under the
        project lock; every job is appended to .tidecast/schedule-history.jsonl.

        Example: [bold]tidecast schedule --print-cron[/bold]
        """
        # lazy: the scheduler and the spec (APScheduler, pandas, pydantic) stay out of `tidecast --help`
        from tidecast.monitoring.scheduler import Scheduler, cron_lines, default_jobs, systemd_units
        from tidecast.spec import find_spec

        loaded = load(spec)
        spec_file = find_spec(spec).resolve()
        if print_cron:
            sys.stdout.write("# --- crontab (crontab -e) ---\n" + cron_lines(loaded))
            for name, text in systemd_units(loaded).items():
                sys.stdout.write(f"\n# --- /etc/systemd/system/{name} ---\n{text}")
            units = [n for n in systemd_units(loaded) if n.endswith(".timer")]
            if units:
                sys.stdout.write(f"\n# then: systemctl daemon-reload && systemctl enable --now {' '.join(units)}\n")
            return

        def show(entry: dict[str, Any]) -> None:
            status = entry.get("status")
            colour = {"ok": "green", "failed": "red", "missed": "yellow", "skipped": "yellow"}.get(status, "white")
            text = entry.get("verdict") or entry.get("error") or ""
            console.print(
                f"{entry.get('finished') or entry.get('scheduled') or ''} [bold]{entry.get('job')}[/bold] "
                f"[{colour}]{status}[/{colour}] {escape(str(text))}",
                soft_wrap=True,
            )

        jobs = default_jobs(loaded, spec_file, STATE["env"])
        scheduler = Scheduler(loaded, jobs, on_event=show)
        if once:
            entries = scheduler.run_once()
            if any(e.get("status") == "failed" for e in entries):
                raise typer.Exit(1)
            return
        for name, when in scheduler.next_runs().items():
            console.print(f"scheduled [bold]{name}[/bold] '{jobs[name][0]}' ({loaded.schedule.timezone}), next {when}")
        console.print(f"[dim]history: {scheduler.history_path}; SIGTERM or Ctrl-C stops after the running job[/dim]")
        sys.stdout.flush()
        scheduler.run_forever()
        console.print("scheduler stopped")
