"""``POST /invocations``: MLflow's scoring protocol, answered as ``mlflow models serve`` answers our pyfunc.

Accepted bodies: JSON with exactly one of ``dataframe_split``, ``dataframe_records``, ``inputs`` or
``instances`` and optional ``params`` (``horizon``, ``quantiles``), or CSV (``text/csv``). The
frame goes through :func:`tidecast.tracking.pyfunc.forecast_with` (the pyfunc's own prediction),
after the type coercions MLflow's schema enforcement makes for our signature (numbers as
doubles). The answer is ``{"predictions": [records]}`` with ISO timestamps.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from tidecast.frames import ID, TARGET, TIME

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
REQUIRED_INPUT_FORMAT = (
    'The input must be a JSON dictionary with exactly one of the input fields {"dataframe_split", '
    '"dataframe_records", "inputs", "instances"}'
)


class InvocationError(Exception):
    """A request MLflow's server would refuse: answered ``{"error_code", "message"}`` with ``status``."""

    def __init__(self, message: str, status: int = 400, error_code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code

    def to_dict(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def _loads(body: bytes) -> Any:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is faster, the stdlib is enough
        orjson = None
    if orjson is not None:
        try:
            return orjson.loads(body)
        except ValueError:
            pass  # orjson refuses NaN/Infinity, which MLflow's json.loads accepts: try that
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvocationError(f"Ensure that input is a valid JSON formatted string. Error: {exc}") from None


def parse_request(body: bytes, content_type: str | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """(frame, params) of an ``/invocations`` body, or :class:`InvocationError`."""
    mime, _, options = (content_type or "application/json").partition(";")
    mime = mime.strip().lower() or "application/json"
    charset = "utf-8"
    for option in options.split(";"):
        key, _, value = option.strip().partition("=")
        if key.lower() == "charset":
            charset = value.strip().lower()
    if charset not in ("utf-8", "utf8"):
        raise InvocationError("The scoring server only supports UTF-8", status=415)
    if mime == "text/csv":
        try:
            return pd.read_csv(io.BytesIO(body)), None
        except Exception as exc:
            raise InvocationError(f"cannot read the CSV body: {exc}") from None
    if mime != "application/json":
        raise InvocationError(
            f"This predictor only supports the content types application/json and text/csv, got {content_type!r}",
            status=415,
        )
    payload = _loads(body)
    if not isinstance(payload, dict):
        raise InvocationError(f"{REQUIRED_INPUT_FORMAT}. Received a {type(payload).__name__}.")
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        raise InvocationError(f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {list(payload)}.")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvocationError(f"'params' must be a dictionary, got {type(params).__name__}")
    key = keys[0]
    data = payload[key]
    try:
        if key == "dataframe_split":
            if not isinstance(data, dict) or "data" not in data or set(data) - {"columns", "data", "index"}:
                raise InvocationError(
                    "Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields."
                )
            frame = pd.DataFrame(data=data["data"], columns=data.get("columns"), index=data.get("index"))
        elif key in ("dataframe_records", "instances"):
            if not isinstance(data, list):
                raise InvocationError(f"{key} must be a list of records, got {type(data).__name__}")
            frame = pd.DataFrame(data=data)
        elif isinstance(data, dict):  # inputs: columns
            frame = pd.DataFrame({k: list(v) if isinstance(v, list) else [v] for k, v in data.items()})
        elif isinstance(data, list):  # inputs: records
            frame = pd.DataFrame(data=data)
        else:
            raise InvocationError(
                f"inputs must be a dictionary of columns or a list of records, got {type(data).__name__}"
            )
    except InvocationError:
        raise
    except Exception as exc:
        raise InvocationError(f"Provided {key} field is not a valid dataframe representation. Error: {exc}") from None
    return frame, params


def coerce(frame: pd.DataFrame, card: dict[str, Any]) -> pd.DataFrame:
    """The conversions MLflow's schema enforcement makes for the logged signature before ``predict``:
    ``unique_id`` as strings, ``ds`` as datetimes, ``y`` and the exogenous columns as doubles."""
    frame = frame.copy()
    if ID in frame.columns:
        frame[ID] = frame[ID].astype(str)
    if TIME in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame[TIME]):
        parsed = pd.to_datetime(frame[TIME], errors="coerce")
        if parsed.isna().any() and frame[TIME].notna().any():
            bad = frame.loc[parsed.isna(), TIME].iloc[0]
            raise InvocationError(f"column '{TIME}' has values that are not timestamps (e.g. {bad!r})")
        frame[TIME] = parsed
    for column in [TARGET, *(card.get("exog_past") or []), *(card.get("exog_future") or [])]:
        if column in frame.columns and frame[column].dtype != float:
            try:
                frame[column] = frame[column].astype(float)
            except (TypeError, ValueError):
                raise InvocationError(f"column '{column}' must hold numbers") from None
    return frame


def records(out: pd.DataFrame) -> list[dict[str, Any]]:
    """``out`` as MLflow's JSON records (``DataFrame.to_dict(orient="records")``, timestamps in ISO 8601)."""
    columns = list(out.columns)
    arrays = []
    for column in columns:
        values = out[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            arrays.append([None if pd.isna(t) else t.isoformat() for t in values])
        elif values.dtype == float:
            arrays.append([None if v != v else v for v in values.to_numpy().tolist()])
        else:
            arrays.append(values.tolist())
    return [dict(zip(columns, row, strict=True)) for row in zip(*arrays, strict=True)]
