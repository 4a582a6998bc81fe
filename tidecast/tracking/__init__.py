"""Tracking and registry on MLflow: one run per training, a pyfunc model, a gated ``champion`` alias.

* :mod:`~tidecast.tracking.store`: where the runs live (SQLite under ``.tidecast/`` by default) and a
  client that fails fast;
* :mod:`~tidecast.tracking.records`: metrics/params/tags within MLflow's limits, process tags, run searches;
* :mod:`~tidecast.tracking.provenance`: git commit, library versions, the redacted spec;
* :mod:`~tidecast.tracking.runs`: :func:`track_training`, the parent run (with
  :mod:`~tidecast.tracking.candidates`: the nested candidate and trial runs); it draws nothing: the
  layer above passes ``draw_backtest`` (:func:`tidecast.reporting.bands.backtest_png`);
* :mod:`~tidecast.tracking.pyfunc`: :class:`TidecastModel`, the forecaster as an MLflow pyfunc;
* :mod:`~tidecast.tracking.versions`: registered versions and aliases;
* :mod:`~tidecast.tracking.gate`: the promotion gate's checks on the held-out stretch;
* :mod:`~tidecast.tracking.registry`: register and gate, promote and rollback;
* :mod:`~tidecast.tracking.compare` and :mod:`~tidecast.tracking.reproduce`: reading runs back.

Submodules import MLflow lazily where they can; import what you need from them directly.
"""

from __future__ import annotations

__all__ = [
    "candidates",
    "compare",
    "gate",
    "provenance",
    "pyfunc",
    "records",
    "registry",
    "reproduce",
    "runs",
    "store",
    "versions",
]
