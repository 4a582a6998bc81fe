"""LightGBM helpers of :class:`tidecast.models.ml.LightGBMModel`: the parameter names LightGBM
knows (aliases included), and its regressor called through the booster in a recursive forecast."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def lightgbm_param_names() -> set[str] | None:
    try:
        from lightgbm.basic import _ConfigAliases

        names: set[str] = set()
        for key, aliases in _ConfigAliases._get_all_param_aliases().items():
            names.add(key)
            names.update(aliases)
        return names
    except Exception:  # pragma: no cover - private API moved
        return None


class BoosterPredict:
    """``LGBMRegressor.predict`` for the few rows of one recursive step: the booster called on the
    same float array the scikit-learn wrapper would build, on one thread. The wrapper's own checks
    and parameter processing (a deep copy of its parameters, signature inspection) cost more than
    the trees on a few rows, and so did waking LightGBM's threads for them; the forecasts are the
    same numbers. Larger inputs, and frames with non-numeric columns, go through the wrapper."""

    MAX_ROWS = 1024

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, X: Any) -> Any:
        if isinstance(X, pd.DataFrame) and len(X) <= self.MAX_ROWS and len(X.columns) == self.estimator.n_features_in_:
            dtypes = list(X.dtypes)
            if all(isinstance(d, np.dtype) and d.kind in "biuf" for d in dtypes):
                # the dtype lightgbm.basic._data_from_pandas converts to
                target = np.result_type(*(d.type for d in dtypes), np.float32)
                return self.estimator.booster_.predict(X.to_numpy(dtype=target), num_threads=1, verbose=-1)
        return self.estimator.predict(X)
