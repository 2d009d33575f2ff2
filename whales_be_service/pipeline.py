"""The use cases wired to a running service's state (`ServiceState`): the only module besides
`deps` that reads the state to hand each use case exactly its collaborators.

`deps` builds the use cases per request from here; `whales batch` workers call `predict_batch`.
Everything is synchronous and CPU-bound; routes run it through the `InferencePool`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from whales_be_service.mapping import FILL_CATALOG_HINT, MASK_UNAVAILABLE, sighting_json
from whales_be_service.state import (
    CatalogWrite,
    ServiceState,
    catalog_write,
    store_catalog_write,
    sync_catalog,
)
from whales_be_service.uploads import BatchPlan
from whales_be_service.use_cases.batch import PredictBatch
from whales_be_service.use_cases.delete import DeleteIndividual
from whales_be_service.use_cases.enrol import EnrolPhotos, normalise_species
from whales_be_service.use_cases.ports import Identify
from whales_be_service.use_cases.predict import PredictPhotos, Retention
from whales_be_service.use_cases.review import ReviewPrediction
from whales_identify.enroll import Enroller

T = TypeVar("T")


class StateCatalog:
    """`CatalogAccess` over the state: the catalog (and identifier) are replaced when another worker
    changes the database, so they are read from the state at each use, never kept."""

    def __init__(self, state: ServiceState):
        self._state = state

    def current(self) -> Any:
        sync_catalog(self._state)
        return self._state.catalog

    def loaded(self) -> Any:
        return self._state.catalog

    def identifier(self) -> Identify:
        sync_catalog(self._state)
        identifier: Identify = self._state.identifier
        return identifier

    @contextmanager
    def write(self, atomic: bool = True) -> Iterator[CatalogWrite]:
        with catalog_write(self._state, atomic) as write:
            yield write

    def store_write(self, write: Callable[[], T]) -> T:
        return store_catalog_write(self._state, write)


def predict_photos(state: ServiceState) -> PredictPhotos:
    return PredictPhotos(StateCatalog(state).identifier, state.store, state.settings,
                         after_store=Retention(state.store, state.settings, state))


def predict_batch_use_case(state: ServiceState) -> PredictBatch:
    return PredictBatch(predict_photos(state), state.settings.batch_size)


def enrol_photos(state: ServiceState) -> EnrolPhotos:
    # a several-photo enrolment runs on all the threads inference is given (one per core by default)
    s = state.settings
    threads = (s.inference_workers or 1) * (s.inference_threads or 1)
    return EnrolPhotos(Enroller(state.embedder, state.gate, threads=threads), StateCatalog(state), s)


def review_prediction(state: ServiceState) -> ReviewPrediction:
    return ReviewPrediction(state.store, StateCatalog(state), enrol_photos(state), state.settings)


def delete_individual(state: ServiceState) -> DeleteIndividual:
    return DeleteIndividual(StateCatalog(state))


# ---- for callers outside the routes (`whales batch` workers) ----

def predict_batch(state: ServiceState, plan: BatchPlan, top_k: int,
                  job_id: str | None = None) -> dict[str, Any]:
    """A planned batch as `BatchOut` fields; `job_id` (a `whales batch` job) is stored with each
    prediction."""
    return predict_batch_use_case(state)(plan, top_k, job_id).model_dump()


__all__ = ["FILL_CATALOG_HINT", "MASK_UNAVAILABLE", "StateCatalog", "delete_individual", "enrol_photos",
           "normalise_species", "predict_batch", "predict_batch_use_case",
           "predict_photos", "review_prediction", "sighting_json"]
