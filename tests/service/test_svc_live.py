"""End to end against a real uvicorn process with the embedded models and a SQLite store:
real photos, hostile inputs, limits; zero 5xx and still ready afterwards."""

from __future__ import annotations

import re

import httpx
import pytest
from svc_helpers import (
    exif_rotated_jpeg,
    image_bytes,
    make_zip,
    many_entries_zip,
    png_16bit,
    png_bomb,
    zip_bomb,
)

from whales_identify.models import DEFAULT_REID_MODEL

pytestmark = pytest.mark.timeout(600)


def predict(server, payload: bytes, name: str = "a.jpg", **kw) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/predict", files={"file": (name, payload, "image/jpeg")},
                      timeout=120, **kw)


def test_ready_and_models(live_server):
    r = httpx.get(f"{live_server.url}/ready")
    assert r.status_code == 200
    models = {m["role"]: m for m in httpx.get(f"{live_server.url}/v1/models").json()["models"]}
    assert models["embedding"]["model_id"] == DEFAULT_REID_MODEL
    assert re.fullmatch(r"[0-9a-f]{64}", models["embedding"]["sha256"])
    assert models["gate"]["backend"] == live_server.gate


def test_predict_is_stored_in_the_database(live_server, tmp_path):
    r = predict(live_server, image_bytes((30, 60, 120), size=(640, 480), seed=1),
                data={"latitude": "64.1", "longitude": "-21.9", "observer": "test"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == DEFAULT_REID_MODEL and body["gate_backend"] == live_server.gate
    assert r.headers["X-RateLimit-Limit"] == "100000"
    from integrations import open_store

    url = f"sqlite:///{live_server.log_path.parent / 'w.db'}"
    store = open_store(url)
    try:
        record = store.get_prediction(body["prediction_id"])
        assert record is not None and record.sighting.latitude == 64.1
        assert store.get_prediction_image(body["prediction_id"])
    finally:
        store.close()


def test_real_photos_enrol_and_match(live_server, real_photos):
    ind = "live_" + real_photos["individual"][:40]
    r = httpx.post(f"{live_server.url}/v1/individuals/{ind}/images",
                   headers={"X-API-Key": live_server.api_key}, data={"species": real_photos["species"]},
                   files=[("files", (f"{i}.jpg", p, "image/jpeg"))
                          for i, p in enumerate(real_photos["photos"][:2])],
                   timeout=120)
    assert r.status_code == 200, r.text
    assert len(r.json()["enrolled"]) + len(r.json()["refused"]) == 2
    body = predict(live_server, real_photos["photos"][2]).json()
    if not body["rejected"] and r.json()["enrolled"]:
        assert ind in [c["individual_id"] for c in body["candidates"]]
    detail = httpx.get(f"{live_server.url}/v1/individuals/{ind}").json()
    if detail.get("images"):
        thumb = httpx.get(live_server.url + detail["images"][0]["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    verdicts = [predict(live_server, p).json() for p in real_photos["negatives"]]
    if live_server.gate == "embedded":  # a real gate rejects most non-cetacean scenes
        assert sum(v["rejected"] for v in verdicts) >= 2, [v["cetacean_score"] for v in verdicts]
    for v in verdicts:
        assert v["gate_backend"] == live_server.gate
        assert not v["rejected"] or (v["candidates"] == [] and v["class_animal"] == "")


HOSTILE_SINGLE = [
    ("truncated.jpg", image_bytes(seed=3, size=(400, 300))[:500], 400),
    ("bomb.png", png_bomb(), 413),
    ("huge.png", png_bomb(50_000, 50_000), 413),
    ("empty.jpg", b"", 400),
    ("text.jpg", b"GET / HTTP/1.1\r\nthis is not an image\r\n", 415),
    ("cmyk.jpg", image_bytes(mode="CMYK"), 200),
    ("deep.png", png_16bit(), 200),
    ("palette.png", image_bytes(fmt="PNG", mode="P"), 200),
    ("thin.png", image_bytes(size=(20_000, 2), fmt="PNG"), 200),
]


@pytest.mark.parametrize("name,payload,status", HOSTILE_SINGLE, ids=[h[0] for h in HOSTILE_SINGLE])
def test_hostile_single_files(live_server, name, payload, status):
    r = predict(live_server, payload, name=name)
    assert r.status_code == status, r.text
    if status != 200:
        assert set(r.json()["error"]) == {"code", "message", "details"}


def test_exif_rotated_photo(live_server):
    body = predict(live_server, exif_rotated_jpeg((400, 200), orientation=6)).json()
    assert body["bbox"] == [0, 0, 200, 400]


def test_hostile_archives(live_server):
    url = f"{live_server.url}/v1/predict-batch"

    def send(archive: bytes) -> httpx.Response:
        return httpx.post(url, files={"archive": ("x.zip", archive, "application/octet-stream")}, timeout=120)

    r = send(zip_bomb())
    assert r.status_code == 200 and r.json()["results"] == [] and r.json()["summary"]["failed"] == 1
    r = send(make_zip({"../../etc/passwd.jpg": image_bytes(), "/abs.jpg": image_bytes(),
                       "ok.jpg": image_bytes(seed=5)}))
    body = r.json()
    assert [x["image_ind"] for x in body["results"]] == ["ok.jpg"]
    assert {e["code"] for e in body["errors"]} == {"unsafe_entry_name"}
    r = send(many_entries_zip(10_000))
    assert r.status_code == 413
    r = httpx.post(url, files=[("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(1100)], timeout=120)
    assert r.status_code in (400, 413), r.text


def test_batch_of_files(live_server):
    r = httpx.post(f"{live_server.url}/v1/predict-batch", timeout=120, files=[
        ("files", (f"{i}.jpg", image_bytes(seed=i, size=(320, 240)), "image/jpeg")) for i in range(4)])
    assert r.status_code == 200
    assert r.json()["summary"]["images"] == 4 and len(r.json()["results"]) == 4


def test_no_5xx_and_still_ready_afterwards(live_server):
    assert httpx.get(f"{live_server.url}/ready").status_code == 200
    text = httpx.get(f"{live_server.url}/metrics").text
    five = [ln for ln in text.splitlines()
            if ln.startswith("whales_http_requests_total{") and re.search(r'status="5\d\d"', ln)
            and 'route="/ready"' not in ln]  # /ready answers 503 while the models load, by design
    assert five == [], five
    assert "whales_inference_stage_seconds_count{stage=\"embed\"}" in text


def test_web_page_and_json_404(live_server):
    page = httpx.get(f"{live_server.url}/")
    if page.status_code == 200:
        assert "text/html" in page.headers["content-type"]
    r = httpx.get(f"{live_server.url}/v1/no-such-thing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_missing_gate_head_fails_readiness_with_the_fix(tmp_path):
    """WHALES_GATE=embedded without a head: /ready says so (503), /health is fine, predict is 503."""
    import os
    import subprocess
    import sys
    import time

    from svc_server import ROOT, free_port

    port = free_port()
    env = {**os.environ, "WHALES_DATABASE_URL": "memory://", "WHALES_GATE": "embedded",
           "WHALES_MODELS_DIR": str(tmp_path / "empty-models"), "WHALES_API_KEYS": "ops-key"}
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host",
                                 "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        body = {}
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{url}/ready", timeout=5)
                body = r.json()
                if r.status_code == 200 or body["error"]["details"]["components"]["gate"] != "pending":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert r.status_code == 503, body
        # public: the component, no absolute path; with a key: the fix, naming the folder
        assert "gate" in body["error"]["message"] and str(tmp_path) not in r.text
        body = httpx.get(f"{url}/ready", headers={"X-API-Key": "ops-key"}).json()
        assert "gate" in body["error"]["message"] and "models/gate" in body["error"]["message"].replace(
            str(tmp_path / "empty-models"), "models")
        assert httpx.get(f"{url}/health").status_code == 200
        p = httpx.post(f"{url}/v1/predict", files={"file": ("a.jpg", image_bytes(), "image/jpeg")})
        assert p.status_code == 503 and p.json()["error"]["code"] == "not_ready"
    finally:
        proc.terminate()
        proc.wait(20)
