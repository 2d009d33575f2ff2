"""`GET /v1/export` on a real store (both backends): formats, `since`, API key, 422 error shape."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from dwca.read import DwCAReader
from fastapi import FastAPI
from fastapi.testclient import TestClient

from whales_be_service.deps import get_settings, get_store
from whales_be_service.errors import install_error_handlers
from whales_be_service.routes import export
from whales_be_service.settings import Settings
from whales_identify.records.store import PredictionRecord, Sighting

KEY = {"X-API-Key": "export-key"}
T0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def client(store):
    for i in range(4):
        store.save_prediction(PredictionRecord(
            f"e{i}", "d" * 64, f"=cmd{i}.jpg", i == 3, "not_cetacean" if i == 3 else None, 0.9, "embedded",
            "v1", None if i == 3 else "blue_whale", None if i == 3 else f"BW{i}", False, 0.7, [], "m",
            created_at=T0 + timedelta(days=i), sighting=Sighting(latitude=-40.0, longitude=174.5)))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(export.router)
    settings = Settings(database_url="memory://", api_keys=["export-key"], frontend_dir=None)
    app.dependency_overrides[get_store] = lambda: store
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as test_client:
        yield test_client


def test_csv_is_the_default_and_is_formula_safe(client):
    response = client.get("/v1/export", headers=KEY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="whales-predictions-' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["prediction_id"] for r in rows] == ["e0", "e1", "e2", "e3"]
    assert rows[0]["filename"] == "'=cmd0.jpg" and rows[0]["scientific_name"] == "Balaenoptera musculus"


def test_jsonl_since(client):
    response = client.get("/v1/export", params={"format": "jsonl", "since": "2025-03-02T00:00:00Z"},
                          headers=KEY)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line)["prediction_id"] for line in response.text.splitlines()] == ["e1", "e2", "e3"]
    naive = client.get("/v1/export", params={"format": "jsonl", "since": "2025-03-03T00:00:00"}, headers=KEY)
    assert len(naive.text.splitlines()) == 2  # a time without a zone is UTC


def test_dwca_download_reads_back(client, tmp_path):
    response = client.get("/v1/export", params={"format": "dwca"}, headers=KEY)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].endswith('.zip"')
    path = tmp_path / "dl.zip"
    path.write_bytes(response.content)
    with DwCAReader(str(path)) as archive:
        rows = list(archive)
    dwc = "http://rs.tdwg.org/dwc/terms/"
    assert [r.id for r in rows] == ["e0", "e1", "e2"]  # e3 was rejected by the gate
    assert rows[0].data[dwc + "scientificName"] == "Balaenoptera musculus"
    # a Darwin Core Archive is for publishing: positions generalised by default (issue 19), and
    # unreviewed photos (served to key holders only) are not linked
    first = rows[0].data
    assert (first[dwc + "decimalLatitude"], first[dwc + "decimalLongitude"]) == ("-39.95", "174.55")
    assert rows[0].data[dwc + "coordinateUncertaintyInMeters"] == "7872"
    assert "0.1 degree" in rows[0].data[dwc + "dataGeneralizations"]
    assert rows[0].data[dwc + "associatedMedia"] == ""
    exact = client.get("/v1/export", params={"format": "dwca", "positions": "exact"}, headers=KEY)
    path.write_bytes(exact.content)
    with DwCAReader(str(path)) as archive:
        first = next(iter(archive))
    assert (first.data[dwc + "decimalLatitude"], first.data[dwc + "decimalLongitude"]) == ("-40", "174.5")
    assert first.data[dwc + "dataGeneralizations"] == ""
    assert first.data[dwc + "associatedMedia"] == "http://testserver/v1/predictions/e0/image"


@pytest.mark.parametrize("params", [{"format": "xlsx"}, {"since": "not-a-date"}])
def test_bad_parameters_are_422_in_the_service_shape(client, params):
    response = client.get("/v1/export", params=params, headers=KEY)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["code"] == "validation_error" and body["error"]["details"]


def test_needs_an_api_key(client):
    assert client.get("/v1/export").status_code == 401
    assert client.get("/v1/export", headers={"X-API-Key": "wrong"}).status_code == 403
