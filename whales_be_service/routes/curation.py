"""Catalog curation (issue 23 #2), each one store transaction, attributed to the caller and seen by
every worker on its next request (the catalog generation moves):

* `POST /v1/individuals/{id}/rename`: another id for an individual;
* `POST /v1/individuals/{id}/merge`: a duplicate joins the individual it duplicates;
* `POST /v1/images/{image_id}/move`: one photo to another (or a new) individual;
* `DELETE /v1/images/{image_id}`: one photo out of the catalog (e.g. a wrong match);
* `GET /v1/individuals/{id}/curation`: what happened to an id, and where a retired id lives on.

Writes need a key; `by` (and `catalog_audit.actor`) is the reviewer's name for a named key, else the
key's fingerprint. A rename or merge rewrites the stored predictions that named the retired id, so
the review queue and the exports show the id the catalog knows (integrations/_curation.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from whales_be_service.deps import CallerDep, CatalogAccessDep, PoolDep, ReadyStoreDep, ReviewerDep
from whales_be_service.errors import ServiceError
from whales_be_service.routes.catalog import NOT_FOUND, IndividualId
from whales_be_service.schemas import ErrorResponse
from whales_be_service.schemas_curation import (
    CurationEvent,
    CurationHistoryOut,
    MergeIn,
    MergeOut,
    MoveIn,
    MoveOut,
    RemovedImageOut,
    RenameIn,
    RenameOut,
)
from whales_be_service.use_cases.ports import CatalogAccess
from whales_identify.errors import NotFoundError
from whales_identify.records.store import Store

router = APIRouter(tags=["catalog"])
KEYED: dict[int | str, dict[str, Any]] = {**NOT_FOUND,
                                          **{c: {"model": ErrorResponse} for c in (401, 403, 503)}}
WRITE = {**KEYED, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}
ImageId = Annotated[str, Path(max_length=128)]


@router.post("/v1/individuals/{individual_id}/rename", response_model=RenameOut, responses=WRITE)
async def rename_individual(individual_id: IndividualId, body: RenameIn, pool: PoolDep,
                            store: ReadyStoreDep, catalog: CatalogAccessDep, by: ReviewerDep) -> RenameOut:
    """Give an individual another id (every photo moves; 409 when the new id is taken: merge instead).
    The old id resolves to the new one, and stored predictions naming it are rewritten."""
    moved = await pool.run(catalog.store_write,
                           lambda: store.rename_individual(individual_id, body.new_id, by))
    return RenameOut(individual_id=body.new_id, previous_id=individual_id, moved_images=moved, by=by)


@router.post("/v1/individuals/{individual_id}/merge", response_model=MergeOut, responses=WRITE)
async def merge_individual(individual_id: IndividualId, body: MergeIn, pool: PoolDep,
                           store: ReadyStoreDep, catalog: CatalogAccessDep, by: ReviewerDep) -> MergeOut:
    """Merge a duplicate (the id in the path) into `into`: its photos join `into`, its id is retired
    and resolves to `into`, and stored predictions and reviews naming it are rewritten. 409 when the
    two have different known species or are the same."""
    result = await pool.run(catalog.store_write,
                            lambda: store.merge_individuals(individual_id, body.into, by))
    return MergeOut(**result, by=by)


@router.post("/v1/images/{image_id}/move", response_model=MoveOut, responses=WRITE)
async def move_image(image_id: ImageId, body: MoveIn, pool: PoolDep, store: ReadyStoreDep,
                     catalog: CatalogAccessDep, by: ReviewerDep) -> MoveOut:
    """Move one catalog photo to another individual (`create`: a new one). The review that enrolled
    the photo, if any, now names that individual."""
    result = await pool.run(catalog.store_write, lambda: store.move_catalog_image(
        image_id, body.individual_id, body.create, by))
    return MoveOut(**result, by=by)


@router.delete("/v1/images/{image_id}", response_model=RemovedImageOut, responses=KEYED)
async def remove_image(image_id: ImageId, pool: PoolDep, store: ReadyStoreDep,
                       catalog: CatalogAccessDep, by: ReviewerDep) -> RemovedImageOut:
    """Remove one photo from its individual (a wrong match); the rest of the individual stays."""
    individual_id, left = await pool.run(_remove_photo, catalog, store, image_id, by)
    return RemovedImageOut(image_id=image_id, individual_id=individual_id, remaining_images=left, by=by)


def _remove_photo(catalog: CatalogAccess, store: Store, image_id: str, by: str) -> tuple[str, int]:
    """From the store and this worker's memory in one catalog write: no reload of the whole catalog
    (~12 s at 100k photos, queries waiting); other workers drop it on their next request (the change
    log). A catalog that cannot remove one photo in memory is reloaded instead."""
    remove = getattr(catalog.current(), "remove_image", None)
    if not callable(remove):
        return catalog.store_write(lambda: store.remove_catalog_image(image_id, by))
    with catalog.write() as write:
        try:
            result: tuple[str, int] = catalog.loaded().remove_image(image_id, by)
        except NotFoundError:
            write.touched = False  # the store has no such photo (404): the memory is as it was
            raise
    return result


def _history(store: Store, individual_id: str, authorised: bool) -> CurationHistoryOut:
    live = store.has_individual(individual_id)
    current = individual_id if live else store.resolve_individual(individual_id)
    aliases = store.list_aliases(individual_id)
    # an alias's own "merge"/"rename" row is mirrored by the "merge_in"/"rename_in" row of the id it
    # went to (also in this history): shown once
    rows = [(i, row) for i in (individual_id, *aliases) for row in store.list_catalog_audit(i)
            if i == individual_id or row["action"] not in ("merge", "rename")]
    rows.sort(key=lambda pair: pair[1]["at"])
    return CurationHistoryOut(individual_id=individual_id, current_id=current, aliases=aliases, events=[
        CurationEvent(at=row["at"], action=row["action"], individual_id=i, detail=row["detail"],
                      actor=row["actor"] if authorised else None) for i, row in rows])


@router.get("/v1/individuals/{individual_id}/curation", response_model=CurationHistoryOut,
            responses={c: {"model": ErrorResponse} for c in (401, 403, 404)})
async def curation_history(individual_id: IndividualId, pool: PoolDep,
                           store: ReadyStoreDep, caller: CallerDep) -> CurationHistoryOut:
    """What curation did to an id (renames, merges, photos moved or removed, oldest first) and, for a
    retired id, the individual it lives on as (`current_id`). Who did it is shown to key holders."""
    out = await pool.run(_history, store, individual_id, caller.authorised)
    if out.current_id is None and not out.events:
        raise ServiceError(404, "not_found", f"no individual {individual_id!r}, now or before")
    return out
