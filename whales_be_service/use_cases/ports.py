"""What the use cases need from the running service, as protocols (the state adapter in
`whales_be_service.pipeline` provides them; the unit tests give fakes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from PIL import Image

from whales_identify.records.location_privacy import LocationPolicy, VisibleSighting
from whales_identify.records.store import Sighting
from whales_identify.reid.catalog import IndividualSummary
from whales_identify.results import Prediction

T = TypeVar("T")


class Identify(Protocol):
    def __call__(self, images: Sequence[Image.Image], top_k: int = 5) -> list[Prediction]: ...


class Written(Protocol):
    """Handed to the body of `CatalogAccess.write`: `touched` False while the memory is unchanged."""

    touched: bool


class CatalogAccess(Protocol):
    """This worker's catalog, kept in step with the database other workers write to."""

    def current(self) -> Any:
        """The catalog, brought up to date first when another worker changed the database."""
        ...

    def loaded(self) -> Any:
        """The catalog in memory as it is, without looking at the database (inside `write`)."""
        ...

    def identifier(self) -> Identify:
        """The identifier over `current()`."""
        ...

    def write(self, atomic: bool = True) -> AbstractContextManager[Written]:
        """A block in which this worker writes the catalog (one database transaction)."""
        ...

    def store_write(self, write: Callable[[], T]) -> T:
        """Run `write()`, a catalog change made in the database only (curation, undo), then bring
        this worker's catalog up to date (the photos the write logged)."""
        ...


class CatalogView(Protocol):
    """What the read routes ask of a loaded catalog (`whales_identify.reid.catalog.Catalog`)."""

    @property
    def model_id(self) -> str: ...

    def list_individuals(self, species: str | None = None) -> list[IndividualSummary]: ...

    def get_individual(self, individual_id: str) -> IndividualSummary | None: ...


class Viewer(Protocol):
    """Who reads (the service's `deps.Caller`): a sighting as they may see it."""

    authorised: bool

    def sighting(self, sighting: Sighting, policy: LocationPolicy) -> VisibleSighting: ...
