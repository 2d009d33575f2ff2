"""An individual's sightings: the confirmed ones (its catalog photos) and the candidates (unreviewed
predictions whose top-1 answer is it), each as the caller may see it (location privacy)."""

from __future__ import annotations

from whales_be_service.errors import ServiceError
from whales_be_service.mapping import sighting_json
from whales_be_service.schemas_curation import CandidateSightingOut
from whales_be_service.settings import Settings
from whales_be_service.use_cases.ports import CatalogAccess, Viewer
from whales_identify.records.location_privacy import VisibleSighting
from whales_identify.records.review_queue import PredictionQuery
from whales_identify.records.store import SightingRecord, Store

CANDIDATES_MAX = 200


class SightingHistory:
    """Args: store: catalog photos and predictions; catalog: this worker's catalog (its model id);
    settings: the location-privacy policy."""

    def __init__(self, store: Store, catalog: CatalogAccess, settings: Settings):
        self.store = store
        self.catalog = catalog
        self.settings = settings

    def __call__(self, individual_id: str, caller: Viewer
                 ) -> tuple[str, list[tuple[SightingRecord, VisibleSighting]]]:
        """(species, [(sighting, what this caller may see of it)]), oldest first; 404 when unknown."""
        model_id = getattr(self.catalog.loaded(), "model_id", None)
        records = self.store.list_sightings(individual_id, model_id)
        if not records:
            raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog")
        policy = self.settings.location_policy()
        return records[0].species, [(r, caller.sighting(r.sighting, policy)) for r in records]

    def candidates(self, individual_id: str, caller: Viewer) -> tuple[list[CandidateSightingOut], bool]:
        """Unreviewed, not rejected predictions whose top-1 answer is this individual and not flagged
        as new, oldest first, at most `CANDIDATES_MAX`; and whether there are more."""
        query = PredictionQuery(review_state="unreviewed", individual_id=individual_id,
                                new_individual=False, newest_first=False, limit=CANDIDATES_MAX + 1)
        records = [r for r in self.store.query_predictions(query) if not r.rejected]
        policy = self.settings.location_policy()
        out = []
        for r in records[:CANDIDATES_MAX]:
            visible = caller.sighting(r.sighting, policy)
            out.append(CandidateSightingOut(
                prediction_id=r.prediction_id, created_at=r.created_at, observed_at=r.sighting.observed_at,
                filename=r.filename, probability=r.probability, batch_id=r.batch_id,
                sighting=sighting_json(visible.sighting, visible.precision),
                image_url=f"/v1/predictions/{r.prediction_id}/image"))
        return out, len(records) > CANDIDATES_MAX
