"""Darwin Core that GBIF and OBIS accept (issue 23, section 4): WoRMS LSIDs for every species, photos
of one encounter as one occurrence with a Simple Multimedia extension, the reviewer in identifiedBy,
EML with a machine-readable licence and a stable packageId, every file read back by
python-dwca-reader, and each required OBIS term present and well formed."""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import pytest
from dwca.read import DwCAReader

from integrations.darwin_core import (
    ENCOUNTER_RADIUS_M,
    MULTIMEDIA_ROW_TYPE,
    MULTIMEDIA_TERMS,
    OCCURRENCE_TERMS,
    distance_m,
    group_encounters,
    write_dwca,
)
from integrations.dwc_eml import LICENSES, DatasetMetadata, Party, derive_package_uuid
from whales_identify.records.location_privacy import LocationPolicy
from whales_identify.records.store import PredictionRecord, Sighting
from whales_identify.species import APHIA_IDS_TO_CONFIRM, SPECIES, species_info

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
LSID = re.compile(r"urn:lsid:marinespecies\.org:taxname:[1-9][0-9]{0,8}")
DAY = datetime(2025, 7, 14, 9, 0, tzinfo=UTC)
HERE = (41.5, -69.9)  # Great South Channel
BASE = "https://whales.example.org"
KM_PER_DEG_LAT = 111.195  # on the 6,371,008.8 m sphere distance_m uses


def north_of(km: float) -> tuple[float, float]:
    return HERE[0] + km / KM_PER_DEG_LAT, HERE[1]


def photo(pid: str, individual: str = "EG-1001", when: datetime = DAY, where=HERE, reviewed: bool = True,
          **changes) -> PredictionRecord:
    lat, lon = where if where else (None, None)
    base = PredictionRecord(
        prediction_id=pid, image_sha256="e" * 64, filename=f"{pid}.jpg", rejected=False,
        rejection_reason=None, cetacean_score=0.98, gate_backend="embedded", gate_version="v2",
        species="north_atlantic_right_whale",
        individual_id=individual, is_new_individual=False, probability=0.9,
        candidates=[], model_version="efficientnet_lite0.rightwhale_arcface_v1",
        created_at=DAY + timedelta(days=1), sighting=Sighting(observed_at=when, latitude=lat, longitude=lon,
                                                            location="Great South Channel",
                                                            observer="R. Observer"),
        review_state="confirmed" if reviewed else "unreviewed",
        reviewer_decision={"decision": "confirm", "individual_id": individual,
                           "species": "north_atlantic_right_whale"} if reviewed else None,
        reviewed_at=DAY + timedelta(days=2) if reviewed else None,
        reviewed_by="sha256:0123456789abcdef" if reviewed else None,
    )
    return replace(base, **changes)


def read(path):
    """Every file of the archive through python-dwca-reader: meta.xml, eml.xml, the core rows and
    their multimedia rows."""
    with DwCAReader(str(path)) as archive:
        assert archive.descriptor.core.type == DWC + "Occurrence"
        assert [e.type for e in archive.descriptor.extensions] == [MULTIMEDIA_ROW_TYPE]
        assert archive.metadata is not None  # eml.xml parsed
        core = {row.id: row for row in archive}
        media = {row.id: [e.data for e in row.extensions] for row in archive}
        # every multimedia row's coreid is an occurrence, and every row was read
        assert archive.orphaned_extension_rows() == {"multimedia.txt": {}}
        data = {rid: row.data for rid, row in core.items()}
    with zipfile.ZipFile(path) as z:
        lines = z.read("multimedia.txt").decode().splitlines()
    assert sum(map(len, media.values())) == len(lines) - 1
    return data, media


def archive_of(tmp_path, records, **kwargs):
    path = tmp_path / "dwca.zip"
    count = write_dwca(records, path, base_url=kwargs.pop("base_url", BASE), **kwargs)
    return path, count


# --- species: WoRMS LSIDs ---------------------------------------------------------------------------

