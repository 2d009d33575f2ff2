"""`POST /v1/predictions/{id}/review`: a person confirms or corrects a prediction; the photo is
enrolled accordingly (re-embedded), so the catalog learns from reviewed answers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from whales_be_service.deps import CallerDep, ReadyStateDep, ReviewerDep, StoreDep
from whales_be_service.errors import ServiceError
from whales_be_service.pipeline import enroll, normalise_species
from whales_be_service.schemas import ErrorResponse, ReviewIn, ReviewOut
from whales_be_service.state import sync_catalog
from whales_be_service.uploads import decode

router = APIRouter(tags=["review"])

STATES = {"confirm": "confirmed", "new_individual": "new_individual", "not_cetacean": "not_cetacean"}


def _top1(record: Any) -> str | None:
    if record.individual_id:
        return str(record.individual_id)
    if record.candidates:
        return str(record.candidates[0].get("individual_id") or "") or None
    return None


def _resolve_target(state: Any, record: Any, body: ReviewIn) -> tuple[str, str]:
    """(individual_id, species) the photo is enrolled under."""
    catalog = state.catalog
    if body.decision == "confirm":
        individual_id = body.individual_id or _top1(record)
        if not individual_id:
            raise ServiceError(422, "validation_error", "this prediction has no top-1 candidate; give "
                                                        "`individual_id` to confirm it as a known individual")
        existing = catalog.get_individual(individual_id)
        if existing is None:
            raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog; "
                                                 f"use decision=new_individual to create it")
        species = getattr(existing, "species", None) or record.species or "unknown"
        return individual_id, species
    individual_id = body.individual_id or f"new_{uuid.uuid4().hex[:8]}"
    if catalog.get_individual(individual_id) is not None:
        raise ServiceError(409, "conflict", f"individual {individual_id!r} already exists; "
                                            f"use decision=confirm to add this photo to it")
    predicted = record.species if record.species and not record.rejected else None
    species = normalise_species(body.species) or predicted or "unknown"
    return individual_id, species


PredictionId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
PUBLIC_STATES = ("confirmed", "new_individual")  # reviewed occurrences: their photo is public


@router.post("/v1/predictions/{prediction_id}/review", response_model=ReviewOut,
             responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)})
async def review_prediction(prediction_id: PredictionId, body: ReviewIn, state: ReadyStateDep,
                            reviewer: ReviewerDep) -> ReviewOut:
    """Record a reviewer's decision; `confirm` and `new_individual` enrol the photo."""
    # database look-ups, re-embedding and the catalog write all run off the event loop
    return await state.pool.run(apply_review, state, prediction_id, body, reviewer)


def apply_review(state: Any, prediction_id: str, body: ReviewIn, reviewer: str | None = None) -> ReviewOut:
    """Claim the prediction, enrol its photo and record the decision in one transaction.

    The claim is a conditional UPDATE (`review_state = 'unreviewed'`): of concurrent reviewers on
    any worker or replica exactly one wins, the others get 409 and enrol nothing.
    """
    sync_catalog(state)  # the target individual may have been created or deleted by another worker
    store = state.store
    record = store.get_prediction(prediction_id)
    if record is None:
        raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}")
    if record.review_state != "unreviewed":
        raise ServiceError(409, "conflict", f"prediction {prediction_id!r} was already reviewed "
                                            f"({record.review_state})")
    new_state = STATES[body.decision]
    decision: dict[str, Any] = {"decision": body.decision}
    if body.decision == "not_cetacean":
        saved = store.save_review(prediction_id, new_state, decision, reviewed_by=reviewer,
                                  expected_state="unreviewed")
        return ReviewOut(prediction_id=prediction_id, review_state=saved.review_state, individual_id=None,
                         enrolled_image_ids=[])
    individual_id, species = _resolve_target(state, record, body)
    photo = store.get_prediction_image(prediction_id)
    if not photo:
        raise ServiceError(409, "conflict", "the photo of this prediction is not stored "
                                            "(WHALES_STORE_QUERY_IMAGES=false, or deleted after "
                                            "WHALES_QUERY_IMAGE_RETENTION_DAYS); it cannot be enrolled")
    item = decode(record.filename or prediction_id, photo, state.settings)
    decision.update(individual_id=individual_id, species=species)

    def claim() -> None:  # inside the enrolment's transaction, before anything is written
        store.save_review(prediction_id, new_state, decision, reviewed_by=reviewer,
                          expected_state="unreviewed")
        exists = store.has_individual(individual_id)
        if body.decision == "confirm" and not exists:
            raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog (deleted "
                                                 f"meanwhile); use decision=new_individual to create it")
        if body.decision == "new_individual" and exists:
            raise ServiceError(409, "conflict", f"individual {individual_id!r} already exists; use "
                                                f"decision=confirm to add this photo to it")

    def record_ids(added: list[Any]) -> None:  # same transaction, after the enrolment
        decision["enrolled_image_ids"] = [str(getattr(im, "image_id", "")) for im in added]
        store.save_review(prediction_id, new_state, decision, reviewed_by=reviewer)

    added, _ = enroll(state, [item], individual_id, species, [record.sighting],
                      source=f"review:{prediction_id}", check_gate=False, before_write=claim,
                      after_write=record_ids)
    return ReviewOut(prediction_id=prediction_id, review_state=new_state, individual_id=individual_id,
                     enrolled_image_ids=[str(getattr(im, "image_id", "")) for im in added])


def require_photo_access(record: Any, settings: Any, caller: Any) -> bool:
    """The rule for a prediction's photo (and what is derived from it, e.g. its match explanation):
    public once reviewed as an occurrence, otherwise 401 without a key. Returns whether it is public."""
    public = record.review_state in PUBLIC_STATES and not settings.require_key_for_reads
    if not public and not caller.authorised:
        raise ServiceError(401, "unauthorized", "the photo of an unreviewed prediction needs an API key "
                                                "in the X-API-Key header",
                           headers={"WWW-Authenticate": "APIKey"})
    return public


@router.get("/v1/predictions/{prediction_id}/image", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "The stored query photo (JPEG, "
                             "no EXIF)."}, **{c: {"model": ErrorResponse} for c in (401, 403, 404)}})
def prediction_image(prediction_id: PredictionId, store: StoreDep, state: ReadyStateDep,
                     caller: CallerDep) -> Response:
    """The photo of a prediction: public once reviewed as an occurrence, otherwise with a key."""
    record = store.get_prediction(prediction_id)
    if record is None:
        raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}")
    public = require_photo_access(record, state.settings, caller)
    photo = store.get_prediction_image(prediction_id)
    if not photo:
        raise ServiceError(404, "not_found", f"the photo of prediction {prediction_id!r} is not stored "
                                             f"(not kept, or deleted by the retention rule)")
    cache = "public, max-age=86400" if public else "private, max-age=3600"
    return Response(photo, media_type="image/jpeg", headers={"Cache-Control": cache, "Vary": "X-API-Key"})
