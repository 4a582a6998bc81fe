"""The training steps: ingest → clean → features → backtest → select (assembled, with track,
explain and report, in :mod:`tidecast.flows`).

Each step is a plain function; its parameter names are its inputs (the outputs of the steps of
the same name), ``spec`` is the project's spec, of which only the sections named in ``@step``
enter the cache key, and ``ctx`` gives a folder for extra artifacts and a progress hook.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pandas as pd

from tidecast.data.clean import clean_part, resolve_min_length, summarize, too_short_series
from tidecast.data.features import add_time_features
from tidecast.data.hierarchy import add_aggregates, ingest_hierarchy
from tidecast.data.long_format import to_long
from tidecast.data.partitions import PartitionedFrame, map_partitions, partition_count, write_partitions
from tidecast.data.sources import content_fingerprint, read_source, source_label
from tidecast.frames import ID, TIME
from tidecast.models.plugins import code_dependencies
from tidecast.models.registry import kind_property
from tidecast.pipeline.dag import step
from tidecast.pipeline.deps import distribution_of, library_versions
from tidecast.pipeline.executors import make_executor, shares_files
from tidecast.pipeline.hashing import source_hash
from tidecast.spec import Spec
from tidecast.training.candidates import candidate_results
from tidecast.training.distributed import resolve_global_models
from tidecast.training.results import Backtested, Selection
from tidecast.training.selection import select_and_refit
from tidecast.training.settings import min_history, validate_history

# A step's key covers its own source; these hashes add the library code it calls, so that an
# upgrade of tidecast's data or model code invalidates the cached results it produced.
_DATA_CODE = source_hash("data")
_MODEL_CODE = source_hash("data", "models", "evaluation", "training")

# ------------------------------------------------------------------------------------ data steps


def _data_fingerprint(spec: Spec) -> str:
    return content_fingerprint(spec.data)


def _executor(spec: Spec) -> Any:
    """The run's executor (one per run: see :func:`tidecast.pipeline.executors.executor_scope`)."""
    return make_executor(spec.executor, spec.backtest.n_jobs)


def _workers(spec: Spec) -> int:
    """How many workers the run's executor will have, without starting it."""
    import os

    if spec.executor.kind == "dask":
        return spec.executor.n_workers or os.cpu_count() or 1
    from joblib import effective_n_jobs

    return max(1, int(effective_n_jobs(spec.backtest.n_jobs)))


@step(spec=("data", "target", "hierarchy"), fingerprint=_data_fingerprint, version=_DATA_CODE)
def ingest(spec: Spec, ctx: Any) -> PartitionedFrame:
    """Read the source and bring it to the canonical long format (unique_id, ds, y, exogenous...),
    sorted by series then time, written as Parquet partitions of whole series.

    It also checks that the data can serve the spec (frequency, enough history for the window,
    folds and holdout) so that bad input fails here, before anything is cached. Those checks read
    the forecast/backtest sections without being part of the key: a later edit of them that the
    data cannot serve fails in the backtest step instead."""
    ctx.progress(0, 3, "reading")
    raw = read_source(spec.data)
    ctx.progress(1, 3, f"{len(raw):,} rows read")
    if spec.hierarchy is not None:  # checks the levels (and any aggregate rows) and keeps the bottom series

        frame = ingest_hierarchy(
            raw, spec.data, spec.target, spec.hierarchy, source_name=source_label(spec.data.source)
        )
    else:
        frame = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))
    del raw
    validate_history(frame, spec)
    frame = frame.sort_values([ID, TIME], kind="stable", ignore_index=True)
    n_series = int(frame[ID].nunique())
    # a hierarchy's aggregates are sums over every bottom series: it stays in one partition
    n_parts = 1 if spec.hierarchy is not None else partition_count(n_series, len(frame), _workers(spec), spec.executor.partition_rows)
    ctx.progress(2, 3, f"writing {n_parts} partition(s)")
    parts = write_partitions(frame, ctx.parts_dir, n_parts)
    ctx.progress(3, 3, f"{n_series:,} series, {len(frame):,} rows, {parts.n_partitions} partition(s)")
    return parts


