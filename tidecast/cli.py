"""The ``tidecast`` command line: parses arguments, calls the library, renders with rich.

Library code raises :class:`tidecast.errors.TidecastError`; this module turns it into one red
line and exit code 2 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tidecast import __version__
from tidecast.errors import TidecastError
from tidecast.render import leaderboard_table, per_series_summary, winner_summary

app = typer.Typer(
    name="tidecast",
    help="From one tidecast.yaml to a backtested, tracked forecaster.\n\nExample: cd examples/power && tidecast run",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

_STATE: dict[str, Any] = {"debug": False, "env": None}

SpecOpt = Annotated[
    Path | None,
    typer.Option("--spec", "-s", help="The spec file or its folder (default: ./tidecast.yaml)."),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"tidecast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    env: Annotated[
        str | None, typer.Option("--env", help="Environment overrides from the spec's envs: (or TIDECAST_ENV).")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """tidecast: one YAML file from raw time series to a production forecaster."""
    _STATE["debug"] = debug
    _STATE["env"] = env
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        # MLflow logs a traceback of every SQLAlchemy error it re-raises (a full disk, a read-only store):
        # tidecast reports that error on one line, the traceback is for --debug
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        # urllib3 warns on each retry to a tracking server that went away; the error line says it once
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _load(spec_path: Path | None):
    from tidecast.spec import load_spec

    return load_spec(spec_path, env=_STATE["env"])


# ------------------------------------------------------------------------------------ commands
@app.command()
def run(
    spec: SpecOpt = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this step.")] = None,
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Re-execute this step even if cached (repeatable, or 'all').")
    ] = None,
) -> None:
    """Run the pipeline: only the steps whose inputs, spec or code changed are executed.

    Example: [bold]tidecast run --until clean[/bold]
    """
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import run as run_pipeline
    from tidecast.training import preflight

    loaded = _load(spec)
    pipeline = training_pipeline()
    started = time.perf_counter()
    # the pre-run check, once the plan is known (before any step runs): a no-op builds no candidate
    with _ProgressCallbacks(before_steps=lambda plans: preflight(loaded, plans)) as callbacks:
        result = run_pipeline(pipeline, loaded, until=until, force=tuple(force or ()), callbacks=callbacks)
    elapsed = time.perf_counter() - started
    ran, cached = len(result.executed), len(result.skipped)
    console.print(
        f"[green]✓[/green] {loaded.project}: {ran} step{'s' if ran != 1 else ''} ran, {cached} cached "
        f"in {elapsed:.1f} s"
    )
    _render_run_outputs(result, loaded)
    if result.executed:  # each step's share of the run (a no-op has none to show)
        from tidecast.render import step_times_table

        console.print(step_times_table(result.durations, [p.name for p in result.plans], elapsed=elapsed))


@app.command()
def status(spec: SpecOpt = None) -> None:
    """Show which steps are fresh or stale, and why.

    Example: [bold]tidecast status[/bold]
    """
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import status as pipeline_status
    from tidecast.pipeline.lock import LOCK_FILENAME, LockFile

    loaded = _load(spec)
    plans = pipeline_status(training_pipeline(), loaded)
    records = LockFile(Path(loaded.root) / LOCK_FILENAME).records
    table = Table(title=f"{loaded.project}: pipeline status", title_justify="left")
    table.add_column("step")
    table.add_column("status")
    table.add_column("why")
    table.add_column("last run", justify="right")
    table.add_column("peak MB", justify="right")
    table.add_column("key", style="dim")
    colours = {"fresh": "green", "stale": "yellow", "missing": "red"}
    for plan in plans:
        rec = records.get(plan.name)
        seconds = f"{rec.duration_s:.1f} s" if rec is not None and rec.duration_s is not None else ""
        peak = f"{rec.peak_rss_mb:,.0f}" if rec is not None and rec.peak_rss_mb is not None else ""
        table.add_row(
            plan.name, f"[{colours.get(plan.status, 'white')}]{plan.status}[/]", plan.reason, seconds, peak, plan.key[:12]
        )
    console.print(table)


@app.command()
def dag(spec: SpecOpt = None) -> None:
    """Draw the pipeline's steps and their dependencies, marked with their status.

    Example: [bold]tidecast dag[/bold]
    """
    from tidecast.flows import training_pipeline
    from tidecast.pipeline import status as pipeline_status
    from tidecast.pipeline.dag import render_tree

    pipeline = training_pipeline()
    statuses = None
    try:
        loaded = _load(spec)
    except TidecastError as exc:
        if spec is not None:
            raise
        err_console.print(f"[dim](no spec here: {escape(exc.message)}; drawing the bare graph)[/dim]")
    else:
        try:
            statuses = {p.name: p for p in pipeline_status(pipeline, loaded)}
        except TidecastError as exc:  # e.g. a tracking store that does not answer: say so, draw the bare graph
            err_console.print(f"[dim](step states unknown: {escape(exc.message)}; drawing the bare graph)[/dim]")
    console.print(render_tree(pipeline, statuses))


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of tidecast.yaml, for editor completion.

    Example: [bold]tidecast schema -o tidecast.schema.json[/bold]
    """
    from tidecast.spec import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


