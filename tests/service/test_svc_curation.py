"""Catalog curation (issue 23 #2): rename an individual, remove one photo; each attributed to the
key, refused with the right 4xx, and reflected in matching at once (in memory and on SQLite; the
store's SQL on PostgreSQL is in tests/integrations/test_queue_store.py)."""

from __future__ import annotations

from svc_fakes import API_KEY
from svc_helpers import image_bytes

from whales_be_service.deps import key_fingerprint

BLUE, GREEN = (30, 60, 120), (40, 140, 60)


def enrol(client, auth, individual, colour, seeds):
    files = [("files", (f"{individual}_{s}.jpg", image_bytes(colour, seed=s), "image/jpeg")) for s in seeds]
    r = client.post(f"/v1/individuals/{individual}/images", headers=auth, files=files,
                    data={"species": "humpback_whale"})
    assert r.status_code == 200, r.text
    return [e["image_id"] for e in r.json()["enrolled"]]


def top1(client, colour, seed):
    r = client.post("/v1/predict", files={"file": ("q.jpg", image_bytes(colour, seed=seed), "image/jpeg")})
    return (r.json()["candidates"] or [{}])[0].get("individual_id")


def test_rename_moves_every_photo_and_is_audited(store_client, auth):
    enrol(store_client, auth, "hw_old", BLUE, [1, 2])
    enrol(store_client, auth, "hw_taken", GREEN, [3])
    assert top1(store_client, BLUE, 9) == "hw_old"
    url = "/v1/individuals/hw_old/rename"
    assert store_client.post(url, json={"new_id": "hw_new"}).status_code == 401
    assert store_client.post(url, headers=auth, json={"new_id": "hw_taken"}).status_code == 409
    assert store_client.post(url, headers=auth, json={"new_id": "bad id!"}).status_code == 422
    ghost = store_client.post("/v1/individuals/ghost/rename", headers=auth, json={"new_id": "x1"})
    assert ghost.status_code == 404
    r = store_client.post(url, headers=auth, json={"new_id": "hw_new"})
    assert r.status_code == 200, r.text
    assert r.json() == {"individual_id": "hw_new", "previous_id": "hw_old", "moved_images": 2,
                        "by": key_fingerprint(API_KEY)}
    assert store_client.get("/v1/individuals/hw_old").status_code == 404
    assert store_client.get("/v1/individuals/hw_new").json()["n_images"] == 2
    assert top1(store_client, BLUE, 9) == "hw_new"  # matching knows the new id at once
    audit = store_client.app.state.whales.store.list_catalog_audit("hw_old")
    assert [(a["action"], a["actor"], a["detail"]["new_id"]) for a in audit] == \
        [("rename", key_fingerprint(API_KEY), "hw_new")]


def test_remove_one_photo_keeps_the_rest(store_client, auth):
    first, second = enrol(store_client, auth, "hw_two", BLUE, [1, 2])
    assert store_client.delete(f"/v1/images/{first}").status_code == 401
    assert store_client.delete("/v1/images/nope", headers=auth).status_code == 404
    r = store_client.delete(f"/v1/images/{first}", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["individual_id"] == "hw_two" and r.json()["remaining_images"] == 1
    assert store_client.get(f"/v1/images/{first}/thumbnail").status_code == 404
    detail = store_client.get("/v1/individuals/hw_two").json()
    assert [im["image_id"] for im in detail["images"]] == [second]
    assert store_client.delete(f"/v1/images/{first}", headers=auth).status_code == 404  # once
    r = store_client.delete(f"/v1/images/{second}", headers=auth)
    assert r.json()["remaining_images"] == 0
    assert store_client.get("/v1/individuals/hw_two").status_code == 404  # gone with its last photo
    assert top1(store_client, BLUE, 9) != "hw_two"
    actions = [a["action"] for a in store_client.app.state.whales.store.list_catalog_audit("hw_two")]
    assert actions == ["remove_image", "remove_image"]
