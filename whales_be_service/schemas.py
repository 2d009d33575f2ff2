"""Request and response models; the OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from whales_identify.gate.head import DEFAULT_HEAD
from whales_identify.models.entries import DEFAULT_REID_MODEL

INDIVIDUAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_image`.")
    message: str = Field(description="What went wrong, in English, with the fix when there is one.")
    details: Any = Field(None, description="Structured context (limits, failing fields, components).")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"error": {
        "code": "invalid_image", "message": "cannot decode the image: image file is truncated",
        "details": None}}})
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    uptime_s: float


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    components: dict[str, str] = Field(description="Each component and `ok`.")


class MeasuredResultOut(BaseModel):
    metric: str
    value: float
    report: str = Field(description="The report file the value was read from (in the repository).")
    key: str = Field(description="Dotted JSON key of the value in that report.")


class ModelCardOut(BaseModel):
    """What a model is for (whales_identify/models/cards.py; docs/MODELS.md)."""

    intended_use: str
    training_data: str
    limits: str
    results: list[MeasuredResultOut] = []


class ModelEntry(BaseModel):
    role: Literal["embedding", "gate"]
    model_id: str
    version: str
    backend: str = Field(description="Embedding runtime (`onnx` or `torch`); gate backend "
                                     "(`embedded`, `clip` or `off`).")
    sha256: str | None = None
    threshold: float | None = Field(None, description="The gate's decision threshold.")
    loaded: bool
    card: ModelCardOut | None = Field(None, description="The embedding's model card: intended use, "
                                      "training data, limits, measured results (null: none registered).")


class ModelsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"models": [
        {"role": "embedding", "model_id": DEFAULT_REID_MODEL, "version": DEFAULT_REID_MODEL,
         "backend": "onnx", "sha256": "9f2c41d8" + "0" * 56, "loaded": True},
        {"role": "gate", "model_id": "gate.embedded", "version": f"{DEFAULT_HEAD}@d04168138e56",
         "backend": "embedded", "sha256": "d04168138e56" + "0" * 52, "threshold": 0.9337, "loaded": True}],
        "catalog": {"model_id": DEFAULT_REID_MODEL, "images": 120, "individuals": 40}}})
    models: list[ModelEntry]
    catalog: dict[str, Any] = Field(description="Catalog statistics (size, embedding model).")
    write_enabled: bool = Field(True, description="False when the server has no API keys "
                                "(`WHALES_API_KEYS`): enrolment, import, review and export are refused.")


class CandidateOut(BaseModel):
    individual_id: str
    species: str
    score: float = Field(description="Fused similarity; higher is better, not a probability.")
    probability: float = Field(description="Calibrated probability that this is the right individual.")
    reference_image_id: str = Field(description="Catalog photo that matched best (see thumbnail).")
    inliers: int = Field(0, description="Geometrically verified keypoint pairs with that photo (0: none or "
                                        "not verified); see /v1/predictions/{id}/matches/{individual_id}.")


class SightingOut(BaseModel):
    observed_at: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location: str | None = None
    observer: str | None = None
    precision: str | None = Field(None, description="What the position is for this caller on catalog "
                                  "reads: `exact`, `withheld`, or the grid size in degrees (coordinates are "
                                  "the cell's centre; see docs/SECURITY.md). Absent in prediction answers, "
                                  "which echo the uploader's own sighting.")


_PREDICTION_EXAMPLE = {
    "image_ind": "fluke_0412.jpg", "prediction_id": "5f0c2b8e9a7d4c1e8b3a2f6d7e9c0a1b",
    "rejected": False, "rejection_reason": None, "is_cetacean": True, "cetacean_score": 0.97,
    "gate_backend": "embedded", "gate_band": "accept", "species": "humpback_whale",
    "species_score": 0.88,
    "species_common_name": "Humpback whale", "species_scientific_name": "Megaptera novaeangliae",
    "individual_id": "hw_0042", "is_new_individual": False, "probability": 0.91,
    "candidates": [{"individual_id": "hw_0042", "species": "humpback_whale", "score": 0.83,
                    "probability": 0.91, "reference_image_id": "img_7c1d"}],
    "bbox": [0, 0, 1024, 683], "mask": None, "model_version": DEFAULT_REID_MODEL,
    "warnings": [], "sighting": {"observed_at": "2024-07-02T10:15:00+00:00", "latitude": 64.1,
                                 "longitude": -21.9, "location": "Faxaflói", "observer": None},
    "class_animal": "hw_0042", "id_animal": "humpback_whale"}


class PredictionOut(BaseModel):
    """The answer for one photo. A rejection (no whale or dolphin) is a normal HTTP 200 answer."""

    model_config = ConfigDict(json_schema_extra={"example": _PREDICTION_EXAMPLE})
    image_ind: str = Field(description="The uploaded file name (or ZIP entry name).")
    prediction_id: str = Field(description="Id under which the prediction is stored; use it to review.")
    rejected: bool
    rejection_reason: str | None = Field(description="`not_a_marine_mammal` when rejected.")
    is_cetacean: bool
    cetacean_score: float
    gate_backend: str = Field(description="`embedded`, `clip` or `off`.")
    gate_band: str = Field("accept", description="`accept`, `borderline` (advise a tighter crop, better "
                                                 "light, a fin or fluke view) or `reject`.")
    species: str = Field(description="Species key, `unknown` when unsure or rejected.")
    species_score: float
    species_common_name: str | None = None
    species_scientific_name: str | None = None
    individual_id: str | None
    is_new_individual: bool | None
    probability: float | None
    candidates: list[CandidateOut]
    bbox: list[int] = Field(description="[x1, y1, x2, y2] in the uploaded image's pixels.",
                            min_length=4, max_length=4)
    mask: str | None = Field(description="Base64 PNG mask; null when background removal is unavailable.")
    model_version: str
    warnings: list[str]
    sighting: SightingOut
    class_animal: str = Field(description="Reference-API alias of `individual_id` (\"\" when none).")
    id_animal: str = Field(description="Reference-API alias of `species` (\"unknown\" when none).")


class BatchError(BaseModel):
    image_ind: str
    code: str
    message: str


class BatchSummary(BaseModel):
    images: int = Field(description="Images considered (skipped entries excluded).")
    accepted: int
    rejected: int
    failed: int
    skipped: int = Field(description="Directories, __MACOSX and hidden entries (listed in `errors`).")
    seconds: float
    batch_id: str | None = Field(None, description="Id of this batch: `GET /v1/predictions?batch_id=` lists "
                                                   "its predictions for review.")


class BatchOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "results": [_PREDICTION_EXAMPLE],
        "errors": [{"image_ind": "notes.txt", "code": "unsupported_media_type",
                    "message": "the file is not an image in a supported format"},
                   {"image_ind": "__MACOSX/._fluke.jpg", "code": "skipped",
                    "message": "skipped: macOS metadata (__MACOSX)"}],
        "summary": {"images": 2, "accepted": 1, "rejected": 0, "failed": 1, "skipped": 1,
                    "seconds": 1.42}}})
    results: list[PredictionOut]
    errors: list[BatchError]
    summary: BatchSummary


class CatalogImageOut(BaseModel):
    image_id: str
    individual_id: str
    species: str
    filename: str
    source: str
    created_at: datetime | None = None
    thumbnail_url: str
    sighting: SightingOut


class IndividualOut(BaseModel):
    individual_id: str
    species: str
    n_images: int
    last_seen: datetime | None = None
    thumbnail_url: str | None = None


class SpeciesOut(BaseModel):
    key: str
    common_name: str
    scientific_name: str
    taxon_rank: str


class IndividualDetail(IndividualOut):
    images: list[CatalogImageOut]


class IndividualPage(BaseModel):
    items: list[IndividualOut]
    total: int
    limit: int
    offset: int


class EnrolOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "individual_id": "hw_0042", "created": False, "species": "humpback_whale",
        "enrolled": [{"image_ind": "fluke_0412.jpg", "image_id": "img_7c1d"}],
        "refused": [{"image_ind": "beach.jpg", "code": "not_a_marine_mammal",
                     "message": "the gate scored 0.03: no whale or dolphin found"}]}})
    individual_id: str
    created: bool = Field(description="True when the individual did not exist before.")
    species: str
    enrolled: list[dict[str, str]]
    refused: list[BatchError]


class DeleteOut(BaseModel):
    individual_id: str
    removed_images: int


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"decision": "confirm"}, {"decision": "confirm", "individual_id": "hw_0042"},
        {"decision": "new_individual", "individual_id": "hw_0100", "species": "humpback_whale"},
        {"decision": "not_cetacean"}]})
    decision: Literal["confirm", "new_individual", "not_cetacean"]
    individual_id: str | None = Field(None, pattern=INDIVIDUAL_ID_PATTERN,
                                      description="Confirm: defaults to the top-1 candidate. New "
                                                  "individual: defaults to a generated `new_<8 hex>`.")
    species: str | None = Field(None, max_length=64, description="Species of a new individual.")


class ReviewOut(BaseModel):
    prediction_id: str
    review_state: str
    individual_id: str | None
    enrolled_image_ids: list[str]


class ImportProblem(BaseModel):
    line: int = Field(description="Line of the CSV (the header is line 1).")
    column: str | None = Field(None, description="The CSV's own header of the column to fix, if one.")
    filename: str | None = None
    code: str = Field(description="e.g. `missing_value`, `invalid_value`, `file_not_found`, "
                                  "`not_a_marine_mammal`, `species_conflict`, `invalid_image`.")
    message: str


class ImportSummary(BaseModel):
    rows: int = Field(description="Data rows in the CSV.")
    enrolled: int
    already_present: int = Field(description="Rows whose photo was already enrolled for that individual.")
    skipped: int = Field(description="Rows listed in `problems`.")
    individuals_created: int
    seconds: float


class ImportOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "enrolled": [{"line": 2, "filename": "IMG_0412.jpg", "individual_id": "hw_0042",
                      "image_id": "0f3c9a1e2b7d4c5e8a6b1d2c3e4f5a6b"}],
        "problems": [{"line": 3, "column": "latitude", "filename": "IMG_0413.jpg",
                      "code": "invalid_value", "message": "95 is outside [-90, 90] degrees"}],
        "summary": {"rows": 2, "enrolled": 1, "already_present": 0, "skipped": 1,
                    "individuals_created": 1, "seconds": 0.84}}})
    enrolled: list[dict[str, Any]] = Field(description="One entry per enrolled photo: line, filename, "
                                                       "individual_id, image_id.")
    problems: list[ImportProblem]
    summary: ImportSummary