# ------------------------------------------------------------------------------------ rendering
class _ProgressCallbacks:
    """Rich progress bars fed by the pipeline runner's callbacks."""

    def __init__(self, before_steps: Any = None) -> None:
        self.before_steps = before_steps
        """Called with the run's plans before any step runs (its error stops the run)."""
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[step]:<10}[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
            disable=not err_console.is_terminal and os.environ.get("TIDECAST_PROGRESS") != "1",
        )
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None

    def __enter__(self) -> _ProgressCallbacks:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def on_plan(self, plans: list[Any]) -> None:
        if self.before_steps is not None:
            self.before_steps(plans)
        self._overall = self.progress.add_task("", total=len(plans), step="pipeline")

    def on_step_start(self, name: str, index: int, total: int) -> None:
        self._tasks[name] = self.progress.add_task("running", total=None, step=name)

    def on_step_progress(self, name: str, done: int, total: int | None, description: str = "") -> None:
        task = self._tasks.get(name)
        if task is not None:
            self.progress.update(task, completed=done, total=total, description=description)

    def on_step_end(self, name: str, state: str, seconds: float) -> None:
        if self.progress.disable:  # not a terminal (CI, a log file): one plain line per step
            err_console.print(f"  {name:<10} {'ran' if state == 'ran' else 'cached'} {seconds:7.1f} s", highlight=False)
        task = self._tasks.pop(name, None)
        label = "[green]done[/green]" if state == "ran" else "[dim]cached[/dim]"
        if task is None:
            task = self.progress.add_task(label, total=1, step=name)
        self.progress.update(task, total=1, completed=1, description=f"{label} {seconds:.1f} s")
        if self._overall is not None:
            self.progress.advance(self._overall)

    # the runner may log extra lines (the library never prints itself)
    def on_message(self, text: str) -> None:
        self.progress.console.print(text)


