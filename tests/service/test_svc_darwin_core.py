"""The service's Darwin Core archives carry the operator's WHALES_DWC_* settings (licence, creator,
contact, packageId) and group encounters; the per-individual history archive goes through the same
writer. Every file is read back with python-dwca-reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from dwca.read import DwCAReader
from pydantic import ValidationError
from svc_fakes import API_KEY

from whales_be_service.settings import Settings
from whales_identify.records.store import CatalogImage, InMemoryStore, PredictionRecord, Sighting

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
AUTH = {"X-API-Key": API_KEY}
DAY = datetime(2025, 4, 2, 14, 0, tzinfo=UTC)
PACKAGE = "0b6f9c59-2f0b-4c7e-9a55-3cba1f0d9e11"
SETTINGS = dict(dwc_license="CC0-1.0", dwc_title="Cape Cod Bay right whales", dwc_creator_name="Ada Curator",
                dwc_creator_email="ada@example.org", dwc_contact_email="data@example.org",
                dwc_package_uuid=PACKAGE, dwc_version="3.1")


def prediction(pid: str, minutes: int, lat: float) -> PredictionRecord:
    return PredictionRecord(
        pid, "f" * 64, f"{pid}.jpg", False, None, 0.97, "embedded", "v2", "north_atlantic_right_whale",
        "rw_1", False, 0.88, [], "fake.colour16", created_at=DAY + timedelta(hours=1, minutes=minutes),
        sighting=Sighting(observed_at=DAY + timedelta(minutes=minutes), latitude=lat, longitude=-70.3),
        review_state="confirmed", reviewer_decision={"decision": "confirm", "individual_id": "rw_1"},
        reviewed_at=DAY + timedelta(days=1), reviewed_by="sha256:feedfacecafebeef")


@pytest.fixture
def store():
    store = InMemoryStore()
    # two photos 1.1 km apart within 20 minutes, and one 30 km away: two encounters
    for record in (prediction("q1", 0, 41.80), prediction("q2", 20, 41.81), prediction("q3", 90, 42.07)):
        store.save_prediction(record)
    store.add_catalog_images([CatalogImage(
        image_id="img1", individual_id="rw_1", species="north_atlantic_right_whale", model_id="fake.colour16",
        embedding=np.ones(16, np.float32) / 4, thumbnail=b"\xff\xd8thumb", filename="rw_1.jpg", source="test",
        sighting=Sighting(observed_at=DAY, latitude=41.8, longitude=-70.3))])
    return store


def read(tmp_path, content: bytes):
    path = tmp_path / "archive.zip"
    path.write_bytes(content)
    with DwCAReader(str(path)) as archive:
        eml = archive.metadata
        rows = {row.id: (row.data, [e.data for e in row.extensions]) for row in archive}
    return eml, rows


def test_export_uses_the_dataset_settings_and_groups_encounters(make_client, store, tmp_path):
    client = make_client(store=store, **SETTINGS)
    response = client.get("/v1/export", params={"format": "dwca"}, headers=AUTH)
    assert response.status_code == 200
    eml, rows = read(tmp_path, response.content)
    assert eml.get("packageId") == f"{PACKAGE}/v3.1"
    assert eml.find("dataset/intellectualRights/para/ulink").get("url") == (
        "http://creativecommons.org/publicdomain/zero/1.0/legalcode")
    assert eml.find("dataset/creator/individualName/surName").text == "Curator"
    assert eml.find("dataset/contact/electronicMailAddress").text == "data@example.org"
    assert eml.find("dataset/title").text == "Cape Cod Bay right whales"
    assert set(rows) == {"q1", "q3"}
    q1, media = rows["q1"]
    assert q1[DWC + "eventDate"] == "2025-04-02T14:00:00Z/2025-04-02T14:20:00Z"
    assert q1[DWC + "identifiedBy"] == "EcoMarineAI reviewer key sha256:feedfacecafebeef"
    assert q1[DWC + "scientificNameID"] == "urn:lsid:marinespecies.org:taxname:159023"
    assert "0.1 degree" in q1[DWC + "dataGeneralizations"]  # a publication: public positions by default
    assert [m[DC + "identifier"] for m in media] == ["http://testserver/v1/predictions/q1/image",
                                                     "http://testserver/v1/predictions/q2/image"]
    assert {m[DC + "license"] for m in media} == {
        "http://creativecommons.org/publicdomain/zero/1.0/legalcode"}


def test_individual_history_archive_goes_through_the_same_writer(make_client, store, tmp_path):
    client = make_client(store=store, **SETTINGS)
    response = client.get("/v1/individuals/rw_1/sightings/export", params={"format": "dwca"}, headers=AUTH)
    assert response.status_code == 200
    eml, rows = read(tmp_path, response.content)
    (row, _), = rows.values()
    assert row[DWC + "occurrenceStatus"] == "present" and row[DWC + "organismID"] == "rw_1"
    assert row[DWC + "scientificNameID"] == "urn:lsid:marinespecies.org:taxname:159023"
    assert eml.find("dataset/intellectualRights/para/ulink").get("url").endswith("/zero/1.0/legalcode")
    assert eml.find("dataset/title").text.startswith("EcoMarineAI sightings of rw_1")
    assert not eml.get("packageId").startswith(PACKAGE)  # one individual's history is its own dataset


@pytest.mark.parametrize("overrides", [{"dwc_license": "GPL-3.0"}, {"dwc_package_uuid": "nope"},
                                       {"dwc_version": "1 0"}])
def test_bad_dataset_settings_are_refused_at_start(overrides):
    with pytest.raises(ValidationError):
        Settings(**overrides)
