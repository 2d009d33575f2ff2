"""The dataset metadata (`eml.xml`, EML 2.1.1 in the GBIF profile) of a Darwin Core Archive.

GBIF and OBIS read the licence, creator, contact and package id from here:

* the licence is one of the three GBIF accepts (CC0 1.0, CC BY 4.0, CC BY-NC 4.0), written as the
  GBIF IPT writes it: `intellectualRights` with a `ulink` to the licence's legal code, which is how
  GBIF recognises it by machine;
* `packageId` is `<uuid>/v<version>`, like the IPT: the UUID stays the same for a dataset (derived
  from its title unless set), the version changes with each publication.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

EML_NS = "eml://ecoinformatics.org/eml-2.1.1"
GBIF_EML_SCHEMA = "http://rs.gbif.org/schema/eml-gbif-profile/1.1/eml.xsd"
DEFAULT_TITLE = "EcoMarineAI cetacean photo-identifications"
DEFAULT_ORGANIZATION = "EcoMarineAI"
DEFAULT_LICENSE = "CC-BY-NC-4.0"  # the terms of the Happywhale data the default model was trained on
DEFAULT_VERSION = "1.0"
# Namespace of the UUIDs derived from a dataset title (a fixed, arbitrary UUID: the derivation must
# never change, or every dataset's packageId would).
_PACKAGE_NAMESPACE = uuid.UUID("6f1d3c1e-4a53-5c1b-9a43-2f1f0d6c7e21")


@dataclass(frozen=True)
class License:
    """A licence GBIF accepts: SPDX id, the IPT's title, its legal code URL and the IPT's sentence."""

    spdx: str
    title: str
    url: str
    before: str
    after: str


# The texts and URLs the GBIF IPT writes into intellectualRights (GBIF recognises the licence by them).
LICENSES: dict[str, License] = {
    "CC0-1.0": License(
        "CC0-1.0", "Public Domain (CC0 1.0)", "http://creativecommons.org/publicdomain/zero/1.0/legalcode",
        "To the extent possible under law, the publisher has waived all rights to these data and has "
        "dedicated them to the ",
        ". Users may copy, modify, distribute and use the work, including for commercial purposes, "
        "without restriction."),
    "CC-BY-4.0": License(
        "CC-BY-4.0", "Creative Commons Attribution (CC-BY) 4.0 License",
        "http://creativecommons.org/licenses/by/4.0/legalcode", "This work is licensed under a ", "."),
    "CC-BY-NC-4.0": License(
        "CC-BY-NC-4.0", "Creative Commons Attribution Non Commercial (CC-BY-NC) 4.0 License",
        "http://creativecommons.org/licenses/by-nc/4.0/legalcode", "This work is licensed under a ", "."),
}


@dataclass(frozen=True)
class Party:
    """A person or organisation (EML `creator`, `contact`, `metadataProvider`)."""

    name: str | None = None
    organization: str | None = DEFAULT_ORGANIZATION
    email: str | None = None


def derive_package_uuid(title: str) -> str:
    """A UUID that stays the same for a dataset title (used when no package id is configured)."""
    return str(uuid.uuid5(_PACKAGE_NAMESPACE, " ".join(title.split()).lower()))


@dataclass(frozen=True)
class DatasetMetadata:
    """What `eml.xml` says about the dataset.

    Attributes:
        title: dataset title.
        license: SPDX id, one of `LICENSES`.
        creator: who made the dataset.
        contact: whom to ask about it (default: the creator).
        package_uuid: the dataset's stable UUID (default: derived from the title).
        version: the publication's version; `packageId` is `<package_uuid>/v<version>`.
    """

    title: str = DEFAULT_TITLE
    license: str = DEFAULT_LICENSE
    creator: Party = field(default_factory=Party)
    contact: Party | None = None
    package_uuid: str | None = None
    version: str = DEFAULT_VERSION

    def __post_init__(self) -> None:
        if self.license not in LICENSES:
            raise ValueError(f"licence {self.license!r} is not one of {', '.join(LICENSES)}")
        if self.package_uuid is not None:
            uuid.UUID(self.package_uuid)  # ValueError when it is not a UUID
        if not self.version.strip() or any(c.isspace() or c == "/" for c in self.version):
            raise ValueError(f"dataset version {self.version!r} must be a non-empty word such as 1.0")

    @property
    def package_id(self) -> str:
        return f"{self.package_uuid or derive_package_uuid(self.title)}/v{self.version}"

    @property
    def license_url(self) -> str:
        return LICENSES[self.license].url


def _party(parent: ET.Element, role: str, party: Party) -> None:
    element = ET.SubElement(parent, role)
    if party.name:
        name = ET.SubElement(element, "individualName")
        given, _, surname = party.name.strip().rpartition(" ")
        if given:
            ET.SubElement(name, "givenName").text = given
        ET.SubElement(name, "surName").text = surname
    if party.organization or not party.name:
        ET.SubElement(element, "organizationName").text = party.organization or DEFAULT_ORGANIZATION
    if party.email:
        ET.SubElement(element, "electronicMailAddress").text = party.email


def eml_xml(metadata: DatasetMetadata, count: int, media_count: int = 0,
            now: datetime | None = None) -> bytes:
    """EML 2.1.1 (GBIF profile): title, creator, contact, abstract, machine-readable licence."""
    now = now or datetime.now(UTC)
    root = ET.Element("eml:eml", {
        "xmlns:eml": EML_NS, "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:schemaLocation": f"{EML_NS} {GBIF_EML_SCHEMA}",
        "packageId": metadata.package_id, "system": "http://gbif.org", "scope": "system", "xml:lang": "en",
    })
    dataset = ET.SubElement(root, "dataset")
    ET.SubElement(dataset, "alternateIdentifier").text = metadata.package_id.split("/")[0]
    ET.SubElement(dataset, "title", {"xml:lang": "en"}).text = metadata.title
    _party(dataset, "creator", metadata.creator)
    _party(dataset, "metadataProvider", metadata.creator)
    ET.SubElement(dataset, "pubDate").text = now.date().isoformat()
    ET.SubElement(dataset, "language").text = "en"
    ET.SubElement(ET.SubElement(dataset, "abstract"), "para").text = (
        f"{count} encounters of individually identified whales and dolphins ({media_count} linked "
        f"photographs), identified by the EcoMarineAI re-identification model and, where "
        f"identificationVerificationStatus is verified, confirmed by a reviewer. Photographs of one "
        f"individual on one UTC day within 5 km form one occurrence. Exported "
        f"{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}."
    )
    rights = LICENSES[metadata.license]
    para = ET.SubElement(ET.SubElement(dataset, "intellectualRights"), "para")
    para.text = rights.before
    link = ET.SubElement(para, "ulink", {"url": rights.url})
    ET.SubElement(link, "citetitle").text = rights.title
    link.tail = rights.after
    _party(dataset, "contact", metadata.contact or metadata.creator)
    gbif = ET.SubElement(ET.SubElement(ET.SubElement(root, "additionalMetadata"), "metadata"), "gbif")
    ET.SubElement(gbif, "dateStamp").text = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ET.SubElement(gbif, "hierarchyLevel").text = "dataset"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
