"""Response models of the review queue (`GET /v1/predictions`, `DELETE /v1/predictions/{id}/review`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class PredictionListItem(BaseModel):
    prediction_id: str
    created_at: datetime
    filename: str
    batch_id: str | None = Field(description="The /v1/predict-batch call that made it (null: one photo).")
    job_id: str | None = Field(description="The `whales batch` job that made it, if any.")
    rejected: bool
    cetacean_score: float
    species: str | None
    individual_id: str | None = Field(description="Top-1 individual (null when new or rejected).")
    is_new_individual: bool | None
    probability: float | None
    candidates: list[dict[str, Any]] = Field(description="As /v1/predict answered them, best first.")
    review_state: str
    reviewer_decision: dict[str, Any] | None
    reviewed_at: datetime | None
    reviewed_by: str | None = Field(description="The reviewer's name (a `name:key` entry of "
                                                  "WHALES_API_KEYS), else the key's fingerprint (callers "
                                                  "with a key).")
    sighting: dict[str, Any] = Field(description="As the caller may see it (location privacy).")
    image_url: str = Field(description="The stored photo (a key until reviewed as an occurrence).")


class PredictionPage(BaseModel):
    items: list[PredictionListItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class UndoOut(BaseModel):
    prediction_id: str
    review_state: str = Field(description="`unreviewed` again.")
    undone_state: str = Field(description="The decision that was undone.")
    removed_image_ids: list[str] = Field(description="Catalog photos the review had enrolled, now removed.")
    undone_by: str = Field(description="Who undid it: a name or the key's fingerprint "
                                                "(also in `review_undos`).")
    undone_at: float = Field(description="Unix time.")
