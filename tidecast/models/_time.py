"""Calendar/Fourier time features for the models that use them (ML and neural).

The columns are computed by :func:`tidecast.data.features.add_time_features` from ``ds`` only,
so serving computes exactly the same columns as training.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tidecast.data.features import add_time_features, time_feature_names


def wants_time_features(spec: Any) -> bool:
    return spec is not None and bool(getattr(spec, "calendar", None) or getattr(spec, "fourier", None))


def add_time(df: pd.DataFrame, spec: Any, *, timezone: str | None, freq: str, name: str) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with the time feature columns of ``spec`` added, and their names (in order)."""
    if not wants_time_features(spec):
        return df, []
    names = list(time_feature_names(spec, freq))
    # recompute columns a feature step may already have added, so training and serving agree
    base = df.drop(columns=[c for c in names if c in df.columns])
    before = set(base.columns)
    out = add_time_features(base, spec, timezone=timezone, freq=freq)
    added = [c for c in out.columns if c not in before]
    names = [c for c in names if c in out.columns] + [c for c in added if c not in names]
    return out, names
