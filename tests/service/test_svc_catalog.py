"""Catalog endpoints: enrol, list, detail, thumbnail, delete, API keys."""

from __future__ import annotations

from svc_helpers import image_bytes

BLUE = (30, 60, 120)
RED = (220, 20, 20)


def enrol(client, ind: str, headers, files, species: str | None = "humpback_whale"):
    data = {"species": species} if species else {}
    return client.post(f"/v1/individuals/{ind}/images", headers=headers, data=data,
                       files=[("files", f) for f in files])


def test_write_endpoints_need_a_key(client):
    files = [("a.jpg", image_bytes(BLUE), "image/jpeg")]
    r = enrol(client, "hw_1", {}, files)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = enrol(client, "hw_1", {"X-API-Key": "wrong"}, files)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.delete("/v1/individuals/hw_1").status_code == 401
    assert client.delete("/v1/individuals/hw_1", headers={"X-API-Key": "nope"}).status_code == 403
    r = client.post("/v1/predictions/abc/review", json={"decision": "not_cetacean"})
    assert r.status_code == 401


def test_no_keys_configured_means_writes_refused(make_client):
    client = make_client(api_keys=[])
    r = enrol(client, "hw_1", {"X-API-Key": "anything"}, [("a.jpg", image_bytes(BLUE), "image/jpeg")])
    assert r.status_code == 403 and "WHALES_API_KEYS" in r.json()["error"]["message"]


def test_enrol_list_detail_thumbnail_delete(client, auth):
    r = enrol(client, "hw_1", auth, [("a.jpg", image_bytes(BLUE, seed=1), "image/jpeg"),
                                     ("b.jpg", image_bytes(BLUE, seed=2), "image/jpeg"),
                                     ("red.jpg", image_bytes(RED), "image/jpeg"),
                                     ("bad.jpg", b"not an image", "image/jpeg")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] is True and body["species"] == "humpback_whale"
    assert [e["image_ind"] for e in body["enrolled"]] == ["a.jpg", "b.jpg"]
    assert {x["image_ind"]: x["code"] for x in body["refused"]} == {
        "red.jpg": "not_a_marine_mammal", "bad.jpg": "unsupported_media_type"}
    r = enrol(client, "hw_2", auth, [("c.jpg", image_bytes((200, 200, 30)), "image/jpeg")], species="orca_x")
    assert r.json()["created"] is True
    # a second enrolment adds to the existing individual, keeping its species
    r = enrol(client, "hw_1", auth, [("d.jpg", image_bytes(BLUE, seed=3), "image/jpeg")], species=None)
    assert r.json()["created"] is False and r.json()["species"] == "humpback_whale"
    r = enrol(client, "hw_1", auth, [("e.jpg", image_bytes(BLUE, seed=4), "image/jpeg")], species="beluga")
    assert r.status_code == 409

    page = client.get("/v1/individuals").json()
    assert page["total"] == 2 and [i["individual_id"] for i in page["items"]] == ["hw_1", "hw_2"]
    page = client.get("/v1/individuals", params={"species": "orca_x"}).json()
    assert [i["individual_id"] for i in page["items"]] == ["hw_2"]
    page = client.get("/v1/individuals", params={"limit": 1, "offset": 1}).json()
    assert [i["individual_id"] for i in page["items"]] == ["hw_2"] and page["total"] == 2
    assert client.get("/v1/individuals", params={"limit": 0}).status_code == 422

    detail = client.get("/v1/individuals/hw_1").json()
    assert detail["n_images"] == 3 and len(detail["images"]) == 3
    thumb = client.get(detail["images"][0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert client.get("/v1/images/nope/thumbnail").status_code == 404
    assert client.get("/v1/individuals/nobody").status_code == 404
    assert client.get("/v1/individuals/bad%20id").status_code == 422

    r = client.delete("/v1/individuals/hw_1", headers=auth)
    assert r.status_code == 200 and r.json()["removed_images"] == 3
    assert client.delete("/v1/individuals/hw_1", headers=auth).status_code == 404
    assert client.get("/v1/individuals").json()["total"] == 1
    assert "whales_catalog_images 1.0" in client.get("/metrics").text


def test_species_list(client):
    body = client.get("/v1/species").json()
    names = {s["key"]: s["scientific_name"] for s in body}
    assert names["humpback_whale"] == "Megaptera novaeangliae"
