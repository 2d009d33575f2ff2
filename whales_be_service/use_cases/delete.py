"""Delete: remove an individual and all its reference photos from the catalog."""

from __future__ import annotations

from whales_be_service.errors import ServiceError
from whales_be_service.schemas import DeleteOut
from whales_be_service.use_cases.ports import CatalogAccess


class DeleteIndividual:
    """Args: catalog: this worker's catalog (the removal is one catalog write)."""

    def __init__(self, catalog: CatalogAccess):
        self.catalog = catalog

    def __call__(self, individual_id: str) -> DeleteOut:
        """404 when the catalog has no such individual."""
        self.catalog.current()  # another worker may have enrolled or removed it
        with self.catalog.write():
            removed = int(self.catalog.loaded().remove_individual(individual_id))
        if removed == 0:
            raise ServiceError(404, "not_found", f"no individual {individual_id!r} in the catalog")
        return DeleteOut(individual_id=individual_id, removed_images=removed)
