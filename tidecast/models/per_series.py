"""``selection.scope: per_series``: each series forecast by the candidate that backtested best on it.

:class:`PerSeriesForecaster` speaks the Forecaster protocol, so backtests, tracking, the pyfunc
model and serving use it as any model: it dispatches rows by ``unique_id`` to the fitted model of
that series' winner; series it has no winner for (too short to judge, or new at serving time) go to
the ``fallback`` candidate.

>>> model = PerSeriesForecaster({"a": SeasonalNaive(24), "b": Naive()}, {"m1": "a"}, fallback="b")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from tidecast.errors import ModelError
from tidecast.frames import ID
from tidecast.models.base import FitContext, Forecaster


class PerSeriesForecaster:
    """Routes each series to its own candidate's model.

    ``models``: candidate name -> an unfitted Forecaster (or a zero-argument factory of one);
    ``mapping``: series id -> candidate name; ``fallback``: the candidate for every other series.
    ``fit`` fits each candidate once, on the series it serves (the fallback on the unmapped ones).
    """

    native_intervals = True

    def __init__(
        self,
        models: Mapping[str, Forecaster | Callable[[], Forecaster]],
        mapping: Mapping[Any, str],
        *,
        fallback: str,
        name: str = "per_series",
    ) -> None:
        unknown = sorted({*mapping.values(), fallback} - set(models))
        if unknown:
            raise ModelError(f"per-series selection: no model for candidate(s) {', '.join(unknown)}")
        self.name = name
        self.mapping = {str(k): str(v) for k, v in mapping.items()}
        self.fallback = fallback
        self._makers = dict(models)
        self.models: dict[str, Forecaster] = {}
        self.series_of: dict[str, list[str]] = {}

    def route(self, ids: Sequence[Any]) -> pd.Series:
        """The candidate name for each series id (the fallback for ids without a winner)."""
        return pd.Series([self.mapping.get(str(u), self.fallback) for u in ids], index=list(ids), dtype=object)

    def winner_counts(self) -> dict[str, int]:
        """How many series each candidate serves (after fit: the fallback's unmapped ones included)."""
        if self.series_of:
            return {name: len(ids) for name, ids in sorted(self.series_of.items())}
        return pd.Series(list(self.mapping.values()), dtype=object).value_counts().sort_index().to_dict()

    def fit(self, df: pd.DataFrame, ctx: FitContext) -> PerSeriesForecaster:
        if ID not in df.columns:
            raise ModelError(f"candidate '{self.name}': the training data has no '{ID}' column")
        routes = self.route(pd.unique(df[ID]))
        self.models, self.series_of = {}, {}
        for name in sorted(set(routes.to_numpy())):
            ids = [u for u, r in routes.items() if r == name]
            maker = self._makers[name]
            model = maker() if callable(maker) and not hasattr(maker, "fit") else maker
            part = df[df[ID].isin(ids)]
            self.models[name] = model.fit(part, ctx)  # type: ignore[union-attr]
            self.series_of[name] = [str(u) for u in ids]
        if self.fallback not in self.models:  # keep one for series first seen at serving time
            maker = self._makers[self.fallback]
            model = maker() if callable(maker) and not hasattr(maker, "fit") else maker
            self.models[self.fallback] = model.fit(df, ctx)  # type: ignore[union-attr]
            self.series_of.setdefault(self.fallback, [])
        return self

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        if not self.models:
            raise ModelError(f"candidate '{self.name}': predict called before fit")
        frames = []
        if history is None:
            for name, ids in self.series_of.items():
                if not ids:
                    continue
                out = self.models[name].predict(h, X_future=_rows(X_future, ids), quantiles=quantiles)
                frames.append(out[out[ID].astype(str).isin(ids)])
        else:
            routes = self.route(pd.unique(history[ID]))
            for name in sorted(set(routes.to_numpy())):
                ids = [u for u, r in routes.items() if r == name]
                out = self.models[name].predict(
                    h, history=history[history[ID].isin(ids)], X_future=_rows(X_future, ids), quantiles=quantiles
                )
                frames.append(out)
        if not frames:
            raise ModelError(f"candidate '{self.name}': no series to forecast")
        columns = list(dict.fromkeys(c for f in frames for c in f.columns))
        out = pd.concat([f.reindex(columns=columns) for f in frames], ignore_index=True)
        return out.sort_values([ID, "ds"], kind="stable", ignore_index=True)

    def get_params(self) -> dict[str, Any]:
        return {
            "fallback": self.fallback,
            "winner_counts": self.winner_counts(),
            "candidates": {name: m.get_params() for name, m in self.models.items()} if self.models else sorted(self._makers),
        }


def _rows(frame: pd.DataFrame | None, ids: Sequence[Any]) -> pd.DataFrame | None:
    if frame is None:
        return None
    return frame[frame[ID].isin(list(ids))].reset_index(drop=True)


__all__ = ["PerSeriesForecaster"]
