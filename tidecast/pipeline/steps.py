"""The training pipeline: ingest → clean → features → backtest → select → track.

Each step is a plain function; its parameter names are its inputs (the outputs of the steps of
the same name), ``spec`` is the project's spec, of which only the sections named in ``@step``
enter the cache key, and ``ctx`` gives a folder for extra artifacts and a progress hook.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from tidecast.pipeline.dag import Pipeline, step
from tidecast.pipeline.hashing import source_hash
from tidecast.spec import Spec
from tidecast.training import (
    candidate_results,
    fit_context,
    select_and_refit,
)

# A step's key covers its own source; these hashes add the library code it calls, so that an
# upgrade of tidecast's data or model code invalidates the cached results it produced.
_DATA_CODE = source_hash("data")
_MODEL_CODE = source_hash("data", "models", "evaluation", "training.py")

# ------------------------------------------------------------------------------------ data steps


def _data_fingerprint(spec: Spec) -> str:
    from tidecast.data.sources import content_fingerprint

    return content_fingerprint(spec.data)


@step(spec=("data", "target", "hierarchy"), fingerprint=_data_fingerprint, version=_DATA_CODE)
def ingest(spec: Spec, ctx: Any) -> pd.DataFrame:
    """Read the source and bring it to the canonical long format (unique_id, ds, y, exogenous...).

    It also checks that the data can serve the spec (frequency, enough history for the window,
    folds and holdout) so that bad input fails here, before anything is cached. Those checks read
    the forecast/backtest sections without being part of the key: a later edit of them that the
    data cannot serve fails in the backtest step instead."""
    from tidecast.data.sources import read_source, source_label, to_long
    from tidecast.training import validate_history

    ctx.progress(0, 2, "reading")
    raw = read_source(spec.data)
    ctx.progress(1, 2, f"{len(raw):,} rows read")
    if spec.hierarchy is not None:  # checks the levels (and any aggregate rows) and keeps the bottom series
        from tidecast.data.hierarchy import ingest_hierarchy

        frame = ingest_hierarchy(
            raw, spec.data, spec.target, spec.hierarchy, source_name=source_label(spec.data.source)
        )
    else:
        frame = to_long(raw, spec.data, spec.target, source_name=source_label(spec.data.source))
    validate_history(frame, spec)
    ctx.progress(2, 2, f"{frame['unique_id'].nunique():,} series, {len(frame):,} rows")
    return frame


@step(spec=("data", "clean", "forecast", "hierarchy"), version=_DATA_CODE)
def clean(ingest: pd.DataFrame, spec: Spec, ctx: Any) -> pd.DataFrame:
    """Sort, de-duplicate, regularise, fill gaps and treat outliers; keep a summary of what changed."""
    from tidecast.data.clean import clean as clean_frame
    from tidecast.training import min_history

    result = clean_frame(ingest, spec.clean, spec.data.frequency, min_length=min_history(spec))
    (ctx.artifact_dir / "summary.json").write_text(json.dumps(result.summary, indent=2, default=str))
    result.changes.to_parquet(ctx.artifact_dir / "changes.parquet", index=False)
    too_short = set(result.summary.get("series_too_short") or [])
    frame = result.frame
    if too_short:
        frame = frame[~frame["unique_id"].isin(too_short)].reset_index(drop=True)
    if spec.hierarchy is not None:  # every aggregate node, summed from the clean series
        from tidecast.data.hierarchy import add_aggregates

        frame = add_aggregates(frame, spec.hierarchy.levels, spec.hierarchy.total)
    ctx.progress(1, 1, f"{result.summary.get('gaps_filled', 0)} gaps filled, {result.summary.get('outliers', 0)} outliers")
    return frame


@step(spec=("data", "features"), version=_DATA_CODE)
def features(clean: pd.DataFrame, spec: Spec, ctx: Any) -> pd.DataFrame:
    """Add the future-knowable features (calendar parts, holidays, Fourier terms) to the clean series."""
    from tidecast.data.features import add_time_features

    frame = add_time_features(clean, spec.features, timezone=spec.data.timezone, freq=spec.data.frequency)
    ctx.progress(1, 1, f"{frame.shape[1] - 3} feature columns")
    return frame


# ----------------------------------------------------------------------------------- model steps
@step(spec=("data", "target", "features", "forecast", "backtest", "models", "selection", "hierarchy", "seed", "plugin_paths"), version=_MODEL_CODE)
def backtest(features: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """Backtest every candidate on rolling origins (searching its hyper-parameters) and rank them;
    with a hierarchy, also their reconciled variants, and each one's scores per level (per_level.csv)."""
    out = candidate_results(features, spec, progress=ctx.progress)
    if out.get("hierarchy") is not None:
        out["hierarchy"]["per_level"].to_csv(ctx.artifact_dir / "per_level.csv", index=False)
    return out


@step(spec=("data", "target", "features", "forecast", "backtest", "models", "selection", "hierarchy", "seed", "plugin_paths"), version=_MODEL_CODE)
def select(backtest: dict[str, Any], features: pd.DataFrame, spec: Spec, ctx: Any) -> dict[str, Any]:
    """Pick the winner by the spec's metric, score it on the held-out stretch, refit it on all data."""
    return select_and_refit(backtest, features, spec, progress=ctx.progress)


def _track() -> Callable[..., Any]:
    from tidecast.tracking.step import track

    return track


def _report_steps() -> tuple[Callable[..., Any], ...]:
    from tidecast.reporting.step import REPORT_STEPS

    return REPORT_STEPS


TRAINING_STEPS: tuple[Callable[..., Any], ...] = (ingest, clean, features, backtest, select)


def training_pipeline(extra: Iterable[Callable[..., Any]] = (), *, report: bool = True) -> Pipeline:
    """The training DAG (``track``: MLflow records and the registry's promotion gate; then, unless
    ``report=False``, ``explain`` and ``report``: the run report logged to the same MLflow run);
    later capabilities plug their steps in through ``extra``."""
    return Pipeline([*TRAINING_STEPS, _track(), *(_report_steps() if report else ()), *extra])


__all__ = ["TRAINING_STEPS", "fit_context", "training_pipeline"]
