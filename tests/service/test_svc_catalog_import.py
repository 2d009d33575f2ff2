"""`POST /v1/catalog/import` (ZIP + CSV), its template, and the empty-catalog warning of /v1/predict."""

from __future__ import annotations

import json

from svc_helpers import image_bytes, make_zip

from whales_be_service.pipeline import FILL_CATALOG_HINT
from whales_identify.identify import EMPTY_CATALOG_WARNING
from whales_identify.records.catalog_csv import parse_catalog_csv

BLUE = (30, 60, 120)
GREEN = (30, 160, 60)
YELLOW = (200, 200, 30)
RED = (220, 20, 20)  # the fake gate rejects red photos

CSV = """filename,individual_id,species,date,latitude,longitude
a.jpg,ind_1,humpback_whale,2024-07-02,64.1,-21.9
photos/b.jpg,ind_2,Bottlenose Dolphin,,,
c.jpg,ind_3,beluga,,,
missing.jpg,ind_4,beluga,,,
d.jpg,ind_5,beluga,,95,10
e.jpg,,beluga,,,
broken.jpg,ind_6,beluga,,,
a2.jpg,ind_1,,2024-13-40,,
"""


def _archive() -> bytes:
    return make_zip({"photos/": b"", "photos/a.jpg": image_bytes(BLUE, seed=1),
                     "photos/b.jpg": image_bytes(GREEN, seed=2), "photos/c.jpg": image_bytes(RED),
                     "photos/d.jpg": image_bytes(YELLOW), "photos/e.jpg": image_bytes(YELLOW),
                     "photos/broken.jpg": image_bytes(BLUE)[:300], "photos/a2.jpg": image_bytes(BLUE, seed=3),
                     "__MACOSX/photos/._a.jpg": b"meta"})


def _import(client, headers, archive: bytes, csv_text: str, accept: str = "application/json"):
    return client.post("/v1/catalog/import", headers={**headers, "Accept": accept},
                       files={"archive": ("photos.zip", archive, "application/zip"),
                              "manifest": ("catalog.csv", csv_text.encode(), "text/csv")})


def test_import_enrols_each_row_and_names_every_problem(client, auth):
    r = _import(client, auth, _archive(), CSV)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(e["line"], e["individual_id"], e["filename"]) for e in body["enrolled"]] == [
        (2, "ind_1", "photos/a.jpg"), (3, "ind_2", "photos/b.jpg")]
    problems = {p["line"]: (p["column"], p["code"]) for p in body["problems"]}
    assert problems == {4: ("filename", "not_a_marine_mammal"), 5: ("filename", "file_not_found"),
                        6: ("latitude", "invalid_value"), 7: ("individual_id", "missing_value"),
                        8: ("filename", "invalid_image"), 9: ("date", "invalid_value")}
    assert "95" in next(p["message"] for p in body["problems"] if p["line"] == 6)
    assert body["summary"] == {**body["summary"], "rows": 8, "enrolled": 2, "already_present": 0,
                               "skipped": 6, "individuals_created": 2}

    ind = client.get("/v1/individuals/ind_1", headers=auth).json()  # with a key: exact position
    assert ind["species"] == "humpback_whale" and ind["n_images"] == 1
    sighting = ind["images"][0]["sighting"]
    assert (sighting["latitude"], sighting["longitude"]) == (64.1, -21.9)
    assert sighting["observed_at"].startswith("2024-07-02")
    assert client.get("/v1/individuals/ind_2").json()["species"] == "bottlenose_dolphin"
    assert client.get("/v1/individuals/ind_3").status_code == 404

    # the imported individual is matched by a new photo of it
    new = image_bytes(BLUE, seed=9)
    p = client.post("/v1/predict", files={"file": ("new.jpg", new, "image/jpeg")}).json()
    assert p["individual_id"] == "ind_1" and p["species"] == "humpback_whale"
    assert EMPTY_CATALOG_WARNING not in p["warnings"]


def test_import_again_skips_what_is_there(client, auth):
    first = _import(client, auth, _archive(), CSV).json()
    again = _import(client, auth, _archive(), CSV).json()
    assert first["summary"]["enrolled"] == 2
    assert again["summary"]["enrolled"] == 0 and again["summary"]["already_present"] == 2
    assert client.get("/v1/individuals/ind_1").json()["n_images"] == 1


def test_import_streams_progress_then_the_result(make_client, auth):
    client = make_client(batch_size=2)
    rows = "".join(f"p{i}.jpg,ind_{i},beluga\n" for i in range(5))
    archive = make_zip({f"p{i}.jpg": image_bytes((40 * i, 90, 200 - 30 * i), seed=i) for i in range(5)})
    r = _import(client, auth, archive, "filename,individual_id,species\n" + rows, "application/x-ndjson")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in r.text.splitlines()]
    progress = [(e["done"], e["total"]) for e in events if e["event"] == "progress"]
    assert progress == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert events[-1]["event"] == "result" and events[-1]["summary"]["enrolled"] == 5


