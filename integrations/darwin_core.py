"""Darwin Core Archive (DwC-A) of identified cetacean encounters, as GBIF and OBIS accept it.

The archive is a ZIP with
* `occurrence.txt`: the Occurrence core, one row per *encounter* (below), tab-separated;
* `multimedia.txt`: the GBIF Simple Multimedia extension (`http://rs.gbif.org/terms/1.0/Multimedia`),
  one row per linked photo, joined to its occurrence by `coreid` = `occurrenceID`;
* `meta.xml`: maps the columns of both files to term URIs;
* `eml.xml`: the dataset's metadata and licence (`integrations.dwc_eml`).

An encounter is the photos of one individual on one UTC day within `ENCOUNTER_RADIUS_M` (5 km) of
the encounter's first photo, with the same identification status: publishing one occurrence per
photo would inflate counts. Photos without an individual (an unreviewed new individual), without a
date, or with a position where the first photo has none (or the reverse) are occurrences of their own.

Rejected predictions (the gate said "not a cetacean") and predictions a reviewer marked
`not_cetacean` are left out: they are not cetacean occurrences.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import IO, Any
from xml.etree import ElementTree as ET

from integrations.dwc_eml import DEFAULT_TITLE, DatasetMetadata, eml_xml
from whales_identify.records.location_privacy import LocationPolicy, VisibleSighting, apply_policy
from whales_identify.records.store import PredictionRecord, Sighting
from whales_identify.species import SpeciesInfo, species_info

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
DWC_TEXT = "http://rs.tdwg.org/dwc/text/"
OCCURRENCE_ROW_TYPE = DWC + "Occurrence"
MULTIMEDIA_ROW_TYPE = "http://rs.gbif.org/terms/1.0/Multimedia"
ENCOUNTER_RADIUS_M = 5000.0
EARTH_RADIUS_M = 6_371_008.8

# Column order of occurrence.txt; every one is a term in the Darwin Core namespace.
OCCURRENCE_TERMS = (
    "occurrenceID", "basisOfRecord", "occurrenceStatus", "eventDate", "decimalLatitude", "decimalLongitude",
    "geodeticDatum", "coordinateUncertaintyInMeters", "dataGeneralizations", "locality", "recordedBy",
    "organismID", "individualCount", "scientificName", "scientificNameID", "vernacularName", "taxonRank",
    "kingdom", "identificationVerificationStatus", "identifiedBy", "dateIdentified", "identificationRemarks",
    "associatedMedia", "occurrenceRemarks",
)
# Columns of multimedia.txt after `coreid`; Dublin Core terms (the Simple Multimedia extension).
MULTIMEDIA_TERMS = ("type", "format", "identifier", "title", "description", "created", "creator", "license",
                    "rightsHolder")

# Review state -> identificationVerificationStatus. `not_cetacean` rows are not exported at all.
VERIFICATION_STATUS = {
    "unreviewed": "unverified",
    "confirmed": "verified",
    "new_individual": "verified",
}


def is_occurrence(record: PredictionRecord) -> bool:
    """True when the prediction is a cetacean sighting worth publishing."""
    return not record.rejected and record.review_state in VERIFICATION_STATUS


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.7f}".rstrip("0").rstrip(".")


def _clean(value: Any) -> str:
    # No quoting in a DwC text file: tabs and line breaks inside a value would split the row.
    return " ".join(str(value).split()) if value is not None else ""


def _distinct(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def distance_m(a: Sighting, b: Sighting) -> float | None:
    """Great-circle distance between two sightings' positions (None when either has none)."""
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        return None
    p1, p2 = math.radians(a.latitude), math.radians(b.latitude)
    dp, dl = p2 - p1, math.radians(b.longitude - a.longitude)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def sighting_terms(visible: VisibleSighting) -> dict[str, str]:
    """When, where and by whom, as the caller may see it: the Darwin Core terms of one sighting."""
    s = visible.sighting
    has_position = s.latitude is not None and s.longitude is not None
    return {
        "eventDate": _iso(s.observed_at),
        "decimalLatitude": _number(s.latitude) if has_position else "",
        "decimalLongitude": _number(s.longitude) if has_position else "",
        "geodeticDatum": "WGS84" if has_position else "",
        "coordinateUncertaintyInMeters": str(visible.coordinate_uncertainty_m or ""),
        "dataGeneralizations": visible.data_generalizations or "",
        "locality": s.location or "",
        "recordedBy": s.observer or "",
    }


