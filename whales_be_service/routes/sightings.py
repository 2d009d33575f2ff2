"""An individual's sighting history: `GET /v1/individuals/{id}/sightings` (paged JSON) and
`GET /v1/individuals/{id}/sightings/export` (CSV or Darwin Core Archive).

Every catalog photo of the individual is one sighting (when, where, by whom). Positions, places and
observers follow the location-privacy rule: callers without a key see what
`WHALES_PUBLIC_LOCATION_PRECISION` allows (`whales_identify.records.location_privacy`, docs/SECURITY.md).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from integrations.sightings import iter_sightings_csv, write_sightings_dwca
from whales_be_service.deps import CallerDep, PoolDep, SettingsDep, SightingHistoryDep
from whales_be_service.mapping import sighting_json
from whales_be_service.routes.catalog import NOT_FOUND, IndividualId
from whales_be_service.schemas import ErrorResponse
from whales_be_service.schemas_curation import SightingPageWithCandidates
from whales_be_service.schemas_history import SightingEntryOut

router = APIRouter(tags=["catalog"])

FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"), "dwca": ("application/zip", "zip")}


@router.get("/v1/individuals/{individual_id}/sightings", response_model=SightingPageWithCandidates,
            responses={**NOT_FOUND, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
async def list_sightings(
    individual_id: IndividualId,
    pool: PoolDep,
    sightings: SightingHistoryDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    include: Annotated[Literal["candidates"] | None, Query(description=(
        "`candidates`: also its unreviewed candidate sightings (predictions whose top-1 answer is "
        "this individual), beside the confirmed ones."))] = None,
) -> SightingPageWithCandidates:
    """One individual's sightings over time (oldest first, paged), with first and last seen; with
    `include=candidates`, also the photos the model matched to it that nobody has reviewed yet."""
    species, history = await pool.run(sightings, individual_id, caller)
    times = [r.sighting.observed_at for r, _ in history if r.sighting.observed_at is not None]
    items = [SightingEntryOut(image_id=r.image_id, observed_at=r.sighting.observed_at,
                              created_at=r.created_at, sighting=sighting_json(v.sighting, v.precision),
                              filename=r.filename, source=r.source,
                              thumbnail_url=f"/v1/images/{r.image_id}/thumbnail")
             for r, v in history[offset:offset + limit]]
    candidates, truncated = (await pool.run(sightings.candidates, individual_id, caller)
                             if include == "candidates" else (None, None))
    return SightingPageWithCandidates(
        individual_id=individual_id, species=species, total=len(history),
        first_seen=min(times) if times else None, last_seen=max(times) if times else None,
        limit=limit, offset=offset, items=items, candidates=candidates, candidates_truncated=truncated)


@router.get("/v1/individuals/{individual_id}/sightings/export", response_class=StreamingResponse,
            responses={200: {"description": "The history file.",
                             "content": {media: {} for media, _ in FORMATS.values()}},
                       **NOT_FOUND, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
async def export_sightings(
    individual_id: IndividualId,
    request: Request,
    pool: PoolDep,
    sightings: SightingHistoryDep,
    settings: SettingsDep,
    caller: CallerDep,
    format: Annotated[Literal["csv", "dwca"], Query(
        description="csv (spreadsheet-safe) or dwca (Darwin Core Archive with organismID)")] = "csv",
) -> StreamingResponse:
    """Download one individual's sighting history as CSV or a Darwin Core Archive."""
    species, history = await pool.run(sightings, individual_id, caller)
    media_type, extension = FORMATS[format]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"whales-{individual_id}-sightings-{stamp}.{extension}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "csv":
        lines = _encoded(iter_sightings_csv(history))
        return StreamingResponse(lines, media_type=media_type, headers=headers)
    buffer = io.BytesIO()  # one individual's history: small, built in memory
    # the operator's licence, creator and contact; the package id follows this archive's own title
    metadata = replace(settings.dataset_metadata(), package_uuid=None)
    write_sightings_dwca(history, buffer, base_url=str(request.base_url).rstrip("/"),
                         title=f"EcoMarineAI sightings of {individual_id} ({species})", metadata=metadata)
    return StreamingResponse(iter([buffer.getvalue()]), media_type=media_type, headers=headers)


def _encoded(chunks: Iterator[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")
