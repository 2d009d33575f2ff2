"""Catalog curation (issue 23 #2), each one transaction, attributed and seen by every worker at once:
`POST /v1/individuals/{id}/rename` and `DELETE /v1/images/{image_id}` (remove one photo, e.g. a
wrong match). Both need a key; the key's fingerprint goes into `catalog_audit`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from whales_be_service.deps import ApiKeyDep, ReadyStateDep, key_fingerprint
from whales_be_service.routes.catalog import NOT_FOUND, IndividualId
from whales_be_service.routes.queue import store_catalog_write
from whales_be_service.schemas import INDIVIDUAL_ID_PATTERN, ErrorResponse

router = APIRouter(tags=["catalog"])
KEYED: dict[int | str, dict[str, Any]] = {**NOT_FOUND, **{c: {"model": ErrorResponse} for c in (401, 403)}}


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"new_id": "hw_0042"}]})
    new_id: str = Field(pattern=INDIVIDUAL_ID_PATTERN, description="Must not exist yet (409 otherwise).")


class RenameOut(BaseModel):
    individual_id: str = Field(description="The new id.")
    previous_id: str
    moved_images: int
    by: str = Field(description="Fingerprint of the key (also in `catalog_audit`).")


class RemovedImageOut(BaseModel):
    image_id: str
    individual_id: str
    remaining_images: int = Field(description="0: the individual is gone with its last photo.")
    by: str


@router.post("/v1/individuals/{individual_id}/rename", response_model=RenameOut,
             responses={**KEYED, 409: {"model": ErrorResponse}})
async def rename_individual(individual_id: IndividualId, body: RenameIn, state: ReadyStateDep,
                            key: ApiKeyDep) -> RenameOut:
    """Give an individual another id (every photo moves; 409 when the new id is taken)."""
    by = key_fingerprint(key)
    moved = await state.pool.run(store_catalog_write, state,
                                 lambda: state.store.rename_individual(individual_id, body.new_id, by))
    return RenameOut(individual_id=body.new_id, previous_id=individual_id, moved_images=moved, by=by)


@router.delete("/v1/images/{image_id}", response_model=RemovedImageOut, responses=KEYED)
async def remove_image(image_id: Annotated[str, Path(max_length=128)], state: ReadyStateDep,
                       key: ApiKeyDep) -> RemovedImageOut:
    """Remove one photo from its individual (a wrong match); the rest of the individual stays."""
    by = key_fingerprint(key)
    individual_id, left = await state.pool.run(store_catalog_write, state,
                                               lambda: state.store.remove_catalog_image(image_id, by))
    return RemovedImageOut(image_id=image_id, individual_id=individual_id, remaining_images=left, by=by)
