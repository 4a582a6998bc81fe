"""The real CLI in a subprocess, and the check every bad-input test makes: exit code 2, one line on
stderr naming the problem, no traceback, nothing committed to the cache or the lock file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "tidecast.cli"]


def tidecast(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


def assert_clean_failure(result: subprocess.CompletedProcess[str], project: Path, *needles: str) -> str:
    """The one error line of ``result`` (checked as above); each of ``needles`` must be in it."""
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (project / "tidecast.lock").exists()
    cache = project / ".tidecast" / "cache"
    committed = [p for p in cache.glob("*/*") if not p.name.startswith(".tmp")] if cache.exists() else []
    assert committed == []
    return lines[0]
