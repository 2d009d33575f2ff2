"""`/reference/...`: what the reference web client (`frontend/src/api.ts`) expects, path by path and
field by field; `/v1` keeps its own contract."""

from __future__ import annotations

from svc_helpers import image_bytes, make_zip

BLUE = (30, 60, 120)
RED = (220, 20, 20)

# The reference client's `Detection` interface (plus `candidates`), with the JSON types it reads.
FIELDS = {"image_ind": str, "bbox": list, "class_animal": str, "id_animal": str, "probability": float,
          "mask": (str, type(None)), "is_cetacean": bool, "cetacean_score": float, "rejected": bool,
          "rejection_reason": (str, type(None)), "model_version": str, "candidates": list}
REASONS = {None, "not_a_marine_mammal", "low_confidence", "corrupted_image"}


def check_detection(d: dict) -> None:
    assert set(d) == set(FIELDS), set(d) ^ set(FIELDS)
    for name, kind in FIELDS.items():
        assert isinstance(d[name], kind), (name, d[name])
    assert len(d["bbox"]) == 4 and all(isinstance(v, int) for v in d["bbox"])
    assert d["rejection_reason"] in REASONS
    for c in d["candidates"]:
        assert set(c) == {"class_animal", "id_animal", "probability"}


def test_predict_single_answers_one_detection(client, auth):
    client.post("/v1/individuals/ind_1/images", headers=auth, data={"species": "beluga"},
                files=[("files", ("x.jpg", image_bytes(BLUE, seed=1), "image/jpeg"))])
    for path in ("/reference/v1/predict-single", "/reference/predict-single"):
        r = client.post(path, files={"file": ("w.jpg", image_bytes(BLUE, seed=2), "image/jpeg")})
        assert r.status_code == 200, r.text
        d = r.json()
        check_detection(d)
        assert (d["class_animal"], d["id_animal"], d["rejected"]) == ("ind_1", "beluga", False)
        assert d["candidates"][0]["class_animal"] == "ind_1" and 0 < d["probability"] <= 1


def test_predict_single_rejections_are_http_200(client):
    red = {"file": ("red.jpg", image_bytes(RED), "image/jpeg")}
    r = client.post("/reference/v1/predict-single", files=red)
    d = r.json()
    assert r.status_code == 200 and d["rejected"] and d["rejection_reason"] == "not_a_marine_mammal"
    assert (d["class_animal"], d["id_animal"], d["probability"]) == ("", "unknown", 0.0)
    check_detection(d)
    broken = image_bytes(BLUE)[:300]  # a JPEG header, then nothing
    r = client.post("/reference/v1/predict-single", files={"file": ("broken.jpg", broken, "image/jpeg")})
    assert r.status_code == 200 and r.json()["rejection_reason"] == "corrupted_image"
    check_detection(r.json())
    # the same photo on /v1 is still a 400 in the service's error shape
    assert client.post("/v1/predict", files={"file": ("broken.jpg", broken)}).status_code == 400


def test_predict_batch_answers_an_array_in_archive_order(client):
    archive = make_zip({"a.jpg": image_bytes(BLUE, seed=3), "dir/": b"", "red.jpg": image_bytes(RED),
                        "broken.jpg": image_bytes(BLUE)[:300], "notes.txt": b"not a photo",
                        "__MACOSX/._a.jpg": b"meta", "b.png": image_bytes(BLUE, fmt="PNG", seed=4)})
    for path in ("/reference/v1/predict-batch", "/reference/predict-batch"):
        r = client.post(path, files={"archive": ("photos.zip", archive, "application/zip")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body, list)
        for d in body:
            check_detection(d)
        assert [(d["image_ind"], d["rejection_reason"]) for d in body] == [
            ("a.jpg", None), ("red.jpg", "not_a_marine_mammal"), ("broken.jpg", "corrupted_image"),
            ("notes.txt", "corrupted_image"), ("b.png", None)]
        assert all(d["rejected"] for d in body[1:4])


def test_v1_batch_contract_is_unchanged(client):
    archive = make_zip({"a.jpg": image_bytes(BLUE), "notes.txt": b"x"})
    body = client.post("/v1/predict-batch", files={"archive": ("p.zip", archive)}).json()
    assert set(body) == {"results", "errors", "summary"}
    assert body["errors"][0]["code"] == "unsupported_media_type"


def test_reference_errors_keep_the_error_shape(client):
    r = client.post("/reference/v1/predict-batch", files={"archive": ("p.zip", b"PK\x03\x04garbage")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_archive"
    r = client.post("/reference/v1/predict-batch", files={"files": ("a.jpg", image_bytes(BLUE))})
    assert r.status_code == 422
