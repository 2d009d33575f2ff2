"""The review queue (issue 23 #1): `GET /v1/predictions` filters, sort, keyset pages and location
privacy, and `DELETE /v1/predictions/{id}/review` (undo, enrolment reversed, attributed, one winner).
The route tests run on the in-memory store and SQLite; the store's queries and undo on SQLite and
PostgreSQL are in tests/integrations/test_queue_store.py."""

from __future__ import annotations

import threading

import pytest
from svc_fakes import API_KEY
from svc_helpers import gps_photo, image_bytes

from whales_be_service.deps import key_fingerprint

BLUE, RED = (30, 60, 120), (160, 40, 40)


def batch(client, photos):
    files = [("files", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    r = client.post("/v1/predict-batch", files=files)
    assert r.status_code == 200, r.text
    return r.json()


def ids(page):
    return [item["prediction_id"] for item in page["items"]]


def test_filters_sort_and_keyset_pages(store_client, auth):
    first = batch(store_client, [image_bytes(BLUE, seed=i) for i in range(3)])
    second = batch(store_client, [image_bytes(RED, seed=9)])
    batch_id = first["summary"]["batch_id"]
    assert batch_id and batch_id != second["summary"]["batch_id"]
    mine = {r["prediction_id"] for r in first["results"]}
    listed = store_client.get("/v1/predictions", params={"batch_id": batch_id}).json()
    assert set(ids(listed)) == mine and listed["next_cursor"] is None
    everything = ids(store_client.get("/v1/predictions", params={"sort": "oldest"}).json())
    assert len(everything) == 4 and everything[-1] == second["results"][0]["prediction_id"]
    assert ids(store_client.get("/v1/predictions").json()) == everything[::-1]  # newest first by default

    # keyset pages of 1 walk the same order without gaps or repeats
    walked, cursor = [], None
    while True:
        params = {"sort": "oldest", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = store_client.get("/v1/predictions", params=params).json()
        walked += ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything

    # a reviewed one leaves the unreviewed queue
    done = everything[0]
    assert store_client.post(f"/v1/predictions/{done}/review", headers=auth,
                        json={"decision": "not_cetacean"}).status_code == 200
    queue = ids(store_client.get("/v1/predictions", params={"review_state": "unreviewed"}).json())
    assert done not in queue and len(queue) == 3
    reviewed = store_client.get("/v1/predictions", params={"review_state": "not_cetacean"},
                                headers=auth).json()
    assert ids(reviewed) == [done] and reviewed["items"][0]["reviewed_by"] == key_fingerprint(API_KEY)

    # the "new individual" and probability filters agree with the records themselves
    items = store_client.get("/v1/predictions").json()["items"]
    news = {i["prediction_id"] for i in items if i["is_new_individual"]}
    assert set(ids(store_client.get("/v1/predictions", params={"new_individual": "true"}).json())) == news
    known = {i["prediction_id"] for i in items if i["is_new_individual"] is False}
    assert set(ids(store_client.get("/v1/predictions", params={"new_individual": "false"}).json())) == known
    probs = {i["prediction_id"]: i["probability"] for i in items}
    high = ids(store_client.get("/v1/predictions", params={"min_probability": 0.5}).json())
    assert set(high) == {k for k, p in probs.items() if p is not None and p >= 0.5}
    before = store_client.get("/v1/predictions", params={"created_to": "2000-01-01T00:00:00Z"}).json()
    assert ids(before) == []
    since = store_client.get("/v1/predictions", params={"created_from": "2000-01-01T00:00:00Z"}).json()
    assert len(ids(since)) == 4


def test_bad_queries_are_4xx(client):
    for params in ({"cursor": "not-a-cursor"}, {"cursor": "W10"}, {"limit": 0}, {"limit": 1000},
                   {"review_state": "maybe"}, {"min_probability": 2}, {"sort": "sideways"},
                   {"created_from": "yesterday"}):
        r = client.get("/v1/predictions", params=params)
        assert 400 <= r.status_code < 500, (params, r.status_code)
        assert "error" in r.json() or "code" in r.json() or r.json(), r.text
    assert client.get("/v1/predictions", params={"cursor": "bm9wZQ"}).status_code == 400


def test_positions_follow_location_privacy(make_client, auth):
    client = make_client(public_location_precision="0.1")
    photo = gps_photo(BLUE, 41.234567, -69.876543)
    r = client.post("/v1/predict", files={"file": ("g.jpg", photo, "image/jpeg")})
    assert r.status_code == 200
    public = client.get("/v1/predictions").json()["items"][0]
    keyed = client.get("/v1/predictions", headers=auth).json()["items"][0]
    assert keyed["sighting"]["latitude"] == pytest.approx(41.234567, abs=1e-5)
    assert public["sighting"]["latitude"] != pytest.approx(41.234567, abs=1e-3)
    assert public["reviewed_by"] is None
    locked = make_client(require_key_for_reads=True)
    assert locked.get("/v1/predictions").status_code == 401
    assert locked.get("/v1/predictions", headers=auth).status_code == 200


def test_undo_reverses_enrolment_and_is_attributed(store_client, auth):
    pid = batch(store_client, [image_bytes(BLUE, seed=1)])["results"][0]["prediction_id"]
    r = store_client.post(f"/v1/predictions/{pid}/review", headers=auth,
                     json={"decision": "new_individual", "individual_id": "hw_undo",
                           "species": "humpback_whale"})
    assert r.status_code == 200, r.text
    enrolled = r.json()["enrolled_image_ids"]
    assert store_client.get("/v1/individuals/hw_undo").status_code == 200
    store = store_client.app.state.whales.store
    generation = store.catalog_generation()

    assert store_client.delete(f"/v1/predictions/{pid}/review").status_code == 401
    assert store_client.delete(f"/v1/predictions/{pid}/review", headers=auth,
                          params={"expected_state": "confirmed"}).status_code == 409
    r = store_client.delete(f"/v1/predictions/{pid}/review", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["undone_state"] == "new_individual" and body["removed_image_ids"] == enrolled
    assert body["undone_by"] == key_fingerprint(API_KEY)
    assert store.catalog_generation() > generation
    assert store_client.get("/v1/individuals/hw_undo").status_code == 404  # created by the review: gone
    record = store.get_prediction(pid)
    assert record.review_state == "unreviewed" and record.reviewer_decision is None
    audit = store.list_undos(pid)
    assert len(audit) == 1 and audit[0]["undone_by"] == key_fingerprint(API_KEY)
    assert audit[0]["review_state"] == "new_individual"
    assert audit[0]["reviewer_decision"]["individual_id"] == "hw_undo"
    # nothing to undo
    assert store_client.delete(f"/v1/predictions/{pid}/review", headers=auth).status_code == 409
    assert store_client.delete("/v1/predictions/nope/review", headers=auth).status_code == 404
    # it can be reviewed again
    r = store_client.post(f"/v1/predictions/{pid}/review", headers=auth, json={"decision": "new_individual",
                                                                          "individual_id": "hw_undo"})
    assert r.status_code == 200


def test_undo_of_a_confirm_keeps_the_other_photos(store_client, auth):
    first, second = (batch(store_client, [image_bytes(BLUE, seed=1)])["results"][0]["prediction_id"]
                     for _ in range(2))
    store_client.post(f"/v1/predictions/{first}/review", headers=auth,
                 json={"decision": "new_individual", "individual_id": "hw_keep"})
    r = store_client.post(f"/v1/predictions/{second}/review", headers=auth,
                     json={"decision": "confirm", "individual_id": "hw_keep"})
    assert r.status_code == 200
    assert store_client.get("/v1/individuals/hw_keep").json()["n_images"] == 2
    r = store_client.delete(f"/v1/predictions/{second}/review", headers=auth)
    assert r.status_code == 200 and r.json()["undone_state"] == "confirmed"
    assert store_client.get("/v1/individuals/hw_keep").json()["n_images"] == 1


def test_concurrent_undos_have_one_winner(store_client, auth):
    pid = batch(store_client, [image_bytes(BLUE, seed=3)])["results"][0]["prediction_id"]
    store_client.post(f"/v1/predictions/{pid}/review", headers=auth, json={"decision": "new_individual"})
    codes: list[int] = []
    barrier = threading.Barrier(4)

    def undo() -> None:
        barrier.wait()
        codes.append(store_client.delete(f"/v1/predictions/{pid}/review", headers=auth).status_code)

    threads = [threading.Thread(target=undo) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409, 409, 409]
    assert len(store_client.app.state.whales.store.list_undos(pid)) == 1
