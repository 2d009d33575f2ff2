"""`GET /v1/individuals/{id}/sightings` (paged, first/last seen) and its CSV / Darwin Core export, with
the location-privacy rule: the public sees generalised or withheld positions, a key sees them all."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime

import numpy as np
import pytest

from whales_identify.records.store import CatalogImage, InMemoryStore, Sighting

MODEL = "fake.colour16"
DAYS = [datetime(2024, 3, d, 9, 30, tzinfo=UTC) for d in (2, 9, 20)]
PLACES = [(41.512345, -70.654321, "Cape Cod Bay"), (42.1, -69.9, "Stellwagen Bank"),
          (30.7, -81.2, "Georgia coast")]


def image(i: int, individual: str, sighting: Sighting) -> CatalogImage:
    return CatalogImage(image_id=f"img{i}", individual_id=individual, species="north_atlantic_right_whale",
                        model_id=MODEL, embedding=np.ones(16, np.float32) / 4, thumbnail=b"\xff\xd8thumb",
                        filename=f"rw_{i}.jpg", source="test", sighting=sighting)


@pytest.fixture
def store():
    store = InMemoryStore()
    seen = [Sighting(observed_at=d, latitude=lat, longitude=lon, location=place, observer="NOAA survey")
            for d, (lat, lon, place) in zip(DAYS, PLACES, strict=True)]
    # enrolled out of order: the history is sorted by when the whale was seen
    store.add_catalog_images([image(3, "rw_1", seen[2]), image(1, "rw_1", seen[0]), image(2, "rw_1", seen[1]),
                              image(9, "rw_2", Sighting())])
    return store


def test_public_history_is_generalised(make_client, store):
    body = make_client(store=store).get("/v1/individuals/rw_1/sightings").json()
    assert body["total"] == 3 and body["species"] == "north_atlantic_right_whale"
    assert body["first_seen"].startswith("2024-03-02") and body["last_seen"].startswith("2024-03-20")
    assert [it["image_id"] for it in body["items"]] == ["img1", "img2", "img3"]
    first = body["items"][0]
    assert first["sighting"]["latitude"] == pytest.approx(41.55)
    assert first["sighting"]["longitude"] == pytest.approx(-70.65)
    assert first["sighting"]["location"] is None and first["sighting"]["observer"] is None
    assert first["sighting"]["precision"] == "0.1" and first["thumbnail_url"] == "/v1/images/img1/thumbnail"


def test_a_key_sees_everything(make_client, store, auth):
    body = make_client(store=store).get("/v1/individuals/rw_1/sightings", headers=auth).json()
    first = body["items"][0]
    assert first["sighting"]["latitude"] == pytest.approx(41.512345)
    assert first["sighting"]["location"] == "Cape Cod Bay" and first["sighting"]["precision"] == "exact"


def test_paging_keeps_the_totals(make_client, store):
    client = make_client(store=store)
    body = client.get("/v1/individuals/rw_1/sightings", params={"limit": 2, "offset": 2}).json()
    assert [it["image_id"] for it in body["items"]] == ["img3"]
    assert body["total"] == 3 and body["first_seen"].startswith("2024-03-02")


def test_withheld_positions_and_required_keys(make_client, store, auth):
    withheld = make_client(store=store, public_location_precision="withheld")
    item = withheld.get("/v1/individuals/rw_1/sightings").json()["items"][0]
    assert item["sighting"]["latitude"] is None and item["sighting"]["precision"] == "withheld"
    locked = make_client(store=store, require_key_for_reads=True)
    assert locked.get("/v1/individuals/rw_1/sightings").status_code == 401
    assert locked.get("/v1/individuals/rw_1/sightings/export").status_code == 401
    assert locked.get("/v1/individuals/rw_1/sightings", headers=auth).status_code == 200


@pytest.mark.parametrize(("path", "status"), [
    ("/v1/individuals/nobody/sightings", 404),
    ("/v1/individuals/-bad/sightings", 422),
    ("/v1/individuals/rw_1/sightings?limit=0", 422),
    ("/v1/individuals/rw_1/sightings?limit=501", 422),
    ("/v1/individuals/rw_1/sightings/export?format=xlsx", 422),
    ("/v1/individuals/nobody/sightings/export", 404),
])
def test_bad_requests(make_client, store, path, status):
    r = make_client(store=store).get(path)
    assert r.status_code == status and set(r.json()) == {"error"}


def test_exports(make_client, store, auth):
    client = make_client(store=store)
    r = client.get("/v1/individuals/rw_1/sightings/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="whales-rw_1-sightings-' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["image_id"] for row in rows] == ["img1", "img2", "img3"]
    assert rows[0]["latitude"] == "41.55" and rows[0]["location"] == ""  # the public view
    keyed = list(csv.DictReader(io.StringIO(client.get("/v1/individuals/rw_1/sightings/export",
                                                       headers=auth).text)))
    assert keyed[0]["latitude"] == "41.512345" and keyed[0]["location"] == "Cape Cod Bay"
    r = client.get("/v1/individuals/rw_1/sightings/export", params={"format": "dwca"}, headers=auth)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        lines = archive.read("occurrence.txt").decode().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert len(rows) == 3 and {row["organismID"] for row in rows} == {"rw_1"}
    assert rows[0]["scientificName"] == "Eubalaena glacialis" and rows[0]["decimalLatitude"] == "41.512345"
