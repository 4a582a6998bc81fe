"""Invertible target transforms (``target.transform``): applied before fitting, undone on forecasts.

>>> import numpy as np
>>> y = np.array([0.0, 3.0, 8.0])
>>> invert_transform(apply_transform(y, "log1p"), "log1p").round(6).tolist()
[0.0, 3.0, 8.0]
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

from tidecast.errors import DataError, SpecError

__all__ = ["TRANSFORMS", "apply_transform", "invert_transform"]

TRANSFORMS = ("none", "log1p", "sqrt")

ArrayLike = TypeVar("ArrayLike", pd.Series, pd.DataFrame, np.ndarray)


def _check_name(name: str) -> None:
    if name not in TRANSFORMS:
        raise SpecError(f"target.transform: unknown transform {name!r} (use one of: {', '.join(TRANSFORMS)})")


def _apply(y: ArrayLike, func: np.ufunc) -> ArrayLike:
    if isinstance(y, pd.Series | pd.DataFrame):
        return func(y.astype("float64"))
    return func(np.asarray(y, dtype="float64"))


def apply_transform(y: ArrayLike, name: str) -> ArrayLike:
    """``y`` transformed by ``name`` (``none``, ``log1p`` or ``sqrt``), same type as ``y``.

    ``log1p`` needs values above -1 and ``sqrt`` values of at least 0; NaN passes through.

    >>> apply_transform(pd.Series([0.0, 4.0]), "sqrt").tolist()
    [0.0, 2.0]
    """
    _check_name(name)
    if name == "none":
        return y.copy() if hasattr(y, "copy") else np.asarray(y, dtype="float64")
    values = np.asarray(y, dtype="float64")
    bad = values <= -1 if name == "log1p" else values < 0
    if np.any(bad):
        worst = float(np.nanmin(values))
        need = "above -1" if name == "log1p" else "of at least 0"
        raise DataError(
            f"target.transform '{name}' needs values {need}, but y goes down to {worst:g} "
            f"({int(np.sum(bad))} value{'s' if np.sum(bad) != 1 else ''}); use transform: none or fix the data"
        )
    return _apply(y, np.log1p if name == "log1p" else np.sqrt)


def invert_transform(y: ArrayLike, name: str) -> ArrayLike:
    """Undo :func:`apply_transform` (forecasts and quantiles back in the data's units).

    ``sqrt`` is undone as ``max(y, 0) ** 2`` so that a negative forecast does not turn positive.

    >>> invert_transform(np.array([0.0, 2.0]), "sqrt").tolist()
    [0.0, 4.0]
    """
    _check_name(name)
    if name == "none":
        return y.copy() if hasattr(y, "copy") else np.asarray(y, dtype="float64")
    if name == "log1p":
        return _apply(y, np.expm1)
    if isinstance(y, pd.Series | pd.DataFrame):
        return y.astype("float64").clip(lower=0) ** 2
    return np.clip(np.asarray(y, dtype="float64"), 0, None) ** 2
