"""Served forecasts written to the prediction store off the request path.

Requests put their forecast on a bounded queue and return; one daemon thread writes them with
:meth:`PredictionStore.log_forecast` (``source="serve"``). A full queue drops the forecast (counted),
and a failing or slow store never fails or slows a request beyond the cost of a queue put.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd

log = logging.getLogger("tidecast.serving")

_STOP = object()


class PredictionLogger:
    """A queue and a writer thread in front of a prediction store (created lazily, in the thread)."""

    def __init__(
        self,
        store_factory: Callable[[], Any],
        *,
        maxsize: int = 1000,
        source: str = "serve",
        on_drop: Callable[[], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._factory = store_factory
        self._store: Any = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.source = source
        self._on_drop = on_drop
        self._on_error = on_error
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tidecast-prediction-log", daemon=True)
            self._thread.start()

    def submit(self, forecast: pd.DataFrame, *, model_name: str, model_version: str, alias: str | None,
               batch_id: str | None = None) -> bool:
        """Queue a forecast for the store; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((forecast, model_name, model_version, alias, batch_id))
            return True
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                forecast, name, version, alias, batch_id = item
                if self._store is None:
                    self._store = self._factory()
                self._store.log_forecast(
                    forecast, model_name=name, model_version=version, alias=alias, source=self.source, batch_id=batch_id
                )
                self.written += 1
            except Exception as exc:
                self.failed += 1
                if self._on_error is not None:
                    self._on_error()
                log.warning("prediction store: a served forecast was not logged (%s: %s)", type(exc).__name__, exc)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queued forecasts are written (True) or ``timeout`` passes (False)."""
        import time

        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``), then end the thread."""
        if self._thread is None:
            return
        self.flush(timeout)
        try:
            self._queue.put(_STOP, timeout=1.0)
        except queue.Full:
            return
        self._thread.join(timeout=timeout)
        self._thread = None
