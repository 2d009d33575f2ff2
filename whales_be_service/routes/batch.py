"""`POST /v1/predict-batch`: many photos as one ZIP archive or several `files` parts."""

from __future__ import annotations

from typing import IO, Annotated

from fastapi import APIRouter, File, Request, UploadFile

from whales_be_service.deps import LimiterDep, PoolDep, PredictBatchDep, SettingsDep
from whales_be_service.errors import ServiceError
from whales_be_service.routes.predict import ERRORS, TopK, upload_name
from whales_be_service.schemas import BatchOut
from whales_be_service.uploads import plan_batch

router = APIRouter(tags=["predict"])


async def batch(
    request: Request,
    pool: PoolDep,
    use_case: PredictBatchDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    archive: Annotated[UploadFile | None, File(description="A ZIP of photos (recognised by its bytes, "
                                                           "whatever its declared type).")] = None,
    files: Annotated[list[UploadFile] | None, File(description="One or more photos.")] = None,
    top_k: TopK = 5,
) -> BatchOut:
    """Identify every photo of a ZIP or of several parts; each image ends in `results` or `errors`."""
    uploads = ([archive] if archive is not None else []) + list(files or [])
    if not uploads:
        raise ServiceError(422, "validation_error", "send a ZIP as `archive` or photos as `files` parts")
    parts: list[tuple[str, IO[bytes]]] = [(upload_name(u, f"file_{i}"), u.file)
                                          for i, u in enumerate(uploads)]
    # planning reads the archive's directory: bounded work, and it queues in the bounded pool too
    plan = await pool.run(plan_batch, parts, settings)
    if settings.batch_counts_per_image and plan.images > 1:
        # the request itself was charged once already
        limiter.hit(request, plan.images - 1, whole=plan.images)
    return await pool.run(use_case, plan, top_k)


router.add_api_route("/v1/predict-batch", batch, methods=["POST"], operation_id="predict_batch",
                     response_model=BatchOut, responses=ERRORS)
router.add_api_route("/predict-batch", batch, methods=["POST"], operation_id="predict_batch_unversioned",
                     summary="Batch (reference alias of /v1/predict-batch)", deprecated=True,
                     response_model=BatchOut, responses=ERRORS)
