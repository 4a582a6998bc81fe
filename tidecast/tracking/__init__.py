"""Tracking and registry on MLflow: one run per training, a pyfunc model, a gated ``champion`` alias.

* :mod:`~tidecast.tracking.store`: where the runs live (SQLite under ``.tidecast/`` by default) and a
  client that fails fast;
* :mod:`~tidecast.tracking.runs`: :func:`track_training`, the parent/candidate/trial runs;
* :mod:`~tidecast.tracking.pyfunc`: :class:`TidecastModel`, the forecaster as an MLflow pyfunc;
* :mod:`~tidecast.tracking.registry`: registration, the promotion gate, promote and rollback;
* :mod:`~tidecast.tracking.compare` and :mod:`~tidecast.tracking.reproduce`: reading runs back.

Submodules import MLflow lazily where they can; import what you need from them directly.
"""

from __future__ import annotations

__all__ = ["compare", "pyfunc", "registry", "reproduce", "runs", "store"]