def _clean_partition(
    frame: pd.DataFrame, clean_spec: Any, freq: str, min_length: int | None
) -> tuple[pd.DataFrame, Any]:
    """One partition's cleaning (in a worker): the rows without its too-short series, and what
    the summary needs."""
    part = clean_part(frame, clean_spec, freq)
    drop = {s["unique_id"] for s in too_short_series(part.stats, min_length)}
    rows = part.without(drop)
    out = rows if rows is not None else frame.iloc[:0]
    return out, part.light()


@step(spec=("data", "clean", "forecast", "hierarchy"), version=_DATA_CODE)
def clean(ingest: PartitionedFrame, spec: Spec, ctx: Any) -> PartitionedFrame:
    """Sort, de-duplicate, regularise, fill gaps and treat outliers, partition by partition on the
    run's executor (each series on its own); keep a summary of what changed; drop series too short."""
    length = resolve_min_length(spec.clean, spec.data.frequency, min_history(spec))
    work = functools.partial(_clean_partition, clean_spec=spec.clean, freq=spec.data.frequency, min_length=length)
    if spec.hierarchy is not None:  # every aggregate node, summed from the clean series

        frame, part = work(ingest.to_pandas())
        summary = summarize([part], length)
        frame = add_aggregates(frame, spec.hierarchy.levels, spec.hierarchy.total)
        parts, pieces = write_partitions(frame, ctx.parts_dir, 1), [part]
    else:
        parts, pieces = map_partitions(
            work, ingest, ctx.parts_dir, _executor(spec) if ingest.n_partitions > 1 else None,
            shared_storage=shares_files(spec.executor), desc="clean",
            on_part=lambda done, total: ctx.progress(done, total, f"{done}/{total} partitions cleaned"),
        )
        summary = summarize(pieces, length)
    (ctx.artifact_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    changes = pd.concat([p.changes for p in pieces], ignore_index=True) if len(pieces) > 1 else pieces[0].changes
    changes.to_parquet(ctx.artifact_dir / "changes.parquet", index=False)
    ctx.progress(1, 1, f"{summary.get('gaps_filled', 0)} gaps filled, {summary.get('outliers', 0)} outliers")
    return parts


def _feature_partition(frame: pd.DataFrame, feature_spec: Any, timezone: str | None, freq: str) -> tuple[pd.DataFrame, None]:
    return add_time_features(frame, feature_spec, timezone=timezone, freq=freq), None


@step(spec=("data", "features"), version=_DATA_CODE)
def features(clean: PartitionedFrame, spec: Spec, ctx: Any) -> PartitionedFrame:
    """Add the future-knowable features (calendar parts, holidays, Fourier terms) to the clean
    series, partition by partition on the run's executor."""
    work = functools.partial(
        _feature_partition, feature_spec=spec.features, timezone=spec.data.timezone, freq=spec.data.frequency
    )
    parts, _ = map_partitions(
        work, clean, ctx.parts_dir, _executor(spec) if clean.n_partitions > 1 else None,
        shared_storage=shares_files(spec.executor), desc="features",
        on_part=lambda done, total: ctx.progress(done, total, f"{done}/{total} partitions"),
    )
    ctx.progress(1, 1, f"{len(parts.columns) - 3} feature columns, {parts.n_partitions} partition(s)")
    return parts


# ----------------------------------------------------------------------------------- model steps
#: A plugin that returns a regressor is wrapped like ``kind: sklearn``.
_PLUGIN_LIBRARIES = ("mlforecast", "scikit-learn")


def candidate_deps(spec: Spec) -> dict[str, str]:
    """What the candidates run beyond tidecast: the content of every project module the spec's
    import paths resolve to (plugin kinds, ``estimator``, ``clean``/``feature_fn`` functions, and
    the project modules those import) and the installed versions of the libraries they use. Read
    from files and package metadata only: computing it imports no model library."""
    libraries: set[str] = {"numpy", "pandas"}
    paths: list[tuple[str, str]] = []
    for candidate in spec.models:
        if ":" in candidate.kind:
            paths.append((f"candidate '{candidate.name}': kind", candidate.kind))
            libraries.update(_PLUGIN_LIBRARIES)
        else:
            libraries.update(kind_property(candidate.kind, "libraries", ()))  # the model class says
        estimator = candidate.params.get("estimator")
        if candidate.kind == "sklearn" and isinstance(estimator, str):
            paths.append((f"candidate '{candidate.name}': estimator", estimator))
        for field in ("clean", "feature_fn"):
            if getattr(candidate, field):
                paths.append((f"candidate '{candidate.name}': {field}", getattr(candidate, field)))
        if candidate.search is not None:
            libraries.add("optuna")
    if spec.hierarchy is not None:
        libraries.add("hierarchicalforecast")
    folders = [spec.root, *(spec.root / folder for folder in spec.plugin_paths)]
    files, imported = code_dependencies(paths, folders, spec.root)
    libraries.update(distribution_of(name) for name in imported)
    return {**files, **library_versions(libraries)}


def _training_mode(spec: Spec) -> str:
    """What of the executor changes the models' results: how global models train ('single' or
    'distributed', see :func:`tidecast.training.distributed.resolve_global_models`). Local processes
    and a Dask cluster give the same results otherwise, so switching between them keeps the cache."""
    return f"global_models={resolve_global_models(spec.executor)}"


@step(spec=("data", "target", "features", "forecast", "backtest", "models", "selection", "hierarchy", "seed", "plugin_paths"), fingerprint=_training_mode, version=_MODEL_CODE, deps=candidate_deps)
def backtest(features: PartitionedFrame, spec: Spec, ctx: Any) -> Backtested:
    """Backtest every candidate on rolling origins (searching its hyper-parameters) and rank them;
    with a hierarchy, also their reconciled variants, and each one's scores per level (per_level.csv).
    A per-series model's tasks read their series from the partitions in the workers; a global
    model reads every partition (it fits on all series at once)."""
    out = candidate_results(features, spec, progress=ctx.progress)
    if out.hierarchy is not None:
        out.hierarchy["per_level"].to_csv(ctx.artifact_dir / "per_level.csv", index=False)
    _set_aside_fold_models(out, ctx.artifact_dir)
    return out


#: The backtest's artifact holding each candidate's model of the last fold (read by ``explain``).
FOLD_MODELS = "fold_models.joblib"


def _set_aside_fold_models(out: Backtested, folder: Any) -> None:
    """Move the fold models the backtest kept (``BacktestResult.models``) to their own artifact:
    the explain step reuses them instead of refitting, and loading the backtest's output (the
    leaderboard of a no-op run) unpickles no model, so imports no model library."""
    import joblib

    models, params = {}, {}
    for name, entry in out.results.items():
        result = getattr(entry, "backtest", None)
        if result is not None and getattr(result, "models", None):
            models[name], result.models = result.models, {}
            params[name] = entry.params
    if models:  # with the folds and params they belong to, which explain checks
        joblib.dump({"folds": out.folds, "params": params, "models": models}, folder / FOLD_MODELS)


@step(spec=("data", "target", "features", "forecast", "backtest", "models", "selection", "hierarchy", "seed", "plugin_paths"), fingerprint=_training_mode, version=_MODEL_CODE, deps=candidate_deps)
def select(backtest: Backtested, features: pd.DataFrame, spec: Spec, ctx: Any) -> Selection:
    """Pick the winner by the spec's metric, score it on the held-out stretch, refit it on all data."""
    return select_and_refit(backtest, features, spec, progress=ctx.progress)


TRAINING_STEPS: tuple[Callable[..., Any], ...] = (ingest, clean, features, backtest, select)
"""The model-building steps, in order (:func:`tidecast.flows.training_pipeline` adds track, explain, report)."""
