"""``kind: sklearn``: any scikit-learn style regressor over lag features, through mlforecast
(the features, strategy and scaling of :class:`tidecast.models.ml.MLForecastModel`)."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

from tidecast.errors import ModelError
from tidecast.models.base import FitContext
from tidecast.models.ml import MLForecastModel
from tidecast.models.plugins import load_object


def _estimator_class(path: str, name: str) -> Any:
    text = str(path)
    if ":" not in text and "." in text:  # accept 'sklearn.linear_model.Ridge' too
        module, _, attr = text.rpartition(".")
        text = f"{module}:{attr}"
    return load_object(text, what=f"candidate '{name}': estimator")


class SklearnModel(MLForecastModel):
    """Any scikit-learn style regressor over lag features (``kind: sklearn``).

    ``estimator`` is an import path (``sklearn.linear_model:Ridge``; importlib only, no eval) or,
    from Python, an estimator instance; the other parameters (except ``strategy``, ``lags``,
    ``rolling``, ``fit_window``) are its constructor's keyword arguments. ``random_state`` is set to
    ``ctx.seed`` when the estimator takes one and it is not given. The estimator must not need
    missing-value support: rows whose lags are not yet available are dropped from training.
    """

    kind = "sklearn"
    fit_cost, forecast_cost = 5, 6
    libraries = ("mlforecast", "scikit-learn")

    def __init__(
        self,
        estimator: Any = "sklearn.linear_model:Ridge",
        *,
        name: str | None = None,
        fit_window: int | None = None,
        strategy: str = "recursive",
        lags: Sequence[int] | None = None,
        rolling: list[Any] | None = None,
        scaling: str = "auto",
        **params: Any,
    ) -> None:
        super().__init__(
            name=name, fit_window=fit_window, strategy=strategy, lags=lags, rolling=rolling, scaling=scaling
        )
        self.estimator = estimator
        self.params = dict(params)
        if isinstance(estimator, str):
            cls = _estimator_class(estimator, self.name)
            try:
                sig = inspect.signature(cls)
            except (TypeError, ValueError):
                sig = None
            if sig is not None and not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
                for key in params:
                    if key not in sig.parameters:
                        raise ModelError(
                            f"candidate '{self.name}': {estimator} does not accept parameter '{key}' "
                            f"(accepted: {', '.join(p for p in sig.parameters if p != 'self')})"
                        )
            try:
                probe = cls(**params)
            except (TypeError, ValueError) as exc:
                raise ModelError(f"candidate '{self.name}': {estimator} rejects its parameters: {exc}") from exc
            self._cls = cls
        else:
            if params:
                raise ModelError(f"candidate '{self.name}': parameters {sorted(params)} need 'estimator' as an import path")
            probe = estimator
            self._cls = None
        if not (hasattr(probe, "fit") and hasattr(probe, "predict")):
            raise ModelError(f"candidate '{self.name}': estimator {estimator!r} has no fit/predict methods")

    def _estimator_params(self) -> dict[str, Any]:
        if isinstance(self.estimator, str):
            return {"estimator": self.estimator, **self.params}
        cls = type(self.estimator)
        own: dict[str, Any] = {}
        if callable(getattr(self.estimator, "get_params", None)):
            try:
                own = dict(self.estimator.get_params(deep=False))
            except Exception:  # pragma: no cover - odd estimators
                own = {}
        return {"estimator": f"{cls.__module__}:{cls.__qualname__}", **own}

    def _estimator(self, ctx: FitContext) -> Any:
        from sklearn.base import clone

        if self._cls is None:
            try:
                est = clone(self.estimator)
            except Exception:
                est = copy.deepcopy(self.estimator)
        else:
            est = self._cls(**self.params)
        if hasattr(est, "get_params") and hasattr(est, "set_params"):
            try:
                current = est.get_params()
                unset = "random_state" not in self.params if self._cls is not None else current.get("random_state") is None
                if "random_state" in current and unset:
                    est.set_params(random_state=ctx.seed)
            except Exception:  # pragma: no cover - odd estimators
                pass
        return est
