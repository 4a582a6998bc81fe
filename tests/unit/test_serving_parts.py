"""Small parts of the server, without a registry: model references, request models, the prediction log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tidecast.errors import ServingError
from tidecast.serving.loader import ModelRef, metrics_from_tags, parse_model_ref
from tidecast.serving.predlog import PredictionLogger
from tidecast.serving.schemas import ForecastRequest


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("champion", ModelRef("p", alias="champion")),
        ("3", ModelRef("p", version="3")),
        ("v12", ModelRef("p", version="12")),
        (7, ModelRef("p", version="7")),
        ("models:/other@challenger", ModelRef("other", alias="challenger")),
        ("models:/other/4", ModelRef("other", version="4")),
    ],
)
def test_model_references(ref: str | int, want: ModelRef) -> None:
    assert parse_model_ref(ref, "p") == want


@pytest.mark.parametrize("ref", ["models:/x", "models:/x/y/z", "bad alias!", ""])
def test_bad_model_references(ref: str) -> None:
    with pytest.raises(ServingError):
        parse_model_ref(ref, "p")


def test_metrics_from_version_tags() -> None:
    tags = {"tidecast.holdout_mae": "1.5", "tidecast.backtest_mase": "0.4", "tidecast.holdout_x": "n/a", "other": "1"}
    assert metrics_from_tags(tags) == {"holdout": {"mae": 1.5}, "backtest": {"mase": 0.4}}


def test_request_shorthand_times_and_quantiles() -> None:
    request = ForecastRequest.model_validate(
        {
            "timestamps": ["2024-01-01T00:00:00Z", "2024-01-01T02:00:00+01:00"],
            "values": [1, 2],
            "quantiles": [0.9, 0.1, 0.9],
        }
    )
    assert len(request.series) == 1 and request.quantiles == [0.1, 0.9]
    series = request.series[0]
    assert series._aware and np.diff(series._ns).tolist() == [3_600_000_000_000]  # both in UTC
    with pytest.raises(ValidationError, match=r"timestamps\[1\] .* repeats timestamps\[0\]"):
        ForecastRequest.model_validate(
            {"timestamps": ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"], "values": [1, 2]}
        )


def _forecast(n: int = 24) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": "s",
            "ds": pd.date_range("2025-01-01", periods=n, freq="h"),
            "yhat": np.arange(n, dtype=float),
            "q0.1": np.arange(n, dtype=float) - 1,
        }
    )


@pytest.mark.parametrize("process", [False, True])
def test_prediction_log_writes_in_the_background(tmp_path: Path, process: bool) -> None:
    from tidecast.serving.store import PredictionStore

    url = f"sqlite:///{tmp_path / 'p.db'}"
    logger = PredictionLogger(url, process=process)
    logger.start()
    try:
        assert logger.submit(_forecast(), model_name="m", model_version="2", alias="champion", batch_id="req-1")
        assert logger.flush(timeout=60)
        assert logger.submit(_forecast(), model_name="m", model_version="2", alias="champion", batch_id="req-2")
        assert logger.flush(timeout=60)
    finally:
        logger.stop()
    logged = PredictionStore(url).predictions("m")
    assert len(logged) == 48 and set(logged["batch_id"]) == {"req-1", "req-2"}
    assert set(logged["source"]) == {"serve"} and (logger.written, logger.failed) == (2, 0)


def test_prediction_log_failures_and_a_full_queue_never_raise(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    logger = PredictionLogger(f"sqlite:///{blocked / 'p.db'}", process=False, maxsize=1)
    logger.start()
    try:
        results = [logger.submit(_forecast(), model_name="m", model_version="1", alias=None) for _ in range(50)]
        assert logger.flush(timeout=30)
    finally:
        logger.stop()
    assert results[0] and logger.failed >= 1 and logger.dropped == results.count(False)
