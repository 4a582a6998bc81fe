"""Every error tidecast raises on purpose, in one place.

Library code raises these; the CLI turns them into one readable line and exit code 2.
Each error says *what* is wrong and *where* (file, row, field, candidate) in its message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TidecastError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class SpecError(TidecastError):
    """tidecast.yaml is missing, malformed, or has a field with a wrong value."""


class DataError(TidecastError):
    """The data cannot be read, or contradicts the spec (columns, timestamps, frequency...)."""


class ModelError(TidecastError):
    """A candidate model cannot be built, fitted or asked to predict."""


class PluginError(ModelError):
    """An import path from the spec (``package.module:function``) cannot be loaded."""


class BacktestError(TidecastError):
    """The backtest cannot be laid out (history too short for folds, horizon too long...)."""


class PipelineError(TidecastError):
    """The step graph is invalid, or a step failed."""


class LockedError(PipelineError):
    """Another tidecast process holds the project's lock."""


class TrackingError(TidecastError):
    """The tracking store or the model registry is unreachable or inconsistent."""


class ServingError(TidecastError):
    """A model cannot be loaded or served."""


class MissingExtraError(TidecastError):
    """An optional part of tidecast is used but its extra is not installed (the message names it)."""


def closest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The choice most like ``word`` (what a typo probably meant), or ``None`` when none is close
    enough (``difflib`` ratio below ``cutoff``)."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``word`` (:func:`closest`), else ``""``:
    the one "did you mean" of tidecast's messages."""
    guess = closest(word, choices, cutoff=cutoff)
    return f" (did you mean '{guess}'?)" if guess else ""
