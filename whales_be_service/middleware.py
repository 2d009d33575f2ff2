"""One pure-ASGI middleware: request-size cap (413), request metrics, rate-limit headers."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whales_be_service import metrics
from whales_be_service.errors import error_body


def route_label(scope: Scope) -> str:
    """The route template (low cardinality), `static` for the web page, `unmatched` otherwise."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    return path or "static"


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        limit = self.max_body_bytes
        flags: dict[str, Any] = {"too_large": False, "status": 500, "replaced": False}
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await self._too_large(send, limit, flags)
            self._record(scope, flags["status"], started)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    flags["too_large"] = True
                    raise ValueError("request body exceeds the configured limit")
            return message

        async def send_wrapper(message: Message) -> None:
            if flags["replaced"]:
                return
            if message["type"] == "http.response.start":
                if flags["too_large"]:  # the body parser failed because we cut the stream
                    flags["replaced"] = True
                    await self._too_large(send, limit, flags)
                    return
                flags["status"] = message["status"]
                extra = (scope.get("state") or {}).get("rate_limit_headers")
                if extra:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    message["headers"] = list(message.get("headers", [])) + [
                        (k.lower().encode(), v.encode()) for k, v in extra.items()
                        if k.lower().encode() not in present]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        finally:
            self._record(scope, flags["status"], started)

    async def _too_large(self, send: Send, limit: int, flags: dict[str, Any]) -> None:
        body = json.dumps(error_body("payload_too_large",
                                     f"the request body is larger than the limit of {limit} bytes",
                                     {"limit_bytes": limit})).encode()
        flags["status"] = 413
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _record(scope: Scope, status: int, started: float) -> None:
        metrics.record_request(route_label(scope), scope.get("method", ""), status,
                               time.perf_counter() - started)
