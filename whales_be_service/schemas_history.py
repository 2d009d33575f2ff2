"""Response models of the match explanation and the sighting history (kept apart from `schemas.py`
only for size; the OpenAPI document is generated from both)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from whales_be_service.schemas import SightingOut


class MatchPairOut(BaseModel):
    query: tuple[float, float] = Field(description="(x, y) in the stored query photo's pixels.")
    reference: tuple[float, float] = Field(description="(x, y) in the reference thumbnail's pixels.")
    score: float = Field(description="Descriptor similarity of the pair, 0..1 (pairs are sorted by it).")


class MatchExplanationOut(BaseModel):
    """The geometrically verified keypoint pairs behind one candidate of a prediction."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "prediction_id": "5f0c2b8e9a7d4c1e8b3a2f6d7e9c0a1b", "individual_id": "rw_whale_06069",
        "reference_image_id": "img_7c1d", "inliers": 27, "tentative": 86,
        "query_size": [224, 224], "reference_size": [224, 224],
        "pairs": [{"query": [101.5, 62.0], "reference": [97.2, 70.8], "score": 0.93}],
        "transform": [[0.98, -0.05, 1.2], [0.05, 0.98, 9.6], [0.0, 0.0, 1.0]], "reason": None,
        "verified_inliers": 24, "query_image_url": "/v1/predictions/5f0c2b8e9a7d4c1e8b3a2f6d7e9c0a1b/image",
        "reference_thumbnail_url": "/v1/images/img_7c1d/thumbnail", "reference_image_ids": ["img_7c1d"]}})
    prediction_id: str
    individual_id: str
    reference_image_id: str = Field(description="The catalog photo compared with: the candidate's "
                                                "best-verified photo unless `reference_image_id` was given.")
    inliers: int = Field(description="RANSAC inliers (never capped; `pairs` holds at most 100).")
    tentative: int = Field(description="One-to-one ratio-test matches RANSAC started from.")
    query_size: tuple[int, int] | None = Field(description="(width, height) of the stored query photo.")
    reference_size: tuple[int, int] | None = Field(description="(width, height) of the reference "
                                                               "thumbnail.")
    pairs: list[MatchPairOut] = Field(description="Verified inlier pairs, most similar first.")
    transform: list[list[float]] | None = Field(description="3x3 similarity transform (row-major) "
                                                            "from query to reference pixels.")
    reason: str | None = Field(description="Why `pairs` is empty (null when there are pairs).")
    verified_inliers: int | None = Field(description=(
        "Inliers matching counted for this candidate when the photo was identified (null for older "
        "predictions). `inliers` is recomputed from the stored JPEG and can differ by a few."))
    query_image_url: str | None = Field(description="The stored query photo, when it was kept.")
    reference_thumbnail_url: str
    reference_image_ids: list[str] = Field(default_factory=list, description=(
        "All catalog photos of this individual (ask for another one with `?reference_image_id=`)."))


class SightingEntryOut(BaseModel):
    image_id: str
    observed_at: datetime | None = Field(description="When the photo was taken (null when unknown).")
    created_at: datetime = Field(description="When the photo was enrolled.")
    sighting: SightingOut = Field(description="Position, place and observer as this caller may see "
                                              "them; `precision` says which (see docs/SECURITY.md).")
    filename: str
    source: str
    thumbnail_url: str


class SightingPage(BaseModel):
    """One individual's photos as sightings over time, oldest first, paged."""

    individual_id: str
    species: str
    total: int = Field(description="Sightings of this individual (all pages).")
    first_seen: datetime | None = Field(description="Earliest sighting time (all pages).")
    last_seen: datetime | None = Field(description="Latest sighting time (all pages).")
    limit: int
    offset: int
    items: list[SightingEntryOut]
