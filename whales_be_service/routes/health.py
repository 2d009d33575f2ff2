"""Liveness, readiness, loaded models and Prometheus metrics (all exempt from rate limiting)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from whales_be_service import metrics
from whales_be_service.deps import StateDep
from whales_be_service.schemas import ErrorResponse, Health, ModelEntry, ModelsOut, Ready
from whales_be_service.state import catalog_stats

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(state: StateDep) -> Health:
    """Liveness: the process answers; never touches models or the database."""
    return Health(uptime_s=round(time.time() - state.started_at, 3))


@router.get("/ready", response_model=Ready, responses={503: {"model": ErrorResponse}})
async def ready(state: StateDep) -> Any:
    """Readiness: 200 once models, catalog and store are up; 503 naming what is not."""
    if not state.ready:
        error = state.not_ready_error()
        from whales_be_service.errors import error_response

        return error_response(503, error.code, error.message, error.details, error.headers)
    return Ready(components=dict(state.components))


@router.get("/v1/models", response_model=ModelsOut)
async def list_models(state: StateDep) -> ModelsOut:
    """Ids, versions, sha256 and backends of the configured models."""
    s = state.settings
    sha = None
    try:
        from whales_identify.models import get_pretrained_cfg

        sha = get_pretrained_cfg(s.embedding_model).sha256
    except Exception:
        sha = None
    embedder = state.embedder
    entries = [ModelEntry(role="embedding", model_id=getattr(embedder, "model_id", s.embedding_model),
                          version=getattr(embedder, "model_id", s.embedding_model),
                          backend=str(getattr(embedder, "backend", s.inference_backend)),
                          sha256=sha, loaded=embedder is not None)]
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
            catalog = {"error": str(exc)}
        catalog.setdefault("model_id", getattr(state.catalog, "model_id", None))
    return ModelsOut(models=entries, catalog=catalog)


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


