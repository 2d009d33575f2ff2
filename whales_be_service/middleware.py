"""One pure-ASGI middleware: request-size cap (413), rate limit charged before a body is read,
request metrics, rate-limit and security headers; and the web page's static files (`WebPage`)."""

from __future__ import annotations

import json
import time
from pathlib import PurePosixPath
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from whales_be_service import metrics
from whales_be_service.errors import ServiceError, error_body, error_response
from whales_be_service.ratelimit import CHARGED, RateLimiter

UNLIMITED_PATHS = ("/health", "/ready", "/metrics")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# The page's policy: only its own scripts, styles and API; no framing (clickjacking); same as
# frontend/nginx.conf, which serves the page behind the compose proxy.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer"}
PAGE_SUFFIXES = frozenset({".html", ".js", ".css", ".svg", ".png", ".ico", ".webmanifest"})


class WebPage(StaticFiles):
    """The static web page with its security headers; files that are not part of a web page (the
    folder's nginx.conf, notes, dotfiles) are not served."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        name = PurePosixPath(path)
        if path not in ("", ".") and (name.suffix.lower() not in PAGE_SUFFIXES
                                      or any(p.startswith(".") for p in name.parts)):
            raise HTTPException(404)
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def route_label(scope: Scope) -> str:
    """The route template (low cardinality), `static` for the web page, `unmatched` otherwise."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    return path or "static"


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, limiter: RateLimiter | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter

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
        refused = self._charge_early(scope)
        if refused is not None:
            flags["status"] = refused.status
            await error_response(refused.status, refused.code, refused.message, refused.details,
                                 refused.headers)(scope, receive, send)
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
                extra = {**((scope.get("state") or {}).get("rate_limit_headers") or {}),
                         "X-Content-Type-Options": "nosniff"}
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in extra.items()
                    if k.lower().encode() not in present]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        finally:
            self._record(scope, flags["status"], started)

    def _charge_early(self, scope: Scope) -> ServiceError | None:
        """Charge a request that carries a body before reading it (an upload over the limit costs
        the server nothing); the route's own charge is then skipped. Returns the 429 to send."""
        if (self.limiter is None or scope.get("method") not in BODY_METHODS
                or scope.get("path", "") in UNLIMITED_PATHS):
            return None
        request = Request(scope)
        try:
            self.limiter.hit(request, 1)
        except ServiceError as exc:
            return exc
        setattr(request.state, CHARGED, True)
        return None

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
