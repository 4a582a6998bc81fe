"""The pipeline engine: steps wired by parameter names, cached by content hash, run like ``dvc repro``.

The engine knows nothing about forecasting. Steps are plain functions whose parameter names name
their inputs (see :mod:`tidecast.pipeline.dag`); outputs are cached under ``.tidecast/cache/``
(:mod:`tidecast.pipeline.cache`) and recorded in ``tidecast.lock`` (:mod:`tidecast.pipeline.lock`);
:func:`run` executes only what changed (:mod:`tidecast.pipeline.runner`).
"""

from __future__ import annotations

from tidecast.pipeline.cache import ArtifactCache
from tidecast.pipeline.dag import Pipeline, StepDef, render_tree, step
from tidecast.pipeline.hashing import code_hash, file_sha256, stable_hash
from tidecast.pipeline.lock import LockFile, ProjectLock, StepRecord
from tidecast.pipeline.runner import (
    RunCallbacks,
    RunResult,
    SpecLike,
    StepContext,
    StepPlan,
    plan,
    run,
    status,
)

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
    "render_tree",
    "run",
    "stable_hash",
    "status",
    "step",
]
