"""The one mapping of a library `Prediction` in each direction it leaves the library: to the stored
`PredictionRecord`, and to the API's `PredictionOut`. Nothing else maps a prediction by hand."""

from __future__ import annotations

from typing import Any

from whales_be_service.schemas import PredictionOut
from whales_be_service.uploads import Decoded
from whales_identify.identify import EMPTY_CATALOG_WARNING, prediction_fields
from whales_identify.records.store import PredictionRecord, Sighting
from whales_identify.results import Prediction

FILL_CATALOG_HINT = ("fill the catalog: the page's Catalog tab > Import (a ZIP of photos plus a CSV "
                     "filename,individual_id,species), POST /v1/catalog/import, or `whales catalog "
                     "import` (docs/QUICKSTART.md)")
MASK_UNAVAILABLE = ("mask unavailable: background removal needs the optional `rembg` package and its "
                    "model file, which are not installed on this server")


def sighting_json(s: Sighting, precision: str | None = None) -> dict[str, Any]:
    """A sighting for an answer; catalog reads pass what `visible_sighting` left of it."""
    out: dict[str, Any] = {"observed_at": s.observed_at.isoformat() if s.observed_at else None,
                           "latitude": s.latitude, "longitude": s.longitude, "location": s.location,
                           "observer": s.observer}
    if precision is not None:
        out["precision"] = precision
    return out


def prediction_record(pred: Prediction, item: Decoded, prediction_id: str, sighting: Sighting,
                      job_id: str | None = None, batch_id: str | None = None) -> PredictionRecord:
    """What the store keeps of one prediction."""
    return PredictionRecord(
        prediction_id=prediction_id, image_sha256=item.sha256, filename=item.name,
        rejected=pred.rejected, rejection_reason=pred.rejection_reason,
        cetacean_score=float(pred.cetacean_score), gate_backend=pred.gate_backend,
        gate_version=pred.gate_version, species=pred.species, individual_id=pred.individual_id,
        is_new_individual=pred.is_new_individual,
        probability=None if pred.probability is None else float(pred.probability),
        candidates=[dict(c.__dict__) for c in pred.candidates], model_version=pred.model_version,
        sighting=sighting, job_id=job_id, batch_id=batch_id)


def prediction_out(pred: Prediction, item: Decoded, prediction_id: str, mask: bool,
                   sighting: Sighting) -> PredictionOut:
    """The answer for one photo: the library's `prediction_fields` (the same fields `whales identify`
    prints) plus the service's own (photo name, prediction id, sighting, hints, reference aliases)."""
    fields = prediction_fields(pred)
    bbox = [round(v * item.scale) for v in pred.bbox]  # analysed pixels -> the uploaded photo's
    bbox[2] = min(bbox[2], item.original_size[0])
    bbox[3] = min(bbox[3], item.original_size[1])
    warnings = fields["warnings"]
    if EMPTY_CATALOG_WARNING in warnings:
        warnings.append(FILL_CATALOG_HINT)
    if mask:
        warnings.append(MASK_UNAVAILABLE)
    fields.update(bbox=bbox, warnings=warnings)
    return PredictionOut(
        image_ind=item.name, prediction_id=prediction_id, **fields, mask=None,
        sighting=sighting_json(sighting),  # type: ignore[arg-type]  # validated into SightingOut
        class_animal=pred.individual_id or "",
        id_animal=pred.species if pred.species and not pred.rejected else "unknown")
