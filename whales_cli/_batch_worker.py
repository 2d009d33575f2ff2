"""What runs on each engine worker of `whales batch`: the service's own pipeline.

A worker process builds the service's state once (store, embedder, gate, catalog snapshot,
identifier: `whales_be_service.state.build_state`, as the service's lifespan does) and keeps it for
every chunk it is given; each chunk is one `whales_be_service.pipeline.predict_batch` call, the code
behind `/v1/predict-batch`, so answers, stored predictions and summary counts are the same.
Imported only by the engine's workers and `whales batch` (the CLI sits on top of the library and
the service; the library never imports this).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from whales_identify.batch.results import row_from_error, row_from_result
from whales_identify.batch.sources import PhotoRef, read_photo

_STATES: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_state(settings: Mapping[str, Any]) -> Any:
    """The service state for these settings, built once per worker process."""
    import json

    key = json.dumps(dict(settings), sort_keys=True, default=str)
    with _LOCK:
        if key not in _STATES:
            _STATES[key] = _build(settings)
        return _STATES[key]


def _build(settings: Mapping[str, Any]) -> Any:
    from whales_be_service.settings import Settings
    from whales_be_service.state import Overrides, ServiceState, build_state

    state = ServiceState(Settings(**settings), pool=None)  # type: ignore[arg-type]  # no HTTP pool here
    build_state(state, Overrides())
    if not state.ready:
        broken = {k: v for k, v in state.components.items() if v != "ok"}
        raise RuntimeError(f"the pipeline could not be built on worker {os.getpid()}: {broken}")
    return state


def _reader(ref: PhotoRef, limit: int) -> Any:
    def read() -> bytes:
        try:
            return read_photo(ref, limit)
        except ValueError as exc:
            from whales_be_service.errors import too_large

            raise too_large(str(exc), {"limit_bytes": limit}) from exc
    return read


def process_chunk(chunk: Sequence[tuple[PhotoRef, str]], settings: Mapping[str, Any], job_id: str,
                  top_k: int) -> dict[str, Any]:
    """Identify one chunk of (photo, sha256); every photo ends as one results row.

    Returns {"rows": [...], "summary": predict_batch's summary for the chunk, "worker": pid}.
    """
    from whales_be_service.pipeline import predict_batch
    from whales_be_service.uploads import BatchItem, BatchPlan

    state = load_state(settings)
    limit = state.settings.max_upload_bytes
    plan = BatchPlan([BatchItem(ref.name, _reader(ref, limit)) for ref, _ in chunk])
    out = predict_batch(state, plan, top_k, job_id=job_id)
    sha = {ref.name: digest for ref, digest in chunk}
    rows = [row_from_result(r, sha[r["image_ind"]], job_id) for r in out["results"]]
    rows += [row_from_error(e, sha[e["image_ind"]], job_id) for e in out["errors"]]
    return {"rows": rows, "summary": out["summary"], "worker": os.getpid()}
