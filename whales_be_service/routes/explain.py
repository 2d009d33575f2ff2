"""`GET /v1/predictions/{id}/matches/{individual_id}`: why a prediction matched a candidate, as the
geometrically verified keypoint pairs between the query photo and the candidate's reference photo.

Nothing is stored per prediction for this: the pairs are recomputed from the stored query photo and
the reference's stored local features (`whales_identify.reid.explain`; the cost and the comparison with
storing them are in docs/REID.md, "Explanations").
"""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Query
from PIL import Image

from whales_be_service.deps import CallerDep, ReadyStateDep
from whales_be_service.errors import ServiceError
from whales_be_service.routes.catalog import IndividualId
from whales_be_service.routes.review import PredictionId, require_photo_access
from whales_be_service.schemas import ErrorResponse
from whales_be_service.schemas_history import MatchExplanationOut
from whales_identify.reid.explain import MatchExplanation, explain_match, image_size
from whales_identify.reid.matching import MatchConfig

router = APIRouter(tags=["review"])

@router.get("/v1/predictions/{prediction_id}/matches/{individual_id}", response_model=MatchExplanationOut,
            responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 503)})
async def explain_prediction_match(
    prediction_id: PredictionId,
    individual_id: IndividualId,
    state: ReadyStateDep,
    caller: CallerDep,
    reference_image_id: Annotated[str | None, Query(
        max_length=128, description="Another catalog photo of this individual (default: the one that "
                                    "matched best).")] = None,
) -> MatchExplanationOut:
    """The verified keypoint pairs between a prediction's photo and a candidate's (access: as the photo)."""
    answer: MatchExplanationOut = await state.pool.run(explain, state, prediction_id, individual_id,
                                                       reference_image_id, caller)
    return answer


def explain(state: Any, prediction_id: str, individual_id: str, reference_image_id: str | None,
            caller: Any) -> MatchExplanationOut:
    store = state.store
    record = store.get_prediction(prediction_id)
    if record is None:
        raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}")
    require_photo_access(record, state.settings, caller)  # the pairs are read off the query photo
    candidate = next((c for c in record.candidates if c.get("individual_id") == individual_id), None)
    if candidate is None:
        raise ServiceError(404, "not_found", f"{individual_id!r} is not a candidate of prediction "
                                             f"{prediction_id!r}")
    ref_id = reference_image_id or candidate.get("reference_image_id") or ""
    reference = store.get_catalog_image(ref_id) if ref_id else None
    if reference is None or reference.individual_id != individual_id:
        raise ServiceError(404, "not_found", f"no catalog photo {ref_id!r} of {individual_id!r} (deleted, "
                                             f"or a photo of another individual)")
    config = getattr(state.catalog, "config", None) or MatchConfig()
    verified = candidate.get("inliers")  # None for predictions made before it was kept
    photo = store.get_prediction_image(prediction_id)
    reason = None
    if reference_image_id is None and verified == 0:
        reason = ("no geometric verification supported this candidate when the photo was matched (0 "
                  "inliers): it was ranked on the global embedding and the keypoint vote; ask for one of its "
                  "photos with `reference_image_id` to compare anyway")
    elif not photo:
        reason = ("the query photo was not stored (WHALES_STORE_QUERY_IMAGES=false, or removed by "
                  "retention): the pairs cannot be recomputed")
    if reason is not None or not photo:
        found = MatchExplanation(reference.image_id, 0, image_size(photo), image_size(reference.thumbnail),
                                 reason=reason)
    else:
        with Image.open(io.BytesIO(photo)) as im:
            query = im.convert("RGB")
        found = explain_match(query, reference, config)
    model_id = getattr(state.catalog, "model_id", None)
    others = [s.image_id for s in store.list_sightings(individual_id, model_id)]
    return MatchExplanationOut(
        prediction_id=prediction_id, individual_id=individual_id, reference_image_id=found.reference_image_id,
        inliers=found.inliers, tentative=found.tentative, query_size=found.query_size,
        reference_size=found.reference_size,
        pairs=[{"query": p.query, "reference": p.reference, "score": p.score} for p in found.pairs],
        transform=found.transform, reason=found.reason, verified_inliers=verified,
        query_image_url=f"/v1/predictions/{prediction_id}/image" if photo else None,
        reference_thumbnail_url=f"/v1/images/{found.reference_image_id}/thumbnail",
        reference_image_ids=others)
