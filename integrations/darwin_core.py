"""Darwin Core Archive (DwC-A) of machine-identified cetacean sightings, for GBIF/OBIS-style portals.

The archive is a ZIP with `occurrence.txt` (tab-separated, one row per accepted prediction),
`meta.xml` (maps columns to Darwin Core term URIs) and `eml.xml` (EML 2.1.1 dataset metadata).

Rejected predictions (the gate said "not a cetacean") and predictions a reviewer marked
`not_cetacean` are left out: they are not cetacean occurrences.
"""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any
from xml.etree import ElementTree as ET

from whales_identify.location_privacy import LocationPolicy, VisibleSighting, apply_policy
from whales_identify.species import species_info
from whales_identify.store import PredictionRecord

DWC = "http://rs.tdwg.org/dwc/terms/"
DWC_TEXT = "http://rs.tdwg.org/dwc/text/"
OCCURRENCE_ROW_TYPE = DWC + "Occurrence"
EML_NS = "eml://ecoinformatics.org/eml-2.1.1"

# Column order of occurrence.txt; every one is a term in the Darwin Core namespace.
OCCURRENCE_TERMS = (
    "occurrenceID", "basisOfRecord", "eventDate", "decimalLatitude", "decimalLongitude", "geodeticDatum",
    "coordinateUncertaintyInMeters", "dataGeneralizations", "locality", "recordedBy", "organismID",
    "scientificName", "vernacularName", "taxonRank", "kingdom",
    "identificationVerificationStatus", "identifiedBy", "dateIdentified", "identificationRemarks",
    "associatedMedia", "occurrenceRemarks",
)

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


def occurrence_row(record: PredictionRecord, base_url: str | None = None,
                   policy: LocationPolicy | None = None) -> dict[str, str] | None:
    """The occurrence for one prediction, or None when it is not a cetacean sighting.

    A reviewer's decision wins over the model: `reviewer_decision["species"]` and
    `reviewer_decision["individual_id"]` replace the predicted ones when present. With a `policy`
    (a public archive), the position is generalised or withheld as the policy says, recorded in
    `dataGeneralizations` and `coordinateUncertaintyInMeters`, and only reviewed occurrences link
    their photo (the service serves unreviewed photos to key holders only).
    """
    if not is_occurrence(record):
        return None
    decision = record.reviewer_decision or {}
    reviewed = record.review_state != "unreviewed"
    species = (decision.get("species") if reviewed else None) or record.species
    individual = (decision.get("individual_id") if reviewed else None) or (
        None if record.is_new_individual else record.individual_id)
    info = species_info(species)
    visible = apply_policy(record.sighting, policy)
    remarks = []
    if record.probability is not None:
        remarks.append(f"probability {record.probability:.3f}")
    gate = f"{record.gate_backend} {record.gate_version}"
    remarks.append(f"cetacean score {record.cetacean_score:.3f} ({gate})")
    linkable = policy is None or reviewed
    media = (f"{base_url.rstrip('/')}/v1/predictions/{record.prediction_id}/image"
             if base_url and linkable else "")
    row = {
        "occurrenceID": record.prediction_id,
        "basisOfRecord": "MachineObservation",
        **sighting_terms(visible),
        "organismID": individual or "",
        "scientificName": info.scientific_name,
        "vernacularName": info.common_name,
        "taxonRank": info.taxon_rank,
        "kingdom": "Animalia",
        "identificationVerificationStatus": VERIFICATION_STATUS[record.review_state],
        "identifiedBy": f"EcoMarineAI {record.model_version}".strip(),
        "dateIdentified": _iso(record.reviewed_at if reviewed and record.reviewed_at else record.created_at),
        "identificationRemarks": "; ".join(remarks),
        "associatedMedia": media,
        "occurrenceRemarks": "new individual (not in the catalog)" if record.is_new_individual else "",
    }
    return {k: _clean(v) for k, v in row.items()}


