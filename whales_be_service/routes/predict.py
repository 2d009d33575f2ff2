"""`POST /v1/predict`: identify the whale or dolphin in one photo (plus the reference's aliases)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from whales_be_service.deps import PoolDep, PredictPhotosDep, SettingsDep
from whales_be_service.errors import ServiceError, too_large
from whales_be_service.inference import InferencePool
from whales_be_service.schemas import ErrorResponse, PredictionOut
from whales_be_service.uploads import read_limited
from whales_be_service.use_cases.predict import PredictPhotos
from whales_identify.records.sighting import validate_sighting
from whales_identify.records.store import Sighting

router = APIRouter(tags=["predict"])

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in {
        400: "Empty or undecodable image.", 413: "File or image dimensions too large.",
        415: "Neither an image nor a ZIP.", 422: "Invalid parameters.",
        429: "Rate limit exceeded (see Retry-After).", 503: "Not ready or overloaded (see Retry-After)."
    }.items()}

TopK = Annotated[int, Query(ge=1, le=20, description="How many candidate individuals to return.")]
Mask = Annotated[bool, Query(description="Ask for a background-removal mask (null plus a warning "
                                         "when rembg is not installed).")]


def upload_name(upload: UploadFile, default: str = "image") -> str:
    """A display label for an upload: the base name only, never used as a path."""
    name = PurePosixPath((upload.filename or default).replace("\\", "/")).name or default
    return name[:255]


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def checked_sighting(latitude: float | None, longitude: float | None, observed_at: datetime | None,
                     location: str | None, observer: str | None) -> Sighting:
    """The uploader's sighting, checked by the library's rules when present (422 naming the field)."""
    try:
        return validate_sighting(latitude=latitude, longitude=longitude, observed_at=as_utc(observed_at),
                                 location=location, observer=observer)
    except ValueError as exc:
        field = getattr(exc, "field", "sighting")
        raise ServiceError(422, "validation_error", f"invalid sighting: {exc}",
                           [{"loc": ["body", field], "msg": str(exc), "type": "value_error"}]) from exc


async def run_predict(pool: InferencePool, predict: PredictPhotos, max_bytes: int, file: UploadFile,
                      top_k: int, mask: bool, given: Sighting | None) -> PredictionOut:
    """Read the upload (capped) and run the use case on the pool."""
    if file.size is not None and file.size > max_bytes:
        raise too_large(f"the file is {file.size} bytes; the limit is {max_bytes}",
                        {"limit_bytes": max_bytes})
    name = upload_name(file)

    def job() -> PredictionOut:
        file.file.seek(0)
        return predict(name, read_limited(file.file, max_bytes, "the file"), top_k, mask, given)

    return await pool.run(job)


async def predict(
    pool: PoolDep,
    use_case: PredictPhotosDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The photo (JPEG, PNG, GIF, BMP, TIFF or WEBP).")],
    top_k: TopK = 5,
    mask: Mask = False,
    latitude: Annotated[float | None, Form(ge=-90, le=90, description="Sighting latitude (WGS84).")] = None,
    longitude: Annotated[float | None, Form(ge=-180, le=180, description="Sighting longitude.")] = None,
    observed_at: Annotated[datetime | None, Form(description="When the photo was taken (ISO 8601).")] = None,
    location: Annotated[str | None, Form(max_length=200, description="Place name.")] = None,
    observer: Annotated[str | None, Form(max_length=200, description="Who took the photo.")] = None,
) -> PredictionOut:
    """Identify the individual in one photo; a photo without a whale or dolphin is rejected (200)."""
    given = checked_sighting(latitude, longitude, observed_at, location, observer)
    return await run_predict(pool, use_case, settings.max_upload_bytes, file, top_k, mask, given)


_COMMON = dict(response_model=PredictionOut, responses=ERRORS)
router.add_api_route("/v1/predict", predict, methods=["POST"], operation_id="predict", **_COMMON)
router.add_api_route("/v1/predict-single", predict, methods=["POST"], operation_id="predict_single",
                     summary="Predict (alias of /v1/predict)", **_COMMON)
router.add_api_route("/predict", predict, methods=["POST"], operation_id="predict_unversioned",
                     summary="Predict (reference alias of /v1/predict)", deprecated=True, **_COMMON)
router.add_api_route("/predict-single", predict, methods=["POST"], operation_id="predict_single_unversioned",
                     summary="Predict (reference alias of /v1/predict)", deprecated=True, **_COMMON)