def _render_run_outputs(result: Any, spec: Any) -> None:
    """Print what the last steps produced: the leaderboard, the selection verdict and the registry
    state of the new version (read back from the registry now, not from the cached output)."""
    outputs = result.outputs
    if "backtest" in outputs:
        backtested = outputs["backtest"]
        per_series = backtested.get("per_series")
        console.print(
            leaderboard_table(backtested["leaderboard"], backtested["metric"], per_series=per_series, width=console.width)
        )
        if per_series:
            console.print(per_series_summary(per_series, backtested["metric"]))
    if "select" in outputs:
        board = outputs["backtest"]["leaderboard"] if "backtest" in outputs else None
        text = escape(winner_summary(outputs["select"], board))
        console.print("[bold]winner:[/bold]" + text.removeprefix("winner:"), highlight=False)
    if "track" in outputs:
        tracked = outputs["track"]
        registration = tracked.get("registration") or {}
        if registration:
            from tidecast.tracking.step import read_registration

            state = read_registration(spec, str(registration.get("model_name")), str(registration.get("version")))
            line = f"[bold]registry:[/bold] {escape(state.model_name)} v{state.version}"
            alias = next((a for a in ("champion", "challenger") if a in state.aliases), None)
            if not state.exists:
                line += " [red]is no longer in the registry[/red]"
            elif alias is not None:
                colour = "green" if alias == "champion" else "yellow"
                line += f" → [{colour}]{alias}[/{colour}]"
                line += f" ({escape(state.gate_reason)})" if alias == "challenger" and state.gate_reason else ""
            else:
                line += f" (no alias now; champion: {'v' + state.champion if state.champion else 'none'})"
            console.print(line)
        console.print(f"[dim]MLflow run {tracked.get('run_id')} (tidecast ui to browse)[/dim]")
    if "report" in outputs:
        made = outputs["report"]
        warnings = made.get("warnings") or []
        console.print(
            f"[bold]report:[/bold] {made.get('html')}"
            + (f" [yellow]({len(warnings)} chart(s) not drawn)[/yellow]" if warnings else "")
        )


def _register_command_groups() -> None:
    """Every module of :mod:`tidecast.commands` adds its commands through ``register(app, console)``."""
    import importlib
    import pkgutil

    import tidecast.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tidecast.commands.{info.name}")
        module.register(app, console)


_register_command_groups()


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    """Entry point: run the app, turning tidecast errors into one line and exit code 2, and usage
    errors (an unknown command or option, a missing argument, a bad option value) into click's usage
    message with a "did you mean", exit code 2. "internal error" (exit 1) is left for bugs."""
    try:
        code = app(prog_name="tidecast", standalone_mode=False)
    except TidecastError as exc:
        if _STATE["debug"]:
            err_console.print_exception()
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[yellow]aborted[/yellow]")
        sys.exit(1)
    except Exception as exc:  # a click usage error or a bug
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):  # click's (or typer's own copy)
            sys.exit(_show_usage_error(exc))
        if _STATE["debug"]:
            err_console.print_exception()
        err_console.print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    # outside standalone mode click returns the code of a `typer.Exit(n)` instead of exiting with it
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


def _show_usage_error(exc: Any) -> int:
    """Print a click usage error as click does (usage line, "Try ... --help", "Error: ..."), with a
    "did you mean" for a mistyped command or option; the exit code (2)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `tidecast`: the help is already printed
        return int(exc.exit_code)
    ctx = getattr(exc, "ctx", None)
    root = ctx.find_root().command if ctx is not None else None
    commands: dict[str, Any] = dict(getattr(root, "commands", None) or {})
    message = str(getattr(exc, "message", "") or "")
    if hasattr(exc, "possibilities") and hasattr(exc, "option_name"):  # NoSuchOption
        option = str(exc.option_name)
        if exc.possibilities:
            message += " (did you mean " + " or ".join(f"'{p}'" for p in sorted(exc.possibilities)) + "?)"
        else:
            message += _option_elsewhere(option, root, commands)
        exc.possibilities = None
    elif message.startswith("No such command") and "Did you mean" not in message and commands:
        message += f" Commands: {', '.join(commands)}."
    exc.message = message
    exc.show()
    return int(exc.exit_code)


def _option_elsewhere(option: str, root: Any, commands: dict[str, Any]) -> str:
    """Where ``option`` does exist when it is not an option of the command it was given to."""

    def has(command: Any) -> bool:
        return any(option in (*p.opts, *p.secondary_opts) for p in getattr(command, "params", ()))

    if root is not None and has(root):
        return f" ({option} goes before the command: tidecast {option} COMMAND ...)"
    owners = [name for name, command in commands.items() if has(command)]
    if owners:
        return f" ({option} is an option of: {', '.join('tidecast ' + name for name in owners)})"
    return ""


if __name__ == "__main__":
    main()
