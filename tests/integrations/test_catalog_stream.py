"""`Store.iter_catalog_images`: the catalog a page at a time (how `Catalog.load` reads a 100k-photo
catalog, issue 18), on the in-memory store, SQLite and PostgreSQL: every photo once, whole, and per
model in the order of `list_catalog_images`, with ties in time and pages that end inside them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.integrations.test_store import T0, assert_same_image, make_image


@pytest.mark.parametrize("page_size", [1, 2, 3, 500])
def test_catalog_streams_in_pages_like_the_list(any_store, page_size):
    # inserted out of time order, three photos sharing one time, two models interleaved
    images = [make_image(i, model_id="m.b" if i % 3 == 0 else "m.a",
                         created_at=T0 + timedelta(seconds=(7 - i) if i < 5 else 1)) for i in range(8)]
    any_store.add_catalog_images(images[:4])
    any_store.add_catalog_images(images[4:])
    streamed = list(any_store.iter_catalog_images(page_size=page_size))
    assert sorted(im.image_id for im in streamed) == sorted(im.image_id for im in images)
    for model in ("m.a", "m.b"):
        listed = any_store.list_catalog_images(model)
        assert [im.image_id for im in streamed if im.model_id == model] == [im.image_id for im in listed]
        mine = list(any_store.iter_catalog_images(model, page_size=page_size))
        assert [im.image_id for im in mine] == [im.image_id for im in listed]
        for a, b in zip(mine, listed, strict=True):
            assert_same_image(a, b)  # whole records: arrays, thumbnail, sighting, time
    assert list(any_store.iter_catalog_images("m.none", page_size=page_size)) == []


def test_an_empty_catalog_streams_nothing(any_store):
    assert list(any_store.iter_catalog_images()) == []


@pytest.mark.parametrize("page_size", [2, 500])
def test_heads_stream_the_records_without_features_and_say_which_features_they_have(any_store, page_size):
    """`iter_catalog_heads(keep)`: what `Catalog.load` reads when a feature pack holds the
    descriptors: every record (no thumbnail, no arrays but the embedding) in the order of
    `iter_catalog_images`, with the count, first row, last kept row and keypoints of its features."""
    import numpy as np

    from whales_identify.records.store import FeatureHead

    rng = np.random.default_rng(0)
    images = [make_image(i, descriptors=rng.integers(0, 255, (n, 128), dtype=np.uint8),
                         keypoints=rng.random((n, 2)).astype(np.float32))
              for i, n in enumerate([3, 7, 1, 9])]
    images.append(make_image(4))  # 32-value descriptors: no rows in the head (not packable)
    images.append(make_image(5, keypoints=None, descriptors=None))
    any_store.add_catalog_images(images)
    whole = list(any_store.iter_catalog_images(page_size=page_size))
    heads = list(any_store.iter_catalog_heads(5, page_size=page_size))
    assert [im.image_id for im, _ in heads] == [im.image_id for im in whole]
    for (light, head), full in zip(heads, whole, strict=True):
        assert light.thumbnail is None and light.keypoints is None and light.descriptors is None
        assert_same_image(light, replace(full, thumbnail=None, keypoints=None, descriptors=None))
        want = FeatureHead.of(full.keypoints, full.descriptors, 5)
        assert head.rows == (0 if full.descriptors is None else len(full.descriptors)) == want.rows
        for name in ("first_descriptor", "last_descriptor", "keypoints"):
            got, expected = getattr(head, name), getattr(want, name)
            assert (got is None) == (expected is None), name
            if got is not None:
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected, err_msg=name)
    by_id = {im.image_id: head for im, head in heads}
    np.testing.assert_array_equal(by_id["img3"].last_descriptor, images[3].descriptors[4:5])  # row keep-1
    np.testing.assert_array_equal(by_id["img1"].last_descriptor, images[1].descriptors[4:5])
    np.testing.assert_array_equal(by_id["img0"].last_descriptor, images[0].descriptors[2:3])  # fewer
    assert by_id["img4"].first_descriptor is None and by_id["img4"].rows == 5
