"""One JSON error shape for every failure: `{"error": {"code", "message", "details"}}`.

Library exceptions (`WhalesError` subclasses) map to HTTP statuses here; routes raise `ServiceError`
for the service's own conditions (overload, auth, limits). Bad input never becomes a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from slowapi.errors import RateLimitExceeded
from starlette.exceptions import HTTPException as StarletteHTTPException

from whales_identify.errors import (
    CatalogModelMismatchError,
    ConflictError,
    ImageTooLargeError,
    InvalidImageError,
    ModelNotAvailableError,
    NotFoundError,
    UnknownModelError,
    WhalesError,
)

log = logging.getLogger("whales_be_service")


class ServiceError(Exception):
    """An error the service answers with directly (status, stable code, English message)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def unsupported_media(message: str) -> ServiceError:
    return ServiceError(415, "unsupported_media_type", message)


def too_large(message: str, details: Any = None) -> ServiceError:
    return ServiceError(413, "payload_too_large", message, details)


def overloaded(retry_after_s: int) -> ServiceError:
    return ServiceError(503, "overloaded", "the inference queue is full; retry shortly",
                        {"retry_after_s": retry_after_s}, {"Retry-After": str(retry_after_s)})


# status for each library exception (most specific first)
_LIBRARY_STATUS: list[tuple[type[WhalesError], int]] = [
    (ImageTooLargeError, 413),
    (InvalidImageError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (CatalogModelMismatchError, 503),
    (ModelNotAvailableError, 503),
    (UnknownModelError, 503),
]

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
               429: "rate_limited", 500: "internal_error", 503: "service_unavailable"}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def library_status(exc: WhalesError) -> int:
    for cls, status in _LIBRARY_STATUS:
        if isinstance(exc, cls):
            return status
    return 400


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _whales_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WhalesError)
    return error_response(library_status(exc), exc.code, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    details = None if isinstance(exc.detail, str) else exc.detail
    return error_response(exc.status_code, code, message, details, dict(exc.headers or {}))


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item = {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")),
                "type": str(err.get("type", ""))}
        out.append(item)
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _clean_validation_errors(exc.errors())
    where = ", ".join(".".join(d["loc"]) + ": " + d["msg"] for d in details[:5])
    return error_response(422, "validation_error", f"invalid request parameters ({where})", details)


async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimitExceeded)
    retry = str(getattr(exc, "retry_after", None) or 60)
    return error_response(429, "rate_limited", f"rate limit exceeded: {exc.detail}",
                          {"limit": str(exc.detail)}, {"Retry-After": retry})


def is_database_error(exc: BaseException) -> bool:
    """An error raised by a database driver (sqlite3, psycopg, its pool): the store is down or busy."""
    return any(type(e).__module__.split(".")[0] in ("sqlite3", "psycopg", "psycopg_pool")
               for e in (exc, exc.__cause__) if e is not None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_database_error(exc):
        # The driver's message (paths, SQL, host names) goes to the log only.
        log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        retry = str(getattr(request.app.state.settings, "retry_after_s", 5))
        return error_response(503, "store_unavailable", "the database is unavailable; retry shortly",
                              {"component": "store"}, {"Retry-After": retry})
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(WhalesError, _whales_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RateLimitExceeded, _rate_limited)
    app.add_exception_handler(Exception, _unexpected)
