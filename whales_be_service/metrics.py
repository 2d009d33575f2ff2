"""Every Prometheus metric of the service, and the helpers that record them.

With several uvicorn workers set `PROMETHEUS_MULTIPROC_DIR` (an empty, writable folder) before the
workers start: prometheus_client then writes per-process files and `/metrics` aggregates them.
Labels are low-cardinality: route templates (never raw paths), stages, outcomes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter("whales_http_requests_total", "HTTP requests by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("whales_http_request_duration_seconds", "HTTP request latency by route template",
                    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
STAGE = Histogram("whales_inference_stage_seconds", "Inference time per image by stage",
                  ["stage"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PREDICTIONS = Counter("whales_predictions_total", "Predictions by outcome", ["outcome"])
QUEUE_DEPTH = Gauge("whales_inference_queue_depth", "Inference jobs running or waiting",
                    multiprocess_mode="livesum")
CATALOG_IMAGES = Gauge("whales_catalog_images", "Reference photos in the catalog", multiprocess_mode="max")
CATALOG_INDIVIDUALS = Gauge("whales_catalog_individuals", "Individuals in the catalog",
                            multiprocess_mode="max")
MODEL_INFO = Gauge("whales_model_info", "Loaded models (value 1), by role, id, backend and version",
                   ["role", "model_id", "backend", "version"], multiprocess_mode="max")
CATALOG_SYNC = Histogram("whales_catalog_sync_duration_seconds",
                         "Catalog changes made by another worker or replica, read by this one: "
                         "how='change_log' (only the photos changed) or 'reload' (the whole catalog)",
                         ["how"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
READY = Gauge("whales_ready", "1 when the service is ready to predict", multiprocess_mode="min")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def render() -> tuple[bytes, str]:
    """The exposition text: aggregated over workers in multiprocess mode."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead() -> None:
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route).observe(seconds)


def record_prediction(outcome: str, timings: Mapping[str, float]) -> None:
    """One photo's outcome (`known`, `new_individual`, `rejected`, `failed`) and its stage timings."""
    PREDICTIONS.labels(outcome).inc()
    for stage, seconds in timings.items():
        STAGE.labels(stage).observe(seconds)


def record_catalog(images: int, individuals: int) -> None:
    """The catalog's size (`Catalog.stats()["images"]`, `["individuals"]`)."""
    CATALOG_IMAGES.set(images)
    CATALOG_INDIVIDUALS.set(individuals)


def record_catalog_sync(how: str, seconds: float) -> None:
    """A change made elsewhere was read: `change_log` or `reload` (`state.sync_catalog`)."""
    CATALOG_SYNC.labels(how).observe(seconds)


def record_model(role: str, model_id: str, backend: str, version: str) -> None:
    MODEL_INFO.labels(role, model_id, backend, version).set(1)


def set_queue_depth(depth: int) -> None:
    QUEUE_DEPTH.set(depth)


def set_ready(ready: bool) -> None:
    READY.set(1 if ready else 0)
