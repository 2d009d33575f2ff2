"""Review: confirm, new individual, not a cetacean; each enrols (or not) accordingly."""

from __future__ import annotations

from svc_helpers import image_bytes

BLUE = (30, 60, 120)


def predict(client, colour=BLUE, seed=0):
    r = client.post("/v1/predict", files={"file": ("q.jpg", image_bytes(colour, seed=seed), "image/jpeg")})
    assert r.status_code == 200
    return r.json()


def test_new_individual_then_confirm(client, auth):
    first = predict(client, seed=1)
    assert first["candidates"] == []
    r = client.post(f"/v1/predictions/{first['prediction_id']}/review", headers=auth,
                    json={"decision": "new_individual", "species": "humpback_whale"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["review_state"] == "new_individual" and body["individual_id"].startswith("new_")
    assert len(body["enrolled_image_ids"]) == 1
    new_id = body["individual_id"]
    # reviewing twice is a conflict
    again = client.post(f"/v1/predictions/{first['prediction_id']}/review", headers=auth,
                        json={"decision": "not_cetacean"})
    assert again.status_code == 409

    second = predict(client, seed=1)
    assert second["candidates"][0]["individual_id"] == new_id
    r = client.post(f"/v1/predictions/{second['prediction_id']}/review", headers=auth,
                    json={"decision": "confirm"})
    assert r.status_code == 200 and r.json()["individual_id"] == new_id
    detail = client.get(f"/v1/individuals/{new_id}").json()
    assert detail["n_images"] == 2 and detail["species"] == "humpback_whale"
    record = client.app.state.whales.store.get_prediction(second["prediction_id"])
    assert record.review_state == "confirmed" and record.reviewer_decision["individual_id"] == new_id


def test_confirm_without_candidate_and_unknown_ids(client, auth):
    p = predict(client, seed=5)
    r = client.post(f"/v1/predictions/{p['prediction_id']}/review", headers=auth,
                    json={"decision": "confirm"})
    assert r.status_code == 422
    r = client.post(f"/v1/predictions/{p['prediction_id']}/review", headers=auth,
                    json={"decision": "confirm", "individual_id": "ghost"})
    assert r.status_code == 404
    r = client.post("/v1/predictions/doesnotexist/review", headers=auth, json={"decision": "confirm"})
    assert r.status_code == 404
    r = client.post(f"/v1/predictions/{p['prediction_id']}/review", headers=auth, json={"decision": "maybe"})
    assert r.status_code == 422


def test_not_cetacean_records_only(client, auth):
    p = predict(client, seed=6)
    r = client.post(f"/v1/predictions/{p['prediction_id']}/review", headers=auth,
                    json={"decision": "not_cetacean"})
    assert r.status_code == 200 and r.json()["enrolled_image_ids"] == []
    assert client.get("/v1/individuals").json()["total"] == 0
    assert client.app.state.whales.store.get_prediction(p["prediction_id"]).review_state == "not_cetacean"


def test_new_individual_with_existing_id_conflicts(client, auth):
    p = predict(client, seed=7)
    client.post(f"/v1/predictions/{p['prediction_id']}/review", headers=auth,
                json={"decision": "new_individual", "individual_id": "hw_9"})
    q = predict(client, seed=8)
    r = client.post(f"/v1/predictions/{q['prediction_id']}/review", headers=auth,
                    json={"decision": "new_individual", "individual_id": "hw_9"})
    assert r.status_code == 409
