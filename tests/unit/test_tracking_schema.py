"""The feature frame's MLflow dataset schema, computed without MLflow's value-by-value scan
(issue 19: seconds of the ``track`` step), is the schema MLflow infers itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")

from mlflow.types.utils import _infer_schema

from tidecast.tracking.records import frame_schema, preset_schema


def _frame(rows: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "unique_id": [f"s{i % 3}" for i in range(rows)],
            "ds": pd.date_range("2024-01-01", periods=rows, freq="5min"),
            "y": rng.normal(size=rows),
            "temperature": rng.normal(size=rows).astype(np.float32),
            "hour": np.arange(rows) % 24,
            "hour32": (np.arange(rows) % 24).astype(np.int32),
            "weekend": np.arange(rows) % 7 > 4,
            "small": (np.arange(rows) % 5).astype(np.uint8),
        }
    )
    frame.loc[7, "y"] = np.nan
    frame["ds_gap"] = frame["ds"].where(frame.index != 3)
    frame["ds_local"] = frame["ds"].dt.tz_localize("UTC")
    frame["maybe"] = ["a" if i != 5 else None for i in range(rows)]
    frame["mixed_nan"] = ["b" if i != 9 else np.nan for i in range(rows)]
    frame["category"] = pd.Categorical(["x", "y"] * (rows // 2))
    frame["nullable"] = pd.array([1, None] * (rows // 2), dtype="Int64")
    return frame


def test_the_schema_is_mlflows_own() -> None:
    frame = _frame()
    assert frame_schema(frame).to_json() == _infer_schema(frame).to_json()
    full = frame.dropna()
    assert frame_schema(full).to_json() == _infer_schema(full).to_json()
    assert frame_schema(frame.iloc[:0]).to_json() == _infer_schema(frame.iloc[:0]).to_json()


def test_the_dataset_takes_it_without_inferring() -> None:
    import mlflow

    frame = _frame()
    dataset = mlflow.data.from_pandas(frame, name="x", targets="y", digest="abc")
    preset_schema(dataset, frame)
    assert "schema" in dataset.__dict__
    assert dataset.schema.to_json() == _infer_schema(frame).to_json()
    preset_schema(object(), frame)  # another kind of dataset: left alone, no error
