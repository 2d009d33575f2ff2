"""Liveness, readiness, loaded models and Prometheus metrics (all exempt from rate limiting)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Security
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from whales_be_service import metrics
from whales_be_service.deps import StateDep, api_key_header, key_is_valid
from whales_be_service.errors import ServiceError, error_response
from whales_be_service.schemas import ErrorResponse, Health, ModelCardOut, ModelEntry, ModelsOut, Ready
from whales_be_service.state import ServiceState, catalog_stats

router = APIRouter(tags=["health"])
log = logging.getLogger("whales_be_service")
STORE_PING_TIMEOUT_S = 3.0


@router.get("/health", response_model=Health)
async def health(state: StateDep) -> Health:
    """Liveness: the process answers; never touches models or the database."""
    return Health(uptime_s=round(time.time() - state.started_at, 3))


@router.get("/ready", response_model=Ready, responses={503: {"model": ErrorResponse}})
async def ready(state: StateDep,
                api_key: Annotated[str | None, Security(api_key_header)] = None) -> Any:
    """Readiness: 200 once models, catalog and store are up (the store is pinged on every call);
    503 naming what is not (the reasons only with a valid X-API-Key)."""
    if not state.ready or not await store_answers(state):
        error = state.not_ready_error(detailed=key_is_valid(state.settings, api_key))
        if state.ready:  # everything was built; the database stopped answering since
            components = {**error.details["components"], "store": "unavailable"}
            error = ServiceError(503, "not_ready", "the service is not ready: store: unavailable "
                                 "(details in the server log)", {"components": components}, error.headers)
        return error_response(503, error.code, error.message, error.details, error.headers)
    return Ready(components=dict(state.components))


async def store_answers(state: ServiceState) -> bool:
    """One cheap round trip to the database (off the event loop, at most `STORE_PING_TIMEOUT_S`)."""
    try:
        await asyncio.wait_for(run_in_threadpool(state.store.ping), STORE_PING_TIMEOUT_S)
    except Exception as exc:
        log.warning("readiness: the store does not answer: %s", exc)
        return False
    return True


@router.get("/v1/models", response_model=ModelsOut)
async def list_models(state: StateDep) -> ModelsOut:
    """Ids, versions, sha256 and backends of the configured models."""
    s = state.settings
    sha, card = None, None
    try:
        from whales_identify.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(s.embedding_model)
        sha, card = cfg.sha256, (cfg.card.to_json() if cfg.card else None)
    except Exception:
        sha = None
    embedder = state.embedder
    entries = [ModelEntry(role="embedding", model_id=getattr(embedder, "model_id", s.embedding_model),
                          version=getattr(embedder, "model_id", s.embedding_model),
                          backend=str(getattr(embedder, "backend", s.inference_backend)),
                          sha256=sha, loaded=embedder is not None,
                          card=ModelCardOut(**card) if card else None)]
    gate = state.gate
    entries.append(ModelEntry(role="gate", model_id=f"gate.{getattr(gate, 'backend', s.gate)}",
                              version=str(getattr(gate, "version", "not loaded")),
                              backend=str(getattr(gate, "backend", s.gate)),
                              sha256=gate_sha256(gate), threshold=getattr(gate, "threshold", None),
                              loaded=gate is not None))
    catalog: dict[str, Any] = {}
    if state.catalog is not None:
        try:
            catalog = catalog_stats(state.catalog)
        except Exception as exc:
            log.warning("catalog statistics failed", exc_info=True)
            catalog = {"error": type(exc).__name__}
        catalog.setdefault("model_id", getattr(state.catalog, "model_id", None))
    return ModelsOut(models=entries, catalog=catalog, write_enabled=bool(s.api_keys))


def gate_sha256(gate: Any) -> str | None:
    """The gate's weights digest: the embedded head's npz, or the CLIP checkpoint's registry hash."""
    head = getattr(gate, "head", None)
    meta = getattr(head, "meta", None)
    if isinstance(meta, dict) and meta.get("weights_sha256"):
        return str(meta["weights_sha256"])
    cfg = getattr(gate, "cfg", None)
    return str(cfg.sha256) if getattr(cfg, "sha256", None) else None


@router.get("/metrics", response_class=Response, include_in_schema=True,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition."}})
async def prometheus_metrics() -> Response:
    """Prometheus metrics (aggregated across workers in multiprocess mode)."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