def test_every_species_has_a_well_formed_worms_lsid():
    by_name: dict[str, int] = {}
    for key, info in SPECIES.items():
        assert LSID.fullmatch(info.scientific_name_id), key
        assert info.scientific_name_id.endswith(f":{info.aphia_id}")
        assert by_name.setdefault(info.scientific_name, info.aphia_id) == info.aphia_id, key  # one id a name
    assert len(set(by_name.values())) == len(by_name)  # and one name an id
    assert APHIA_IDS_TO_CONFIRM <= set(by_name.values())  # the list to confirm names only ids in use
    # ids given in the brief and confirmed in WoRMS records
    for key, aphia in (("north_atlantic_right_whale", 159023), ("bottlenose_dolphin", 137111),
                       ("humpback_whale", 137092), ("blue_whale", 137090), ("killer_whale", 137102),
                       ("sperm_whale", 137119), ("common_dolphin", 137094), ("gray_whale", 137112)):
        assert species_info(key).aphia_id == aphia, key
    unknown = species_info("mystery_whale")
    assert unknown.scientific_name == "Cetacea" and unknown.scientific_name_id.endswith(":2688")


# --- encounters -------------------------------------------------------------------------------------

def test_two_photos_same_day_nearby_are_one_occurrence_with_two_media_rows(tmp_path):
    a = photo("p1", when=DAY)
    b = photo("p2", when=DAY + timedelta(minutes=40), where=north_of(1.2))
    b = replace(b, sighting=replace(b.sighting, observer="B. Observer"))
    path, count = archive_of(tmp_path, [a, b])
    assert count == 1
    rows, media = read(path)
    assert list(rows) == ["p1"]  # occurrenceID: the encounter's first photo
    row = rows["p1"]
    assert row[DWC + "eventDate"] == "2025-07-14T09:00:00Z/2025-07-14T09:40:00Z"  # ISO 8601 interval
    assert row[DWC + "individualCount"] == "1" and row[DWC + "organismID"] == "EG-1001"
    assert int(row[DWC + "coordinateUncertaintyInMeters"]) == math.ceil(distance_m(a.sighting, b.sighting))
    assert row[DWC + "recordedBy"] == "R. Observer | B. Observer"
    assert row[DWC + "associatedMedia"] == f"{BASE}/v1/predictions/p1/image | {BASE}/v1/predictions/p2/image"
    assert "encounter of 2 photos: p1, p2" in row[DWC + "occurrenceRemarks"]
    assert [m[DC + "identifier"] for m in media["p1"]] == [f"{BASE}/v1/predictions/p1/image",
                                                           f"{BASE}/v1/predictions/p2/image"]
    first = media["p1"][0]
    assert set(first) == {DC + t for t in MULTIMEDIA_TERMS}
    assert first[DC + "type"] == "StillImage" and first[DC + "format"] == "image/jpeg"
    assert first[DC + "created"] == "2025-07-14T09:00:00Z" and first[DC + "creator"] == "R. Observer"
    assert first[DC + "license"] == LICENSES["CC-BY-NC-4.0"].url


@pytest.mark.parametrize(("second", "why"), [
    (photo("p2", where=north_of(20.0)), "20 km away"),
    (photo("p2", when=DAY + timedelta(days=1)), "the next day"),
    (photo("p2", individual="EG-2002"), "another individual"),
    (photo("p2", reviewed=False), "not reviewed while the first is"),
    (photo("p2", where=None), "no position while the first has one"),
])
def test_far_apart_other_day_or_other_animal_are_two_occurrences(tmp_path, second, why):
    path, count = archive_of(tmp_path, [photo("p1"), second])
    assert count == 2, why
    rows, media = read(path)
    assert set(rows) == {"p1", "p2"}
    assert len(media["p1"]) == len(media["p2"]) == 1  # an exact archive links every photo