def meta_xml() -> bytes:
    """The archive descriptor: occurrence.txt as the Occurrence core, column i -> term URI."""
    # Namespace declarations are written as plain attributes: no global ElementTree registration.
    archive = ET.Element("archive", {"xmlns": DWC_TEXT, "metadata": "eml.xml"})
    core = ET.SubElement(archive, "core", {
        "encoding": "UTF-8", "fieldsTerminatedBy": "\\t", "linesTerminatedBy": "\\n",
        "fieldsEnclosedBy": "", "ignoreHeaderLines": "1", "rowType": OCCURRENCE_ROW_TYPE,
    })
    ET.SubElement(ET.SubElement(core, "files"), "location").text = "occurrence.txt"
    ET.SubElement(core, "id", {"index": "0"})
    for index, term in enumerate(OCCURRENCE_TERMS):
        ET.SubElement(core, "field", {"index": str(index), "term": DWC + term})
    return ET.tostring(archive, encoding="utf-8", xml_declaration=True)


def eml_xml(title: str, count: int, now: datetime | None = None) -> bytes:
    """Minimal EML 2.1.1 dataset metadata (title, creator, contact, abstract, rights)."""
    now = now or datetime.now(UTC)
    root = ET.Element("eml:eml", {
        "xmlns:eml": EML_NS, "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:schemaLocation": f"{EML_NS} http://rs.gbif.org/schema/eml-gbif-profile/1.1/eml.xsd",
        "packageId": str(uuid.uuid4()), "system": "http://gbif.org", "scope": "system", "xml:lang": "en",
    })
    dataset = ET.SubElement(root, "dataset")
    ET.SubElement(dataset, "title").text = title
    for role in ("creator", "metadataProvider"):
        ET.SubElement(ET.SubElement(dataset, role), "organizationName").text = "EcoMarineAI"
    ET.SubElement(dataset, "pubDate").text = now.date().isoformat()
    ET.SubElement(dataset, "language").text = "en"
    ET.SubElement(ET.SubElement(dataset, "abstract"), "para").text = (
        f"{count} photographs of whales and dolphins identified to individual by the EcoMarineAI "
        f"re-identification model (basisOfRecord MachineObservation), exported {_iso(now)}. "
        "identificationVerificationStatus tells whether a person reviewed the identification."
    )
    ET.SubElement(ET.SubElement(dataset, "intellectualRights"), "para").text = (
        "Rights to the photographs remain with their contributors; check them before publishing."
    )
    ET.SubElement(ET.SubElement(dataset, "contact"), "organizationName").text = "EcoMarineAI"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_dwca(records: Iterable[PredictionRecord], path_or_fh: str | os.PathLike[str] | IO[bytes],
               base_url: str | None = None, title: str = "EcoMarineAI cetacean photo-identifications",
               policy: LocationPolicy | None = None) -> int:
    """Write a Darwin Core Archive.

    Args:
        records: predictions in any order; rejected and `not_cetacean` ones are skipped.
        path_or_fh: a file path or a binary file object open for writing.
        base_url: the service's public URL; when given, associatedMedia links to
            `{base_url}/v1/predictions/{id}/image`.
        title: dataset title in eml.xml.
        policy: for an archive meant for publication, how positions are generalised
            (`whales_identify.location_privacy`); None writes them exactly.

    Returns:
        The number of occurrences written.
    """
    rows = (occurrence_row(record, base_url, policy) for record in records)
    return write_occurrences((row for row in rows if row is not None), path_or_fh, title)


def write_occurrences(rows: Iterable[dict[str, str]], path_or_fh: str | os.PathLike[str] | IO[bytes],
                      title: str) -> int:
    """Write a Darwin Core Archive of ready occurrence rows (term -> text; a term a row lacks is
    written empty); return how many were written."""
    count = 0
    with zipfile.ZipFile(path_or_fh, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("occurrence.txt", "w") as raw, io.TextIOWrapper(raw, "utf-8", newline="\n") as out:
            out.write("\t".join(OCCURRENCE_TERMS) + "\n")
            for row in rows:
                out.write("\t".join(_clean(row.get(t, "")) for t in OCCURRENCE_TERMS) + "\n")
                count += 1
        archive.writestr("meta.xml", meta_xml())
        archive.writestr("eml.xml", eml_xml(title, count))
    return count
