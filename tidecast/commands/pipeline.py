"""``tidecast run | status | dag | schema``: the training pipeline, its state and the spec's schema."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tidecast.commands._common import ProgressCallbacks, SpecOpt, err_console, load
from tidecast.errors import TidecastError
from tidecast.pipeline import Pipeline
from tidecast.pipeline import run as run_pipeline
from tidecast.pipeline import status as pipeline_status
from tidecast.pipeline.lock import LOCK_FILENAME, LockFile
from tidecast.render import leaderboard_table, per_series_summary, step_times_table, winner_summary


def register(app: typer.Typer, console: Console) -> None:
    """Add the pipeline commands to ``app``."""

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
        # lazy: the training flow pulls pandas and pydantic, which `tidecast --help` does without
        from tidecast.flows import training_pipeline
        from tidecast.training import preflight

        loaded = load(spec)
        pipeline = training_pipeline()
        started = time.perf_counter()
        # the pre-run check, once the plan is known (before any step runs): a no-op builds no candidate
        with ProgressCallbacks(before_steps=lambda plans: preflight(loaded, plans)) as callbacks:
            result = run_pipeline(pipeline, loaded, until=until, force=tuple(force or ()), callbacks=callbacks)
        elapsed = time.perf_counter() - started
        ran, cached = len(result.executed), len(result.skipped)
        console.print(
            f"[green]✓[/green] {loaded.project}: {ran} step{'s' if ran != 1 else ''} ran, {cached} cached "
            f"in {elapsed:.1f} s"
        )
        render_run_outputs(console, result, loaded)
        if result.executed:  # each step's share of the run (a no-op has none to show)
            console.print(
                step_times_table(
                    result.durations, [p.name for p in result.plans], elapsed=elapsed,
                    side_by_side=result.side_by_side, busy=result.busy_s,
                )
            )

    @app.command()
    def status(spec: SpecOpt = None) -> None:
        """Show which steps are fresh or stale, and why.

        Example: [bold]tidecast status[/bold]
        """
        from tidecast.flows import training_pipeline  # lazy: pandas and pydantic stay out of `tidecast --help`

        loaded = load(spec)
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
        from tidecast.flows import training_pipeline  # lazy: pandas and pydantic stay out of `tidecast --help`

        pipeline = training_pipeline()
        statuses = None
        try:
            loaded = load(spec)
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
        from tidecast.spec import json_schema  # lazy: pydantic stays out of `tidecast --help`

        text = json.dumps(json_schema(), indent=2)
        if output:
            output.write_text(text + "\n", encoding="utf-8")
            console.print(f"wrote {output}")
        else:
            sys.stdout.write(text + "\n")


def render_run_outputs(console: Console, result: Any, spec: Any) -> None:
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
            from tidecast.tracking.step import read_registration  # lazy: it pulls MLflow

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


_MARKS = {
    "fresh": ("✓", "green"),
    "stale": ("↻", "yellow"),
    "missing": ("○", "red"),
}


def _status_of(statuses: Any, name: str) -> tuple[str | None, str]:
    if statuses is None:
        return None, ""
    item = statuses.get(name) if isinstance(statuses, Mapping) else None
    if item is None:
        return None, ""
    if isinstance(item, str):
        return item, ""
    return getattr(item, "status", None), getattr(item, "reason", "") or ""


def render_tree(pipeline: Pipeline, statuses: Any = None, *, title: str = "pipeline") -> Any:
    """The DAG as a :class:`rich.tree.Tree` (the CLI prints it; the library never prints).

    Each step hangs under its input that comes last in topological order, so every step appears
    once; its other inputs are listed after a ``←``. ``statuses`` (a list of
    :class:`~tidecast.pipeline.context.StepPlan`, or a mapping name -> StepPlan or status string)
    adds a mark per step: ✓ fresh, ↻ stale, ○ missing, and the reason.
    """
    from rich.text import Text
    from rich.tree import Tree

    if statuses is not None and not isinstance(statuses, Mapping):
        statuses = {getattr(p, "name", None): p for p in statuses}
    position = {name: i for i, name in enumerate(pipeline.order())}

    def label(name: str, primary: str | None) -> Text:
        status, reason = _status_of(statuses, name)
        text = Text()
        if status is not None:
            mark, colour = _MARKS.get(status, ("?", "magenta"))
            text.append(f"{mark} ", style=colour)
            text.append(name, style=f"bold {colour}" if status != "fresh" else "bold")
        else:
            text.append(name, style="bold")
        others = [p for p in pipeline.inputs(name) if p != primary]
        if others:
            text.append(f"  ← {', '.join(others)}", style="dim")
        if status is not None:
            text.append(f"  {status}", style=_MARKS.get(status, ("", "magenta"))[1])
            if reason:
                text.append(f": {reason}", style="dim")
        return text

    children: dict[str | None, list[str]] = {}
    primary_of: dict[str, str | None] = {}
    for name in pipeline.order():
        inputs = pipeline.inputs(name)
        primary = max(inputs, key=position.__getitem__) if inputs else None
        primary_of[name] = primary
        children.setdefault(primary, []).append(name)

    tree = Tree(Text(title, style="bold"), guide_style="dim")

    def grow(node: Tree, parent: str | None) -> None:
        for child in children.get(parent, []):
            grow(node.add(label(child, primary_of[child])), child)

    grow(tree, None)
    return tree