def test_encounter_radius_and_utc_day_boundaries():
    inside, outside = north_of(ENCOUNTER_RADIUS_M / 1000 - 0.1), north_of(ENCOUNTER_RADIUS_M / 1000 + 0.1)
    assert [len(e.photos) for e in group_encounters([photo("a"), photo("b", where=inside)])] == [2]
    assert [len(e.photos) for e in group_encounters([photo("a"), photo("b", where=outside)])] == [1, 1]
    # the radius is measured from the encounter's first photo: no chaining across 2 x 4.5 km
    chain = [photo("a"), photo("b", where=north_of(4.5)), photo("c", where=north_of(9.0))]
    assert [[p.prediction_id for p in e.photos] for e in group_encounters(chain)] == [["a", "b"], ["c"]]
    late = datetime(2025, 7, 14, 23, 30, tzinfo=UTC)
    assert len(group_encounters([photo("a", when=late), photo("b", when=late + timedelta(hours=1))])) == 2
    # neither with a position: same individual and day is enough
    assert len(group_encounters([photo("a", where=None), photo("b", where=None)])) == 1
    # an unreviewed new individual has no organismID: never grouped
    new = [photo(x, reviewed=False, is_new_individual=True) for x in "ab"]
    assert len(group_encounters(new)) == 2


# --- identification ---------------------------------------------------------------------------------

def test_identified_by_the_reviewer_and_basis_of_record(tmp_path):
    reviewed = photo("r1")
    decision = {"decision": "confirm", "reviewer": "Dr. A. Curator", "individual_id": "EG-3003"}
    named = photo("r2", individual="EG-3003", reviewer_decision=decision)
    machine = photo("m1", individual="EG-4004", reviewed=False)
    excluded = [photo("x1", review_state="not_cetacean", reviewer_decision={"decision": "not_cetacean"}),
                photo("x2", rejected=True, rejection_reason="not_cetacean")]
    path, count = archive_of(tmp_path, [reviewed, named, machine, *excluded])
    assert count == 3
    rows, _ = read(path)
    assert rows["r1"][DWC + "identifiedBy"] == "EcoMarineAI reviewer key sha256:0123456789abcdef"
    assert rows["r2"][DWC + "identifiedBy"] == "Dr. A. Curator"
    for rid in ("r1", "r2"):
        assert rows[rid][DWC + "identificationVerificationStatus"] == "verified"
        assert rows[rid][DWC + "basisOfRecord"] == "HumanObservation"
        assert rows[rid][DWC + "dateIdentified"] == "2025-07-16T09:00:00Z"  # the review
    assert rows["m1"][DWC + "identifiedBy"] == "EcoMarineAI efficientnet_lite0.rightwhale_arcface_v1"
    assert rows["m1"][DWC + "identificationVerificationStatus"] == "unverified"
    assert rows["m1"][DWC + "basisOfRecord"] == "MachineObservation"


# --- OBIS terms -------------------------------------------------------------------------------------

ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?")


def obis_problems(row: dict[str, str]) -> list[str]:
    """What OBIS would refuse or flag in one occurrence (its required and strongly recommended terms)."""
    t = {k[len(DWC):]: v for k, v in row.items()}
    problems = [f"{term} missing" for term in ("occurrenceID", "eventDate", "decimalLatitude",
                                               "decimalLongitude", "scientificName", "scientificNameID",
                                               "occurrenceStatus", "basisOfRecord") if not t.get(term)]
    if t.get("occurrenceStatus") not in ("present", "absent"):
        problems.append("occurrenceStatus not present/absent")
    if t.get("basisOfRecord") not in ("HumanObservation", "MachineObservation"):
        problems.append("basisOfRecord")
    for part in (t.get("eventDate") or "").split("/"):
        if not ISO_INSTANT.fullmatch(part):
            problems.append(f"eventDate {t.get('eventDate')!r} is not ISO 8601")
        else:
            datetime.fromisoformat(part.replace("Z", "+00:00"))  # a real date, not 2025-13-45
    try:
        if not (-90 <= float(t["decimalLatitude"]) <= 90 and -180 <= float(t["decimalLongitude"]) <= 180):
            problems.append("coordinates out of range")
    except (KeyError, ValueError):
        problems.append("coordinates not numbers")
    if t.get("geodeticDatum") != "WGS84":
        problems.append("geodeticDatum")
    if not LSID.fullmatch(t.get("scientificNameID") or ""):
        problems.append("scientificNameID is not a WoRMS LSID")
    uncertainty = t.get("coordinateUncertaintyInMeters")
    if uncertainty and not (uncertainty.isdigit() and int(uncertainty) > 0):
        problems.append("coordinateUncertaintyInMeters")
    return problems


