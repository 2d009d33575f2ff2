"""The service's use of the library: decode -> identify (batched) -> store -> response payload.

Everything here is synchronous and CPU-bound; routes call it through the `InferencePool`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from whales_be_service import metrics
from whales_be_service.errors import ServiceError
from whales_be_service.state import ServiceState, catalog_write, sync_catalog
from whales_be_service.uploads import BatchPlan, Decoded, decode, describe_error, encode_jpeg
from whales_identify.gate import shares_features
from whales_identify.identify import EMPTY_CATALOG_WARNING, outcome, prediction_fields
from whales_identify.records.store import PredictionRecord, Sighting, utcnow
from whales_identify.results import Prediction

log = logging.getLogger("whales_be_service")

FILL_CATALOG_HINT = ("fill the catalog: the page's Catalog tab > Import (a ZIP of photos plus a CSV "
                     "filename,individual_id,species), POST /v1/catalog/import, or `whales catalog "
                     "import` (docs/QUICKSTART.md)")
MASK_UNAVAILABLE = ("mask unavailable: background removal needs the optional `rembg` package and its "
                    "model file, which are not installed on this server")


def new_prediction_id() -> str:
    return uuid.uuid4().hex


def exif_sighting(data: bytes) -> Sighting:
    """EXIF time and GPS position, when the sighting module is present and the photo has them."""
    try:
        from whales_identify.records.sighting import read_exif_sighting
    except ImportError:
        return Sighting()
    try:
        found = read_exif_sighting(data)
    except Exception:  # EXIF is a bonus; a broken block never loses the photo
        log.debug("unreadable EXIF sighting", exc_info=True)
        return Sighting()
    return found if isinstance(found, Sighting) else Sighting()


def merge_sighting(exif: Sighting, given: Sighting | None) -> Sighting:
    """Fields the uploader gave win over EXIF."""
    if given is None:
        return exif
    updates = {k: v for k, v in given.__dict__.items() if v is not None}
    return replace(exif, **updates)


def normalise_species(name: str | None) -> str | None:
    """`"Humpback Whale"` and `"humpback-whale"` become `humpback_whale` (library rule when present)."""
    if name is None or not name.strip():
        return None
    try:
        from whales_identify.species import normalise_species_key
    except ImportError:
        return "_".join(name.strip().lower().replace("-", " ").split())
    return str(normalise_species_key(name))


def payload(pred: Prediction, item: Decoded, prediction_id: str, mask: bool,
            sighting: Sighting) -> dict[str, Any]:
    """The JSON answer for one photo (see `schemas.PredictionOut`): the library's
    `prediction_fields` (shared with `whales identify`) plus the service's own fields."""
    fields = prediction_fields(pred)
    bbox = [round(v * item.scale) for v in pred.bbox]
    bbox[2] = min(bbox[2], item.original_size[0])
    bbox[3] = min(bbox[3], item.original_size[1])
    warnings = fields["warnings"]
    if EMPTY_CATALOG_WARNING in warnings:
        warnings.append(FILL_CATALOG_HINT)
    if mask:
        warnings.append(MASK_UNAVAILABLE)
    return {
        "image_ind": item.name,
        "prediction_id": prediction_id,
        **fields,
        "bbox": bbox,
        "mask": None,
        "sighting": sighting_json(sighting),
        "class_animal": pred.individual_id or "",
        "id_animal": pred.species if pred.species and not pred.rejected else "unknown",
    }


def sighting_json(s: Sighting, precision: str | None = None) -> dict[str, Any]:
    """A sighting for an answer; catalog reads pass what `visible_sighting` left of it."""
    out: dict[str, Any] = {"observed_at": s.observed_at.isoformat() if s.observed_at else None,
                           "latitude": s.latitude, "longitude": s.longitude, "location": s.location,
                           "observer": s.observer}
    if precision is not None:
        out["precision"] = precision
    return out


def store_prediction(state: ServiceState, pred: Prediction, item: Decoded, prediction_id: str,
                     sighting: Sighting, job_id: str | None = None,
                     batch_id: str | None = None) -> None:
    record = PredictionRecord(
        prediction_id=prediction_id, image_sha256=item.sha256, filename=item.name,
        rejected=pred.rejected, rejection_reason=pred.rejection_reason,
        cetacean_score=float(pred.cetacean_score), gate_backend=pred.gate_backend,
        gate_version=pred.gate_version, species=pred.species, individual_id=pred.individual_id,
        is_new_individual=pred.is_new_individual,
        probability=None if pred.probability is None else float(pred.probability),
        candidates=[dict(c.__dict__) for c in pred.candidates], model_version=pred.model_version,
        sighting=sighting, job_id=job_id, batch_id=batch_id)
    jpeg = encode_jpeg(item.image) if state.settings.store_query_images else None
    try:
        state.store.save_prediction(record, image_jpeg=jpeg)
    except Exception as exc:
        log.exception("could not store prediction %s", prediction_id)
        raise store_unavailable(state, "the prediction could not be stored") from exc
    purge_expired(state)


def store_unavailable(state: ServiceState, what: str) -> ServiceError:
    """503 naming the component; the database's own message goes to the log, not to the client."""
    retry = str(state.settings.retry_after_s)
    return ServiceError(503, "store_unavailable", f"{what}: the database is unavailable; retry shortly",
                        {"component": "store"}, {"Retry-After": retry})


