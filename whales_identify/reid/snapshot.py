"""`MatchIndex`: the immutable snapshot of a catalog's arrays that `matching.score_query` searches
(labels grouped by individual, the embeddings, each photo's local features, and the LNBNN vote
index built on first use), and how an enrolment makes the next one at the cost of its new photos.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from whales_identify.records.store import CatalogImage
from whales_identify.reid.feature_pack import digest
from whales_identify.reid.local_features import LocalFeatures
from whales_identify.reid.vote_index import REFINE_FACTOR, FlannVoteIndex, VoteIndex, extend
from whales_identify.reid.vote_masked import Reusable, photo_keys, reuse
from whales_identify.reid.vote_saved import saved_or_built

if TYPE_CHECKING:
    from whales_identify.reid.matching import MatchConfig

__all__ = ["MatchIndex"]

# a snapshot without some photos reads the shared embedding buffer while it keeps at least this
# share of the rows it spans (else it copies the kept rows: a matrix product over mostly removed
# photos would cost more than the copy)
COMPACT_SHARE = 0.75


class MatchIndex:
    """An immutable snapshot of the catalog's arrays (`Catalog` makes a new one after every change).

    An enrolment (photos appended, none replaced or removed) makes the next snapshot with
    `appended`, which costs the new photos, not the catalog: the lists are copied (one memcpy),
    the labels shifted with one vectorised step where a new individual sorts before others, the
    embedding buffer and vote index extended. The result equals a rebuild (tests).
    `digests`: `feature_pack.digest` of the photos whose features are mapped from a file; with
    it, the saved vote index is keyed by digests (computed for the others), not by reading rows.
    `release`: drops the mapping's resident pages; called after each chunk of a vote index build.
    `embeddings`: a matrix whose first rows the images' embeddings are views of, in order (the
    catalog's load makes one: `share_embeddings`); it becomes this snapshot's buffer
    instead of a copy (0.5 GB at 100k photos). Given only once: appended snapshots write its
    spare rows.
    `donor`: an earlier snapshot's vote index (`MatchIndex.reusable`, taken before photos were
    removed or replaced): reused with the photos no longer here masked (`vote_masked.reuse`).
    """

    def __init__(self, images: Sequence[CatalogImage], cfg: MatchConfig,
                 digests: Mapping[str, bytes] | None = None,
                 release: Callable[[], None] | None = None, embeddings: np.ndarray | None = None,
                 donor: Reusable | None = None):
        self.images = list(images)
        self.image_ids = [im.image_id for im in self.images]
        self._label()
        dim = self.images[0].embedding.shape[0] if self.images else 0
        own = embeddings is not None and _rows_of(embeddings, self.images)
        self._emb_buf = ([embeddings, len(self.images)] if own
                         else _embedding_buffer(self.images, dim, None)[0])
        self._rows: np.ndarray | None = None  # photo i's embedding is buffer row i
        self._span = len(self.images)  # the buffer rows this snapshot reads
        self.local = [_local(im) for im in self.images]
        self._previous: MatchIndex | None = None
        self._finish(cfg, digests, release)
        self._donor = donor

    def _label(self) -> None:
        """Individuals (sorted), each photo's label, each individual's species (its first photo's)."""
        self.individuals = sorted({im.individual_id for im in self.images})
        pos = {ind: i for i, ind in enumerate(self.individuals)}
        self.labels = np.array([pos[im.individual_id] for im in self.images], np.int64)
        species: dict[str, str] = {}
        for im in self.images:
            species.setdefault(im.individual_id, im.species)
        self.species = [species[i] for i in self.individuals]
        self._group(np.argsort(self.labels, kind="stable"))

    def _group(self, by_label: np.ndarray) -> None:
        counts = np.bincount(self.labels, minlength=len(self.individuals))
        self.by_label = by_label  # image indices grouped by individual (stable: image order)
        self.ends = np.cumsum(counts).astype(np.int64)
        self.starts = self.ends - counts

    def _finish(self, cfg: MatchConfig, digests: Mapping[str, bytes] | None,
                release: Callable[[], None] | None) -> None:
        self.cfg = cfg
        self.digests, self.release = digests, release
        self._vote_index: VoteIndex | None = None
        self._vote_lock = threading.Lock()
        self._donor: Reusable | None = None
        self._keys: np.ndarray | None = None  # `_photo_keys`, once asked
        self._keys_of_old: np.ndarray | None = None  # (appended) the previous snapshot's keys

    @property
    def emb(self) -> np.ndarray:
        """The embeddings, one row per photo in photo order (a copy where rows are mapped)."""
        buf = self._emb_buf[0]
        return buf[:self._span] if self._rows is None else buf[self._rows]

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Cosine of `query` (L2-normalised) to each photo, in photo order. After a removal the
        buffer keeps the removed photos' rows (`without`): they are computed and dropped, cheaper
        than copying the buffer (0.5 GB at 100k photos) to close the gaps."""
        sims = self._emb_buf[0][:self._span] @ np.asarray(query, np.float32).ravel()
        return sims if self._rows is None else sims[self._rows]

    def members(self, label: int) -> np.ndarray:
        """The indices of one individual's images, in image order."""
        return self.by_label[self.starts[label]:self.ends[label]]

    def appended(self, images: Sequence[CatalogImage], digests: Mapping[str, bytes] | None = None,
                 release: Callable[[], None] | None = None) -> MatchIndex:
        """This snapshot with `images` (photos not in it) appended: the same arrays as
        `MatchIndex(self.images + images)`, at the cost of the new photos (numpy steps over the
        labels aside); this one is left as it is (queries in flight keep searching it)."""
        images = list(images)
        if not self.images:
            return MatchIndex(images, self.cfg, digests, release)
        new = object.__new__(MatchIndex)
        n0, n = len(self.images), len(self.images) + len(images)
        new.images = self.images + images
        new.image_ids = self.image_ids + [im.image_id for im in images]
        old = self.individuals
        fresh: dict[str, str] = {}  # new individuals (sorted below) -> species of their first photo
        for im in images:
            at = bisect_left(old, im.individual_id)
            if at == len(old) or old[at] != im.individual_id:
                fresh.setdefault(im.individual_id, im.species)
        at_old = [bisect_left(old, ind) for ind in sorted(fresh)]
        new.individuals, new.species = list(old), list(self.species)
        for k, (ind, at) in enumerate(zip(sorted(fresh), at_old, strict=True)):
            new.individuals.insert(at + k, ind)  # a memmove each, of the individuals' pointers
            new.species.insert(at + k, fresh[ind])
        labels = self.labels
        if fresh:  # an old individual moves down by the new ones sorted before it
            labels = labels + np.searchsorted(np.asarray(at_old, np.int64), labels, side="right")
        added = np.array([bisect_left(new.individuals, im.individual_id) for im in images], np.int64)
        new.labels = np.concatenate([labels, added])
        counts = np.bincount(new.labels, minlength=len(new.individuals))
        ends = np.cumsum(counts)
        # each new photo goes at the end of its individual's group, after the ones before it
        later = np.zeros(len(images), np.int64)
        seen: dict[int, int] = {}
        for t in range(len(images) - 1, -1, -1):
            later[t] = seen.get(int(added[t]), 0)
            seen[int(added[t])] = later[t] + 1
        slots = ends[added] - 1 - later
        by_label = np.empty(n, np.int64)
        keep = np.ones(n, bool)
        keep[slots] = False
        by_label[keep] = self.by_label
        by_label[slots] = np.arange(n0, n)
        new._group(by_label)
        dim = new.images[0].embedding.shape[0] if new.images else 0
        new._emb_buf, new._rows, new._span = _embedding_buffer(new.images, dim, self)
        new.local = self.local + [_local(im) for im in images]
        new._previous = self
        new._finish(self.cfg, digests, release)
        # the old photos' keys stay (a prefix of its photos); the new ones are computed once asked
        new._keys_of_old = self._keys if self._keys is not None else self._keys_of_old
        return new

    def without(self, images: Sequence[CatalogImage]) -> MatchIndex:
        """This snapshot less the photos removed from the catalog: `images` are the photos it keeps,
        in its order, with the same embeddings and features (their labels may have changed). The
        embedding buffer is shared (the removed photos' rows are skipped: `similarities`), the
        features and photo keys are this one's, the labels and groups are computed again, and the
        vote index is reused with the removed photos masked (`vote_masked`). At 100k photos the
        first query after deleting an individual took 0.95 s instead of 2.7 s (a copy of every
        array), after removing a photo 0.48 s instead of 2.0 s (served; docs/REID.md)."""
        new = object.__new__(MatchIndex)
        new.images = list(images)
        new.image_ids = [im.image_id for im in new.images]
        pos = {iid: i for i, iid in enumerate(self.image_ids)}
        keep = np.fromiter((pos[iid] for iid in new.image_ids), np.int64, len(new.images))
        if len(keep) > 1 and not np.all(np.diff(keep) > 0):
            raise ValueError("a snapshot without some photos keeps the others, in the same order")
        new._label()
        if self._rows is None and len(keep) == len(self.images):  # nothing removed (labels only)
            rows = None
        else:
            rows = keep if self._rows is None else self._rows[keep]
        if rows is None or len(rows) >= COMPACT_SHARE * self._span:
            new._emb_buf, new._rows, new._span = self._emb_buf, rows, self._span
        else:  # most rows would be skipped: copy the kept ones into a buffer of their own
            new._emb_buf, new._rows, new._span = _buffer_of(self._emb_buf[0][rows]), None, len(rows)
        new.local = [self.local[i] for i in keep]
        new._finish(self.cfg, self.digests, self.release)
        new._donor = self.reusable()  # this one's vote index (or what it is made from), masked
        if self._keys is not None:  # (computed by `reusable` where the index is built)
            new._keys = self._keys[keep]
        elif self._keys_of_old is not None:  # the kept photos of the snapshot this one appended to
            new._keys_of_old = self._keys_of_old[keep[keep < len(self._keys_of_old)]]
        new._previous = None
        return new

    def relabelled(self, images: Sequence[CatalogImage]) -> MatchIndex:
        """This snapshot's photos under other labels (a rename, merge or move): `images` are its
        photos in its order with the same embeddings and features. Only the labels, individuals,
        species and groups are computed again; the embedding buffer, the features and the vote
        index are this one's (the index names photos, not individuals). This one is left as it is."""
        new = object.__new__(MatchIndex)
        new.images = list(images)
        if [im.image_id for im in new.images] != self.image_ids:
            raise ValueError("a relabelled snapshot has the same photos, in the same order")
        new.image_ids = self.image_ids
        new._label()
        new._emb_buf, new._rows, new._span, new.local = self._emb_buf, self._rows, self._span, self.local
        new._finish(self.cfg, self.digests, self.release)
        new._keys, new._keys_of_old = self._keys, self._keys_of_old
        new._previous = self  # its vote index, built or to be built (`_built_vote_index`)
        return new

    def vote_index(self) -> VoteIndex | None:
        """The descriptor index over all reference images, built on first use (an appended
        snapshot extends its previous one's: `vote_index.extend`)."""
        with self._vote_lock:
            if self._vote_index is None:
                self._vote_index = self._built_vote_index()
                # only now: until the index is built, a removal meanwhile reuses what it is made from
                self._previous = self._donor = None
            return self._vote_index

    def _built_vote_index(self) -> VoteIndex | None:
        k, cfg, prev = self.cfg.index_keypoints, self.cfg, self._previous
        # a previous snapshot never searched builds (or extends) its index first
        if prev is not None and len(prev.images) == len(self.images):  # the same photos (`relabelled`)
            return prev.vote_index()
        base = prev.vote_index() if prev is not None and cfg.vote_index == "faiss" else None
        if base is not None and prev is not None:
            n0 = len(prev.images)
            parts = [lf.descriptors[:k] for lf in self.local[n0:]]  # the new photos only
            grown = extend(base, n0, parts, fold_at=cfg.vote_fold_at)
            if grown is not None:
                return grown
        parts = [lf.descriptors[:k] for lf in self.local]
        if not parts or sum(len(p) for p in parts) < cfg.lnbnn_k + 2:
            return None
        donor = self._donor
        if donor is not None and donor.settings == cfg and cfg.vote_index == "faiss":
            reused = reuse(donor, self._photo_keys(), parts, cfg.vote_fold_at)
            if reused is not None:
                return reused
        if cfg.vote_index == "faiss":
            return _faiss_index(self.image_ids, parts, cfg, self._digests(), self.release)
        return FlannVoteIndex(parts, trees=cfg.flann_trees, checks=cfg.flann_checks,
                              shard_size=cfg.vote_shard_size)

    def reusable(self) -> Reusable | None:
        """What a later snapshot (after photos were removed or replaced) can reuse of this one's vote
        index: the index built, else what it would be made from (a snapshot not searched yet)."""
        # read before the index: a query thread that finishes building it clears them after
        # setting it, so one of the two is always seen (else a removal now would rebuild the index)
        donor, previous = self._donor, self._previous
        if self._vote_index is not None:
            return Reusable.of(self._vote_index, self._photo_keys, self.cfg)
        if donor is not None:
            return donor
        return previous.reusable() if previous is not None else None

    def _photo_keys(self) -> np.ndarray:
        """`vote_masked.photo_keys` of the photos (a hash each: 0.4 s at 100k), computed once per
        snapshot and carried to the next where its photos are the same (`appended`, `without`)."""
        if self._keys is None:
            k, old = self.cfg.index_keypoints, self._keys_of_old
            start = len(old) if old is not None else 0
            digests = self._digests(start)
            fresh = photo_keys(self.image_ids[start:], [lf.descriptors[:k] for lf in self.local[start:]],
                               digests)
            self._keys = fresh if old is None else np.concatenate([old, fresh])
            self._keys_of_old = None
        return self._keys

    def _digests(self, start: int = 0) -> list[bytes] | None:
        if self.digests is None:
            return None
        known = self.digests
        return [known.get(iid) or digest(iid, lf.keypoints, lf.descriptors)
                for iid, lf in zip(self.image_ids[start:], self.local[start:], strict=True)]


_NO_KP, _NO_DESC = np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)


