"""Request and response models of catalog curation (rename, merge, move or remove a photo, an
individual's curation history) and of an individual's unreviewed candidate sightings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from whales_be_service.schemas import INDIVIDUAL_ID_PATTERN
from whales_be_service.schemas_history import SightingPage

BY = "Who did it: the reviewer's name (a `name:key` entry of WHALES_API_KEYS), else the key's fingerprint."


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"new_id": "hw_0042"}]})
    new_id: str = Field(pattern=INDIVIDUAL_ID_PATTERN, description="Must not exist yet (409 otherwise).")


class RenameOut(BaseModel):
    individual_id: str = Field(description="The new id.")
    previous_id: str
    moved_images: int
    by: str = Field(description=BY)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"into": "hw_0042"}]})
    into: str = Field(pattern=INDIVIDUAL_ID_PATTERN, description="The individual that stays; the one in "
                                                                 "the path is retired into it.")


class MergeOut(BaseModel):
    individual_id: str = Field(description="The individual that stays.")
    merged_id: str = Field(description="The retired id; it now resolves to `individual_id`.")
    species: str
    moved_images: int
    images: int = Field(description="Photos of the merged individual.")
    predictions_rewritten: int = Field(description="Stored predictions and reviews that named the retired "
                                                   "id and now name `individual_id`.")
    by: str = Field(description=BY)


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"individual_id": "hw_0042"}]})
    individual_id: str = Field(pattern=INDIVIDUAL_ID_PATTERN, description="Where the photo goes.")
    create: bool = Field(False, description="Make `individual_id` a new individual (409 when it exists); "
                                            "without it the individual must exist (404).")


class MoveOut(BaseModel):
    image_id: str
    from_individual_id: str
    individual_id: str
    species: str = Field(description="The photo's species now (the target individual's).")
    remaining_images: int = Field(description="Photos left to the individual it came from (0: gone).")
    created: bool
    predictions_rewritten: int = Field(description="The review that had enrolled the photo now names "
                                                   "`individual_id` (0 or 1).")
    by: str = Field(description=BY)


class RemovedImageOut(BaseModel):
    image_id: str
    individual_id: str
    remaining_images: int = Field(description="0: the individual is gone with its last photo.")
    by: str = Field(description=BY)


class CurationEvent(BaseModel):
    at: datetime
    action: str = Field(description="rename, rename_in, merge, merge_in, move_image_out, move_image_in, "
                                    "remove_image.")
    individual_id: str = Field(description="The id the event was recorded under.")
    actor: str | None = Field(description="Who (callers with a key only).")
    detail: dict[str, Any] | None


class CurationHistoryOut(BaseModel):
    individual_id: str
    current_id: str | None = Field(description="Where a retired id lives on (itself when it is live; "
                                               "null when neither).")
    aliases: list[str] = Field(description="Retired ids (merged or renamed away) now carried by it.")
    events: list[CurationEvent] = Field(description="Oldest first, for this id and its aliases.")


class CandidateSightingOut(BaseModel):
    prediction_id: str
    created_at: datetime
    observed_at: datetime | None
    filename: str
    probability: float | None
    batch_id: str | None
    sighting: dict[str, Any] = Field(description="As the caller may see it (location privacy).")
    image_url: str = Field(description="The stored photo (needs a key: it is not reviewed).")


class SightingPageWithCandidates(SightingPage):
    candidates: list[CandidateSightingOut] | None = Field(
        None, description="With `include=candidates`: unreviewed, not rejected predictions whose top-1 "
                          "answer is this individual (not flagged as new), oldest first, at most 200.")
    candidates_truncated: bool | None = Field(None, description="More than 200 candidates exist.")
