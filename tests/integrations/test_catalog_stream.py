"""`Store.iter_catalog_images`: the catalog a page at a time (how `Catalog.load` reads a 100k-photo
catalog, issue 18), on the in-memory store, SQLite and PostgreSQL: every photo once, whole, and per
model in the order of `list_catalog_images`, with ties in time and pages that end inside them."""

from __future__ import annotations

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
