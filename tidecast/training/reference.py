"""The training reference that data drift is measured against: a JSON-able summary of the feature
frame a model was fitted on, logged with the model as ``reference_profile.json``.

:func:`tidecast.tracking.pyfunc.log_forecaster` writes it when it logs a model; the monitor
reads it back (:func:`tidecast.monitoring.drift.load_reference`) and compares a recent window
with it (:func:`tidecast.monitoring.drift.detect_drift`), so drift is computed without the
training data. See :mod:`tidecast.monitoring.drift` for what a column's reference holds; the
statistics are :mod:`tidecast.evaluation.drift_stats`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tidecast.errors import TrackingError
from tidecast.evaluation.drift_stats import calibrate, column_reference, profile_kind, seasonal_cells
from tidecast.frames import ID, TARGET, TIME
from tidecast.training.settings import season_length

if TYPE_CHECKING:
    from tidecast.spec import Spec

REFERENCE_FILE = "reference_profile.json"
REFERENCE_VERSION = 1
MAX_SERIES_PROFILES = 20
"""Up to this many series get a reference each; beyond, one pooled reference serves them all."""
POOLED = "*"


def drift_columns(frame: pd.DataFrame, spec: Spec) -> list[str]:
    """The columns data drift watches: the target and every numeric exogenous column present."""
    columns = [TARGET]
    for column in spec.data.exogenous_columns:
        if column.name in frame.columns and pd.api.types.is_numeric_dtype(frame[column.name]):
            columns.append(column.name)
    return columns


def _trailing(frame: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    window = spec.monitoring.data_drift.reference_window
    if window is None:
        return frame
    steps = spec.steps(window, "monitoring.data_drift.reference_window")
    return frame.groupby(ID, observed=True, sort=False).tail(steps)


def reference_profile(features: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """The training reference that data drift is measured against (a JSON-able dict, see the module doc).

    ``features`` is the frame the model was fitted on (``unique_id, ds, y`` + exogenous columns).
    """
    if not {ID, TIME, TARGET} <= set(features.columns):
        raise TrackingError(f"reference profile: the frame lacks {sorted({ID, TIME, TARGET} - set(features.columns))}")
    data = features.sort_values([ID, TIME], kind="stable")
    freq = spec.data.frequency
    kind = profile_kind(freq)
    tz = spec.data.timezone
    country = spec.features.holidays_country
    window = max(2, spec.steps(spec.monitoring.data_drift.window, "monitoring.data_drift.window"))
    columns = drift_columns(data, spec)
    ids = data[ID].astype(str)
    n_series = ids.nunique()
    pooled = n_series > MAX_SERIES_PROFILES
    stretch = _trailing(data, spec).reset_index(drop=True)  # the reference stretch, still sorted
    cells = seasonal_cells(stretch[TIME], kind, tz, country)
    stretch_ids = stretch[ID].astype(str)
    groups: dict[str, dict[str, Any]] = {}
    keys = [(POOLED, np.ones(len(stretch), dtype=bool))] if pooled else [
        (str(uid), (stretch_ids == uid).to_numpy()) for uid in pd.unique(ids)
    ]
    for key, mask in keys:
        entry: dict[str, Any] = {}
        for column in columns:
            values = stretch[column].to_numpy(dtype="float64")
            ref = column_reference(values[mask], cells[mask], kind)
            if ref is None:
                continue
            # windows of the reference stretch, one series at a time (pooled: the pooled sequence in time order)
            order = np.flatnonzero(mask)
            if pooled:
                order = order[np.argsort(stretch[TIME].to_numpy()[order], kind="stable")]
            ref["calibration"] = calibrate(ref, values[order], cells[order], window * (n_series if pooled else 1))
            entry[column] = ref
        groups[key] = entry
    m = season_length(spec)
    y = data[TARGET].astype(float)
    scale = (y - y.groupby(ids, sort=False).shift(m)).abs().groupby(ids, sort=True).mean()
    return {
        "version": REFERENCE_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "project": spec.project,
        "freq": freq,
        "timezone": tz,
        "holidays_country": country,
        "profile_kind": kind,
        "window_steps": window,
        "reference_window": spec.monitoring.data_drift.reference_window,
        "start": str(data[TIME].min()),
        "end": str(data[TIME].max()),
        "rows": len(data),
        "n_series": int(n_series),
        "pooled": pooled,
        "columns": columns,
        "groups": groups,
        "season_length": int(m),
        "mase_scale": {str(k): float(v) for k, v in scale.items() if np.isfinite(v)},
    }


def write_reference(reference: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(reference, separators=(",", ":"), allow_nan=False, default=json_default), encoding="utf-8")
    return path


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_reference(path: str | Path, *, label: str | None = None) -> dict[str, Any]:
    """A reference profile from a local JSON file, checked for its version."""
    label = label or str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrackingError(f"model {label}: cannot read its reference profile ({exc}): retrain it") from None
    if not isinstance(data, dict) or data.get("version") != REFERENCE_VERSION or "groups" not in data:
        raise TrackingError(
            f"model {label}: its reference profile has version {data.get('version') if isinstance(data, dict) else None!r}, "
            f"this tidecast reads version {REFERENCE_VERSION}: retrain it"
        )
    return data


__all__ = [
    "MAX_SERIES_PROFILES",
    "POOLED",
    "REFERENCE_FILE",
    "REFERENCE_VERSION",
    "drift_columns",
    "json_default",
    "read_reference",
    "reference_profile",
    "write_reference",
]
