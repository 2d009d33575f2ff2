"""`/reference/...`: the reference project's paths and answer shapes, for its unchanged clients.

The reference web client (`frontend/src/api.ts`, `VITE_BACKEND=http://host:8000/reference`) posts a
photo as `file` to `/v1/predict-single` and a ZIP as `archive` to `/v1/predict-batch`, and reads the
batch answer as a JSON array of detections. Here both run the same pipeline as `/v1/predict` and
`/v1/predict-batch` (so predictions are stored and reviewable), and only the shape changes:
an entry that cannot be decoded is a rejected item with `rejection_reason: "corrupted_image"`
(HTTP 200), as the reference answers, instead of an entry in `errors`. The `/v1` contract is untouched.
"""

from __future__ import annotations

from typing import IO, Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from whales_be_service.deps import LimiterDep, PoolDep, PredictBatchDep, PredictPhotosDep, SettingsDep
from whales_be_service.errors import library_status
from whales_be_service.routes.predict import ERRORS, upload_name
from whales_be_service.settings import Settings
from whales_be_service.uploads import plan_batch, read_limited
from whales_identify.errors import WhalesError

router = APIRouter(prefix="/reference", tags=["reference compatibility"])

CORRUPTED = "corrupted_image"


class ReferenceCandidate(BaseModel):
    class_animal: str = Field(description="Individual id.")
    id_animal: str = Field(description="Species key.")
    probability: float


class Detection(BaseModel):
    """The reference's `Detection` (its `frontend/src/api.ts`), with our top-k `candidates`."""

    image_ind: str
    bbox: list[int] = Field(min_length=4, max_length=4)
    class_animal: str = Field(description="Individual id; \"\" when none (new individual, rejected).")
    id_animal: str = Field(description="Species key; \"unknown\" when none.")
    probability: float = Field(description="Calibrated probability of `class_animal`; 0 when none.")
    mask: str | None = None
    is_cetacean: bool
    cetacean_score: float
    rejected: bool
    rejection_reason: str | None = Field(description="`not_a_marine_mammal` or `corrupted_image`.")
    model_version: str
    candidates: list[ReferenceCandidate]


def detection(p: dict[str, Any]) -> dict[str, Any]:
    """Our `PredictionOut` payload in the reference's shape."""
    return {"image_ind": p["image_ind"], "bbox": p["bbox"], "class_animal": p["class_animal"],
            "id_animal": p["id_animal"], "probability": float(p["probability"] or 0.0), "mask": p["mask"],
            "is_cetacean": p["is_cetacean"], "cetacean_score": p["cetacean_score"],
            "rejected": p["rejected"], "rejection_reason": p["rejection_reason"],
            "model_version": p["model_version"],
            "candidates": [{"class_animal": c["individual_id"], "id_animal": c["species"],
                            "probability": c["probability"]} for c in p["candidates"]]}


def corrupted(name: str, settings: Settings) -> dict[str, Any]:
    """A photo that could not be decoded, as the reference reports it: rejected, HTTP 200."""
    return {"image_ind": name, "bbox": [0, 0, 0, 0], "class_animal": "", "id_animal": "unknown",
            "probability": 0.0, "mask": None, "is_cetacean": False, "cetacean_score": 0.0, "rejected": True,
            "rejection_reason": CORRUPTED, "model_version": settings.embedding_model, "candidates": []}


@router.post("/v1/predict-single", response_model=Detection, responses=ERRORS,
             operation_id="reference_predict_single")
async def predict_single(
    pool: PoolDep,
    use_case: PredictPhotosDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The photo.")],
) -> Any:
    """The reference's single-photo call: one detection; an undecodable photo is `corrupted_image`."""
    name = upload_name(file)

    def job() -> dict[str, Any]:
        file.file.seek(0)
        data = read_limited(file.file, settings.max_upload_bytes, "the file")
        try:
            return detection(use_case(name, data, 5).model_dump())
        except WhalesError as exc:
            if library_status(exc) == 400:
                return corrupted(name, settings)
            raise

    return await pool.run(job)


@router.post("/v1/predict-batch", response_model=list[Detection], responses=ERRORS,
             operation_id="reference_predict_batch")
async def predict_batch_array(
    request: Request,
    pool: PoolDep,
    use_case: PredictBatchDep,
    settings: SettingsDep,
    limiter: LimiterDep,
    archive: Annotated[UploadFile, File(description="A ZIP of photos.")],
) -> Any:
    """The reference's batch call: a JSON array of detections in archive order (directories and
    macOS metadata left out, undecodable entries as `corrupted_image`)."""
    parts: list[tuple[str, IO[bytes]]] = [(upload_name(archive, "archive.zip"), archive.file)]
    plan = await run_in_threadpool(plan_batch, parts, settings)
    if settings.batch_counts_per_image and plan.images > 1:
        limiter.hit(request, plan.images - 1)
    answer = await pool.run(use_case, plan, 5)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in answer.results:
        by_name.setdefault(p.image_ind, []).append(detection(p.model_dump()))
    for e in answer.errors:
        if e.code != "skipped":
            by_name.setdefault(e.image_ind, []).append(corrupted(e.image_ind, settings))
    out: list[dict[str, Any]] = []
    for item in plan.items:
        found = by_name.get(item.name)
        if found:
            out.append(found.pop(0))
    return out


router.add_api_route("/predict-single", predict_single, methods=["POST"], response_model=Detection,
                     responses=ERRORS, operation_id="reference_predict_single_unversioned",
                     summary="Reference single (unversioned path)")
router.add_api_route("/predict-batch", predict_batch_array, methods=["POST"], response_model=list[Detection],
                     responses=ERRORS, operation_id="reference_predict_batch_unversioned",
                     summary="Reference batch (unversioned path)")
