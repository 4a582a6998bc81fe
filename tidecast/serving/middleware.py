"""The outermost layer of the app (plain ASGI, cheap): request ids, the body-size cap, metrics, and
no stack traces in answers.

* every answer carries ``X-Request-ID`` (the caller's, when it is a sane token, else a new one);
* a body larger than ``max_body`` is refused with 413 *before* it is parsed: at once when
  ``Content-Length`` says so, else as soon as the streamed bytes pass the cap;
* an unhandled exception is logged with its traceback and answered
  ``500 {"detail": "internal error", "request_id": ...}``;
* each request is counted and timed in :class:`~tidecast.serving.metrics.ServingMetrics`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException

log = logging.getLogger("tidecast.serving")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the cap (FastAPI re-raises HTTPExceptions)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413, detail=f"request body too large: the limit is {limit} bytes (serving.max_body_bytes)"
        )


def _json(status: int, payload: dict[str, Any], request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = json.dumps(payload).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class ServingMiddleware:
    """See the module docstring. ``metrics`` may be None."""

    def __init__(self, app: Any, *, max_body: int, metrics: Any = None) -> None:
        self.app = app
        self.max_body = int(max_body)
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        length = None
        for key, value in scope.get("headers") or ():
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    request_id = candidate
            elif key == b"content-length":
                length = value
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        state = {"status": 500, "started": False}
        limit = self.max_body

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        async def reply(status: int, payload: dict[str, Any]) -> None:
            start, body = _json(status, payload, request_id)
            state["status"], state["started"] = status, True
            await send(start)
            await send(body)

        try:
            if length is not None:
                try:
                    declared = int(length)
                except ValueError:
                    await reply(400, {"detail": "invalid Content-Length header"})
                    return
                if declared > limit:
                    await reply(413, {"detail": BodyTooLarge(limit).detail})
                    return
            received = 0

            async def limited_receive() -> dict[str, Any]:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge as exc:
            if not state["started"]:
                await reply(413, {"detail": exc.detail})
        except Exception:
            log.exception("request %s %s failed (request id %s)", scope.get("method"), scope.get("path"), request_id)
            if not state["started"]:
                await reply(500, {"detail": "internal error", "request_id": request_id})
        finally:
            if self.metrics is not None:
                self.metrics.observe(
                    scope.get("path", ""), scope.get("method", ""), state["status"], time.perf_counter() - started
                )
