"""Undo of a review against `uvicorn --workers 2` on one SQLite file and on PostgreSQL (issue 23 #1):
concurrent undos have exactly one winner, and the reversed enrolment is gone on every worker at once
(the catalog generation moved); the same for a rename and a photo removal. The service fixture is
test_svc_workers_live's."""

from __future__ import annotations

import uuid

from svc_helpers import gps_photo
from test_svc_workers_live import KEY, _both_workers_answered, _parallel, _predict, colour_for, service

__all__ = ["service"]  # the module-scoped 2-worker service fixture, reused here


def _undo_round(service, round_: int) -> list[int]:
    individual = f"hw_undo_{uuid.uuid4().hex[:6]}"
    data = gps_photo(colour_for(60 + round_), seed=600 + round_)
    prediction = _predict(service, data).json()["prediction_id"]
    r = service.call("POST", f"/v1/predictions/{prediction}/review", headers=KEY,
                     json={"decision": "new_individual", "individual_id": individual})
    assert r.status_code == 200, r.text
    seen = _parallel([lambda: service.call("GET", f"/v1/individuals/{individual}") for _ in range(6)])
    assert [s.status_code for s in seen] == [200] * 6
    undos = _parallel([lambda: service.call("DELETE", f"/v1/predictions/{prediction}/review", headers=KEY)
                       for _ in range(4)])
    codes = sorted(u.status_code for u in undos)
    assert codes == [200, 409, 409, 409], [u.text for u in undos]
    # the next requests on any worker: the individual is gone, the photo no longer matches it, and
    # the prediction is back in the queue
    gone = _parallel([lambda: service.call("GET", f"/v1/individuals/{individual}") for _ in range(8)])
    assert [g.status_code for g in gone] == [404] * 8
    for p in _parallel([lambda: _predict(service, data) for _ in range(4)]):
        assert individual not in {c["individual_id"] for c in p.json()["candidates"]}
    queue = service.call("GET", "/v1/predictions", params={"review_state": "unreviewed", "limit": 200})
    assert prediction in {i["prediction_id"] for i in queue.json()["items"]}
    return codes


def test_concurrent_undos_one_winner_and_every_worker_forgets(service):
    outcomes = [_undo_round(service, round_) for round_ in range(3)]
    print(f"\n{service.backend}: concurrent undo outcomes {outcomes}")
    _both_workers_answered(service)


def test_rename_and_photo_removal_are_seen_by_every_worker(service):
    from test_svc_workers_live import _enrol

    old, new = f"hw_ren_{uuid.uuid4().hex[:6]}", f"hw_ren_{uuid.uuid4().hex[:6]}"
    data = gps_photo(colour_for(70), seed=700)
    enrolled = _enrol(service, old, data)
    assert enrolled.status_code == 200
    r = service.call("POST", f"/v1/individuals/{old}/rename", headers=KEY, json={"new_id": new})
    assert r.status_code == 200, r.text
    reads = _parallel([lambda: service.call("GET", f"/v1/individuals/{new}") for _ in range(8)])
    assert [x.status_code for x in reads] == [200] * 8
    for p in _parallel([lambda: _predict(service, data) for _ in range(4)]):
        assert p.json()["candidates"][0]["individual_id"] == new
    image_id = enrolled.json()["enrolled"][0]["image_id"]
    assert service.call("DELETE", f"/v1/images/{image_id}", headers=KEY).json()["remaining_images"] == 0
    gone = _parallel([lambda: service.call("GET", f"/v1/individuals/{new}") for _ in range(8)])
    assert [x.status_code for x in gone] == [404] * 8
    _both_workers_answered(service)


def test_merge_and_photo_move_are_seen_by_every_worker(service):
    from test_svc_workers_live import _enrol

    keep, dup, other = (f"hw_{k}_{uuid.uuid4().hex[:6]}" for k in ("keep", "dup", "oth"))
    data, elsewhere = gps_photo(colour_for(80), seed=800), gps_photo(colour_for(90), seed=900)
    assert _enrol(service, keep, data).status_code == 200
    assert _enrol(service, dup, data).status_code == 200
    moved = _enrol(service, other, elsewhere).json()["enrolled"][0]["image_id"]
    query = _predict(service, data).json()
    assert {c["individual_id"] for c in query["candidates"]} >= {keep, dup}
    r = service.call("POST", f"/v1/individuals/{dup}/merge", headers=KEY, json={"into": keep})
    assert r.status_code == 200, r.text
    gone = _parallel([lambda: service.call("GET", f"/v1/individuals/{dup}") for _ in range(8)])
    assert [x.status_code for x in gone] == [404] * 8
    for p in _parallel([lambda: _predict(service, data) for _ in range(4)]):
        assert dup not in {c["individual_id"] for c in p.json()["candidates"]}
    stored = service.call("GET", "/v1/predictions", headers=KEY, params={"limit": 200}).json()["items"]
    rewritten = next(i for i in stored if i["prediction_id"] == query["prediction_id"])
    assert dup not in {c["individual_id"] for c in rewritten["candidates"]}
    m = service.call("POST", f"/v1/images/{moved}/move", headers=KEY, json={"individual_id": keep})
    assert m.status_code == 200 and m.json()["remaining_images"] == 0, m.text
    counts = _parallel([lambda: service.call("GET", f"/v1/individuals/{keep}") for _ in range(8)])
    assert [c.json()["n_images"] for c in counts] == [3] * 8
    _both_workers_answered(service)