@dataclass(frozen=True)
class Identification:
    """What a prediction says about the animal; a reviewer's decision wins over the model."""

    reviewed: bool
    info: SpeciesInfo
    individual: str  # "" for an unreviewed new individual
    identified_by: str


def reviewer_name(record: PredictionRecord) -> str:
    """Who reviewed: a name the review recorded, else the fingerprint of the reviewer's key."""
    decision = record.reviewer_decision or {}
    name = decision.get("reviewer") or decision.get("reviewer_name") or record.reviewed_by
    if not name:
        return "EcoMarineAI reviewer (unrecorded)"
    name = str(name)
    return f"EcoMarineAI reviewer key {name}" if name.startswith("sha256:") else name


def identification(record: PredictionRecord) -> Identification:
    decision = record.reviewer_decision or {}
    reviewed = record.review_state != "unreviewed"
    species = (decision.get("species") if reviewed else None) or record.species
    individual = (decision.get("individual_id") if reviewed else None) or (
        None if record.is_new_individual else record.individual_id)
    by = reviewer_name(record) if reviewed else f"EcoMarineAI {record.model_version}".strip()
    return Identification(reviewed, species_info(species), individual or "", by)


@dataclass
class Encounter:
    """Photos of one individual on one UTC day close together; `photos[0]` is the first one seen."""

    photos: list[PredictionRecord]
    ids: list[Identification] = field(default_factory=list)


def group_encounters(records: Iterable[PredictionRecord],
                     radius_m: float = ENCOUNTER_RADIUS_M) -> list[Encounter]:
    """Cetacean predictions grouped into encounters, in the order of each encounter's first photo.

    Photos join an encounter when they have the same organismID, scientific name, review status
    (verified or not) and UTC day as its first photo, and lie within `radius_m` of it (or neither
    has a position). Everything else is an encounter of one photo.
    """
    encounters: list[Encounter] = []
    open_: dict[tuple[Any, ...], list[Encounter]] = defaultdict(list)
    for record in records:
        if not is_occurrence(record):
            continue
        ident = identification(record)
        when = record.sighting.observed_at
        key = (ident.individual, ident.info.scientific_name, ident.reviewed,
               when.astimezone(UTC).date()) if ident.individual and when is not None else None
        target = None
        for candidate in open_.get(key, ()) if key else ():
            first = candidate.photos[0].sighting
            d = distance_m(first, record.sighting)
            no_positions = first.latitude is None and record.sighting.latitude is None
            if no_positions or (d is not None and d <= radius_m):
                target = candidate
                break
        if target is None:
            target = Encounter([])
            encounters.append(target)
            if key:
                open_[key].append(target)
        target.photos.append(record)
        target.ids.append(ident)
    return encounters


def media_url(record: PredictionRecord, base_url: str | None, policy: LocationPolicy | None) -> str:
    """The photo's link, when there is a base URL and the reader may fetch it.

    With a `policy` (a public archive) only reviewed photos are linked: the service serves
    unreviewed photos to key holders only.
    """
    if not base_url or (policy is not None and record.review_state == "unreviewed"):
        return ""
    return f"{base_url.rstrip('/')}/v1/predictions/{record.prediction_id}/image"


def _encounter_sighting(photos: Sequence[PredictionRecord]) -> tuple[Sighting, int]:
    """The encounter as one sighting (first photo's position, earliest time, every observer) and the
    farthest distance of a photo from that position, in whole metres."""
    first = photos[0].sighting
    spread = max((distance_m(first, p.sighting) or 0.0 for p in photos), default=0.0)
    times = [p.sighting.observed_at for p in photos if p.sighting.observed_at is not None]
    observers = _distinct(p.sighting.observer for p in photos)
    place = next((p.sighting.location for p in photos if p.sighting.location), None)
    return replace(first, observed_at=min(times) if times else None, location=place,
                   observer=" | ".join(observers) or None), math.ceil(spread)


