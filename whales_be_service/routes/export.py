"""`GET /v1/export`: stored predictions as CSV, JSON lines or a Darwin Core Archive (streamed)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from integrations.exports import EXPORT_FORMATS, iter_csv, iter_jsonl, iter_records, write_dwca
from whales_be_service.deps import ApiKeyDep, SettingsDep, StoreDep
from whales_be_service.schemas import ErrorResponse

router = APIRouter(tags=["export"])

_CHUNK = 64 * 1024


def _file_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    try:
        fh.seek(0)
        while chunk := fh.read(_CHUNK):
            yield chunk
    finally:
        fh.close()


def _encoded(chunks: Iterator[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")


@router.get(
    "/v1/export",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The export file.",
              "content": {media: {} for media, _ in EXPORT_FORMATS.values()}},
        **{code: {"model": ErrorResponse} for code in (401, 403, 422, 503)},
    },
)
def export_predictions(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    _key: ApiKeyDep,
    format: Annotated[Literal["csv", "jsonl", "dwca"], Query(
        description="csv (spreadsheet-safe), jsonl (one JSON object per line) or dwca "
                    "(Darwin Core Archive ZIP: one occurrence per encounter, photos in the Simple "
                    "Multimedia extension, eml.xml from the WHALES_DWC_* settings)")] = "csv",
    since: Annotated[datetime | None, Query(
        description="Only predictions made at or after this ISO 8601 time (UTC when no zone).")] = None,
    positions: Annotated[Literal["public", "exact"] | None, Query(
        description="public: positions as WHALES_PUBLIC_LOCATION_PRECISION allows, with Darwin Core "
                    "dataGeneralizations and coordinateUncertaintyInMeters (for publishing); exact: "
                    "full precision. Default: public for dwca, exact for csv and jsonl.")] = None,
) -> StreamingResponse:
    """Download stored predictions as CSV, JSON lines or a Darwin Core Archive."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    media_type, extension = EXPORT_FORMATS[format]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = "occurrences" if format == "dwca" else "predictions"
    headers = {"Content-Disposition": f'attachment; filename="whales-{name}-{stamp}.{extension}"'}
    records = iter_records(store, since=since)
    exact = (positions or ("public" if format == "dwca" else "exact")) == "exact"
    policy = None if exact else settings.location_policy()
    if format == "dwca":
        # A ZIP's central directory comes last, so the archive is built first (spilling to disk past
        # 16 MB) and then streamed.
        spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # closed by _file_chunks
        try:
            write_dwca(records, spool, base_url=str(request.base_url).rstrip("/"), policy=policy,
                       metadata=settings.dataset_metadata())
        except BaseException:
            spool.close()
            raise
        return StreamingResponse(_file_chunks(spool), media_type=media_type, headers=headers)
    lines = iter_csv(records, policy) if format == "csv" else iter_jsonl(records, policy)
    return StreamingResponse(_encoded(lines), media_type=media_type, headers=headers)
