"""The REST server: ``create_app(spec)`` returns a FastAPI app serving the registry's champion.

Endpoints (``/docs`` shows them with examples):

* ``POST /forecast``: JSON series in, forecasts with quantiles out (:mod:`tidecast.serving.schemas`);
* ``POST /invocations``: MLflow's scoring protocol, answered as ``mlflow models serve`` answers;
* ``GET /health`` (the process is up), ``GET /ready`` (a model is loaded and its files are there),
  ``GET /metadata`` (the served model), ``GET /metrics`` (Prometheus);
* ``POST /admin/reload``: poll the registry now (``Authorization: Bearer <token>``, the token from
  the environment variable ``serving.token_env``; without one, admin endpoints answer 403).

A background thread loads the model, then polls the registry every ``serving.poll_interval``
seconds and swaps a new version in atomically: a request takes the model reference once when it
starts and finishes on it. The app's startup waits for the first model (up to ``startup_wait``
seconds), so a (re)started server accepts connections once it can answer them. Served forecasts
go to the prediction store from a queue (``serving.log_predictions``), never on the request's time.

>>> app = create_app(load_spec("examples/power"))          # doctest: +SKIP
>>> uvicorn.run(app, port=8000)                            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from tidecast import __version__
from tidecast.errors import ServingError, TidecastError
from tidecast.serving import fast
from tidecast.serving.batch import route_of
from tidecast.serving.invocations import InvocationError, coerce, parse_request, records
from tidecast.serving.loader import ModelHolder
from tidecast.serving.metrics import CONTENT_TYPE, ServingMetrics
from tidecast.serving.middleware import ServingMiddleware
from tidecast.serving.predlog import PredictionLogger
from tidecast.serving.schemas import (
    ErrorMessage,
    ForecastRequest,
    ForecastResponse,
    InvocationsRequest,
    InvocationsResponse,
    ValidationProblem,
)
from tidecast.serving.store import default_url
from tidecast.tracking.pyfunc import forecast_with

if TYPE_CHECKING:
    from tidecast.spec import Spec

log = logging.getLogger("tidecast.serving")

try:
    import orjson

    _OPTIONS = orjson.OPT_SERIALIZE_NUMPY
    _AWARE = _OPTIONS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z

    def dumps(payload: Any, *, aware: bool = False) -> bytes:
        return orjson.dumps(payload, option=_AWARE if aware else _OPTIONS)

except ImportError:  # pragma: no cover - orjson makes answers faster, the stdlib works too
    import numpy as _np

    def _default(value: Any) -> Any:
        if isinstance(value, _np.ndarray):
            if value.dtype.kind == "M":  # as orjson writes them: seconds, or microseconds when needed
                ns = value.astype("datetime64[ns]").view("int64")
                unit = "s" if not (ns % 1_000_000_000).any() else "us"
                return _np.datetime_as_string(value, unit=unit).tolist()
            return [None if v != v else v for v in value.tolist()] if value.dtype.kind == "f" else value.tolist()
        if isinstance(value, _np.generic):
            return value.item()
        raise TypeError(type(value).__name__)

    def dumps(payload: Any, *, aware: bool = False) -> bytes:
        text = json.dumps(payload, default=_default)
        if aware:  # timestamps of aware requests are UTC: mark them so
            import re

            text = re.sub(r'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)"', r'"\1Z"', text)
        return text.encode()


def json_response(
    payload: Any, status: int = 200, *, aware: bool = False, headers: dict[str, str] | None = None
) -> Response:
    return Response(dumps(payload, aware=aware), status_code=status, media_type="application/json", headers=headers)


def _problem_response(problems: list[dict[str, Any]]) -> Response:
    return json_response({"detail": problems}, status=422)


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors without the echoed input (bodies can be large) and pydantic's prefixes."""
    out = []
    for error in errors:
        message = str(error.get("msg", ""))
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        out.append({"loc": list(error.get("loc", ())), "msg": message, "type": str(error.get("type", "value_error"))})
    return out


_ERRORS = {
    413: {"model": ErrorMessage, "description": "The body is larger than serving.max_body_bytes."},
    422: {"model": ValidationProblem, "description": "The request cannot be served; each item names the problem."},
    503: {"model": ErrorMessage, "description": "No model is loaded yet."},
}


