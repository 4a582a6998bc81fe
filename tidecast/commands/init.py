"""``tidecast init``: scaffold a project folder that runs at once, from a template or from the user's data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tidecast.errors import TidecastError

if TYPE_CHECKING:
    from tidecast.data.profile import Profile
    from tidecast.templates.from_data import Plan


def _show(console: Console, profile: Profile, chosen: Plan, label: str) -> None:
    table = Table(title=f"what {label} holds", show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    time_note = " (day-first dates)" if profile.dayfirst else ""
    table.add_row("time", f"{profile.time_column}{time_note}: {profile.start} to {profile.end} (UTC)")
    table.add_row("target", profile.target_column)
    table.add_row(
        "series", f"{profile.series_column}: {profile.n_series} series" if profile.series_column else "one series"
    )
    given = " (given)" if profile.frequency_given else ""
    table.add_row("frequency", f"{profile.frequency}{given}")
    extent = f"{profile.length} steps" + (f" (median; shortest {profile.shortest})" if profile.n_series > 1 else "")
    table.add_row("length", f"{extent}, {profile.rows} rows")
    table.add_row(
        "gaps",
        f"{profile.missing_steps} missing steps, longest {profile.longest_gap}"
        + (f", {profile.off_grid} rows off the grid" if profile.off_grid else ""),
    )
    table.add_row("duplicates", str(profile.duplicates))
    table.add_row("exogenous", ", ".join(profile.exogenous) or "none")
    tried = ", ".join(f"{p} (acf {v:.2f})" for p, v in profile.acf.items())
    table.add_row(
        "seasons", (", ".join(map(str, profile.seasons)) or "none clear") + (f"; tried {tried}" if tried else "")
    )
    console.print(table)
    names = ", ".join(c["name"] for c in chosen.candidates)
    console.print(
        f"plan: horizon {chosen.horizon} steps, input window {chosen.input_window}, {chosen.folds} "
        f"fold{'s' if chosen.folds != 1 else ''}; candidates: {names}"
    )
    for reason in chosen.skipped:
        console.print(f"  [dim]left out: {reason}[/dim]")


def init_from_data(
    console: Console,
    name: Path,
    data: str,
    *,
    time: str | None,
    target: str | None,
    series: str | None,
    horizon: str | None,
    frequency: str | None,
    force: bool,
) -> None:
    """Profile ``data``, print what it holds and the plan, then write the project (see
    :mod:`tidecast.templates.from_source`)."""
    from tidecast.templates import from_source  # lazy: pandas and pydantic stay out of `tidecast --help`

    prepared = from_source.prepare(
        name, data, time=time, target=target, series=series, horizon=horizon, frequency=frequency, force=force
    )
    _show(console, prepared.profile, prepared.plan, prepared.label)
    folder = from_source.write(prepared, force=force)
    copied = "" if prepared.local is None else f", {prepared.spec_source} (a copy of the data)"
    console.print(f"[green]✓[/green] created {folder}: tidecast.yaml{copied}")
    console.print(f"next: [bold]cd {name} && tidecast run[/bold]")


def register(app: typer.Typer, console: Console) -> None:
    """Add ``init`` to ``app``."""

    @app.command()
    def init(
        name: Annotated[Path, typer.Argument(help="The project folder to create (its name is the project's).")],
        template: Annotated[
            str | None,
            typer.Option(
                "--template", "-t",
                help="power (hourly demand, the default), retail (daily sales), retail-weekly (weekly sales), "
                "emissions-monthly (monthly emissions) or minimal.",
            ),
        ] = None,
        data: Annotated[
            str | None,
            typer.Option(
                "--data",
                "-d",
                help="Your data (CSV, Parquet, JSON file or URL): profile it and plan the project from it.",
            ),
        ] = None,
        time: Annotated[
            str | None, typer.Option("--time", help="With --data: the time column (else inferred).")
        ] = None,
        target: Annotated[
            str | None, typer.Option("--target", help="With --data: the column to forecast (else inferred).")
        ] = None,
        series: Annotated[
            str | None,
            typer.Option("--series", help="With --data: the series id column of long-format data (else inferred)."),
        ] = None,
        horizon: Annotated[
            str | None,
            typer.Option(
                "--horizon", help="With --data: how far ahead, e.g. 1d, 48h or a step count (else one day/week)."
            ),
        ] = None,
        frequency: Annotated[
            str | None,
            typer.Option("--frequency", help="With --data: the grid of irregular data, e.g. 1h (else inferred)."),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Write into an existing, non-empty folder.")] = False,
    ) -> None:
        """Create a project: a commented tidecast.yaml and its data; [bold]cd NAME && tidecast run[/bold] works at once.

        With [bold]--data[/bold], profile your file (time, target and series columns, frequency, gaps,
        duplicates, exogenous columns, seasons) and plan candidates that fit it; --time, --target,
        --series, --horizon and --frequency override what is inferred, and a choice the data leaves
        open is a question naming the flag. Without it, a template: a spec, a data sample, a plugin
        model, a Makefile, a README and a test.

        Examples: [bold]tidecast init sales --data sales.csv --target units --horizon 14d[/bold],
        [bold]tidecast init demo2 --template retail[/bold]
        """
        if data is not None:
            if template is not None:
                raise TidecastError("init: use either --template or --data, not both")
            init_from_data(
                console,
                name,
                data,
                time=time,
                target=target,
                series=series,
                horizon=horizon,
                frequency=frequency,
                force=force,
            )
            return
        given = [
            flag
            for flag, value in (
                ("--time", time),
                ("--target", target),
                ("--series", series),
                ("--horizon", horizon),
                ("--frequency", frequency),
            )
            if value is not None
        ]
        if given:
            raise TidecastError(f"init: {', '.join(given)} need --data FILE_OR_URL")
        from tidecast.templates import scaffold  # lazy: pandas stays out of `tidecast --help`

        result = scaffold(name, template=template or "power", force=force)
        console.print(
            f"[green]✓[/green] created {result.path} ({result.template} template, project '{result.project}'):"
        )
        for path in sorted(result.files):
            console.print(f"  {path.relative_to(result.path)}")
        console.print(f"next: [bold]cd {name} && tidecast run[/bold]")
