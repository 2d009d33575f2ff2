"""The catalog of known individuals: browse, enrol photos, delete, thumbnails."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import Response

from whales_be_service.deps import (
    ApiKeyDep,
    Caller,
    CallerDep,
    CatalogDep,
    DeleteIndividualDep,
    EnrolPhotosDep,
    PoolDep,
    SettingsDep,
    StoreDep,
    get_ready_state,
)
from whales_be_service.errors import ServiceError, too_large
from whales_be_service.mapping import sighting_json
from whales_be_service.routes.predict import ERRORS, upload_name
from whales_be_service.schemas import (
    INDIVIDUAL_ID_PATTERN,
    CatalogImageOut,
    DeleteOut,
    EnrolOut,
    ErrorResponse,
    IndividualDetail,
    IndividualOut,
    IndividualPage,
    SpeciesOut,
)
from whales_be_service.settings import Settings
from whales_identify.records.location_privacy import LocationPolicy

if TYPE_CHECKING:
    from whales_identify.reid.catalog import IndividualSummary

router = APIRouter(tags=["catalog"])

IndividualId = Annotated[str, Path(pattern=INDIVIDUAL_ID_PATTERN, description="Individual id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "Not found."}}


def individual_out(summary: IndividualSummary) -> IndividualOut:
    """An `IndividualSummary` as the API's shape; its first photo is the thumbnail."""
    thumb = summary.image_ids[0] if summary.image_ids else None
    return IndividualOut(individual_id=summary.individual_id, species=summary.species,
                         n_images=summary.n_images, last_seen=summary.last_seen,
                         thumbnail_url=f"/v1/images/{thumb}/thumbnail" if thumb else None)


def image_out(image: Any, caller: Caller, policy: LocationPolicy) -> CatalogImageOut:
    """A catalog photo as this caller may see it (positions generalised or withheld without a key)."""
    seen = caller.sighting(image.sighting, policy)
    return CatalogImageOut(image_id=image.image_id, individual_id=image.individual_id, species=image.species,
                           filename=image.filename, source=image.source, created_at=image.created_at,
                           thumbnail_url=f"/v1/images/{image.image_id}/thumbnail",
                           sighting=sighting_json(seen.sighting, seen.precision))


def read_cache_headers(settings: Settings, caller: Caller) -> dict[str, str]:
    """Answers that depend on the key (or need one) are never stored by shared caches."""
    if caller.authorised or settings.require_key_for_reads:
        return {"Cache-Control": "private, no-store", "Vary": "X-API-Key"}
    return {"Cache-Control": "public, max-age=60", "Vary": "X-API-Key"}


@router.get("/v1/species", response_model=list[SpeciesOut])
async def list_species() -> list[SpeciesOut]:
    """Species keys with their common and scientific names."""
    from whales_identify.species import list_species as all_species

    return [SpeciesOut(key=s.key, common_name=s.common_name, scientific_name=s.scientific_name,
                       taxon_rank=s.taxon_rank) for s in all_species()]


@router.get("/v1/individuals", response_model=IndividualPage)
def list_individuals(
    catalog: CatalogDep,
    species: Annotated[str | None, Query(max_length=64, description="Only this species.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> IndividualPage:
    """Known individuals, paged, optionally of one species."""
    summaries = sorted(catalog.list_individuals(species=species), key=lambda s: s.individual_id)
    items = [individual_out(s) for s in summaries[offset:offset + limit]]
    return IndividualPage(items=items, total=len(summaries), limit=limit, offset=offset)


@router.get("/v1/individuals/{individual_id}", response_model=IndividualDetail, responses=NOT_FOUND,
            dependencies=[Depends(get_ready_state)])
def get_individual(individual_id: IndividualId, catalog: CatalogDep, store: StoreDep, settings: SettingsDep,
                   caller: CallerDep, response: Response) -> IndividualDetail:
    """One individual with its reference photos; without a key, positions at the public precision."""
    summary = catalog.get_individual(individual_id)
    if summary is None:
        raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog")
    images = store.list_individual_images(individual_id, model_id=catalog.model_id)  # indexed
    policy = settings.location_policy()
    response.headers.update(read_cache_headers(settings, caller))
    base = individual_out(summary)
    return IndividualDetail(**base.model_dump(), images=[image_out(im, caller, policy) for im in images])


@router.post("/v1/individuals/{individual_id}/images", response_model=EnrolOut,
             responses={**ERRORS, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                        409: {"model": ErrorResponse}})
async def enrol_images(
    individual_id: IndividualId,
    pool: PoolDep,
    use_case: EnrolPhotosDep,
    settings: SettingsDep,
    _key: ApiKeyDep,
    files: Annotated[list[UploadFile], File(description="One or more photos of this individual.")],
    species: Annotated[str | None, Form(max_length=64, description="Species key, e.g. humpback_whale "
                                                                   "(any case, spaces or hyphens).")] = None,
) -> EnrolOut:
    """Enrol photos of an individual (created if new); says what was enrolled and what was refused."""
    if len(files) > settings.max_batch_images:
        raise too_large(f"{len(files)} files; the limit is {settings.max_batch_images}")
    parts = [(upload_name(f, f"file_{i}"), f.file) for i, f in enumerate(files)]
    return await pool.run(use_case, individual_id, species, parts)


@router.delete("/v1/individuals/{individual_id}", response_model=DeleteOut,
               responses={**NOT_FOUND, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
async def delete_individual(individual_id: IndividualId, pool: PoolDep, use_case: DeleteIndividualDep,
                            _key: ApiKeyDep) -> DeleteOut:
    """Remove an individual and all its reference photos."""
    return await pool.run(use_case, individual_id)


@router.get("/v1/images/{image_id}/thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail."}, **NOT_FOUND},
            dependencies=[Depends(get_ready_state)])
def thumbnail(image_id: Annotated[str, Path(max_length=128)], store: StoreDep, settings: SettingsDep,
              caller: CallerDep) -> Response:
    """The JPEG thumbnail of a catalog photo (re-encoded: no EXIF, so no position)."""
    image = store.get_catalog_image(image_id)
    if image is None or not image.thumbnail:
        raise ServiceError(404, "not_found", f"no thumbnail for image {image_id!r}")
    # behind a key, shared caches (proxies, CDNs) must not keep a copy for the next caller
    cache = "private, max-age=3600" if settings.require_key_for_reads else "public, max-age=86400"
    return Response(image.thumbnail, media_type="image/jpeg", headers={"Cache-Control": cache,
                                                                       "Vary": "X-API-Key"})
