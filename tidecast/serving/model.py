"""A registered tidecast model version as the server holds it: the unpickled forecaster, its model
card and what the registry says about it. :mod:`tidecast.serving.loader` loads it,
:mod:`tidecast.serving.fast` answers requests with it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LoadedModel:
    """A registered model version, unwrapped: the forecaster and its model card, plus registry facts."""

    name: str
    version: str
    alias: str | None
    forecaster: Any
    card: dict[str, Any]
    artifact_dir: Path
    artifact_files: tuple[Path, ...]
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    run_id: str | None = None
    source: str | None = None
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    temporary_dir: Path | None = None  # a downloaded copy, removed when the model is released

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def spec_hash(self) -> str | None:
        return self.tags.get("tidecast.spec_fingerprint")

    @property
    def freq(self) -> str:
        return str(self.card["freq"])

    @property
    def input_window(self) -> int:
        return int(self.card["input_window"])

    @property
    def horizon(self) -> int:
        return int(self.card["horizon"])

    @property
    def quantiles(self) -> list[float]:
        return [float(q) for q in self.card.get("quantiles") or []]

    def artifacts_present(self) -> tuple[bool, str | None]:
        """Whether the files the model was loaded from are still there (for ``/ready``)."""
        for path in self.artifact_files:
            if not path.is_file():
                return False, f"model {self.name} v{self.version}: artifact {path} is missing"
        return True, None

    def describe(self) -> dict[str, Any]:
        """What ``GET /metadata`` answers."""
        card = self.card
        ids = card.get("series_ids")
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "uri": self.uri,
            "run_id": self.run_id,
            "model": card.get("model"),
            "kind": card.get("kind"),
            "spec_hash": self.spec_hash,
            "data_fingerprint": self.tags.get("tidecast.data_fingerprint"),
            "metric": self.tags.get("tidecast.metric"),
            "metrics": self.metrics,
            "freq": self.freq,
            "input_window": self.input_window,
            "horizon": self.horizon,
            "quantiles": self.quantiles,
            "exog_future": list(card.get("exog_future") or []),
            "exog_past": list(card.get("exog_past") or []),
            "timezone": card.get("timezone"),
            "trained_until": card.get("trained_until"),
            "n_series": card.get("n_series"),
            "series_ids": ids if ids is None or len(ids) <= 50 else [*ids[:50], "..."],
            "target_transform": card.get("target_transform"),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            "load_seconds": round(self.load_seconds, 3),
        }

    def release(self) -> None:
        """Remove a downloaded copy of the artifacts (the forecaster stays usable: it is in memory)."""
        if self.temporary_dir is not None:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)


__all__ = ["LoadedModel"]
