"""`CatalogTally`: who is in a catalog (the photos of each individual, the individuals of each
species, how many photos have local features), kept up to date on every addition and removal.

The service asks these questions on every enrolment (does the individual exist, the catalog-size
metrics) and every `/v1/models`. Answered by walking every photo, they cost ~60 ms per request at
100k photos; kept as tallies, they cost what the answer does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from whales_identify.records.store import CatalogImage


@dataclass(frozen=True)
class IndividualSummary:
    individual_id: str
    species: str
    n_images: int
    image_ids: list[str]
    last_seen: datetime | None


def summary(individual_id: str, ims: list[CatalogImage]) -> IndividualSummary:
    """One individual's summary from its photo records (at least one)."""
    seen = [im.sighting.observed_at for im in ims if im.sighting.observed_at is not None]
    return IndividualSummary(individual_id=individual_id, species=ims[0].species, n_images=len(ims),
                             image_ids=sorted(im.image_id for im in ims),
                             last_seen=max(seen) if seen else None)


class CatalogTally:
    """Counts over a catalog's photo records; `remove` takes a record with the individual,
    species and presence of local features it was added with.

    Readers do not lock (the catalog's lock is held while snapshots build): an answer read during a
    concurrent write may mix the counts from just before and just after it, never a broken
    structure (each container is copied by one C-level call under CPython's GIL)."""

    def __init__(self, images: Iterable[CatalogImage] = ()):
        # individual -> its photo ids, in the order they were added (a dict as an ordered set)
        self._photos: dict[str, dict[str, None]] = {}
        self._species: dict[str, Counter[str]] = {}  # species -> photos per individual
        self._with_local = 0
        for image in images:
            self.add(image)

    def add(self, image: CatalogImage) -> None:
        self._photos.setdefault(image.individual_id, {})[image.image_id] = None
        self._count(image)

    def remove(self, image: CatalogImage) -> None:
        photos = self._photos.get(image.individual_id, {})
        if image.image_id not in photos:
            return
        del photos[image.image_id]
        if not photos:
            del self._photos[image.individual_id]
        self._uncount(image)

    def replace(self, old: CatalogImage, new: CatalogImage) -> None:
        """A photo stored again under the same id: counted once, and where its individual is the
        same, kept in its place (its individual never looks absent in between)."""
        if old.individual_id != new.individual_id:
            self.add(new)
            self.remove(old)  # from its old individual, species and local-feature counts
            return
        self._count(new)  # its entry among the individual's photos stays where it is
        self._uncount(old)

    def _count(self, image: CatalogImage) -> None:
        self._species.setdefault(image.species, Counter())[image.individual_id] += 1
        self._with_local += image.descriptors is not None

    def _uncount(self, image: CatalogImage) -> None:
        per = self._species[image.species]
        per[image.individual_id] -= 1
        if per[image.individual_id] <= 0:
            del per[image.individual_id]
            if not per:
                del self._species[image.species]
        self._with_local -= image.descriptors is not None

    def photos_of(self, individual_id: str) -> list[str]:
        """The ids of the individual's photos (none for an unknown individual)."""
        return list(self._photos.get(individual_id, ()))

    @property
    def individuals(self) -> int:
        return len(self._photos)

    @property
    def with_local_features(self) -> int:
        return self._with_local

    def individuals_per_species(self) -> dict[str, int]:
        """Species -> individuals with at least one photo of that species, sorted by species."""
        # (a species emptied by a concurrent removal while this was read is left out)
        return {s: n for s, per in sorted(self._species.items()) if (n := len(per))}
