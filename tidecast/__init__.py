"""tidecast: one YAML file from raw time series to a tracked, served, monitored forecaster."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
