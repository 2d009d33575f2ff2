"""The review queue: `GET /v1/predictions` (stored predictions, filtered, newest or oldest first, one
keyset page at a time) and `DELETE /v1/predictions/{id}/review` (undo a decision).

Reads follow the other read routes: public unless `WHALES_REQUIRE_KEY_FOR_READS`, positions, places
and observers as the caller's location-privacy view allows (docs/SECURITY.md). An undo needs a key,
is one transaction (decision cleared, the photos its review enrolled removed, catalog generation
bumped, an audit row in `review_undos` naming the reviewer, or the key's fingerprint), and of
concurrent undos and reviews of one prediction exactly one wins; the others get 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from whales_be_service.deps import CallerDep, PoolDep, ReadyStoreDep, ReviewerDep, SettingsDep, UndoReviewDep
from whales_be_service.mapping import sighting_json
from whales_be_service.routes.review import PredictionId
from whales_be_service.schemas import ErrorResponse
from whales_be_service.schemas_queue import PredictionListItem, PredictionPage, UndoOut
from whales_identify.records.review_queue import PredictionQuery, decode_cursor, encode_cursor
from whales_identify.records.store import REVIEW_STATES

router = APIRouter(tags=["review"])

State = Literal["unreviewed", "confirmed", "new_individual", "not_cetacean"]
Probability = Annotated[float | None, Query(ge=0.0, le=1.0)]
ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorResponse} for c in (400, 401, 403)}
assert set(State.__args__) == set(REVIEW_STATES)  # one list of states


def _item(record: Any, caller: Any, policy: Any) -> PredictionListItem:
    visible = caller.sighting(record.sighting, policy)
    return PredictionListItem(
        prediction_id=record.prediction_id, created_at=record.created_at, filename=record.filename,
        batch_id=record.batch_id, job_id=getattr(record, "job_id", None), rejected=record.rejected,
        cetacean_score=record.cetacean_score, species=record.species, individual_id=record.individual_id,
        is_new_individual=record.is_new_individual, probability=record.probability,
        candidates=record.candidates, review_state=record.review_state,
        reviewer_decision=record.reviewer_decision, reviewed_at=record.reviewed_at,
        reviewed_by=record.reviewed_by if caller.authorised else None,
        sighting=sighting_json(visible.sighting, visible.precision),
        image_url=f"/v1/predictions/{record.prediction_id}/image")


@router.get("/v1/predictions", response_model=PredictionPage, responses=ERRORS)
async def list_predictions(
    pool: PoolDep,
    store: ReadyStoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    review_state: Annotated[State | None, Query(description="e.g. `unreviewed`: the review queue.")] = None,
    batch_id: Annotated[str | None, Query(max_length=64, description="A /v1/predict-batch call "
                                                                     "(its `summary.batch_id`).")] = None,
    job_id: Annotated[str | None, Query(max_length=64, description="A `whales batch` job.")] = None,
    created_from: Annotated[datetime | None, Query(description="Stored at or after (ISO 8601; "
                                                               "UTC when no offset).")] = None,
    created_to: Annotated[datetime | None, Query(description="Stored before (ISO 8601).")] = None,
    species: Annotated[str | None, Query(max_length=64)] = None,
    new_individual: Annotated[bool | None, Query(description="Only predictions that did (true) or did "
                                                             "not (false) suggest a new individual.")] = None,
    min_probability: Probability = None,
    max_probability: Probability = None,
    sort: Annotated[Literal["newest", "oldest"], Query()] = "newest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous "
                                                                    "page.")] = None,
) -> PredictionPage:
    """Stored predictions for review: filtered, sorted by time, paged by an opaque cursor."""
    query = PredictionQuery(review_state=review_state, batch_id=batch_id, job_id=job_id,
                            created_from=created_from, created_to=created_to, species=species,
                            new_individual=new_individual, min_probability=min_probability,
                            max_probability=max_probability, newest_first=sort == "newest",
                            after=decode_cursor(cursor) if cursor else None, limit=limit + 1)
    records = await pool.run(store.query_predictions, query)
    page, more = records[:limit], len(records) > limit
    policy = settings.location_policy()
    last = page[-1] if page else None
    return PredictionPage(items=[_item(r, caller, policy) for r in page],
                          next_cursor=encode_cursor(last.created_at, last.prediction_id)
                          if more and last else None)


@router.delete("/v1/predictions/{prediction_id}/review", response_model=UndoOut,
               responses={c: {"model": ErrorResponse} for c in (401, 403, 404, 409, 503)})
async def undo_review(
    prediction_id: PredictionId,
    pool: PoolDep,
    undo: UndoReviewDep,
    reviewer: ReviewerDep,
    expected_state: Annotated[State | None, Query(description="Undo only while the prediction is in "
                                                              "this state (409 otherwise).")] = None,
) -> UndoOut:
    """Undo a review decision: back to `unreviewed`, and the photos its review enrolled leave the
    catalog (an individual the review created goes with its last photo)."""
    return await pool.run(undo, prediction_id, expected_state, reviewer)