def test_the_checker_can_fail():
    bad = {DWC + "occurrenceID": "x", DWC + "eventDate": "14/07/2025", DWC + "decimalLatitude": "95",
           DWC + "decimalLongitude": "10", DWC + "scientificName": "Cetacea",
           DWC + "scientificNameID": "urn:lsid:itis.gov:itis_tsn:180403", DWC + "basisOfRecord": "Photo"}
    assert len(obis_problems(bad)) >= 5


def test_each_required_obis_term_is_present_and_well_formed(tmp_path):
    records = [photo("a1"), photo("a2", when=DAY + timedelta(hours=1), where=north_of(2)),
               photo("b1", individual="EG-2002", species="north_atlantic_right_whale", reviewed=False),
               photo("c1", individual="HW-1", species="humpback_whale", where=(-25.29, 152.875),
                     reviewer_decision={"decision": "confirm", "individual_id": "HW-1",
                                        "species": "humpback_whale"}),
               photo("d1", individual="X-9", species="mystery", where=(89.99, 179.99), reviewed=False)]
    for policy in (None, LocationPolicy.parse("0.1")):
        path, count = archive_of(tmp_path, records, policy=policy)
        rows, _ = read(path)
        assert count == len(rows) == 4
        for rid, row in rows.items():
            assert set(row) == {DWC + t for t in OCCURRENCE_TERMS}
            assert obis_problems(row) == [], (policy, rid, obis_problems(row))
        assert rows["c1"][DWC + "scientificNameID"] == "urn:lsid:marinespecies.org:taxname:137092"
        assert rows["d1"][DWC + "scientificNameID"] == "urn:lsid:marinespecies.org:taxname:2688"


def test_sensitive_positions_follow_location_privacy(tmp_path):
    a, b = photo("p1"), photo("p2", when=DAY + timedelta(minutes=5), where=north_of(1.0))
    path, _ = archive_of(tmp_path, [a, b], policy=LocationPolicy.parse("0.1"))
    rows, media = read(path)
    row = rows["p1"]
    assert (row[DWC + "decimalLatitude"], row[DWC + "decimalLongitude"]) == ("41.55", "-69.85")  # cell centre
    assert "0.1 degree" in row[DWC + "dataGeneralizations"]
    assert "recordedBy withheld" in row[DWC + "dataGeneralizations"]
    spread = math.ceil(distance_m(a.sighting, b.sighting))
    # the cell's half diagonal plus the encounter's spread
    assert int(row[DWC + "coordinateUncertaintyInMeters"]) == 7872 + spread
    assert row[DWC + "recordedBy"] == "" and row[DWC + "locality"] == ""
    assert {m[DC + "creator"] for m in media["p1"]} == {""}  # the observer is withheld from photos too
    path, _ = archive_of(tmp_path, [a, b], policy=LocationPolicy.parse("withheld"))
    rows, _ = read(path)
    withheld = rows["p1"]
    assert withheld[DWC + "decimalLatitude"] == "" and withheld[DWC + "coordinateUncertaintyInMeters"] == ""
    # a public archive links only reviewed photos (the service serves the others to key holders only)
    path, _ = archive_of(tmp_path, [photo("u1", reviewed=False)], policy=LocationPolicy.parse("0.1"))
    rows, media = read(path)
    assert rows["u1"][DWC + "associatedMedia"] == "" and media["u1"] == []


# --- EML --------------------------------------------------------------------------------------------

def eml_of(path) -> ET.Element:
    with zipfile.ZipFile(path) as z:
        return ET.fromstring(z.read("eml.xml"))


