"""`Catalog(store, model_id)`: reference photos of known individuals, persisted in a `Store`, and
the in-memory snapshot that `matching.py` searches.

Enrolling a photo computes its local features and thumbnail; nothing is retrained. How a query is
matched (global embedding, LNBNN vote, geometric verification, calibrated fusion): see
`whales_identify/reid/matching.py`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from whales_identify.errors import CatalogModelMismatchError
from whales_identify.images import make_thumbnail
from whales_identify.records.store import CatalogImage, Sighting, Store
from whales_identify.reid import matching
from whales_identify.reid.calibrate import Calibration, resolve_calibration
from whales_identify.reid.catalog_delta import sort_changes
from whales_identify.reid.catalog_read import StoreReader
from whales_identify.reid.feature_pack import FeaturePack, FeaturePacker
from whales_identify.reid.local_features import LocalFeatures, extract
from whales_identify.reid.matching import UNKNOWN_SPECIES, MatchConfig, MatchIndex, Scores
from whales_identify.reid.reference import reference_records, with_model
from whales_identify.reid.tally import CatalogTally, IndividualSummary, summary
from whales_identify.reid.vote_masked import Reusable
from whales_identify.results import MatchResult

__all__ = ["Catalog", "IndividualSummary", "MatchConfig", "Scores", "make_thumbnail", "with_model"]

log = logging.getLogger(__name__)


class Catalog:
    """Reference photos of known individuals, and the matcher over them.

    Args:
        store: where catalog images persist (`Store.iter_catalog_images`/`add_catalog_images`).
        model_id: the embedding model every stored embedding must come from.
        config: matching parameters and work bounds.
        calibration: fusion, open-set rule and probability map; default: the packaged
            `whales_identify/calibration/<model_id>.json`, else `reid_default.json` (used only if
            fitted for `model_id`).
        new_individual_target: "new individual" only when P(new) >= this (default: the
            calibration's `new_probability_target`; no effect on a calibration without P(new)).
    """

    def __init__(self, store: Store, model_id: str, *, config: MatchConfig | None = None,
                 calibration: Calibration | None = None, new_individual_target: float | None = None):
        self.store = store
        self.model_id = model_id
        self.config = config or MatchConfig()
        cal = calibration if calibration is not None else resolve_calibration(model_id)
        if cal.fitted and cal.model_id and cal.model_id != model_id:
            cal = Calibration(model_id=model_id)  # fitted for another model: fall back to defaults
        if new_individual_target is not None:  # the operator's P(new) target (WHALES_NEW_INDIVIDUAL_TARGET)
            cal = replace(cal, new_probability_target=float(new_individual_target))
            if cal.new_model is None:  # said once at start, or the operator believes it applies
                log.warning("a P(new) target of %s was set, but the calibration of %s has no P(new) model "
                            "(rule: %s); it has no effect: fit one with `whales evaluate --open-set "
                            "probability --fit-calibration FILE` and set WHALES_CALIBRATION",
                            new_individual_target, model_id, cal.open_set_rule)
        self.calibration = cal
        self._lock = threading.RLock()
        self._images: dict[str, CatalogImage] = {}
        self._tally = CatalogTally()  # who is in `_images` (individuals, species, counts)
        self._index: MatchIndex | None = None
        # the last snapshot while only enrolments happened since, and the photos enrolled since
        # (in order): the next snapshot is it with them appended (`MatchIndex.appended`)
        self._grow_from: MatchIndex | None = None
        self._appended: list[str] = []
        # the last snapshot before a removal or replacement: its vote index is reused (`MatchIndex`)
        self._donor: Reusable | None = None
        self._pack: FeaturePack | None = None  # where the loaded photos' features are mapped
        self._digests: dict[str, bytes] | None = None  # theirs (feature_pack.digest)
        self._embeddings: np.ndarray | None = None  # the loaded photos' (`snapshot.share_embeddings`)

    # ------------------------------------------------------------------ state
    def load(self) -> Catalog:
        """Read the store into memory, a page at a time; refuse a store embedded by another model.

        With `config.features_dir`, the photos' descriptors and keypoints are views into files
        mapped read-only (`feature_pack.py`) instead of arrays on the heap (`catalog_read.py`)."""
        return self._install(*StoreReader(self.store, self.model_id, self._in_memory).read(self.config))

    def _install(self, images: dict[str, CatalogImage], packer: FeaturePacker | None,
                 embeddings: np.ndarray | None) -> Catalog:
        with self._lock:
            self._images = images
            self._embeddings = embeddings
            self._index = self._grow_from = None
            self._appended = []
            self._pack = packer.pack if packer is not None else None
            self._digests = packer.digests if packer is not None else None
            self._tally = CatalogTally(images.values())
        return self

    def _in_memory(self, image: CatalogImage) -> CatalogImage:
        """What matching needs of a stored record: no thumbnail (served from the store) and only
        the strongest keypoints the vote index and verification read (stored strongest first)."""
        keep = max(self.config.index_keypoints, self.config.verify_keypoints)
        return replace(image, thumbnail=None, keypoints=_first(image.keypoints, keep),
                       descriptors=_first(image.descriptors, keep))

    def warm_index(self) -> None:
        """Build the in-memory index and the LNBNN vote index now (a few seconds for ~2k photos),
        so that the first query after start-up is not the one that pays for it."""
        if self._images:
            ix = self._snapshot()
            if self.config.use_local:
                ix.vote_index()
            if self._pack is not None:  # building or checking the vote index read every photo
                self._pack.release()

    def __len__(self) -> int:
        return len(self._images)

    def _snapshot(self) -> MatchIndex:
        with self._lock:
            if self._index is None:
                release = self._pack.release if self._pack is not None else None
                if self._grow_from is not None:  # only enrolments since: the cost of the new photos
                    self._index = self._grow_from.appended(
                        [self._images[iid] for iid in self._appended], self._digests, release)
                else:  # the load's embedding matrix, where its rows are still the photos'
                    self._index = MatchIndex(list(self._images.values()), self.config,
                                             digests=self._digests, release=release,
                                             embeddings=self._embeddings, donor=self._donor)
                    self._embeddings = None  # one snapshot owns it (its spare rows are written)
                self._grow_from, self._appended, self._donor = None, [], None
            return self._index

    def _reusable(self) -> Reusable | None:
        """The newest vote index a next full snapshot can reuse (`MatchIndex.reusable`), if any."""
        for snapshot in (self._index, self._grow_from):
            found = snapshot.reusable() if snapshot is not None else None
            if found is not None:
                return found
        return self._donor

    def reuse_index_of(self, earlier: Catalog) -> None:
        """This newly loaded catalog's first snapshot reuses `earlier`'s vote index (a reload after
        curation or another worker's change: photos removed since are masked, not rebuilt)."""
        with self._lock, earlier._lock:
            if self._index is None and self._grow_from is None:
                self._donor = earlier._reusable()

    def add_images(self, images: Iterable[CatalogImage]) -> None:
        """Add ready-made records (embedding and local features computed) to store and index."""
        images = list(images)
        for im in images:
            if im.model_id != self.model_id:
                raise CatalogModelMismatchError(
                    f"image {im.image_id} was embedded with {im.model_id}, the catalog uses "
                    f"{self.model_id}")
        with self._lock:
            self.store.add_catalog_images(images)
            self._hold(images)

    def _hold(self, images: Sequence[CatalogImage]) -> None:
        """Hold stored records in memory (new photos, or replacements of held ones)."""
        ids = [im.image_id for im in images]
        replaced = len(set(ids)) < len(ids) or any(iid in self._images for iid in ids)
        for im in images:
            old = self._images.get(im.image_id)
            self._images[im.image_id] = held = self._in_memory(im)
            if self._digests is not None:  # a replaced photo's packed digest is stale
                self._digests.pop(im.image_id, None)
            if old is None:
                self._tally.add(held)
            else:
                self._tally.replace(old, held)
        # new photos only: the next snapshot extends this one (no index rebuild)
        if replaced or (self._index is None and self._grow_from is None):
            self._donor = self._reusable()
            self._grow_from, self._appended = None, []
        elif self._index is not None:
            self._grow_from, self._appended = self._index, ids
        else:
            self._appended.extend(ids)
        self._index = None

    def refresh(self, image_ids: Iterable[str]) -> bool:
        """Bring these photos in line with the store (`Store.catalog_changes`: what another worker
        or replica changed) instead of a whole `load`, each read by id (`catalog_delta.py`). New
        photos extend the snapshot, relabels keep its arrays (`MatchIndex.relabelled`), others
        reuse its vote index masked. False, nothing changed, for a photo of another model."""
        found: dict[str, CatalogImage | None] = {}
        for iid in dict.fromkeys(image_ids):
            im = self.store.get_catalog_image(iid)
            if im is not None and im.model_id != self.model_id:
                return False
            found[iid] = None if im is None else self._in_memory(im)
        with self._lock:
            delta = sort_changes(self._images, found)
            for im in delta.relabelled:  # the same features: the packed digest stays valid
                self._tally.replace(self._images[im.image_id], im)
                self._images[im.image_id] = im
            others = delta.gone or delta.replaced or delta.fresh
            if delta.relabelled and not others and self._index is not None and self._grow_from is None:
                self._index = self._index.relabelled([self._images[iid] for iid in self._index.image_ids])
            elif delta.relabelled or delta.gone:
                self._forget(delta.gone)
            if delta.replaced or delta.fresh:
                self._hold(delta.replaced + delta.fresh)  # (a replaced photo's digest is dropped there)
        return True

    def enroll(self, images: Sequence[Image.Image], embeddings: np.ndarray, individual_id: str,
               species: str, sightings: Sequence[Sighting] | None = None,
               filenames: Sequence[str] | None = None, source: str = "",
               local_features: Sequence[LocalFeatures] | None = None) -> list[CatalogImage]:
        """Add photos of one individual: computes local features and a JPEG thumbnail.

        Args:
            images: RGB photos.
            embeddings: (N, D) L2-normalised embeddings from `model_id`.
            individual_id / species: the labels.
            sightings / filenames: optional, one per image.
            source: where the photos come from (free text).
            local_features: precomputed features (else extracted here).

        Returns:
            The stored records.
        """
        records = reference_records(images, embeddings, individual_id, species, self.model_id, self.config,
                                    sightings=sightings, filenames=filenames, source=source,
                                    local_features=local_features)
        self.add_images(records)
        return records

    def remove_individual(self, individual_id: str) -> int:
        """Delete an individual and all its photos; returns the number of photos removed."""
        with self._lock:
            n = self.store.remove_individual(individual_id)
            doomed = self._tally.photos_of(individual_id)
            self._forget(doomed)
            return max(n, len(doomed))

    def remove_image(self, image_id: str, actor: str | None = None) -> tuple[str, int]:
        """Delete one photo (`Store.remove_catalog_image`: audited, raises `NotFoundError`); returns
        its individual and the photos it has left. In memory too: no reload of the catalog."""
        with self._lock:
            individual_id, left = self.store.remove_catalog_image(image_id, actor)
            self._forget([image_id])
            return individual_id, left

    def _forget(self, image_ids: Iterable[str]) -> None:
        """Drop photos the store has deleted (committed: never raise here): the snapshot without
        them (`MatchIndex.without`, labels taken anew), else a build that masks them."""
        image_ids = list(image_ids)
        current = self._snapshot() if self._index is not None or self._grow_from is not None else None
        for k in image_ids:
            gone = self._images.pop(k, None)
            if gone is not None:
                self._tally.remove(gone)
        if current is not None:
            self._index = current.without([self._images[iid] for iid in current.image_ids
                                           if iid in self._images])
        else:
            self._donor = self._reusable()
            self._index = None
        self._grow_from, self._appended = None, []

    def list_individuals(self, species: str | None = None) -> list[IndividualSummary]:
        by_id: dict[str, list[CatalogImage]] = {}
        for im in list(self._images.values()):
            if species is None or im.species == species:
                by_id.setdefault(im.individual_id, []).append(im)
        return [summary(ind, ims) for ind, ims in sorted(by_id.items())]

    def get_individual(self, individual_id: str) -> IndividualSummary | None:
        found = (self._images.get(k) for k in self._tally.photos_of(individual_id))
        ims = [im for im in found if im is not None]  # (one removed meanwhile is left out)
        return summary(individual_id, ims) if ims else None

    def stats(self) -> dict[str, Any]:
        """The catalog's counts, from its tally (asked on every enrolment: no walk over the photos)."""
        tally = self._tally
        return {
            "model_id": self.model_id,
            "images": len(self._images),
            "individuals": tally.individuals,
            "species": tally.individuals_per_species(),
            "with_local_features": tally.with_local_features,
            "calibrated": self.calibration.fitted,
        }

    # ---------------------------------------------------------------- matching
    def score(self, embedding: np.ndarray, local: LocalFeatures | None,
              exclude: Iterable[str] = ()) -> Scores:
        """Per-individual evidence for one query, ignoring the reference images in `exclude`.

        `exclude` exists for leave-one-out evaluation (the query itself, its burst frames, or a
        whole individual for the open-set test).
        """
        scores = matching.score_query(self._snapshot(), embedding, local, exclude)
        pack = self._pack
        if pack is not None:  # the pages verification read stay in the page cache, not in this
            pack.release()  # process (~3 ms at 10k photos): resident memory stays the heap's
        return scores

    def rank(self, scores: Scores, top_k: int) -> MatchResult:
        """Fuse, calibrate and decide (new individual, species) from per-individual evidence."""
        return matching.rank(scores, self.calibration, top_k)

    def identify(self, image: Image.Image, embedding: np.ndarray, top_k: int = 5) -> MatchResult:
        """The `top_k` most likely known individuals for one photo.

        Args:
            image: the RGB photo (for local features).
            embedding: its (D,) L2-normalised embedding from `model_id`.
            top_k: how many candidates to return.
        """
        if len(self) == 0:
            return MatchResult([], None, True, 0.0, UNKNOWN_SPECIES, 0.0)
        local = extract(image, self.config.local) if self.config.use_local else None
        return self.rank(self.score(embedding, local), top_k)


def _first(rows: np.ndarray | None, keep: int) -> np.ndarray | None:
    """The first `keep` rows: a copy when that drops rows (a view would keep the whole record's
    buffer alive), else the array itself (no second allocation per record while loading)."""
    if rows is None or len(rows) <= keep:
        return rows
    return rows[:keep].copy()