def encounter_rows(encounter: Encounter, base_url: str | None = None, policy: LocationPolicy | None = None,
                   license_url: str = "") -> tuple[dict[str, str], list[dict[str, str]]]:
    """The occurrence of one encounter and its multimedia rows.

    Args:
        encounter: from `group_encounters`.
        base_url: the service's public URL; photos are linked as `{base_url}/v1/predictions/{id}/image`.
        policy: for an archive meant for publication, how positions are generalised
            (`whales_identify.records.location_privacy`); None writes them exactly.
        license_url: the dataset licence, repeated on each photo.
    """
    photos, ident = encounter.photos, encounter.ids[0]
    first = photos[0]
    sighting, spread_m = _encounter_sighting(photos)
    visible = apply_policy(sighting, policy)
    terms = sighting_terms(visible)
    times = sorted(p.sighting.observed_at for p in photos if p.sighting.observed_at is not None)
    if times and times[-1] != times[0]:
        terms["eventDate"] = f"{_iso(times[0])}/{_iso(times[-1])}"  # an ISO 8601 interval
    if terms["decimalLatitude"] and (spread_m or visible.coordinate_uncertainty_m):
        terms["coordinateUncertaintyInMeters"] = str(spread_m + (visible.coordinate_uncertainty_m or 0))
    urls = [(p, media_url(p, base_url, policy)) for p in photos]
    gate = f"{first.gate_backend} {first.gate_version}"
    probabilities = [p.probability for p in photos if p.probability is not None]
    remarks = [f"probability {max(probabilities):.3f}"] if probabilities else []
    remarks.append(f"cetacean score {min(p.cetacean_score for p in photos):.3f} ({gate})")
    notes = ["new individual (not in the catalog)"] if any(p.is_new_individual for p in photos) else []
    if len(photos) > 1:
        remarks.insert(0, f"best of {len(photos)} photos")
        notes.append(f"encounter of {len(photos)} photos: " + ", ".join(p.prediction_id for p in photos))
    reviewed_at = [p.reviewed_at for p in photos if p.reviewed_at is not None]
    row = {
        "occurrenceID": first.prediction_id,
        "basisOfRecord": "HumanObservation" if ident.reviewed else "MachineObservation",
        "occurrenceStatus": "present",
        **terms,
        "organismID": ident.individual,
        "individualCount": "1",
        "scientificName": ident.info.scientific_name,
        "scientificNameID": ident.info.scientific_name_id,
        "vernacularName": ident.info.common_name,
        "taxonRank": ident.info.taxon_rank,
        "kingdom": "Animalia",
        "identificationVerificationStatus": "verified" if ident.reviewed else "unverified",
        "identifiedBy": " | ".join(_distinct(i.identified_by for i in encounter.ids)),
        "dateIdentified": _iso(max(reviewed_at) if ident.reviewed and reviewed_at
                               else min(p.created_at for p in photos)),
        "identificationRemarks": "; ".join(remarks),
        "associatedMedia": " | ".join(url for _, url in urls if url),
        "occurrenceRemarks": "; ".join(notes),
    }
    media = []
    for photo, url in urls:
        if not url:
            continue
        creator = apply_policy(photo.sighting, policy).sighting.observer or ""
        media.append({
            "coreid": first.prediction_id, "type": "StillImage", "format": "image/jpeg", "identifier": url,
            "title": f"Photo {photo.prediction_id}",
            "description": f"{ident.info.common_name} {ident.individual}".strip(),
            "created": _iso(photo.sighting.observed_at), "creator": creator, "license": license_url,
            "rightsHolder": creator,
        })
    return {k: _clean(v) for k, v in row.items()}, media


def occurrence_row(record: PredictionRecord, base_url: str | None = None,
                   policy: LocationPolicy | None = None) -> dict[str, str] | None:
    """The occurrence of one prediction on its own, or None when it is not a cetacean sighting."""
    if not is_occurrence(record):
        return None
    return encounter_rows(Encounter([record], [identification(record)]), base_url, policy)[0]


