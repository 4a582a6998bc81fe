"""Batch prediction: forecast every series of a data file with a registered model, by name and version.

:func:`predict_batch` reads the file (or the spec's data source) as training does
(:func:`~tidecast.data.sources.read_source`, :func:`~tidecast.data.long_format.to_long`, then
:func:`~tidecast.data.clean.clean` with the spec's ``clean`` section), takes the last ``history``
of each series, forecasts through the model's own prediction
(:func:`~tidecast.tracking.pyfunc.forecast_with`), writes the forecasts (CSV or Parquet) and logs
them to the prediction store (``source="predict"``). It does not draw: ``tidecast predict --plot``
draws the result's ``history`` and ``forecast`` with :func:`tidecast.reporting.bands.forecast_file`.

The future values of the exogenous columns the model needs for the horizon (a weather forecast,
say) come from ``future`` (a file; see :mod:`tidecast.serving.future`), else from the input's rows
after a series' last observed target (with the target empty), else from the spec's
``serving.future`` file.

>>> result = predict_batch(spec, model_name="power", alias="champion", output="fc.csv")  # doctest: +SKIP
>>> result.forecast.columns.tolist()                                                      # doctest: +SKIP
['unique_id', 'ds', 'yhat', 'q0.1', 'q0.9']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tidecast import calendar
from tidecast.data.clean import clean
from tidecast.data.long_format import to_long
from tidecast.data.sources import read_source, source_label
from tidecast.durations import to_steps
from tidecast.errors import DataError, ServingError, SpecError
from tidecast.frames import ID, POINT, TARGET, TIME, quantile_columns
from tidecast.serving.future import choose_future
from tidecast.serving.loader import ModelRef, load_model
from tidecast.serving.model import LoadedModel
from tidecast.serving.store import store_for
from tidecast.tracking.pyfunc import forecast_with

if TYPE_CHECKING:
    from tidecast.spec import Spec

log = logging.getLogger("tidecast.serving")

OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class BatchResult:
    """What :func:`predict_batch` did."""

    model: LoadedModel
    forecast: pd.DataFrame
    history: pd.DataFrame
    horizon: int
    history_steps: int
    source: str
    future_source: str | None = None
    output: Path | None = None
    plot: Path | None = None
    """Set by the caller that drew the result (``tidecast predict --plot``)."""
    batch_id: str | None = None
    skipped: list[str] = field(default_factory=list)
    clean_summary: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Per series: history points, forecast start/end, mean point forecast, mean interval width."""
        rows = []
        qcols = quantile_columns(self.forecast.columns)
        for uid, part in self.forecast.groupby(ID, sort=False):
            hist = self.history[self.history[ID] == uid]
            width = float((part[qcols[-1]] - part[qcols[0]]).mean()) if len(qcols) >= 2 else float("nan")
            rows.append(
                {
                    "series": uid,
                    "history": len(hist),
                    "last_observed": hist[TIME].max(),
                    "from": part[TIME].min(),
                    "to": part[TIME].max(),
                    "mean_yhat": float(part[POINT].mean()),
                    "mean_width": width,
                }
            )
        return pd.DataFrame(rows)


def _steps(value: str | int | None, freq: str, field: str) -> int | None:
    if value is None:
        return None
    try:
        return to_steps(value, freq, field=field)
    except SpecError as exc:
        raise ServingError(exc.message) from None


def _model_ref(spec: Spec, model_name: str | None, version: str | int | None, alias: str | None) -> Any:
    if version is not None and alias is not None:
        raise ServingError("give either --version or --alias, not both")
    name = model_name or spec.model_name
    if version is not None:
        text = str(version).lstrip("vV")
        if not text.isdigit():
            raise ServingError(f"--version must be a version number, got {version!r}")
        return ModelRef(name, version=text)
    return ModelRef(name, alias=alias or "champion")


def read_frame(spec: Spec, input_path: str | Path | None) -> tuple[pd.DataFrame, str]:
    """The canonical long frame of ``input_path`` (read with the spec's data settings) or of the spec's source."""
    data = spec.data
    if input_path is not None:
        path = Path(input_path).expanduser()
        if not path.exists():
            raise DataError(f"{input_path}: no such file")
        data = data.model_copy(update={"source": str(path.resolve()), "format": None})
    label = source_label(data.source)
    raw = read_source(data)
    return to_long(raw, data, spec.target, source_name=label), label


