"""The pipeline engine: steps wired by parameter names, cached by content hash, run like ``dvc repro``.

The engine knows nothing about forecasting. Steps are plain functions whose parameter names name
their inputs (see :mod:`tidecast.pipeline.dag`); outputs are cached under ``.tidecast/cache/``
(:mod:`tidecast.pipeline.cache`) and recorded in ``tidecast.lock`` (:mod:`tidecast.pipeline.lock`);
:func:`plan` computes every step's key and status (:mod:`tidecast.pipeline.planning`) and :func:`run`
executes only what changed, independent steps side by side (:mod:`tidecast.pipeline.runner`). The domain plugs in through what it
passes: steps, a spec (:class:`SpecLike`), callbacks and executors (:mod:`tidecast.pipeline.executors`).
"""

from __future__ import annotations

from tidecast.pipeline.cache import ArtifactCache
from tidecast.pipeline.context import RunCallbacks, RunResult, SpecLike, StepContext, StepPlan
from tidecast.pipeline.dag import Pipeline, StepDef, step
from tidecast.pipeline.hashing import code_hash, file_sha256, stable_hash
from tidecast.pipeline.lock import LockFile, ProjectLock, StepRecord
from tidecast.pipeline.planning import plan, status
from tidecast.pipeline.runner import run

__all__ = [
    "ArtifactCache",
    "LockFile",
    "Pipeline",
    "ProjectLock",
    "RunCallbacks",
    "RunResult",
    "SpecLike",
    "StepContext",
    "StepDef",
    "StepPlan",
    "StepRecord",
    "code_hash",
    "file_sha256",
    "plan",
    "run",
    "stable_hash",
    "status",
    "step",
]
