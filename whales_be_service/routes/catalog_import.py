"""`POST /v1/catalog/import`: fill the catalog from a ZIP of photos and a CSV; the CSV template."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from whales_be_service.catalog_import import ImportCatalog, ImportPlan, ImportProgress, chunks, result
from whales_be_service.deps import ApiKeyDep, ImportCatalogDep, PoolDep, SettingsDep
from whales_be_service.errors import ServiceError
from whales_be_service.inference import InferencePool
from whales_be_service.routes.predict import ERRORS, upload_name
from whales_be_service.schemas import ErrorResponse, ImportOut
from whales_be_service.uploads import describe_error, read_limited
from whales_identify.records.catalog_csv import template_csv

router = APIRouter(tags=["catalog"])
log = logging.getLogger("whales_be_service")

NDJSON = "application/x-ndjson"
MAX_CSV_BYTES = 10 * 1024 * 1024
RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS, 401: {"model": ErrorResponse, "description": "No X-API-Key."},
    403: {"model": ErrorResponse, "description": "Key not accepted or no keys configured."},
    200: {"content": {NDJSON: {}}, "description": "The import's result; with `Accept: "
          "application/x-ndjson`, progress lines `{\"event\": \"progress\", \"done\", \"total\"}` "
          "then one `{\"event\": \"result\", ...}` line."}}


async def _run_chunk(pool: InferencePool, importer: ImportCatalog, plan: ImportPlan, chunk: Any,
                     progress: ImportProgress) -> None:
    """One chunk on the inference pool; waits for a free slot instead of failing the import midway."""
    while True:
        try:
            await pool.run(importer.run_chunk, plan, chunk, progress)
            return
        except ServiceError as exc:
            if exc.code != "overloaded":
                raise
            await asyncio.sleep(0.5)


async def _stream(pool: InferencePool, importer: ImportCatalog, plan: ImportPlan,
                  batch_size: int) -> AsyncIterator[bytes]:
    progress = ImportProgress()
    total, done = len(plan.todo), 0
    yield (json.dumps({"event": "progress", "done": 0, "total": total}) + "\n").encode()
    try:
        for chunk in chunks(plan, batch_size):
            await _run_chunk(pool, importer, plan, chunk, progress)
            done += len(chunk)
            yield (json.dumps({"event": "progress", "done": done, "total": total}) + "\n").encode()
    except Exception as exc:  # the status line is sent already: the failure goes into the stream
        log.exception("catalog import failed after %d of %d photos", done, total)
        code, message = describe_error(exc)
        yield (json.dumps({"event": "error", "error": {"code": code, "message": message,
                                                        "details": {"done": done, "total": total}}})
               + "\n").encode()
        return
    yield (json.dumps({"event": "result", **result(plan, progress)}) + "\n").encode()


@router.post("/v1/catalog/import", response_model=ImportOut, responses=RESPONSES)
async def import_catalog(
    request: Request,
    pool: PoolDep,
    importer: ImportCatalogDep,
    settings: SettingsDep,
    _key: ApiKeyDep,
    archive: Annotated[UploadFile, File(description="ZIP of the photos named in the CSV.")],
    manifest: Annotated[UploadFile, File(description="CSV: filename,individual_id,species[,date,latitude,"
                                                     "longitude,location,observer] (see the template).")],
) -> Any:
    """Enrol every photo of a ZIP under the individual and species its CSV row gives."""
    if archive.size is not None and archive.size > settings.max_archive_bytes:
        raise ServiceError(413, "payload_too_large", f"the archive is {archive.size} bytes; the limit "
                           f"is {settings.max_archive_bytes}")
    csv_bytes = read_limited(manifest.file, MAX_CSV_BYTES, "the CSV")
    plan = await run_in_threadpool(importer.plan, (upload_name(archive, "archive.zip"), archive.file),
                                   csv_bytes)
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_stream(pool, importer, plan, settings.batch_size), media_type=NDJSON,
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    progress = ImportProgress()
    for chunk in chunks(plan, settings.batch_size):
        await _run_chunk(pool, importer, plan, chunk, progress)
    return result(plan, progress)


@router.get("/v1/catalog/import/template.csv", response_class=PlainTextResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "CSV template."}})
async def import_template() -> PlainTextResponse:
    """The catalog CSV template (header and two example rows)."""
    return PlainTextResponse(template_csv(), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="catalog_template.csv"'})
