"""Enrol: photos of one individual into the catalog, through the library's `Enroller` (the same gate
as `whales catalog add`), inside one catalog write so that the catalog and the database agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Any

from whales_be_service.errors import ServiceError
from whales_be_service.schemas import BatchError, EnrolOut
from whales_be_service.settings import Settings
from whales_be_service.uploads import Decoded, decode, describe_error, read_limited
from whales_be_service.use_cases.ports import CatalogAccess
from whales_identify.enroll import Enroller, describe_refusal
from whales_identify.records.store import CatalogImage, Sighting
from whales_identify.species import normalise_species_key

REFUSED_CODE = "not_a_marine_mammal"


def normalise_species(name: str | None) -> str | None:
    """`"Humpback Whale"` and `"humpback-whale"` become `humpback_whale`; blank is None."""
    if name is None or not name.strip():
        return None
    return normalise_species_key(name)


class EnrolPhotos:
    """Args: enroller: gate + embedder; catalog: this worker's catalog; settings: upload limits."""

    def __init__(self, enroller: Enroller, catalog: CatalogAccess, settings: Settings):
        self.enroller = enroller
        self.catalog = catalog
        self.settings = settings

    def enrol(self, items: Sequence[Decoded], individual_id: str, species: str,
              sightings: Sequence[Sighting], source: str, check_gate: bool = True,
              before_write: Callable[[], None] | None = None,
              after_write: Callable[[list[CatalogImage]], None] | None = None,
              ) -> tuple[list[CatalogImage], list[dict[str, Any]]]:
        """Gate, embed and enrol decoded photos; photos the gate rejects are refused, not enrolled.

        `before_write()` and `after_write(added)` run inside the same database transaction as the
        enrolment (a review claims the prediction first and records its decision last), so everything
        commits together or nothing does.

        Returns (enrolled CatalogImages, refused [{image_ind, code, message}]).
        """
        if not items:
            return [], []
        images = [it.image for it in items]
        # local features are extracted alongside the screening, before the catalog's write lock
        # and the database transaction are taken
        screened, local = self.enroller.prepare(self.catalog.loaded(), images, check_gate)
        refused = [{"image_ind": items[i].name, "code": REFUSED_CODE, "message": describe_refusal(g)}
                   for i, g in enumerate(screened.verdicts or []) if not g.is_cetacean]
        if not screened.accepted:
            return [], refused
        with self.catalog.write() as write:
            if before_write is not None:
                write.touched = False  # a refused claim (409, 404) leaves the memory as it was
                before_write()
                write.touched = True
            done = self.enroller.write(self.catalog.loaded(), screened, images, individual_id, species,
                                       sightings=sightings, filenames=[it.name for it in items],
                                       source=source, local_features=local)
            if after_write is not None:
                after_write(done.added)
        return done.added, refused

    def __call__(self, individual_id: str, species: str | None,
                 parts: Sequence[tuple[str, IO[bytes]]]) -> EnrolOut:
        """Enrol uploaded photos of `individual_id` (created if new); says what was enrolled and what
        was refused. 409 when `species` contradicts the catalog's."""
        species = normalise_species(species)
        existing = self.catalog.current().get_individual(individual_id)
        known_species = getattr(existing, "species", None) if existing is not None else None
        if species and known_species and known_species != "unknown" and species != known_species:
            raise ServiceError(409, "conflict", f"individual {individual_id!r} is recorded as "
                                                f"{known_species!r}, not {species!r}")
        final_species = species or known_species or "unknown"
        decoded, refused = self.decode_all(parts)
        added, gate_refused = self.enrol(decoded, individual_id, final_species,
                                         [d.sighting for d in decoded], source="api")
        return EnrolOut(individual_id=individual_id, created=existing is None and bool(added),
                        species=final_species,
                        enrolled=[{"image_ind": im.filename, "image_id": str(im.image_id)} for im in added],
                        refused=[BatchError(**r) for r in refused + gate_refused])

    def decode_all(self, parts: Sequence[tuple[str, IO[bytes]]]
                   ) -> tuple[list[Decoded], list[dict[str, Any]]]:
        decoded: list[Decoded] = []
        refused: list[dict[str, Any]] = []
        for name, fh in parts:
            try:
                fh.seek(0)
                decoded.append(decode(name, read_limited(fh, self.settings.max_upload_bytes, "the file"),
                                      self.settings))
            except Exception as exc:
                code, message = describe_error(exc)
                refused.append({"image_ind": name, "code": code, "message": message})
        return decoded, refused
