"""`StoreReader`: a catalog's photos read from its store (what `Catalog.load` installs), whole, or
only their heads where a saved feature pack holds their descriptors and keypoints
(`feature_pack.py`). The saved packs are tried newest first: another catalog sharing the folder
(another service, the scale benchmark's other size) may have saved the newest."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from whales_identify.errors import CatalogModelMismatchError
from whales_identify.records.store import CatalogImage, Store
from whales_identify.reid.feature_pack import FeaturePack, FeaturePacker, head_digest
from whales_identify.reid.snapshot import share_embeddings

if TYPE_CHECKING:
    from whales_identify.reid.matching import MatchConfig

log = logging.getLogger(__name__)
Read = tuple[dict[str, CatalogImage], FeaturePacker | None, np.ndarray | None]


class StoreReader:
    """Reads the photos of `store` embedded by `model_id`, each as `in_memory` keeps it (what
    matching needs of a record); a photo of another model is refused (`CatalogModelMismatchError`).

    `read` returns (records by id, the packer whose pack they map, or None, and the embeddings'
    shared matrix: `share_embeddings`)."""

    def __init__(self, store: Store, model_id: str, in_memory: Callable[[CatalogImage], CatalogImage]):
        self.store, self.model_id, self.in_memory = store, model_id, in_memory

    def read(self, config: MatchConfig) -> Read:
        """With `config.features_dir`, the features mapped from a pack; when a saved pack holds
        nearly all of them, the store is read without descriptors or thumbnails (`_heads`).
        Should the folder fail (disk full, not writable), read again with them in RAM."""
        if config.features_dir and config.use_local:
            keep = max(config.index_keypoints, config.verify_keypoints)
            settings = f"v2|{keep}"  # v2: `feature_pack.digest` hashes every keypoint
            try:
                saved = list(FeaturePack.saved(Path(config.features_dir), settings))
                found_in: list[tuple[int, FeaturePack]] = []
                for n, pack in enumerate(saved, 1):
                    packer = FeaturePacker(config.features_dir, settings, pack)
                    heads = self._heads(packer, keep, last=n == len(saved))
                    if heads is not None:
                        return heads
                    found_in.append((packer.from_base, pack))
                # a new pack, made from (and replacing) the one most of these photos were found in
                base = max(found_in, key=lambda f: f[0])[1] if found_in else None
                return self._whole(FeaturePacker(config.features_dir, settings, base))
            except OSError as exc:
                log.warning("could not pack the catalog's features in %s (%s); they are held in RAM",
                            config.features_dir, exc)
        return self._whole(None)

    def _whole(self, packer: FeaturePacker | None) -> Read:
        images: dict[str, CatalogImage] = {}
        others: dict[str, int] = {}
        try:
            for im in self.store.iter_catalog_images():
                if im.model_id != self.model_id:
                    others[im.model_id] = others.get(im.model_id, 0) + 1
                    continue
                im = self.in_memory(im)  # the full record (thumbnail, every keypoint) is dropped here
                if packer is not None and packer.add(im.image_id, im.keypoints, im.descriptors):
                    im = replace(im, keypoints=None, descriptors=None)  # in the pack from now on
                images[im.image_id] = im
            self._refuse(others)
            matrix = share_embeddings(images, packer.finish() if packer is not None else {})
        finally:
            if packer is not None:
                packer.abort()
        return images, packer, matrix

    def _heads(self, packer: FeaturePacker, keep: int, last: bool = True) -> Read | None:
        """`_whole` where the saved pack holds (nearly) every photo's features: the store is read
        without descriptors or thumbnails (~90 % of its bytes) and each photo found in the pack by
        its `FeatureHead`; the photos it lacks (enrolled or changed since) are read whole. None,
        with nothing kept, when more are missing than the pack would keep in RAM, or (unless the
        `last` pack to try) when most of the pack is not this catalog's."""
        images: dict[str, CatalogImage] = {}
        others: dict[str, int] = {}
        missing: list[str] = []
        try:
            for im, head in self.store.iter_catalog_heads(keep):
                if im.model_id != self.model_id:
                    others[im.model_id] = others.get(im.model_id, 0) + 1
                    continue
                if head.rows or head.keypoints is not None:  # it has features: where are they?
                    found = head_digest(im.image_id, head, keep)
                    if found is None or not packer.take(im.image_id, found):
                        missing.append(im.image_id)
                        if len(missing) > packer.allowed:
                            return None
                images[im.image_id] = im
            if not last and not packer.is_mine(len(images)):
                return None  # another catalog's pack (or one this catalog kept little of)
            self._refuse(others)
            for iid in missing:
                full = self.store.get_catalog_image(iid)
                if full is None or full.model_id != self.model_id:  # removed since the page was read
                    del images[iid]
                    continue
                full = self.in_memory(full)
                if packer.add(iid, full.keypoints, full.descriptors):
                    full = replace(full, keypoints=None, descriptors=None)
                images[iid] = full
            matrix = share_embeddings(images, packer.finish())
        finally:
            packer.abort()
        return images, packer, matrix

    def _refuse(self, others: dict[str, int]) -> None:
        if others:
            raise CatalogModelMismatchError(
                f"the catalog holds {sum(others.values())} image(s) embedded with "
                f"{', '.join(sorted(others))}, but the current model is {self.model_id}; "
                f"embeddings of two models are never compared: run `whales catalog reindex "
                f"--model {self.model_id}`")
