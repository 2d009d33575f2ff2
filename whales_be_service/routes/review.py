"""`POST /v1/predictions/{id}/review`: a person confirms or corrects a prediction; the photo is
enrolled accordingly (re-embedded), so the catalog learns from reviewed answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from whales_be_service.deps import (
    CallerDep,
    PoolDep,
    ReviewerDep,
    ReviewPredictionDep,
    SettingsDep,
    StoreDep,
    get_ready_state,
)
from whales_be_service.errors import ServiceError
from whales_be_service.schemas import ErrorResponse, ReviewIn, ReviewOut
from whales_be_service.use_cases.review import require_photo_access

router = APIRouter(tags=["review"])

PredictionId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post("/v1/predictions/{prediction_id}/review", response_model=ReviewOut,
             responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)})
async def review_prediction(prediction_id: PredictionId, body: ReviewIn, pool: PoolDep,
                            use_case: ReviewPredictionDep, reviewer: ReviewerDep) -> ReviewOut:
    """Record a reviewer's decision; `confirm` and `new_individual` enrol the photo."""
    # database look-ups, re-embedding and the catalog write all run off the event loop
    return await pool.run(use_case, prediction_id, body, reviewer)


@router.get("/v1/predictions/{prediction_id}/image", response_class=Response,
            dependencies=[Depends(get_ready_state)],  # 503 until the service is up, as before
            responses={200: {"content": {"image/jpeg": {}}, "description": "The stored query photo (JPEG, "
                             "no EXIF)."}, **{c: {"model": ErrorResponse} for c in (401, 403, 404)}})
def prediction_image(prediction_id: PredictionId, store: StoreDep, settings: SettingsDep,
                     caller: CallerDep) -> Response:
    """The photo of a prediction: public once reviewed as an occurrence, otherwise with a key."""
    record = store.get_prediction(prediction_id)
    if record is None:
        raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}")
    public = require_photo_access(record, settings, caller)
    photo = store.get_prediction_image(prediction_id)
    if not photo:
        raise ServiceError(404, "not_found", f"the photo of prediction {prediction_id!r} is not stored "
                                             f"(not kept, or deleted by the retention rule)")
    cache = "public, max-age=86400" if public else "private, max-age=3600"
    return Response(photo, media_type="image/jpeg", headers={"Cache-Control": cache, "Vary": "X-API-Key"})
