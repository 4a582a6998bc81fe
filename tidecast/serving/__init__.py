"""Serving: the REST server (:func:`~tidecast.serving.app.create_app`), the model loader and holder
(:mod:`tidecast.serving.loader`) and batch prediction (:mod:`tidecast.serving.batch`).

Imports are lazy: ``import tidecast.serving`` does not import FastAPI or MLflow.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LoadedModel", "ModelHolder", "create_app", "load_model", "predict_batch"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tidecast.serving.app import create_app

        return create_app
    if name in ("LoadedModel", "ModelHolder", "load_model"):
        from tidecast.serving import loader

        return getattr(loader, name)
    if name == "predict_batch":
        from tidecast.serving.batch import predict_batch

        return predict_batch
    raise AttributeError(f"module 'tidecast.serving' has no attribute {name!r}")
