"""The ASGI app: `whales_be_service.main:app`, or `create_app(settings)` in tests.

The lifespan builds the components in a background thread, so `/health` answers at once while the
models load; `/ready` turns 200 when they (and one warm-up inference) are done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

import whales_identify
from whales_be_service import metrics
from whales_be_service.deps import rate_limit, read_access
from whales_be_service.errors import install_error_handlers
from whales_be_service.inference import InferencePool
from whales_be_service.middleware import ServiceMiddleware, WebPage
from whales_be_service.ratelimit import RateLimiter
from whales_be_service.routes import (
    batch,
    catalog,
    catalog_import,
    curation,
    explain,
    export,
    health,
    predict,
    queue,
    reference,
    review,
    sightings,
)
from whales_be_service.settings import Settings
from whales_be_service.state import Overrides, ServiceState, build_state

log = logging.getLogger("whales_be_service")

DESCRIPTION = """Identify individual whales and dolphins in photographs.

* A photo first passes a **gate** (is there a whale or dolphin?); a photo without one is answered
  with `rejected: true` and HTTP 200.
* Accepted photos are matched against the **catalog** of known individuals.
* Every prediction is stored with its `prediction_id`; a reviewer can confirm or correct it.
* Errors always have the shape `{"error": {"code", "message", "details"}}`.
* Write endpoints need `X-API-Key`. Limits: see `X-RateLimit-*` headers; 429 and 503 carry
  `Retry-After`.
"""


NO_KEYS_HINT = ("no API keys configured: catalog import, enrolment, review and export are refused "
                "(403). Set WHALES_API_KEYS=<a long random key> (comma-separated for several) and "
                "restart, e.g. WHALES_API_KEYS=$(python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(24))')")


def _lifespan(overrides: Overrides) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        pool = InferencePool(settings.inference_workers, settings.queue_size, settings.retry_after_s)
        state = ServiceState(settings=settings, pool=pool)
        app.state.whales = state
        if not settings.api_keys:
            log.warning(NO_KEYS_HINT)
        metrics.set_ready(False)
        build = asyncio.create_task(asyncio.to_thread(build_state, state, overrides))
        try:
            yield
        finally:
            await asyncio.shield(build)  # a thread cannot be cancelled; let it finish cleanly
            pool.shutdown()
            if state.store is not None and overrides.store is None:
                try:
                    state.store.close()
                except Exception:
                    log.warning("error while closing the store", exc_info=True)
            metrics.mark_process_dead()

    return lifespan


def create_app(settings: Settings | None = None, *, store: Any = None, embedder: Any = None,
               gate: Any = None, catalog_factory: Callable[[Any, str], Any] | None = None) -> FastAPI:
    """Build the FastAPI app.

    Args:
        settings: configuration (default: read from `WHALES_*` environment variables).
        store, embedder, gate, catalog_factory: prebuilt components that replace the ones the
            settings describe (tests use fakes here); `catalog_factory(store, model_id)`.
    """
    settings = settings or Settings()
    overrides = Overrides(store=store, embedder=embedder, gate=gate, catalog_factory=catalog_factory)
    app = FastAPI(title="EcoMarineAI", version=whales_identify.__version__, description=DESCRIPTION,
                  lifespan=_lifespan(overrides))
    app.state.settings = settings
    app.state.limiter = RateLimiter(settings)
    install_error_handlers(app)
    limited = [Depends(rate_limit), Depends(read_access)]
    app.include_router(health.router)
    app.include_router(predict.router, dependencies=limited)
    app.include_router(batch.router, dependencies=limited)
    app.include_router(catalog.router, dependencies=limited)
    app.include_router(review.router, dependencies=limited)
    app.include_router(queue.router, dependencies=limited)
    app.include_router(curation.router, dependencies=limited)
    app.include_router(catalog_import.router, dependencies=limited)
    app.include_router(reference.router, dependencies=limited)
    app.include_router(explain.router, dependencies=limited)
    app.include_router(sightings.router, dependencies=limited)
    app.include_router(export.router, dependencies=limited)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Retry-After", "X-RateLimit-Limit",
                                                                "X-RateLimit-Remaining", "X-RateLimit-Reset"])
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.max_request_bytes,
                       limiter=app.state.limiter)
    if settings.frontend_dir and Path(settings.frontend_dir).is_dir():
        app.mount("/", WebPage(directory=settings.frontend_dir, html=True), name="frontend")
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # `app` is built on first access (uvicorn's import), not when tests import this module.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
