"""`GET /v1/predictions/{id}/matches/{individual_id}`: why a prediction matched a candidate, as the
geometrically verified keypoint pairs between the query photo and the candidate's reference photo.

Nothing is stored per prediction for this: the pairs are recomputed from the stored query photo and
the reference's stored local features (`whales_identify.reid.explain`; the cost and the comparison with
storing them are in docs/REID.md, "Explanations").
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from whales_be_service.deps import CallerDep, ExplainMatchDep, PoolDep
from whales_be_service.routes.catalog import IndividualId
from whales_be_service.routes.review import PredictionId
from whales_be_service.schemas import ErrorResponse
from whales_be_service.schemas_history import MatchExplanationOut

router = APIRouter(tags=["review"])


@router.get("/v1/predictions/{prediction_id}/matches/{individual_id}", response_model=MatchExplanationOut,
            responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 503)})
async def explain_prediction_match(
    prediction_id: PredictionId,
    individual_id: IndividualId,
    pool: PoolDep,
    explain: ExplainMatchDep,
    caller: CallerDep,
    reference_image_id: Annotated[str | None, Query(
        max_length=128, description="Another catalog photo of this individual (default: the one that "
                                    "matched best).")] = None,
) -> MatchExplanationOut:
    """The verified keypoint pairs between a prediction's photo and a candidate's (access: as the photo)."""
    answer: MatchExplanationOut = await pool.run(explain, prediction_id, individual_id, reference_image_id,
                                                 caller)
    return answer
