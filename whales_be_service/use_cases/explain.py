"""Explain: why a prediction matched a candidate, as the geometrically verified keypoint pairs between
the stored query photo and the candidate's reference photo, recomputed on demand
(`whales_identify.reid.explain`; cost and the comparison with storing them: docs/REID.md)."""

from __future__ import annotations

import io

from PIL import Image

from whales_be_service.errors import ServiceError
from whales_be_service.schemas_history import MatchExplanationOut
from whales_be_service.settings import Settings
from whales_be_service.use_cases.ports import CatalogAccess, Viewer
from whales_be_service.use_cases.review import require_photo_access
from whales_identify.records.store import Store
from whales_identify.reid.explain import MatchExplanation, explain_match, image_size
from whales_identify.reid.matching import MatchConfig


class ExplainMatch:
    """Args: store: predictions, their photos and the catalog photos; catalog: this worker's catalog
    (its match settings and model id); settings: who may see a prediction's photo."""

    def __init__(self, store: Store, catalog: CatalogAccess, settings: Settings):
        self.store = store
        self.catalog = catalog
        self.settings = settings

    def __call__(self, prediction_id: str, individual_id: str, reference_image_id: str | None,
                 caller: Viewer) -> MatchExplanationOut:
        """404 when the prediction, the candidate or the reference photo is unknown; 401 when the
        caller may not see the query photo (the pairs are read off it)."""
        store = self.store
        record = store.get_prediction(prediction_id)
        if record is None:
            raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}")
        require_photo_access(record, self.settings, caller)
        candidate = next((c for c in record.candidates if c.get("individual_id") == individual_id), None)
        if candidate is None:
            raise ServiceError(404, "not_found", f"{individual_id!r} is not a candidate of prediction "
                                                 f"{prediction_id!r}")
        ref_id = reference_image_id or candidate.get("reference_image_id") or ""
        reference = store.get_catalog_image(ref_id) if ref_id else None
        if reference is None or reference.individual_id != individual_id:
            raise ServiceError(404, "not_found", f"no catalog photo {ref_id!r} of {individual_id!r} "
                                                 f"(deleted, or a photo of another individual)")
        catalog = self.catalog.loaded()
        config = getattr(catalog, "config", None) or MatchConfig()
        verified = candidate.get("inliers")  # None for predictions made before it was kept
        photo = store.get_prediction_image(prediction_id)
        reason = None
        if reference_image_id is None and verified == 0:
            reason = ("no geometric verification supported this candidate when the photo was matched (0 "
                      "inliers): it was ranked on the global embedding and the keypoint vote; ask for one "
                      "of its photos with `reference_image_id` to compare anyway")
        elif not photo:
            reason = ("the query photo was not stored (WHALES_STORE_QUERY_IMAGES=false, or removed by "
                      "retention): the pairs cannot be recomputed")
        if reason is not None or not photo:
            found = MatchExplanation(reference.image_id, 0, image_size(photo),
                                     image_size(reference.thumbnail), reason=reason)
        else:
            with Image.open(io.BytesIO(photo)) as im:
                query = im.convert("RGB")
            found = explain_match(query, reference, config)
        others = [s.image_id for s in store.list_sightings(individual_id, getattr(catalog, "model_id", None))]
        return MatchExplanationOut(
            prediction_id=prediction_id, individual_id=individual_id,
            reference_image_id=found.reference_image_id, inliers=found.inliers, tentative=found.tentative,
            query_size=found.query_size, reference_size=found.reference_size,
            pairs=[{"query": p.query, "reference": p.reference, "score": p.score} for p in found.pairs],
            transform=found.transform, reason=found.reason, verified_inliers=verified,
            query_image_url=f"/v1/predictions/{prediction_id}/image" if photo else None,
            reference_thumbnail_url=f"/v1/images/{found.reference_image_id}/thumbnail",
            reference_image_ids=others)
