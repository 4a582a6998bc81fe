"""statsforecast's intermittent-demand models, for sales with many zeros: ``croston`` (classic,
or ``variant: optimized|sba``), ``adida``, ``imapa`` and ``tsb``.

They have no season and no native prediction intervals (quantiles come from the conformal wrapper,
as for the baselines); a forecast from new history refits on it (they fit in microseconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pandas as pd

from tidecast.errors import ModelError
from tidecast.models._frames import no_intervals
from tidecast.models._statsforecast import accepted_params
from tidecast.models.statistical import StatsForecastModel

_CROSTON = {"classic": "CrostonClassic", "optimized": "CrostonOptimized", "sba": "CrostonSBA"}


class _Intermittent(StatsForecastModel):
    native_intervals: ClassVar[bool] = False
    refit_on_history: ClassVar[bool] = True
    sf_name: ClassVar[str] = ""
    components: ClassVar[bool] = False

    def __init__(
        self, season_length: int | None = None, *, name: str | None = None, fit_window: int | None = None, **params: Any
    ) -> None:
        if season_length not in (None, 1):
            raise ModelError(f"candidate '{name or self.kind}': {self.kind} has no season (drop season_length)")
        super().__init__(1, name=name, fit_window=fit_window, **params)

    def _class(self) -> type:
        import statsforecast.models as sfm

        return getattr(sfm, self.sf_name)

    def _validate(self) -> None:
        accepted = accepted_params(self._class())
        for key in self.params:
            if key not in accepted:
                raise ModelError(
                    f"candidate '{self.name}': {self.kind} does not accept parameter '{key}' "
                    f"(accepted: {', '.join(accepted) or 'none'})"
                )

    def _build(self, season: list[int]) -> Any:
        return self._class()(**self.params)

    def get_params(self) -> dict[str, Any]:
        return {"fit_window": self.fit_window, **self.params}

    def predict(
        self,
        h: int,
        *,
        history: pd.DataFrame | None = None,
        X_future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = (),
    ) -> pd.DataFrame:
        no_intervals(self.name, quantiles)
        return super().predict(h, history=history, X_future=X_future, quantiles=())


class CrostonModel(_Intermittent):
    """``kind: croston``: Croston's method; ``variant`` ``classic`` (default), ``optimized`` or ``sba``."""

    kind = "croston"

    def __init__(
        self,
        season_length: int | None = None,
        *,
        variant: str = "classic",
        name: str | None = None,
        fit_window: int | None = None,
        **params: Any,
    ) -> None:
        if variant not in _CROSTON:
            raise ModelError(
                f"candidate '{name or self.kind}': croston variant must be one of {', '.join(_CROSTON)}, got {variant!r}"
            )
        self.variant = variant
        self.sf_name = _CROSTON[variant]
        super().__init__(season_length, name=name, fit_window=fit_window, **params)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "variant": self.variant}


class ADIDAModel(_Intermittent):
    """``kind: adida``: aggregate-disaggregate intermittent demand approach."""

    kind = "adida"
    sf_name = "ADIDA"


class IMAPAModel(_Intermittent):
    """``kind: imapa``: intermittent multiple aggregation prediction algorithm."""

    kind = "imapa"
    sf_name = "IMAPA"


class TSBModel(_Intermittent):
    """``kind: tsb``: Teunter-Syntetos-Babai; ``alpha_d`` and ``alpha_p`` (smoothing of the demand and of
    its probability) default to 0.1."""

    kind = "tsb"
    sf_name = "TSB"

    def __init__(
        self,
        season_length: int | None = None,
        *,
        alpha_d: float = 0.1,
        alpha_p: float = 0.1,
        name: str | None = None,
        fit_window: int | None = None,
    ) -> None:
        super().__init__(season_length, name=name, fit_window=fit_window, alpha_d=alpha_d, alpha_p=alpha_p)
