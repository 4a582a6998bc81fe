"""``tidecast init``: scaffold a project folder that runs at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer, console: Console) -> None:
    """Add ``init`` to ``app``."""

    @app.command()
    def init(
        name: Annotated[Path, typer.Argument(help="The project folder to create (its name is the project's).")],
        template: Annotated[
            str, typer.Option("--template", "-t", help="power (hourly demand), retail (daily sales) or minimal.")
        ] = "power",
        force: Annotated[bool, typer.Option("--force", help="Write into an existing, non-empty folder.")] = False,
    ) -> None:
        """Create a project: a commented tidecast.yaml, a data sample, a plugin model, a Makefile, a README
        and a test; [bold]cd NAME && tidecast run[/bold] works at once.

        Example: [bold]tidecast init demo2 --template retail[/bold]
        """
        from tidecast.templates import scaffold

        result = scaffold(name, template=template, force=force)
        console.print(
            f"[green]✓[/green] created {result.path} ({result.template} template, project '{result.project}'):"
        )
        for path in sorted(result.files):
            console.print(f"  {path.relative_to(result.path)}")
        console.print(f"next: [bold]cd {name} && tidecast run[/bold]")