def meta_xml() -> bytes:
    """The archive descriptor: occurrence.txt as the Occurrence core, multimedia.txt as the Simple
    Multimedia extension (column 0 is its `coreid`), column i -> term URI."""
    # Namespace declarations are written as plain attributes: no global ElementTree registration.
    archive = ET.Element("archive", {"xmlns": DWC_TEXT, "metadata": "eml.xml"})
    layout = {"encoding": "UTF-8", "fieldsTerminatedBy": "\\t", "linesTerminatedBy": "\\n",
              "fieldsEnclosedBy": "", "ignoreHeaderLines": "1"}
    core = ET.SubElement(archive, "core", {**layout, "rowType": OCCURRENCE_ROW_TYPE})
    ET.SubElement(ET.SubElement(core, "files"), "location").text = "occurrence.txt"
    ET.SubElement(core, "id", {"index": "0"})
    for index, term in enumerate(OCCURRENCE_TERMS):
        ET.SubElement(core, "field", {"index": str(index), "term": DWC + term})
    extension = ET.SubElement(archive, "extension", {**layout, "rowType": MULTIMEDIA_ROW_TYPE})
    ET.SubElement(ET.SubElement(extension, "files"), "location").text = "multimedia.txt"
    ET.SubElement(extension, "coreid", {"index": "0"})
    for index, term in enumerate(MULTIMEDIA_TERMS, start=1):
        ET.SubElement(extension, "field", {"index": str(index), "term": DC + term})
    return ET.tostring(archive, encoding="utf-8", xml_declaration=True)


def write_dwca(records: Iterable[PredictionRecord], path_or_fh: str | os.PathLike[str] | IO[bytes],
               base_url: str | None = None, title: str | None = None,
               policy: LocationPolicy | None = None, metadata: DatasetMetadata | None = None,
               radius_m: float = ENCOUNTER_RADIUS_M) -> int:
    """Write a Darwin Core Archive of encounters.

    Args:
        records: predictions in any order; rejected and `not_cetacean` ones are skipped.
        path_or_fh: a file path or a binary file object open for writing.
        base_url: the service's public URL; when given, photos are linked (associatedMedia and a
            multimedia row each) as `{base_url}/v1/predictions/{id}/image`.
        title: dataset title in eml.xml when no `metadata` is given.
        policy: for an archive meant for publication, how positions are generalised
            (`whales_identify.records.location_privacy`); None writes them exactly.
        metadata: title, licence, creator, contact and package id for eml.xml.
        radius_m: how far from an encounter's first photo another photo of it may be.

    Returns:
        The number of occurrences (encounters) written.
    """
    metadata = metadata or DatasetMetadata(title=title or DEFAULT_TITLE)
    occurrences, media = [], []
    for encounter in group_encounters(records, radius_m):
        row, rows = encounter_rows(encounter, base_url, policy, metadata.license_url)
        occurrences.append(row)
        media.extend(rows)
    return write_occurrences(occurrences, path_or_fh, metadata=metadata, media=media)


def _write_table(archive: zipfile.ZipFile, name: str, columns: Sequence[str],
                 rows: Iterable[dict[str, str]]) -> int:
    count = 0
    with archive.open(name, "w") as raw, io.TextIOWrapper(raw, "utf-8", newline="\n") as out:
        out.write("\t".join(columns) + "\n")
        for row in rows:
            out.write("\t".join(_clean(row.get(c, "")) for c in columns) + "\n")
            count += 1
    return count


def write_occurrences(rows: Iterable[dict[str, str]], path_or_fh: str | os.PathLike[str] | IO[bytes],
                      title: str | None = None, media: Iterable[dict[str, str]] = (),
                      metadata: DatasetMetadata | None = None) -> int:
    """Write a Darwin Core Archive of ready occurrence rows (term -> text; a term a row lacks is
    written empty) and multimedia rows (`coreid` + `MULTIMEDIA_TERMS`); return how many occurrences
    were written."""
    metadata = metadata or DatasetMetadata(title=title or DEFAULT_TITLE)
    with zipfile.ZipFile(path_or_fh, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        count = _write_table(archive, "occurrence.txt", OCCURRENCE_TERMS, rows)
        media_count = _write_table(archive, "multimedia.txt", ("coreid", *MULTIMEDIA_TERMS), media)
        archive.writestr("meta.xml", meta_xml())
        archive.writestr("eml.xml", eml_xml(metadata, count, media_count))
    return count
