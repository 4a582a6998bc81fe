"""The ``tidecast`` command line: the Typer app, its global options and the entry point.

The commands live in :mod:`tidecast.commands` (one module a group; what they share is in
:mod:`tidecast.commands._common`). Library code raises :class:`tidecast.errors.TidecastError`;
:func:`main` turns it into one red line and exit code 2 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from tidecast import __version__
from tidecast.commands import init, monitoring, pipeline, reporting, serving, tracking
from tidecast.commands._common import STATE as _STATE
from tidecast.commands._common import console, err_console
from tidecast.errors import TidecastError

app = typer.Typer(
    name="tidecast",
    help="From one tidecast.yaml to a backtested, tracked forecaster.\n\nExample: cd examples/power && tidecast run",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


# ------------------------------------------------------------------------------------ commands
# each module of tidecast.commands adds its commands through register(app, console), in this order
for _group in (pipeline, init, monitoring, reporting, serving, tracking):
    _group.register(app, console)


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