def _local(im: CatalogImage) -> LocalFeatures:
    return LocalFeatures(im.keypoints if im.keypoints is not None else _NO_KP,
                         im.descriptors if im.descriptors is not None else _NO_DESC)


def _rows_of(matrix: np.ndarray, images: Sequence[CatalogImage]) -> bool:
    """Whether image i's embedding is row i of `matrix`, for every image (views, not copies)."""
    if matrix.ndim != 2 or len(matrix) < len(images) or not matrix.flags.c_contiguous:
        return False
    start, step = matrix.__array_interface__["data"][0], matrix.strides[0]
    for i, im in enumerate(images):
        e = im.embedding
        if e.base is not matrix or e.shape != matrix.shape[1:] or (
                e.__array_interface__["data"][0] != start + i * step):
            return False
    return True


def _embedding_buffer(images: Sequence[CatalogImage], dim: int, previous: MatchIndex | None
                      ) -> tuple[list, np.ndarray | None, int]:
    """([buffer, rows filled], rows, span) of a snapshot of `images`: the embeddings in a buffer
    with room to grow, shared with the previous snapshot when this one appends to it (its rows
    are never written again); `rows` maps photos to buffer rows where they are not 0..n-1."""
    n = len(images)
    if previous is not None:
        buf, start, filled = previous._emb_buf, len(previous.images), previous._span
        if buf[1] == filled and len(buf[0]) >= filled + n - start:  # no sibling wrote after it
            for i in range(start, n):
                buf[0][filled + i - start] = images[i].embedding
            buf[1] = filled + n - start
            rows = None if previous._rows is None else np.concatenate(
                [previous._rows, np.arange(filled, buf[1], dtype=np.int64)])
            return buf, rows, buf[1]
    data = np.zeros((max(n + n // 4, 16), dim), np.float32)
    if previous is not None:  # the buffer is full (or a sibling grew it): copy its rows once
        start = len(previous.images)
        data[:start] = previous.emb
    else:
        start = 0
    for i in range(start, n):
        data[i] = images[i].embedding
    return [data, n], None, n


def _buffer_of(rows: np.ndarray) -> list:
    """[buffer, rows filled] holding `rows` (a copy), with room to grow."""
    data = np.zeros((max(len(rows) + len(rows) // 4, 16), rows.shape[1]), np.float32)
    data[:len(rows)] = rows
    return [data, len(rows)]


def _faiss_index(image_ids: Sequence[str], parts: Sequence[np.ndarray], cfg: MatchConfig,
                 digests: Sequence[bytes] | None = None,
                 after_chunk: Callable[[], None] | None = None) -> VoteIndex:
    """Build the faiss index, or read the one saved for these photos (or the first of them)."""
    settings = dict(nprobe=cfg.ivf_nprobe, list_size=cfg.ivf_list_size, codes=cfg.ivf_codes,
                    max_lists=cfg.ivf_max_lists)
    if "Refine" in cfg.ivf_codes:  # saved inside the index file: part of its key too
        settings["refine_factor"] = REFINE_FACTOR
    return saved_or_built(image_ids, parts, cfg.vote_index_dir, settings, tag=f"|{cfg.index_keypoints}",
                          fold_at=cfg.vote_fold_at, digests=digests, after_chunk=after_chunk)


def share_embeddings(images: dict[str, CatalogImage],
                      features: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """Give each record its packed features (`features`: views into the pack) and make its
    embedding a row of one matrix, in order, with room for enrolments: the first snapshot adopts
    the matrix as its buffer (`MatchIndex(embeddings=)`), so the embeddings are held once, not
    once per record plus once in the snapshot (0.5 GB each at 100k photos). None (each record
    keeps its own array) when they are not all float32 vectors of one length."""
    shapes = {(im.embedding.shape, im.embedding.dtype) for im in images.values()}
    if len(shapes) != 1 or len(next(iter(shapes))[0]) != 1 or next(iter(shapes))[1] != np.float32:
        for iid, (kp, desc) in features.items():
            images[iid] = replace(images[iid], keypoints=kp, descriptors=desc)
        return None
    n = len(images)
    matrix = np.zeros((n + n // 4 + 16, next(iter(shapes))[0][0]), np.float32)
    for i, (iid, im) in enumerate(images.items()):
        matrix[i] = im.embedding
        kp, desc = features.get(iid, (im.keypoints, im.descriptors))
        images[iid] = replace(im, embedding=matrix[i], keypoints=kp, descriptors=desc)
    return matrix
