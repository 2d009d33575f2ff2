"""`GET /v1/predictions/{id}/matches/{individual_id}`: the verified pairs, in stored-image pixels.

The reference is a synthetic textured photo; the query is the same scene shifted, rotated and
scaled by a known transform, so every returned pair can be checked against the truth.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw
from svc_fakes import API_KEY

from whales_identify.records.store import CatalogImage, InMemoryStore, PredictionRecord
from whales_identify.reid.catalog import make_thumbnail
from whales_identify.reid.local_features import extract, feature_frame
from whales_identify.reid.matching import MatchConfig

MODEL = "fake.colour16"  # FakeEmbedder.model_id: the catalog loads only this model's photos


def scene(seed: int, size=(1000, 700)) -> Image.Image:
    """A photo-like texture: smooth noise plus random ellipses and bars (plenty of SIFT corners)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 40, (size[1] // 10, size[0] // 10, 3)).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(160):
        x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
        w, h = rng.integers(8, 60, 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    return im


ANGLE, SCALE, SHIFT = 8.0, 0.8, (-40, 25)  # query = reference rotated, scaled and shifted


def warped(im: Image.Image) -> tuple[Image.Image, np.ndarray]:
    """The query photo and the true 3x3 map from query pixels to reference pixels."""
    a = np.deg2rad(ANGLE)
    c, s = np.cos(a) / SCALE, np.sin(a) / SCALE
    inverse = np.array([[c, -s, SHIFT[0]], [s, c, SHIFT[1]], [0, 0, 1.0]])  # query -> reference
    size = (int(im.width * SCALE), int(im.height * SCALE))
    query = im.transform(size, Image.Transform.AFFINE, tuple(inverse[:2].ravel()), Image.Resampling.BICUBIC)
    return query, inverse


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def reference(image_id: str, individual: str, im: Image.Image, features: bool = True) -> CatalogImage:
    lf = extract(im, MatchConfig().local)
    return CatalogImage(image_id=image_id, individual_id=individual, species="humpback_whale", model_id=MODEL,
                        embedding=np.ones(16, np.float32) / 4.0,
                        keypoints=lf.keypoints if features else None,
                        descriptors=lf.descriptors if features else None,
                        thumbnail=make_thumbnail(im, 384),
                        feature_size=feature_frame(im.size, MatchConfig().local))


def prediction(pid: str, candidates: list[tuple[str, str]], inliers: int | None = None) -> PredictionRecord:
    return PredictionRecord(prediction_id=pid, image_sha256="0" * 64, filename="q.jpg", rejected=False,
                            rejection_reason=None, cetacean_score=0.9, gate_backend="fake", gate_version="1",
                            species="humpback_whale", individual_id=candidates[0][0], is_new_individual=False,
                            probability=0.9, model_version=MODEL,
                            candidates=[{"individual_id": i, "species": "humpback_whale", "score": 0.9,
                                         "probability": 0.9, "reference_image_id": r,
                                         **({} if inliers is None else {"inliers": inliers})}
                                        for i, r in candidates])


@pytest.fixture
def world():
    """A store with individual A (two photos), B (one, no local features) and three predictions."""
    store = InMemoryStore()
    ref_a, other = scene(1), scene(2)
    query, truth = warped(ref_a)
    store.add_catalog_images([reference("a1", "ind_a", ref_a), reference("a2", "ind_a", other),
                              reference("b1", "ind_b", scene(3), features=False)])
    store.save_prediction(prediction("p1", [("ind_a", "a1"), ("ind_b", "b1")]), image_jpeg=jpeg(query))
    store.save_prediction(prediction("p_nophoto", [("ind_a", "a1")]))
    store.save_prediction(prediction("p_unverified", [("ind_a", "a1")], inliers=0), image_jpeg=jpeg(query))
    store.save_prediction(prediction("p_verified", [("ind_a", "a1")], inliers=41), image_jpeg=jpeg(query))
    store.save_prediction(replace(prediction("p_reviewed", [("ind_a", "a1")]), review_state="confirmed"),
                          image_jpeg=jpeg(query))
    return store, truth, query.size


@pytest.fixture
def keyed(make_client):
    """`keyed(store, **settings)`: a client that sends the reviewer key (the explanation of an
    unreviewed prediction, like its photo, is for key holders)."""
    def make(store, **settings):
        client = make_client(store=store, **settings)
        client.headers["X-API-Key"] = API_KEY
        return client
    return make


def test_true_match_pairs_follow_the_true_transform(keyed, world):
    store, truth, query_size = world
    client = keyed(store)
    r = client.get("/v1/predictions/p1/matches/ind_a")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reference_image_id"] == "a1" and body["reason"] is None
    assert body["query_size"] == list(query_size)
    thumb = Image.open(io.BytesIO(store.get_catalog_image("a1").thumbnail))
    assert body["reference_size"] == list(thumb.size)  # thumbnail pixels, not the 800 px feature frame
    assert body["inliers"] >= 30 and len(body["pairs"]) == min(body["inliers"], 100)
    scores = [p["score"] for p in body["pairs"]]
    assert scores == sorted(scores, reverse=True)
    q = np.array([p["query"] for p in body["pairs"]])
    ref = np.array([p["reference"] for p in body["pairs"]])
    assert (q >= 0).all() and (q < query_size).all()
    assert (ref >= 0).all() and (ref < thumb.size).all()
    # the truth maps query pixels to full-size reference pixels; the thumbnail is a scaled copy
    k = thumb.width / 1000
    expected = (np.c_[q, np.ones(len(q))] @ truth.T)[:, :2] * k
    err = np.linalg.norm(expected - ref, axis=1)
    assert np.median(err) < 2.0 and np.percentile(err, 90) < 4.0, err
    # the returned transform agrees with the truth too
    t = np.array(body["transform"])
    assert t.shape == (3, 3)
    np.testing.assert_allclose(t[:2, :2], truth[:2, :2] * k, atol=0.03)
    assert body["reference_image_ids"] == ["a1", "a2"]


def test_another_reference_photo_and_its_few_pairs(keyed, world):
    store, _, _ = world
    client = keyed(store)
    r = client.get("/v1/predictions/p1/matches/ind_a", params={"reference_image_id": "a2"})
    assert r.status_code == 200
    body = r.json()
    assert body["reference_image_id"] == "a2"
    assert body["inliers"] <= 6  # an unrelated scene: chance agreements only
    assert len(body["pairs"]) == body["inliers"]


def test_no_verification_gives_a_reason_and_no_pairs(keyed, world):
    store, _, _ = world
    client = keyed(store)
    no_features = client.get("/v1/predictions/p1/matches/ind_b").json()
    assert no_features["pairs"] == [] and no_features["inliers"] == 0
    assert "no local features" in no_features["reason"]
    no_photo = client.get("/v1/predictions/p_nophoto/matches/ind_a").json()
    assert no_photo["pairs"] == [] and "not stored" in no_photo["reason"]
    assert no_photo["query_size"] is None and no_photo["query_image_url"] is None
    # matching found no geometric support for the candidate: its default photo says so, no pairs ...
    unverified = client.get("/v1/predictions/p_unverified/matches/ind_a").json()
    assert unverified["pairs"] == [] and unverified["verified_inliers"] == 0
    assert "no geometric verification" in unverified["reason"]
    # ... while asking for a photo explicitly compares anyway
    explicit = client.get("/v1/predictions/p_unverified/matches/ind_a", params={"reference_image_id": "a1"})
    assert explicit.json()["inliers"] >= 30


def test_the_count_matching_kept_is_reported_beside_the_recomputed_one(keyed, world):
    store, _, _ = world
    body = keyed(store).get("/v1/predictions/p_verified/matches/ind_a").json()
    assert body["verified_inliers"] == 41 and body["inliers"] >= 30 and body["reason"] is None


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/v1/predictions/nope/matches/ind_a", {}, {404}),
    ("/v1/predictions/p1/matches/ind_c", {}, {404}),  # not a candidate
    ("/v1/predictions/p1/matches/ind_a", {"reference_image_id": "b1"}, {404}),  # another animal's photo
    ("/v1/predictions/p1/matches/ind_a", {"reference_image_id": "missing"}, {404}),
    ("/v1/predictions/p1/matches/-bad-id", {}, {422}),
    ("/v1/predictions/p1/matches/..%2Fetc", {}, {404, 422}),  # the router may decode %2F first
    ("/v1/predictions/p1/matches/ind_a", {"reference_image_id": "x" * 200}, {422}),
])
def test_bad_requests_are_clear_4xx(keyed, world, path, params, status):
    store, _, _ = world
    r = keyed(store).get(path, params=params)
    assert r.status_code in status, r.text
    assert set(r.json()) == {"error"}


