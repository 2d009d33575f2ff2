"""`POST /v1/predict-batch`: ZIPs and parts, hostile archives, caps, per-image rate limiting."""

from __future__ import annotations

import zipfile

from svc_helpers import image_bytes, make_zip, many_entries_zip, png_bomb, zip_bomb

BLUE = (30, 60, 120)
RED = (220, 20, 20)


def post_zip(client, archive: bytes, ctype: str = "application/zip", name: str = "photos.zip", **kw):
    return client.post("/v1/predict-batch", files={"archive": (name, archive, ctype)}, **kw)


def test_zip_batch_reports_everything(client):
    archive = make_zip({
        "a.jpg": image_bytes(BLUE, seed=1), "dir/": b"", "dir/b.png": image_bytes(RED, fmt="PNG"),
        "__MACOSX/._a.jpg": b"junk", ".DS_Store": b"junk", "notes.txt": b"just text",
        "empty.jpg": b"", "trunc.jpg": image_bytes(BLUE, seed=2)[:200],
        "../escape.jpg": image_bytes(BLUE), "/abs/path.jpg": image_bytes(BLUE),
    })
    r = post_zip(client, archive, ctype="application/octet-stream", name="whatever.bin")
    assert r.status_code == 200, r.text
    body = r.json()
    names = {res["image_ind"] for res in body["results"]}
    assert names == {"a.jpg", "dir/b.png"}
    errors = {e["image_ind"]: e["code"] for e in body["errors"]}
    assert errors["dir/"] == "skipped" and errors["__MACOSX/._a.jpg"] == "skipped"
    assert errors[".DS_Store"] == "skipped"
    assert errors["notes.txt"] == "unsupported_media_type"
    assert errors["empty.jpg"] == "invalid_image" and errors["trunc.jpg"] == "invalid_image"
    assert errors["../escape.jpg"] == "unsafe_entry_name" and errors["/abs/path.jpg"] == "unsafe_entry_name"
    s = body["summary"]
    assert s["accepted"] == 1 and s["rejected"] == 1 and s["skipped"] == 3 and s["failed"] == 5
    assert s["images"] == 7 and s["seconds"] >= 0
    assert len(body["results"]) + len(body["errors"]) == 10  # nothing dropped


def test_files_parts_and_zip_part_recognised_by_bytes(client):
    inner = make_zip({"z.jpg": image_bytes(BLUE, seed=3)})
    r = client.post("/v1/predict-batch", files=[
        ("files", ("one.jpg", image_bytes(BLUE, seed=4), "image/jpeg")),
        ("files", ("two.png", image_bytes(RED, fmt="PNG"), "image/png")),
        ("files", ("pack.dat", inner, "text/plain")),
        ("files", ("bad.jpg", b"nope", "image/jpeg"))])
    body = r.json()
    assert r.status_code == 200
    assert {x["image_ind"] for x in body["results"]} == {"one.jpg", "two.png", "z.jpg"}
    assert body["errors"][0]["image_ind"] == "bad.jpg"
    assert client.app.state.whales.store.get_prediction(body["results"][0]["prediction_id"]) is not None


def test_empty_request_is_422_and_garbage_archive_400(client):
    assert client.post("/v1/predict-batch").status_code == 422
    r = post_zip(client, b"PK\x03\x04 not really a zip at all")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_archive"


def test_zip_bomb_is_refused(client):
    r = post_zip(client, zip_bomb())
    assert r.status_code == 200
    assert r.json()["errors"][0]["code"] in {"payload_too_large", "suspicious_compression"}


def test_ratio_cap(make_client):
    client = make_client(max_upload_bytes=100 * 1024 * 1024)
    r = post_zip(client, zip_bomb(50 * 1024 * 1024))
    assert r.json()["errors"][0]["code"] == "suspicious_compression"


def test_total_uncompressed_cap(make_client):
    client = make_client(zip_max_total_bytes=10_000)
    r = post_zip(client, make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i, size=(200, 200)) for i in range(5)},
                                  compression=zipfile.ZIP_STORED))
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_ten_thousand_entries_is_413(client):
    r = post_zip(client, many_entries_zip(10_000))
    assert r.status_code == 413
    assert "entries" in r.json()["error"]["message"]


def test_image_count_cap(make_client):
    client = make_client(max_batch_images=2)
    r = post_zip(client, make_zip({f"{i}.jpg": image_bytes(BLUE) for i in range(3)}))
    assert r.status_code == 413


def test_pixel_bomb_inside_zip(client):
    r = post_zip(client, make_zip({"bomb.png": png_bomb()}))
    assert r.json()["errors"][0]["code"] == "image_too_large"


def test_batch_counts_per_image_for_rate_limit(make_client):
    client = make_client(rate_limit="5/minute")
    ok = post_zip(client, make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(4)}))
    assert ok.status_code == 200 and ok.headers["X-RateLimit-Remaining"] == "1"
    r = post_zip(client, make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(2)}))
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_batch_per_request_when_configured(make_client):
    client = make_client(rate_limit="2/minute", batch_counts_per_image=False)
    r = post_zip(client, make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(4)}))
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "1"


def test_batches_in_chunks(make_client):
    client = make_client(batch_size=2)
    r = post_zip(client, make_zip({f"{i}.jpg": image_bytes(BLUE, seed=i) for i in range(5)}))
    assert r.json()["summary"]["accepted"] == 5


def test_reference_alias(client):
    r = client.post("/predict-batch", files=[("files", ("one.jpg", image_bytes(BLUE), "image/jpeg"))])
    assert r.status_code == 200
