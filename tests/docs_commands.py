"""Run the shell lines of the docs as a reader would: the helpers of ``tests/e2e/test_docs_commands.py``.

:func:`shell_lines` extracts the commands of a Markdown file's ```` ```bash ```` blocks (comment-only
lines dropped; a line continued with ``\\`` or inside an open quote joined with the next ones).
:class:`DocShell` runs them one by one with ``bash -c`` in a working folder that ``cd`` lines move
(``cd DIR`` and ``cd DIR && rest``; a subshell ``(cd DIR && ...)`` moves nothing, as in bash), and
starts the long-running ones (servers, the scheduler) as background processes that it probes
and stops.

>>> shell_lines("README.md")[:1]  # doctest: +SKIP
['make demo    # creates .venv, installs tidecast, runs examples/power end to end, prints the leaderboard']
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^\s*```\s*(\S*)")


def _complete(command: str) -> bool:
    """Whether ``command`` is a whole shell line: no trailing backslash, no open quote."""
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command, comments=True)
    except ValueError:  # "No closing quotation"
        return False
    return True


def shell_lines(md_path: str | Path) -> list[str]:
    """The shell lines of the ```` ```bash ```` blocks of ``md_path``, in order, as logical lines.

    Blank and comment-only lines are dropped; continued lines (``\\`` at the end, or a quote left
    open, as in a multi-line ``curl -d '{...}'``) are joined with newlines, as bash reads them.
    """
    lines: list[str] = []
    in_bash = False
    pending: list[str] = []
    for raw in Path(md_path).read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(raw)
        if fence and not pending:
            in_bash = not in_bash and fence.group(1) in ("bash", "sh", "shell", "console")
            continue
        if not in_bash:
            continue
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        pending.append(raw)
        joined = "\n".join(pending)
        if _complete(joined):
            lines.append(joined.strip())
            pending = []
    if pending:
        raise ValueError(f"{md_path}: unterminated shell line {pending[0]!r}")
    return lines


def command_words(line: str) -> list[str]:
    """The words of ``line`` without its leading ``VAR=value`` assignments and its comment."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    return words


def option(words: list[str], name: str, default: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``words``, else ``default``."""
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return default


@dataclass
class Server:
    """A long-running documented command, started in the background."""

    line: str
    process: subprocess.Popen[str]
    log: Path
    probe: str | None  # the URL that answers 200 once it is ready; None: ready when `ready_text` is printed
    ready_text: str | None = None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float) -> str:
        """Wait until the server answers its probe (or prints its ready line); the probe's body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"`{self.line}` exited with {self.process.returncode} before it was ready:\n{self.output()[-3000:]}"
                )
            if self.probe is not None:
                try:
                    with urllib.request.urlopen(self.probe, timeout=5) as answer:
                        if answer.status == 200:
                            return answer.read().decode("utf-8", errors="replace")
                except (urllib.error.URLError, OSError):
                    pass
            elif self.ready_text and self.ready_text in self.output():
                return self.output()
            time.sleep(0.5)
        raise AssertionError(
            f"`{self.line}` not ready after {timeout:.0f} s (probe {self.probe}):\n{self.output()[-3000:]}"
        )

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the process group (Ctrl-C's effect on a shell's job), then SIGKILL; the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


@dataclass
class DocShell:
    """Runs documented lines in ``root`` (a copy of the repository's examples), with ``env``."""

    root: Path
    env: dict[str, str]
    cwd: Path = field(init=False)
    server: Server | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.cwd = self.root

    def start_document(self) -> None:
        """A new document starts at the root, with no server running."""
        self.stop_server()
        self.cwd = self.root

    def change_dir(self, line: str) -> str | None:
        """Apply a leading ``cd DIR`` of ``line``; the rest of the line to run (None: nothing left)."""
        head, sep, rest = line.partition("&&")
        words = command_words(head)
        if len(words) != 2 or words[0] != "cd":
            return line
        target = (self.cwd / words[1]).resolve()
        if not target.is_dir():
            raise AssertionError(f"`{line}`: no folder {target} (from {self.cwd})")
        self.cwd = target
        return rest.strip() if sep else None

    def run(self, line: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``line`` with bash in the current folder; stdout and stderr together. On timeout the
        whole process group is killed and :class:`subprocess.TimeoutExpired` raised."""
        with subprocess.Popen(
            ["bash", "-c", line],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise
        return subprocess.CompletedProcess(process.args, process.returncode, output, None)

    def start(self, line: str, probe: str | None, ready_text: str | None, log: Path) -> Server:
        """Start ``line`` in the background (its own process group), replacing a running server."""
        self.stop_server()
        handle = log.open("w", encoding="utf-8")
        try:
            process = subprocess.Popen(
                ["bash", "-c", line],
                cwd=self.cwd,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        finally:
            handle.close()
        self.server = Server(line, process, log, probe, ready_text)
        return self.server

    def stop_server(self) -> int | None:
        if self.server is None:
            return None
        code = self.server.stop()
        self.server = None
        return code
