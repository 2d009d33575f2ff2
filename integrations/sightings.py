"""One individual's sighting history as CSV or as a Darwin Core Archive (`organismID` filled in).

The rows are the individual's catalog photos (`Store.list_sightings`), each paired with what the
caller may see of it (`whales_identify.records.location_privacy.visible_sighting`): the export never shows
more than the JSON answer does, and a generalised position carries `dataGeneralizations` and
`coordinateUncertaintyInMeters` in the archive.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import IO

from integrations.darwin_core import _iso, sighting_terms, write_occurrences
from integrations.dwc_eml import DatasetMetadata
from integrations.exports import csv_safe
from whales_identify.records.location_privacy import VisibleSighting
from whales_identify.records.store import SightingRecord
from whales_identify.species import species_info

History = Iterable[tuple[SightingRecord, VisibleSighting]]

SIGHTING_CSV_COLUMNS = (
    "individual_id", "image_id", "species", "scientific_name", "observed_at", "latitude", "longitude",
    "position_precision", "location", "observer", "filename", "source", "enrolled_at",
)


def iter_sightings_csv(history: History) -> Iterator[str]:
    """CSV text (formula-safe), a header then one chunk per sighting."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(SIGHTING_CSV_COLUMNS)
    for record, visible in history:
        s = visible.sighting
        row = {"individual_id": record.individual_id, "image_id": record.image_id, "species": record.species,
               "scientific_name": species_info(record.species).scientific_name,
               "observed_at": _iso(s.observed_at), "latitude": s.latitude,  # numbers: never formulas
               "longitude": s.longitude, "position_precision": visible.precision,
               "location": s.location, "observer": s.observer, "filename": record.filename,
               "source": record.source, "enrolled_at": _iso(record.created_at)}
        writer.writerow(["" if row[c] is None else csv_safe(row[c]) for c in SIGHTING_CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def sighting_occurrence(record: SightingRecord, visible: VisibleSighting,
                        base_url: str | None = None) -> dict[str, str]:
    """The Darwin Core occurrence of one catalog photo: a verified sighting of `organismID`."""
    info = species_info(record.species)
    media = f"{base_url.rstrip('/')}/v1/images/{record.image_id}/thumbnail" if base_url else ""
    return {
        "occurrenceID": record.image_id,
        "basisOfRecord": "HumanObservation",  # a person's photo, put in the catalog by a curator
        "occurrenceStatus": "present",
        **sighting_terms(visible),
        "organismID": record.individual_id,
        "individualCount": "1",
        "scientificName": info.scientific_name,
        "scientificNameID": info.scientific_name_id,
        "vernacularName": info.common_name,
        "taxonRank": info.taxon_rank,
        "kingdom": "Animalia",
        "identificationVerificationStatus": "verified",
        "identifiedBy": "EcoMarineAI catalog",
        "dateIdentified": _iso(record.created_at),
        "identificationRemarks": f"catalog photo {record.filename}".strip() if record.filename else "",
        "associatedMedia": media,
        "occurrenceRemarks": "",
    }


def write_sightings_dwca(history: History, path_or_fh: str | os.PathLike[str] | IO[bytes],
                         base_url: str | None = None, title: str = "EcoMarineAI sighting history",
                         metadata: DatasetMetadata | None = None) -> int:
    """A Darwin Core Archive of one individual's sightings; returns how many were written.
    `metadata` (licence, creator, contact) is written to eml.xml with `title` as its title."""
    metadata = replace(metadata, title=title) if metadata else DatasetMetadata(title=title)
    return write_occurrences((sighting_occurrence(r, v, base_url) for r, v in history), path_or_fh,
                             metadata=metadata)