def purge_expired(state: ServiceState) -> None:
    """Apply the retention settings, at most every `retention_check_s` per worker."""
    s = state.settings
    if not (s.query_image_retention_days or s.prediction_retention_days):
        return
    now = time.monotonic()
    if state.purged_at and now - state.purged_at < s.retention_check_s:
        return
    state.purged_at = now
    wall = utcnow()
    days = s.query_image_retention_days, s.prediction_retention_days
    photos_before, records_before = (wall - timedelta(days=d) if d else None for d in days)
    try:
        photos, records = state.store.purge_predictions(photos_before, records_before)
    except Exception:  # retention never fails a prediction; it is retried at the next check
        log.warning("retention purge failed", exc_info=True)
        return
    if photos or records:
        log.info("retention: deleted %d query photos and %d unreviewed predictions", photos, records)


def identify(state: ServiceState, items: Sequence[Decoded], top_k: int) -> list[Prediction]:
    sync_catalog(state)
    assert state.identifier is not None
    preds: list[Prediction] = state.identifier([it.image for it in items], top_k=top_k)
    return preds


def predict_one(state: ServiceState, name: str, data: bytes, top_k: int, mask: bool,
                given: Sighting | None) -> dict[str, Any]:
    """Decode, identify, store and describe one uploaded photo."""
    t0 = time.perf_counter()
    try:
        item = decode(name, data, state.settings)
    except Exception:
        metrics.record_prediction("failed", {"decode": time.perf_counter() - t0})
        raise
    t_decode = time.perf_counter() - t0
    pred = identify(state, [item], top_k)[0]
    prediction_id = new_prediction_id()
    sighting = merge_sighting(exif_sighting(data), given)
    store_prediction(state, pred, item, prediction_id, sighting)
    metrics.record_prediction(outcome(pred), {"decode": t_decode, **pred.timings})
    return payload(pred, item, prediction_id, mask, sighting)


def predict_batch(state: ServiceState, plan: BatchPlan, top_k: int,
                  job_id: str | None = None) -> dict[str, Any]:
    """Run a planned batch in chunks of `batch_size`; every item ends in `results` or `errors`.

    `job_id` (a `whales batch` job) is stored with each prediction."""
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    skipped = 0
    pending: list[tuple[Decoded, float]] = []
    batch_id = new_prediction_id()  # the review queue's `batch_id` filter

    def flush() -> None:
        if not pending:
            return
        preds = identify(state, [d for d, _ in pending], top_k)
        for (item, t_decode), pred in zip(pending, preds, strict=True):
            prediction_id = new_prediction_id()
            sighting = exif_sighting(item.data)
            store_prediction(state, pred, item, prediction_id, sighting, job_id, batch_id)
            metrics.record_prediction(outcome(pred), {"decode": t_decode, **pred.timings})
            results.append(payload(pred, item, prediction_id, False, sighting))
        pending.clear()

    for entry in plan.items:
        if entry.read is None:
            skipped += entry.skipped
            errors.append({"image_ind": entry.name, "code": entry.error_code,
                           "message": entry.error_message})
            continue
        t0 = time.perf_counter()
        try:
            pending.append((decode(entry.name, entry.read(), state.settings), time.perf_counter() - t0))
        except Exception as exc:
            code, message = describe_error(exc)
            metrics.record_prediction("failed", {"decode": time.perf_counter() - t0})
            errors.append({"image_ind": entry.name, "code": code, "message": message})
        if len(pending) >= state.settings.batch_size:
            flush()
    flush()
    accepted = sum(1 for r in results if not r["rejected"])
    summary = {"images": len(plan.items) - skipped, "accepted": accepted,
               "rejected": len(results) - accepted, "failed": len(errors) - skipped,
               "skipped": skipped, "seconds": round(time.perf_counter() - started, 3),
               "batch_id": batch_id}
    return {"results": results, "errors": errors, "summary": summary}


def enroll(state: ServiceState, items: Sequence[Decoded], individual_id: str, species: str,
           sightings: Sequence[Sighting], source: str, check_gate: bool = True,
           before_write: Callable[[], None] | None = None,
           after_write: Callable[[list[Any]], None] | None = None,
           ) -> tuple[list[Any], list[dict[str, Any]]]:
    """Embed and enrol photos of one individual; photos the gate rejects are refused, not enrolled.

    `before_write()` and `after_write(added)` run inside the same database transaction as the
    enrolment (a review claims the prediction first and records its decision last), so everything
    commits together or nothing does.

    Returns (enrolled CatalogImages, refused [{image_ind, code, message}]).
    """
    if not items:
        return [], []
    features = state.embedder.features([it.image for it in items])
    from whales_identify.embed import l2_normalize

    keep = list(range(len(items)))
    refused: list[dict[str, Any]] = []
    if check_gate and state.gate is not None:
        shared = shares_features(state.gate, state.embedder)
        verdicts = state.gate([it.image for it in items], features=features if shared else None)
        keep = [i for i, g in enumerate(verdicts) if g.is_cetacean]
        refused = [{"image_ind": items[i].name, "code": "not_a_marine_mammal",
                    "message": f"the gate scored {verdicts[i].cetacean_score:.2f}: no whale or dolphin found"}
                   for i, g in enumerate(verdicts) if not g.is_cetacean]
    if not keep:
        return [], refused
    embeddings = l2_normalize(features[keep])
    with catalog_write(state) as write:
        if before_write is not None:
            write.touched = False  # a refused claim (409, 404) leaves the memory as it was
            before_write()
            write.touched = True
        added = list(state.catalog.enroll([items[i].image for i in keep], embeddings, individual_id, species,
                                          sightings=[sightings[i] for i in keep],
                                          filenames=[items[i].name for i in keep], source=source) or [])
        if after_write is not None:
            after_write(added)
    return added, refused
