"""Catalog import against a running `uvicorn --workers 2` on one SQLite file and on PostgreSQL (the
`service` fixture of test_svc_workers_live: fake embedder and gate, real catalog and store): the
progress lines come over real HTTP, and every worker matches the imported individuals at once."""

from __future__ import annotations

import json
import uuid

import httpx
from svc_helpers import image_bytes, make_zip
from test_svc_workers_live import KEY, Service, _both_workers_answered, _parallel, _predict, colour_for
from test_svc_workers_live import service as service  # noqa: F401 - the fixture, used by name

N = 40


def test_import_streams_and_every_worker_matches_at_once(service: Service):
    tag = uuid.uuid4().hex[:6]
    ids = [f"imp_{tag}_{i}" for i in range(N)]
    photos = {f"season/p{i}.jpg": image_bytes(colour_for(200 + i), size=(160, 120), seed=i) for i in range(N)}
    rows = "".join(f"p{i}.jpg,{ids[i]},humpback_whale,2024-07-{i % 28 + 1:02d}\n" for i in range(N))
    sheet = "filename,individual_id,species,date\n" + rows + "gone.jpg,x_1,beluga,\n"
    events: list[dict] = []
    with httpx.stream("POST", f"{service.url}/v1/catalog/import", timeout=300,
                      headers={**KEY, "Accept": "application/x-ndjson", "Connection": "close"},
                      files={"archive": ("photos.zip", make_zip(photos), "application/zip"),
                             "manifest": ("catalog.csv", sheet.encode(), "text/csv")}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.strip():
                events.append(json.loads(line))
    progress = [e["done"] for e in events if e["event"] == "progress"]
    assert progress[0] == 0 and progress[-1] == N and progress == sorted(progress) and len(progress) >= 3
    result = events[-1]
    assert result["event"] == "result" and result["summary"]["enrolled"] == N
    assert [(p["line"], p["code"]) for p in result["problems"]] == [(N + 2, "file_not_found")]

    preds = _parallel([lambda i=i: _predict(service, photos[f"season/p{i}.jpg"]) for i in range(0, N, 5)])
    for i, p in zip(range(0, N, 5), preds, strict=True):
        assert p.status_code == 200 and p.json()["candidates"][0]["individual_id"] == ids[i], p.text
        assert p.json()["species"] == "humpback_whale"
    # importing the same sheet again, on whichever worker, adds nothing: both know what is there
    again = _parallel([lambda: service.call("POST", "/v1/catalog/import", headers=KEY, files={
        "archive": ("photos.zip", make_zip(photos), "application/zip"),
        "manifest": ("catalog.csv", sheet.encode(), "text/csv")}) for _ in range(4)])
    for r in again:
        assert r.status_code == 200 and r.json()["summary"]["already_present"] == N, r.text
        assert r.json()["summary"]["enrolled"] == 0
    _both_workers_answered(service)
