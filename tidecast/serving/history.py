"""Run histories as JSON lines under the project's ``.tidecast/``.

The monitor appends one line per run to ``monitor-history.jsonl`` (:func:`append_history`);
the run report, the client report and the dashboard read it back (:func:`read_history`), as the
monitor's retrain policy does. The scheduler's ``schedule-history.jsonl`` uses the same two
helpers. It lives beside the prediction store (:mod:`tidecast.serving.store`) so that the layers
that read it (reporting) need not import monitoring.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidecast.spec import Spec

HISTORY_FILENAME = "monitor-history.jsonl"


def history_path(spec: Spec) -> Path:
    """The monitor's history file of a project."""
    return spec.state_dir / HISTORY_FILENAME


def read_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, oldest first; unreadable lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                out.append(item)
    return out


def read_history(spec: Spec) -> list[dict[str, Any]]:
    """The monitor's run history (oldest first); unreadable lines are skipped."""
    return read_lines(history_path(spec))


def append_history(path: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """Append one JSON line (a single write, so concurrent writers do not interleave)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


__all__ = ["HISTORY_FILENAME", "append_history", "history_path", "read_history", "read_lines"]
