"""Which of a catalog's photos another process changed, and how (`Catalog.refresh`).

A worker's catalog is in memory; another worker or replica that enrols, removes, renames, merges
or moves photos changes only the database. The store's change log names the photos each write
touched (`Store.catalog_changes`); here the records read again for them are compared with the
ones held: new photos, photos no longer stored, and photos with other labels or other features.
A photo whose features are unchanged keeps the arrays held (a view into the shared embedding
matrix, or rows in the feature pack), so a rename or a merge holds no second copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from whales_identify.records.store import CatalogImage


@dataclass
class Delta:
    """`fresh`: stored photos not held; `relabelled`: records to hold instead of held ones with the
    same features but other labels or metadata (they keep the held arrays); `replaced`: records
    with other features; `gone`: held photos the store no longer has."""

    fresh: list[CatalogImage] = field(default_factory=list)
    relabelled: list[CatalogImage] = field(default_factory=list)
    replaced: list[CatalogImage] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


def sort_changes(held: Mapping[str, CatalogImage], found: Mapping[str, CatalogImage | None]) -> Delta:
    """Compare the stored records `found` (by id; None: not stored, or of another model) with
    `held`. A record equal to the held one is left out: applying the same change twice is a no-op."""
    delta = Delta()
    for iid, new in found.items():
        old = held.get(iid)
        if new is None:
            if old is not None:
                delta.gone.append(iid)
        elif old is None:
            delta.fresh.append(new)
        elif same_features(old, new):
            kept = replace(new, embedding=old.embedding, keypoints=old.keypoints, descriptors=old.descriptors)
            if _metadata(kept) != _metadata(old):
                delta.relabelled.append(kept)
        else:
            delta.replaced.append(new)
    return delta


def same_features(old: CatalogImage, new: CatalogImage) -> bool:
    """Whether `new` has the held record's embedding, keypoints and descriptors (a packed photo's
    are views into the pack: its pages are read)."""
    return (np.array_equal(old.embedding, new.embedding) and _equal(old.keypoints, new.keypoints)
            and _equal(old.descriptors, new.descriptors))


def _equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _metadata(im: CatalogImage) -> CatalogImage:
    return replace(im, embedding=None, keypoints=None, descriptors=None, thumbnail=None)  # type: ignore[arg-type]