def test_species_conflicts_are_row_problems(client, auth):
    client.post("/v1/individuals/ind_1/images", headers=auth, data={"species": "humpback_whale"},
                files=[("files", ("x.jpg", image_bytes(BLUE, seed=5), "image/jpeg"))])
    csv_text = ("filename,individual_id,species\n"
                "a.jpg,ind_1,blue_whale\n"  # contradicts the catalog
                "b.jpg,ind_2,beluga\n"
                "a2.jpg,ind_2,fin_whale\n")  # contradicts line 3
    body = _import(client, auth, _archive(), csv_text).json()
    assert [(p["line"], p["code"], p["column"]) for p in body["problems"]] == [
        (2, "species_conflict", "species"), (4, "species_conflict", "species")]
    assert [e["line"] for e in body["enrolled"]] == [3]


def test_column_names_are_detected(client, auth):
    csv_text = "Photo;ID;Species;Observer\nphotos/a.jpg;ind_9;humpback whale;J. Smith\n"
    body = _import(client, auth, _archive(), csv_text).json()
    assert [e["individual_id"] for e in body["enrolled"]] == ["ind_9"], body
    image = client.get("/v1/individuals/ind_9", headers=auth).json()["images"][0]
    assert image["sighting"]["observer"] == "J. Smith" and image["species"] == "humpback_whale"


def test_bad_requests_are_clear_4xx(client, auth):
    r = _import(client, {}, _archive(), CSV)
    assert r.status_code == 401
    r = _import(client, auth, image_bytes(BLUE), CSV)
    assert r.status_code == 415 and "ZIP" in r.json()["error"]["message"]
    r = _import(client, auth, _archive(), "photo,animal\na.jpg,ind_1\n")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_csv"
    assert "filename" in r.json()["error"]["message"] and "photo, animal" in r.json()["error"]["message"]
    r = _import(client, auth, _archive(), "")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_csv"
    r = _import(client, auth, _archive(), "filename,individual_id\n")
    assert r.status_code == 422
    r = _import(client, auth, b"PK\x03\x04 not really a zip", CSV)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_archive"
    r = client.post("/v1/catalog/import", headers=auth, files={"archive": ("a.zip", _archive())})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_template_is_a_valid_catalog_csv(client):
    r = client.get("/v1/catalog/import/template.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0] == "filename,individual_id,species,date,latitude,longitude"
    sheet = parse_catalog_csv(r.text)
    assert len(sheet.rows) == 2 and not sheet.problems


def test_empty_catalog_answer_says_why_and_how_to_fill_it(client):
    body = client.post("/v1/predict", files={"file": ("w.jpg", image_bytes(BLUE), "image/jpeg")}).json()
    assert body["rejected"] is False and body["is_new_individual"] is True
    assert body["species"] == "unknown"
    assert EMPTY_CATALOG_WARNING in body["warnings"] and FILL_CATALOG_HINT in body["warnings"]
    assert "species comes from the matching catalog individuals" in EMPTY_CATALOG_WARNING
    rejected = client.post("/v1/predict", files={"file": ("r.jpg", image_bytes(RED), "image/jpeg")}).json()
    assert rejected["rejected"] is True and FILL_CATALOG_HINT not in rejected["warnings"]


def test_no_api_keys_is_said_in_the_log_and_to_the_page(make_client, caplog):
    with caplog.at_level("WARNING", logger="whales_be_service"):
        client = make_client(api_keys=[])
    assert any("WHALES_API_KEYS" in r.getMessage() for r in caplog.records)
    assert client.get("/v1/models").json()["write_enabled"] is False
    caplog.clear()
    with caplog.at_level("WARNING", logger="whales_be_service"):
        client = make_client()
    assert client.get("/v1/models").json()["write_enabled"] is True
    assert not any("WHALES_API_KEYS" in r.getMessage() for r in caplog.records)


def test_import_has_its_own_photo_cap_and_one_rate_limit_hit(make_client, auth):
    client = make_client(max_batch_images=2, max_import_images=4, rate_limit="2/minute")
    sheet = "filename,individual_id\n" + "".join(f"p{i}.jpg,ind_{i}\n" for i in range(4))
    archive = make_zip({f"p{i}.jpg": image_bytes((60 * i, 90, 200 - 40 * i), seed=i) for i in range(4)})
    r = _import(client, auth, archive, sheet)
    assert r.status_code == 200 and r.json()["summary"]["enrolled"] == 4, r.text  # 4 > the batch cap of 2
    bigger = make_zip({f"p{i}.jpg": image_bytes(BLUE, seed=i) for i in range(5)})
    r = _import(client, auth, bigger, sheet)
    assert r.status_code == 413 and "WHALES_MAX_IMPORT_IMAGES" in r.json()["error"]["message"]
    assert _import(client, auth, archive, sheet).status_code == 429  # the third request of the minute
