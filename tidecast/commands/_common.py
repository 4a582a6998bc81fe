"""What the commands share: the consoles, the global options' state, the ``--spec`` option, loading
the spec, progress bars fed by the pipeline's callbacks, number cells.

Below :mod:`tidecast.cli` (which builds the app from the command modules) and every module of
:mod:`tidecast.commands`; it imports no library layer at module level, so ``tidecast --help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from tidecast.spec import Spec

console = Console()
err_console = Console(stderr=True)

STATE: dict[str, Any] = {"debug": False, "env": None}
"""The global options (``--debug``, ``--env``), set by the app's callback before any command runs."""

SpecOpt = Annotated[
    Path | None,
    typer.Option("--spec", "-s", help="The spec file or its folder (default: ./tidecast.yaml)."),
]


def load(spec_path: Path | None) -> Spec:
    """The spec at ``spec_path`` (default: ./tidecast.yaml) with the ``--env`` overrides."""
    from tidecast.spec import load_spec  # lazy: pandas and pydantic stay out of `tidecast --help`

    return load_spec(spec_path, env=STATE["env"])


def num(value: object, digits: int = 4) -> str:
    """A number cell: ``digits`` significant digits; empty for a missing or non-numeric value."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if number != number else f"{number:.{digits}g}"


class ProgressCallbacks:
    """Rich progress bars fed by the pipeline runner's callbacks.

    Steps that run side by side (the runner's threads) each have their row, running at once; the
    runner calls these methods one at a time. A step that ran beside others says so when it ends
    ("done 6.1 s, beside track"), on its row or, without a terminal, on its plain line.
    """

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
        self._beside: dict[str, list[str]] = {}  # running step -> the steps that ran while it did

    def __enter__(self) -> ProgressCallbacks:
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
        running = list(self._beside)
        for seen in self._beside.values():
            seen.append(name)
        self._beside[name] = running

    def on_step_progress(self, name: str, done: int, total: int | None, description: str = "") -> None:
        task = self._tasks.get(name)
        if task is not None:
            self.progress.update(task, completed=done, total=total, description=description)

    def on_step_end(self, name: str, state: str, seconds: float) -> None:
        during = self._beside.pop(name, [])
        beside = list(dict.fromkeys(during)) if state == "ran" else []
        if state != "ran":  # a cached step ran beside nothing
            for seen in self._beside.values():
                if name in seen:
                    seen.remove(name)
        note = f", beside {', '.join(beside)}" if beside else ""
        if self.progress.disable:  # not a terminal (CI, a log file): one plain line per step
            err_console.print(
                f"  {name:<10} {'ran' if state == 'ran' else 'cached'} {seconds:7.1f} s{note}", highlight=False
            )
        task = self._tasks.pop(name, None)
        label = "[green]done[/green]" if state == "ran" else "[dim]cached[/dim]"
        if task is None:
            task = self.progress.add_task(label, total=1, step=name)
        self.progress.update(task, total=1, completed=1, description=f"{label} {seconds:.1f} s{note}")
        if self._overall is not None:
            self.progress.advance(self._overall)

    # the runner may log extra lines (the library never prints itself)
    def on_message(self, text: str) -> None:
        self.progress.console.print(text)
