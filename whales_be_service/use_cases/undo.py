"""Undo a review: back to `unreviewed`; the photos its review enrolled leave the catalog (one store
transaction that also bumps the catalog generation and writes the audit row)."""

from __future__ import annotations

import time

from whales_be_service.errors import ServiceError
from whales_be_service.schemas_queue import UndoOut
from whales_be_service.use_cases.ports import CatalogAccess
from whales_identify.records.store import Store


class UndoReview:
    """Args: store: the predictions and the catalog; catalog: this worker's catalog, updated after."""

    def __init__(self, store: Store, catalog: CatalogAccess):
        self.store = store
        self.catalog = catalog

    def __call__(self, prediction_id: str, expected_state: str | None, undone_by: str) -> UndoOut:
        """404 for an unknown prediction; 409 (from the store) when it is not in `expected_state`."""
        try:
            before, removed = self.catalog.store_write(
                lambda: self.store.undo_review(prediction_id, expected_state, undone_by))
        except KeyError as exc:  # the SQL stores' not-found is a KeyError too
            raise ServiceError(404, "not_found", f"no prediction {prediction_id!r}") from exc
        return UndoOut(prediction_id=prediction_id, review_state="unreviewed",
                       undone_state=before.review_state, removed_image_ids=removed, undone_by=undone_by,
                       undone_at=time.time())
