"""Review: a person confirms or corrects a prediction; the photo is enrolled accordingly (re-embedded),
so the catalog learns from reviewed answers."""

from __future__ import annotations

import uuid
from typing import Any

from whales_be_service.errors import ServiceError
from whales_be_service.schemas import ReviewIn, ReviewOut
from whales_be_service.settings import Settings
from whales_be_service.uploads import decode
from whales_be_service.use_cases.enrol import EnrolPhotos, normalise_species
from whales_be_service.use_cases.ports import CatalogAccess, Viewer
from whales_identify.records.store import CatalogImage, PredictionRecord, Store

STATES = {"confirm": "confirmed", "new_individual": "new_individual", "not_cetacean": "not_cetacean"}
PUBLIC_STATES = ("confirmed", "new_individual")  # reviewed occurrences: their photo is public


def require_photo_access(record: PredictionRecord, settings: Settings, caller: Viewer) -> bool:
    """The rule for a prediction's photo (and what is derived from it, e.g. its match explanation):
    public once reviewed as an occurrence, otherwise 401 without a key. Returns whether it is public."""
    public = record.review_state in PUBLIC_STATES and not settings.require_key_for_reads
    if not public and not caller.authorised:
        raise ServiceError(401, "unauthorized", "the photo of an unreviewed prediction needs an API key "
                                                "in the X-API-Key header",
                           headers={"WWW-Authenticate": "APIKey"})
    return public


def top1(record: PredictionRecord) -> str | None:
    if record.individual_id:
        return str(record.individual_id)
    if record.candidates:
        return str(record.candidates[0].get("individual_id") or "") or None
    return None


class ReviewPrediction:
    """Args: store: predictions and reviews; catalog: this worker's catalog; enrol: the enrolment path
    (without the gate: the reviewer decides); settings: decoding limits."""

    def __init__(self, store: Store, catalog: CatalogAccess, enrol: EnrolPhotos, settings: Settings):
        self.store = store
        self.catalog = catalog
        self.enrol = enrol
        self.settings = settings

    def target(self, record: PredictionRecord, body: ReviewIn) -> tuple[str, str]:
        """(individual_id, species) the photo is enrolled under (the catalog was synced by the caller)."""
        catalog = self.catalog.loaded()
        if body.decision == "confirm":
            individual_id = body.individual_id or top1(record)
            if not individual_id:
                raise ServiceError(422, "validation_error", "this prediction has no top-1 candidate; give "
                                                            "`individual_id` to confirm it as a known "
                                                            "individual")
            existing = catalog.get_individual(individual_id)
            if existing is None:
                raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog; "
                                                     f"use decision=new_individual to create it")
            species = getattr(existing, "species", None) or record.species or "unknown"
            return individual_id, species
        individual_id = body.individual_id or f"new_{uuid.uuid4().hex[:8]}"
        if catalog.get_individual(individual_id) is not None:
            raise ServiceError(409, "conflict", f"individual {individual_id!r} already exists; "
                                                f"use decision=confirm to add this photo to it")
        predicted = record.species if record.species and not record.rejected else None
        species = normalise_species(body.species) or predicted or "unknown"
        return individual_id, species

    def __call__(self, prediction_id: str, body: ReviewIn, reviewer: str | None = None) -> ReviewOut:
        """Claim the prediction, enrol its photo and record the decision in one transaction.

        The claim is a conditional UPDATE (`review_state = 'unreviewed'`): of concurrent reviewers on
        any worker or replica exactly one wins, the others get 409 and enrol nothing.
        """
        store = self.store
        self.catalog.current()  # the target may have been created or deleted by another worker
        record = store.get_prediction(prediction_id)
        if record is None:
            raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}")
        if record.review_state != "unreviewed":
            raise ServiceError(409, "conflict", f"prediction {prediction_id!r} was already reviewed "
                                                f"({record.review_state})")
        new_state = STATES[body.decision]
        decision: dict[str, Any] = {"decision": body.decision}
        if body.decision == "not_cetacean":
            saved = store.save_review(prediction_id, new_state, decision, reviewed_by=reviewer,
                                      expected_state="unreviewed")
            return ReviewOut(prediction_id=prediction_id, review_state=saved.review_state,
                             individual_id=None, enrolled_image_ids=[])
        individual_id, species = self.target(record, body)
        photo = store.get_prediction_image(prediction_id)
        if not photo:
            raise ServiceError(409, "conflict", "the photo of this prediction is not stored "
                                                "(WHALES_STORE_QUERY_IMAGES=false, or deleted after "
                                                "WHALES_QUERY_IMAGE_RETENTION_DAYS); it cannot be enrolled")
        item = decode(record.filename or prediction_id, photo, self.settings)
        decision.update(individual_id=individual_id, species=species)

        def claim() -> None:  # inside the enrolment's transaction, before anything is written
            store.save_review(prediction_id, new_state, decision, reviewed_by=reviewer,
                              expected_state="unreviewed")
            exists = store.has_individual(individual_id)
            if body.decision == "confirm" and not exists:
                raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog "
                                                     f"(deleted meanwhile); use decision=new_individual "
                                                     f"to create it")
            if body.decision == "new_individual" and exists:
                raise ServiceError(409, "conflict", f"individual {individual_id!r} already exists; use "
                                                    f"decision=confirm to add this photo to it")

        def record_ids(added: list[CatalogImage]) -> None:  # same transaction, after the enrolment
            decision["enrolled_image_ids"] = [str(im.image_id) for im in added]
            store.save_review(prediction_id, new_state, decision, reviewed_by=reviewer)

        added, _ = self.enrol.enrol([item], individual_id, species, [record.sighting],
                                    source=f"review:{prediction_id}", check_gate=False,
                                    before_write=claim, after_write=record_ids)
        return ReviewOut(prediction_id=prediction_id, review_state=new_state, individual_id=individual_id,
                         enrolled_image_ids=[str(im.image_id) for im in added])