def test_access_is_the_photo_s(make_client, world, auth):
    store, _, _ = world
    public = make_client(store=store)
    # an unreviewed prediction's photo (and so its pairs) is for key holders ...
    assert public.get("/v1/predictions/p1/matches/ind_a").status_code == 401
    assert public.get("/v1/predictions/p1/matches/ind_a", headers={"X-API-Key": "wrong"}).status_code == 403
    assert public.get("/v1/predictions/p1/matches/ind_a", headers=auth).status_code == 200
    assert public.get("/v1/predictions/p1/image").status_code == 401  # the same rule as the photo
    # ... a reviewed occurrence is public, unless every read needs a key
    assert public.get("/v1/predictions/p_reviewed/matches/ind_a").status_code == 200
    assert public.get("/v1/predictions/p_reviewed/image").status_code == 200
    locked = make_client(store=store, require_key_for_reads=True)
    assert locked.get("/v1/predictions/p_reviewed/matches/ind_a").status_code == 401
    assert locked.get("/v1/predictions/p_reviewed/matches/ind_a", headers=auth).status_code == 200


def test_legacy_reference_without_feature_size_is_estimated(keyed, world):
    store, truth, _ = world
    legacy = replace(store.get_catalog_image("a1"), image_id="a1_old", feature_size=None)
    store.add_catalog_images([legacy])
    client = keyed(store)
    body = client.get("/v1/predictions/p1/matches/ind_a", params={"reference_image_id": "a1_old"}).json()
    assert body["inliers"] >= 30
    q, ref = np.array([p["query"] for p in body["pairs"]]), np.array([p["reference"] for p in body["pairs"]])
    k = body["reference_size"][0] / 1000
    err = np.linalg.norm((np.c_[q, np.ones(len(q))] @ truth.T)[:, :2] * k - ref, axis=1)
    assert np.median(err) < 4.0  # estimated from the keypoints' extent: a little less exact