def _with_routes(body: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """For a per-series model: each forecast says which candidate made it, and whether that is the
    fallback (a series the mapping does not know); ``warnings`` lists the fallback series."""
    if not card.get("per_series"):
        return body
    unknown = []
    for item in body["forecasts"]:
        name, fallback = route_of(card, item["id"])  # type: ignore[misc]
        item["model"], item["fallback"] = name, fallback
        if fallback:
            unknown.append(item["id"])
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        fallback_name = (card.get("per_series") or {}).get("fallback")
        body["warnings"] = [
            f"{len(unknown)} series without a per-series winner ({shown}): forecast by the fallback '{fallback_name}'"
        ]
    return body


def _poll_loop(
    holder: ModelHolder,
    interval: float,
    stop: threading.Event,
    metrics: ServingMetrics,
    loaded: threading.Event | None = None,
) -> None:
    """Load the model (retrying until it loads; then ``loaded`` is set), then poll the registry every
    ``interval`` seconds."""
    delay = 1.0
    while not stop.is_set():
        try:
            holder.poll()
            break
        except Exception:
            metrics.poll_errors.inc()
            stop.wait(min(delay, interval) if interval > 0 else delay)
            delay = min(delay * 2, 30.0)
    if loaded is not None and holder.current is not None:
        loaded.set()
    if interval <= 0:
        return
    while not stop.wait(interval):
        try:
            holder.poll()
        except Exception:
            metrics.poll_errors.inc()


def create_app(
    spec: Spec,
    *,
    model: str | None = None,
    token: str | None = None,
    holder: ModelHolder | None = None,
    startup_wait: float = 30.0,
) -> FastAPI:
    """A FastAPI app serving ``model`` (an alias such as ``champion``, a version number, or a
    ``models:/`` URI; default ``serving.model``) of the spec's registered model.

    ``token`` is the admin bearer token (default: the environment variable ``serving.token_env``;
    it is never logged). The model is loaded in the background when the app starts; the startup
    waits up to ``startup_wait`` seconds for it (uvicorn listens only after the startup), then the
    server answers anyway: ``/ready`` and the forecast endpoints say 503 until a model is loaded.
    """
    settings = spec.serving
    metrics = ServingMetrics()
    if holder is None:
        holder = ModelHolder(spec, model, on_swap=metrics.model_swapped)
    elif holder.on_swap is None:
        holder.on_swap = metrics.model_swapped
    admin_token = token if token is not None else (os.environ.get(settings.token_env) or None)
    predlog: PredictionLogger | None = None
    if settings.log_predictions:
        predlog = PredictionLogger(spec.predictions.url or default_url(spec.state_dir))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop, loaded = threading.Event(), threading.Event()
        poller = threading.Thread(
            target=_poll_loop,
            args=(holder, settings.poll_interval, stop, metrics, loaded),
            name="tidecast-registry-poll",
            daemon=True,
        )
        poller.start()
        if predlog is not None:
            predlog.start()
        if startup_wait > 0 and holder.current is None:
            await anyio.to_thread.run_sync(loaded.wait, startup_wait)
        try:
            yield
        finally:
            stop.set()
            poller.join(timeout=5)
            if predlog is not None:
                predlog.stop(timeout=10)

    app = FastAPI(
        title="tidecast forecast server",
        version=__version__,
        description=(
            f"Serves `{holder.ref.uri}` from the project's MLflow registry, reloading it when the alias moves. "
            "`POST /forecast` takes JSON series; `POST /invocations` speaks MLflow's scoring protocol."
        ),
        lifespan=lifespan,
    )
    # forecasts are CPU-bound and mostly hold the GIL: more threads than cores only add contention
    compute = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.prediction_log = predlog
    app.add_middleware(ServingMiddleware, max_body=settings.max_body_bytes, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return _problem_response(_clean_errors(exc.errors()))

    def _no_model() -> Response:
        return json_response(
            {"detail": f"no model loaded: {holder.reason or 'loading'}"}, status=503, headers={"Retry-After": "1"}
        )

    def _log(out: Any, model: Any, request: Request) -> None:
        if predlog is not None:
            predlog.submit(
                out,
                model_name=model.name,
                model_version=model.version,
                alias=model.alias,
                batch_id=request.state.request_id if len(request.state.request_id) <= 36 else None,
            )

    # ------------------------------------------------------------------------------ forecasting
    @app.post(
        "/forecast",
        tags=["forecast"],
        summary="Forecast one or more series",
        response_model=None,
        responses={
            200: {"model": ForecastResponse, "description": "The forecasts, in the order of the series."},
            **_ERRORS,
        },
    )
    async def forecast(payload: ForecastRequest, request: Request) -> Response:
        """Send each series' recent history (at least the model's input window, on its frequency) and,
        for models with future-known inputs, those inputs for the history and the horizon. A single
        series may be sent as ``{"timestamps": [...], "values": [...]}``."""
        model = holder.current  # this request finishes on this model, whatever swaps meanwhile
        if model is None:
            return _no_model()
        return await anyio.to_thread.run_sync(_forecast, model, payload, request, limiter=compute)

    def _forecast(model: Any, payload: ForecastRequest, request: Request) -> Response:
        try:
            prepared = fast.prepare(model, payload, max_series=settings.max_series)
            out = fast.predict_frames(model, prepared.history, prepared.future, prepared.horizon, prepared.quantiles)
        except fast.InputProblems as exc:
            return _problem_response([p.to_dict() for p in exc.problems])
        except (ValueError, TidecastError) as exc:  # the forecaster refused this input
            return _problem_response([{"loc": ["body"], "msg": str(exc), "type": "model_error"}])
        metrics.series.labels("/forecast").inc(len(prepared.series))
        _log(out, model, request)
        return json_response(_with_routes(fast.answer(model, prepared, out), model.card), aware=prepared.aware)

    @app.post(
        "/invocations",
        tags=["forecast"],
        summary="MLflow scoring protocol",
        response_model=None,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": InvocationsRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
        responses={200: {"model": InvocationsResponse}, 400: {"description": "MLflow-style error"}},
    )
    async def invocations(request: Request) -> Response:
        """Body as for ``mlflow models serve``: one of ``dataframe_split``, ``dataframe_records``,
        ``inputs``, ``instances``, with optional ``params`` (``horizon``, ``quantiles``); rows after a
        series' last ``y`` carry the future exogenous values."""
        body = await request.body()
        model = holder.current
        if model is None:
            return _no_model()
        content_type = request.headers.get("content-type")
        return await anyio.to_thread.run_sync(_invoke, model, body, content_type, request, limiter=compute)

    def _invoke(model: Any, body: bytes, content_type: str | None, request: Request) -> Response:
        try:
            frame, params = parse_request(body, content_type)
            count = int(frame["unique_id"].nunique()) if "unique_id" in frame.columns else 1
            if count > settings.max_series:  # the same bound on one request's work as /forecast's
                raise InvocationError(
                    f"too many series: {count}, at most {settings.max_series} per request (serving.max_series)",
                    status=422,
                )
            frame = coerce(frame, model.card)
            out = forecast_with(model.forecaster, model.card, frame, params)
        except InvocationError as exc:
            return json_response(exc.to_dict(), status=exc.status)
        except (ValueError, TypeError, KeyError, TidecastError) as exc:  # the pyfunc refused this input
            return json_response(InvocationError(str(exc)).to_dict(), status=400)
        metrics.series.labels("/invocations").inc(int(out["unique_id"].nunique()) if len(out) else 0)
        _log(out, model, request)
        return json_response({"predictions": records(out)})

    # ------------------------------------------------------------------------------ operations
    @app.get("/health", tags=["operations"], summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="A model is loaded and its artifacts are there",
        responses={503: {"description": "Not ready; `reason` says why."}},
    )
    async def ready() -> Response:
        ok, reason = holder.readiness()
        metrics.ready.set(1 if ok else 0)
        model = holder.current
        if not ok:
            return json_response({"ready": False, "reason": reason}, status=503)
        return json_response(
            {"ready": True, "model": {"name": model.name, "version": model.version, "alias": model.alias}}
        )

    @app.get("/ping", tags=["operations"], summary="MLflow-compatible readiness probe", include_in_schema=False)
    async def ping() -> Response:
        ok, _ = holder.readiness()
        return Response("\n", status_code=200 if ok else 404, media_type="application/json")

    @app.get("/version", tags=["operations"], include_in_schema=False)
    async def version() -> Response:
        return Response(__version__, media_type="text/plain")

    @app.get("/metadata", tags=["operations"], summary="The served model", responses={503: {"model": ErrorMessage}})
    async def metadata() -> Response:
        model = holder.current
        if model is None:
            return _no_model()
        return json_response(
            {
                **model.describe(),
                "serving": {
                    "reference": holder.ref.uri,
                    "poll_interval": settings.poll_interval,
                    "last_poll": holder.last_poll,
                    "last_error": holder.last_error,
                    "swaps": holder.swaps,
                    "log_predictions": settings.log_predictions,
                    "max_series": settings.max_series,
                    "max_body_bytes": settings.max_body_bytes,
                },
            }
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        metrics.ready.set(1 if holder.readiness()[0] else 0)
        if predlog is not None:
            metrics.sync_prediction_log(dropped=predlog.dropped, failed=predlog.failed, pending=predlog.pending())
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # ----------------------------------------------------------------------------------- admin
    def _authorize(request: Request) -> Response | None:
        if not admin_token:
            return json_response({"detail": f"admin endpoints are disabled: set {settings.token_env}"}, status=403)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return json_response(
                {"detail": "admin endpoints need 'Authorization: Bearer <token>'"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), admin_token.encode()):
            return json_response({"detail": "invalid admin token"}, status=403)
        return None

    @app.post(
        "/admin/reload",
        tags=["admin"],
        summary="Poll the registry now and swap in a new version",
        responses={401: {"model": ErrorMessage}, 403: {"model": ErrorMessage}, 503: {"model": ErrorMessage}},
    )
    async def reload(request: Request) -> Response:
        refused = _authorize(request)
        if refused is not None:
            return refused
        before = holder.current
        try:
            changed = await run_in_threadpool(holder.poll)
        except ServingError as exc:
            still = f"; still serving v{before.version}" if before is not None else ""
            return json_response({"detail": f"reload failed: {exc.message}{still}"}, status=503)
        model = holder.current
        return json_response(
            {
                "reloaded": changed,
                "model": {"name": model.name, "version": model.version, "alias": model.alias} if model else None,
                "previous_version": before.version if before is not None and changed else None,
            }
        )

    return app


__all__ = ["create_app", "dumps", "json_response"]