def split_future(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(observed rows, future rows): rows after a series' last observed target are its future rows."""
    observed = frame[TARGET].notna()
    last = frame[TIME].where(observed).groupby(frame[ID], sort=False).transform("max")
    future = frame[TIME] > last
    return frame[~future].reset_index(drop=True), frame[future].reset_index(drop=True)


def predict_batch(
    spec: Spec,
    *,
    model_name: str | None = None,
    version: str | int | None = None,
    alias: str | None = None,
    input_path: str | Path | None = None,
    future_path: str | Path | None = None,
    history: str | int | None = None,
    horizon: str | int | None = None,
    output: str | Path | None = None,
    log_predictions: bool = True,
    loaded: LoadedModel | None = None,
) -> BatchResult:
    """Forecast every series of ``input_path`` (default: the spec's source) with a registered model.

    ``history``/``horizon`` are durations (``24h``) or step counts (defaults: the model's input
    window and horizon). ``future_path`` is a file with the future values of the model's
    known-in-future exogenous columns (default: the input's own future rows, else the spec's
    ``serving.future``). Raises :class:`ServingError` for an unknown model, version or alias, and
    :class:`DataError` for data the model cannot forecast from (missing future values named).
    """
    if output is not None and Path(output).suffix.lower() not in OUTPUT_FORMATS:
        raise ServingError(f"--output {output}: unknown format (use {', '.join(OUTPUT_FORMATS)})")
    model = loaded or load_model(spec, _model_ref(spec, model_name, version, alias), warmup=False)
    freq = model.freq
    if calendar.offset_of(freq) != calendar.offset_of(spec.data.frequency):
        raise ServingError(
            f"model {model.name} v{model.version} forecasts at {freq}, the spec's data is at {spec.data.frequency}"
        )
    window = model.input_window
    history_steps = _steps(history, freq, "--history") or window
    if history_steps < window:
        raise ServingError(
            f"--history {history} is {history_steps} steps; the model needs at least {window} (its input window)"
        )
    steps = _steps(horizon, freq, "--horizon") or model.horizon
    if steps < 1:
        raise ServingError("--horizon must be at least one step")
    if steps > model.horizon:
        raise ServingError(
            f"--horizon {horizon} is {steps} steps; model {model.name} v{model.version} forecasts at most {model.horizon}"
        )

    frame, label = read_frame(spec, input_path)
    observed, future = split_future(frame)
    cleaned = clean(observed, spec.clean, spec.data.frequency)
    clean_frame = cleaned.frame
    lengths = clean_frame.groupby(ID, sort=False).size()
    short = sorted(str(u) for u in lengths[lengths < window].index)
    if short and len(short) == len(lengths):
        raise DataError(
            f"{label}: every series is shorter than the model's input window of {window} steps "
            f"(longest: {int(lengths.max())} steps)"
        )
    if short:
        log.warning(
            "%s: %d series shorter than the input window are skipped: %s", label, len(short), ", ".join(short[:10])
        )
        clean_frame = clean_frame[~clean_frame[ID].isin(short)]
        future = future[~future[ID].isin(short)]
    recent = clean_frame.groupby(ID, sort=False).tail(history_steps).reset_index(drop=True)

    exog = [*(model.card.get("exog_past") or []), *(model.card.get("exog_future") or [])]
    missing = [c for c in exog if c not in recent.columns]
    if missing:
        raise DataError(
            f"{label}: model {model.name} v{model.version} needs column(s) {', '.join(missing)}, absent from the data"
        )
    columns = [ID, TIME, TARGET, *exog]
    model_input = recent[columns]
    needs_future = list(model.card.get("exog_future") or [])
    future_label = None
    if needs_future:
        future, future_label = choose_future(spec, recent, future, future_path, needs_future, steps, freq)
        future = future.reindex(columns=columns)
        model_input = pd.concat([model_input, future[columns]], ignore_index=True)
        model_input = model_input.sort_values([ID, TIME], kind="stable").reset_index(drop=True)
    params = {"horizon": steps, "quantiles": model.quantiles}
    try:
        forecast = forecast_with(model.forecaster, model.card, model_input, params)
    except ValueError as exc:
        message = str(exc)
        if "future row" in message:
            message = message.split("; append", 1)[0] + (
                f"; append the next {steps} rows of each series to the data, with '{spec.data.target_column}' "
                f"empty and the future values of {', '.join(needs_future)}, or give them in a file "
                f"with --future (or serving.future in the spec)"
            )
        raise DataError(f"{label}: {message}") from None

    forecast = with_routes(forecast, model.card)
    result = BatchResult(
        model=model,
        forecast=forecast,
        history=recent,
        horizon=steps,
        history_steps=history_steps,
        source=label,
        future_source=future_label,
        skipped=short,
        clean_summary=cleaned.summary,
    )
    if output is not None:
        result.output = write_forecast(forecast, output)
    if log_predictions:
        result.batch_id = store_for(spec).log_forecast(
            forecast, model_name=model.name, model_version=model.version, alias=model.alias, source="predict"
        )
    return result


def route_of(card: dict[str, Any], uid: str) -> tuple[str, bool] | None:
    """For a per-series model (``selection.scope: per_series``): (the candidate that forecasts series
    ``uid``, whether it is the fallback because the mapping does not know ``uid``); None otherwise."""
    routes = card.get("per_series") or {}
    if not routes:
        return None
    mapping = routes.get("mapping") or {}
    name = mapping.get(str(uid))
    return (str(name), False) if name is not None else (str(routes.get("fallback")), True)


def with_routes(forecast: pd.DataFrame, card: dict[str, Any]) -> pd.DataFrame:
    """``forecast`` plus, for a per-series model, a ``model`` column: the candidate of each row's series."""
    if not card.get("per_series") or ID not in forecast.columns:
        return forecast
    names = {u: route_of(card, u)[0] for u in pd.unique(forecast[ID].astype(str))}  # type: ignore[index]
    return forecast.assign(model=forecast[ID].astype(str).map(names))


def write_forecast(forecast: pd.DataFrame, path: str | Path) -> Path:
    """Write ``forecast`` as CSV or Parquet (by the extension); returns the path."""
    path = Path(path)
    kind = OUTPUT_FORMATS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "csv":
            forecast.to_csv(path, index=False)
        else:
            forecast.to_parquet(path, index=False)
    except OSError as exc:
        raise ServingError(f"cannot write {path}: {exc}") from None
    return path


__all__ = ["BatchResult", "predict_batch", "read_frame", "split_future", "write_forecast"]
