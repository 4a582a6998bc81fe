"""Prometheus metrics of a server (one registry per app, so several apps in one process don't clash).

``GET /metrics`` answers them in the Prometheus text format:

* ``tidecast_requests_total{endpoint, method, status}`` and ``tidecast_request_seconds{endpoint}``;
* ``tidecast_model_version{model}`` (the served version number), ``tidecast_model_info{model, version, alias}``,
  ``tidecast_model_ready``, ``tidecast_model_swaps_total``, ``tidecast_registry_poll_errors_total``;
* ``tidecast_forecast_series_total``, ``tidecast_prediction_log_dropped_total``, ``tidecast_prediction_log_errors_total``,
  ``tidecast_prediction_log_pending``.
"""

from __future__ import annotations

import contextlib
from typing import Any

try:
    import prometheus_client as prom
except ImportError:  # pragma: no cover - prometheus_client is a dependency of serving
    prom = None

ENDPOINTS = frozenset(
    {
        "/forecast",
        "/invocations",
        "/health",
        "/ready",
        "/metadata",
        "/metrics",
        "/admin/reload",
        "/ping",
        "/version",
        "/docs",
        "/openapi.json",
        "/redoc",
    }
)
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def endpoint_label(path: str) -> str:
    """The metric label of a request path: a known route, else ``other`` (keeps label values few)."""
    return path if path in ENDPOINTS else "other"


class ServingMetrics:
    """The counters, gauges and histogram of one app."""

    def __init__(self) -> None:
        if prom is None:  # pragma: no cover
            raise RuntimeError("prometheus_client is not installed (pip install prometheus-client)")
        prom.disable_created_metrics()  # the *_created samples only clutter a server's scrape
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = prom.Counter(
            "tidecast_requests", "HTTP requests answered.", ["endpoint", "method", "status"], registry=r
        )
        self.latency = prom.Histogram(
            "tidecast_request_seconds", "Time to answer a request.", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.model_version = prom.Gauge(
            "tidecast_model_version", "Version number of the served model.", ["model"], registry=r
        )
        self.model_info = prom.Gauge(
            "tidecast_model_info",
            "The served model (1 for the current one).",
            ["model", "version", "alias"],
            registry=r,
        )
        self.ready = prom.Gauge(
            "tidecast_model_ready", "1 when a model is loaded and its artifacts are there.", registry=r
        )
        self.swaps = prom.Counter("tidecast_model_swaps", "Hot swaps to a new model version.", registry=r)
        self.poll_errors = prom.Counter("tidecast_registry_poll_errors", "Failed registry polls or loads.", registry=r)
        self.series = prom.Counter("tidecast_forecast_series", "Series forecast.", ["endpoint"], registry=r)
        self.log_dropped = prom.Counter(
            "tidecast_prediction_log_dropped", "Forecasts not logged because the log queue was full.", registry=r
        )
        self.log_errors = prom.Counter(
            "tidecast_prediction_log_errors", "Forecasts the prediction store failed to write.", registry=r
        )
        self.log_pending = prom.Gauge(
            "tidecast_prediction_log_pending", "Forecasts queued for the prediction store.", registry=r
        )
        self._info_labels: tuple[str, str, str] | None = None
        self._log_seen = {"dropped": 0, "failed": 0}

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = endpoint_label(path)
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def model_swapped(self, old: Any, new: Any) -> None:
        if old is not None:
            self.swaps.inc()
        if self._info_labels is not None:
            self.model_info.remove(*self._info_labels)
        self._info_labels = (new.name, str(new.version), str(new.alias or ""))
        self.model_info.labels(*self._info_labels).set(1)
        with contextlib.suppress(ValueError):
            self.model_version.labels(new.name).set(float(new.version))
        self.ready.set(1)

    def sync_prediction_log(self, *, dropped: int, failed: int, pending: int) -> None:
        """Bring the prediction-log counters up to the writer's own counts (read at scrape time)."""
        for key, counter, value in (("dropped", self.log_dropped, dropped), ("failed", self.log_errors, failed)):
            delta = value - self._log_seen[key]
            if delta > 0:
                counter.inc(delta)
                self._log_seen[key] = value
        self.log_pending.set(pending)

    def render(self) -> bytes:
        return prom.generate_latest(self.registry)
