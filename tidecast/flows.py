"""The training pipeline, assembled: ingest → clean → features → backtest → select → track →
explain → report. The CLI (``tidecast run``/``status``/``dag``) and monitoring's retrain run it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tidecast.pipeline.dag import Pipeline
from tidecast.reporting.bands import backtest_png
from tidecast.reporting.step import REPORT_STEPS
from tidecast.tracking.step import track_step
from tidecast.training.steps import TRAINING_STEPS


def training_pipeline(extra: Iterable[Callable[..., Any]] = (), *, report: bool = True) -> Pipeline:
    """The training DAG (``track``: MLflow records and the registry's promotion gate; then, unless
    ``report=False``, ``explain`` and ``report``: the run report logged to the same MLflow run);
    later capabilities plug their steps in through ``extra``."""
    return Pipeline([*TRAINING_STEPS, track_step(backtest_png), *(REPORT_STEPS if report else ()), *extra])


__all__ = ["TRAINING_STEPS", "training_pipeline"]