@pytest.mark.parametrize(("spdx", "url"), [
    ("CC0-1.0", "http://creativecommons.org/publicdomain/zero/1.0/legalcode"),
    ("CC-BY-4.0", "http://creativecommons.org/licenses/by/4.0/legalcode"),
    ("CC-BY-NC-4.0", "http://creativecommons.org/licenses/by-nc/4.0/legalcode"),
])
def test_eml_licence_creator_contact_and_package_id(tmp_path, spdx, url):
    metadata = DatasetMetadata(title="Right whales of the Great South Channel", license=spdx,
                               creator=Party("Ada M. Curator", "Ocean Lab", "ada@example.org"),
                               contact=Party("Data Desk", "Ocean Lab", "data@example.org"), version="2.3")
    path, _ = archive_of(tmp_path, [photo("p1")], metadata=metadata)
    root = eml_of(path)
    uuid_part = derive_package_uuid("Right whales of the Great South Channel")
    assert root.get("packageId") == f"{uuid_part}/v2.3"
    dataset = root.find("dataset")
    assert dataset.findtext("alternateIdentifier") == uuid_part
    link = dataset.find("intellectualRights/para/ulink")
    assert link.get("url") == url and link.findtext("citetitle") == LICENSES[spdx].title
    assert dataset.findtext("creator/individualName/surName") == "Curator"
    assert dataset.findtext("creator/individualName/givenName") == "Ada M."
    assert dataset.findtext("creator/electronicMailAddress") == "ada@example.org"
    assert dataset.findtext("contact/electronicMailAddress") == "data@example.org"
    assert dataset.findtext("title") == "Right whales of the Great South Channel"
    with DwCAReader(str(path)) as archive:  # the reader parses it too
        assert archive.metadata.find("dataset/title").text == "Right whales of the Great South Channel"


def test_package_id_is_stable_per_dataset_and_versioned():
    default = DatasetMetadata()
    assert default.license == "CC-BY-NC-4.0"
    assert DatasetMetadata().package_id == default.package_id  # the same dataset twice: same id
    spaced = DatasetMetadata(title=" EcoMarineAI  cetacean photo-identifications")
    assert spaced.package_id == default.package_id
    assert DatasetMetadata(version="1.1").package_id.split("/")[0] == default.package_id.split("/")[0]
    assert DatasetMetadata(version="1.1").package_id.endswith("/v1.1")
    assert DatasetMetadata(title="Another dataset").package_id != default.package_id
    fixed = "3f2e6b7c-1d2e-4f5a-9b8c-7d6e5f4a3b2c"
    assert DatasetMetadata(package_uuid=fixed).package_id == f"{fixed}/v1.0"
    for bad in ({"license": "GPL-3.0"}, {"package_uuid": "not-a-uuid"}, {"version": "1 0"}, {"version": ""}):
        with pytest.raises(ValueError):
            DatasetMetadata(**bad)


# --- CLI --------------------------------------------------------------------------------------------

def test_cli_dwca_with_dataset_options_and_public_positions(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from integrations.base import open_store
    from whales_cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    for record in (photo("p1"), photo("p2", when=DAY + timedelta(minutes=10), where=north_of(0.5)),
                   photo("p3", individual="EG-2002")):
        store.save_prediction(record)
    store.close()
    out = tmp_path / "pub.zip"
    monkeypatch.setenv("WHALES_DWC_CREATOR_EMAIL", "ada@example.org")  # the service's variable works too
    result = CliRunner().invoke(app, ["export", "--db", url, "--format", "dwca", "-o", str(out),
                                      "--base-url", BASE, "--license", "CC0-1.0", "--creator", "Ada Curator",
                                      "--dataset-version", "2.0", "--positions", "0.1"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 occurrences (one per encounter)" in result.output
    rows, media = read(out)
    assert set(rows) == {"p1", "p3"} and len(media["p1"]) == 2
    assert rows["p1"][DWC + "decimalLatitude"] == "41.55" and rows["p1"][DWC + "dataGeneralizations"]
    root = eml_of(out)
    assert root.get("packageId").endswith("/v2.0")
    assert root.find("dataset/intellectualRights/para/ulink").get("url") == LICENSES["CC0-1.0"].url
    assert root.findtext("dataset/creator/electronicMailAddress") == "ada@example.org"
    for bad in (["--license", "CC-BY-SA-4.0"], ["--positions", "far"], ["--package-uuid", "x"]):
        result = CliRunner().invoke(app, ["export", "--db", url, "--format", "dwca", "-o", str(out), *bad])
        assert result.exit_code == 2 and "error:" in result.output, bad
