"""Approximate nearest neighbours over every reference RootSIFT descriptor (the LNBNN vote's index).

Implementations with one interface (`len`, `owner`, `search(q, k) -> (idx, d2)`):

- `FlannVoteIndex`: OpenCV FLANN randomised k-d trees over float32 descriptors, built in shards.
- `FaissVoteIndex`: a faiss inverted-file index. Its codes are a faiss factory string: `SQ8`
  (8-bit scalar quantiser, 128 B per descriptor), a product quantiser such as `PQ64x4fs` (32 B,
  searched with SIMD "fast scan": 3-4x less memory and ~10x faster search, at a lower neighbour
  recall), or a fast-scan search whose `refine_factor` x k best are re-ranked by SQ8 codes,
  `PQ64x4fs,Refine(SQ8)` (160 B: SQ8's recall at ~4x its speed); docs/REID.md "Scale" measures
  them. Built incrementally (no second copy), saved and read back by `save`/`load` so that a
  restart does not rebuild it (`vote_saved.saved_or_built`: the cache of saved indexes).
- `TieredVoteIndex`: a snapshot's index after enrolments: the previous index plus an exact index
  over the descriptors added since, folded into a copy of the base when it grows (`extend`), so
  that enrolling one photo does not rebuild the whole index.

`idx` is -1 where an index has fewer than k results for a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from whales_identify.reid import _saved
from whales_identify.reid.local_features import as_float

log = logging.getLogger(__name__)
_SUFFIXES = (".faiss", ".faiss.owner.npy", ".faiss.empty", ".faiss.photos.npy")
# an IVF delta tier is folded into a copy of the base past this share of the base's descriptors
FOLD_SHARE = 0.25
# refined codes: the fast-scan search keeps this many times the asked neighbours for the finer
# codes to re-rank (8: SQ8's recall@8 on real descriptors, 4: 2 % lower; docs/REID.md, Scale)
REFINE_FACTOR = 8


class VoteIndex(Protocol):
    owner: np.ndarray  # reference image of each indexed descriptor

    def __len__(self) -> int: ...
    def owners(self, idx: np.ndarray) -> np.ndarray: ...  # `owner[idx]`
    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _owners(parts: Sequence[np.ndarray], offset: int = 0) -> np.ndarray:
    if not parts:
        return np.zeros(0, np.int32)
    return np.concatenate([np.full(len(p), offset + i, np.int32) for i, p in enumerate(parts)])


def _merge(results: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of several indexes' answers (each already offset into one numbering)."""
    if len(results) == 1:
        return results[0]
    idx = np.concatenate([r[0] for r in results], axis=1)
    d2 = np.concatenate([np.where(r[0] >= 0, r[1], np.inf) for r in results], axis=1)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(d2, order, axis=1)


class FlannVoteIndex:
    """FLANN k-d trees, in shards.

    OpenCV's FLANN copies the float32 data it is given, so one index over ~600k descriptors (2k
    photos) briefly needs twice their 0.3 GB. Shards of at most `shard_size` descriptors are built
    one after another, so the extra peak is one shard's copy; a query asks every shard, with the
    full `checks` budget each, and keeps the overall nearest.
    """

    def __init__(self, parts: Sequence[np.ndarray], *, trees: int = 4, checks: int = 64,
                 shard_size: int = 400_000):
        import cv2

        self.owner = _owners(parts)
        self.checks = checks
        self.shards: list[tuple[int, Any]] = []  # (offset of the shard's first descriptor, index)
        # the k-d trees are randomised with OpenCV's thread-global RNG: reset it (0 = the
        # fresh-process state) so that the index, hence every result, is reproducible
        cv2.setRNGSeed(0)
        start, offset, n = 0, 0, len(parts)
        while start < n:
            stop, size = start, 0
            while stop < n and (size == 0 or size + len(parts[stop]) <= shard_size):
                size += len(parts[stop])
                stop += 1
            data = as_float(np.concatenate(parts[start:stop]))
            self.shards.append((offset, cv2.flann_Index(data, dict(algorithm=1, trees=trees))))
            # the index holds its own copy of `data` (tests/identify/test_catalog.py checks it)
            del data
            start, offset = stop, offset + size

    def __len__(self) -> int:
        return len(self.owner)

    def owners(self, idx: np.ndarray) -> np.ndarray:
        return self.owner[idx]

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        results = []
        for offset, index in self.shards:
            idx, d2 = index.knnSearch(q, k, params=dict(checks=self.checks))
            results.append((idx.astype(np.int64) + offset, d2))
        return _merge(results, k)


class FaissVoteIndex:
    """faiss IVF with `codes` (exact flat search below `exact_below` descriptors).

    Args:
        parts: uint8 RootSIFT descriptors per reference image.
        nprobe: inverted lists visited per query descriptor (the search budget).
        list_size: descriptors per inverted list, on average (sets the number of lists).
        exact_below: catalogs with fewer descriptors are searched exhaustively.
        seed: sampling and k-means seed (the index, hence every result, is reproducible).
        codes: faiss factory codes: "SQ8", a product quantiser such as "PQ64x4fs", or one refined
            by finer codes, "PQ64x4fs,Refine(SQ8)".
        refine_factor: with refined codes, the fast-scan search keeps this many times the asked
            neighbours for the finer codes to re-rank (saved with the index).
        max_lists: at most this many lists (0: no cap). Adding a descriptor costs one distance per
            list, so uncapped lists make a 100k-photo build hours long on two cores.
        after_chunk: called after the training sample and each chunk are read (mapped features:
            see `saved_or_built`).
    """

    def __init__(self, parts: Sequence[np.ndarray], *, nprobe: int = 16, list_size: int = 600,
                 exact_below: int = 50_000, seed: int = 0, chunk: int = 100_000,
                 codes: str = "SQ8", max_lists: int = 0, refine_factor: int = REFINE_FACTOR,
                 after_chunk: Callable[[], None] | None = None):
        import faiss

        self.owner = _owners(parts)
        n, dim = len(self.owner), 128
        starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        if n < exact_below:
            self.index: Any = faiss.IndexFlatL2(dim)
        else:
            nlist = max(16, n // list_size)
            nlist = min(nlist, max_lists) if max_lists > 0 else nlist
            self.index = faiss.index_factory(dim, f"IVF{nlist},{codes}", faiss.METRIC_L2)
            if isinstance(self.index, faiss.IndexRefine):
                self.index.k_factor = float(refine_factor)
            ivf = faiss.extract_index_ivf(self.index)
            ivf.cp.niter = 10  # k-means iterations: bounded start-up time
            ivf.cp.seed = seed
            ivf.nprobe = min(nprobe, nlist)
            take = np.sort(np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False))
            rows = []
            for s in range(0, len(take), 512):  # a row of most photos: `after_chunk` every 512
                t = take[s:s + 512]
                rows.append(as_float(np.stack([parts[o][i - starts[o]]
                                               for o, i in zip(self.owner[t], t, strict=True)])))
                if after_chunk is not None:
                    after_chunk()
            self.index.train(np.concatenate(rows))
        # the trained index before any code is added (a coarse quantiser and codebooks, ~1 MB):
        # enrolments fill a copy of it (`empty_twin`) instead of copying the whole index
        self._twin: Any = faiss.clone_index(self.index) if n >= exact_below else None
        self._path: Path | None = None
        # `vote_masked.photo_keys` of its images, where known: lets a later snapshot reuse it
        self.photos: np.ndarray | None = None
        # a chunk of images at a time, in float32: no second copy of all descriptors (5.9 GB at 100k)
        first = 0
        while first < len(parts):
            last = int(np.searchsorted(starts, starts[first] + chunk, side="right")) - 1
            last = max(last, first + 1)
            self.index.add(as_float(np.concatenate(parts[first:last])))
            if after_chunk is not None:
                after_chunk()
            first = last

    def __len__(self) -> int:
        return len(self.owner)

    def owners(self, idx: np.ndarray) -> np.ndarray:
        return self.owner[idx]

    @cached_property
    def owner_counts(self) -> np.ndarray:
        """Descriptors per image (`np.bincount` of `owner`), counted once: an index's owners never
        change, and each removal masks the same donor (the first count of 25M owners at 100k
        photos took 0.48-0.64 s in the served process, a count again 0.05 s)."""
        return np.bincount(self.owner)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d2, idx = self.index.search(np.ascontiguousarray(q, np.float32), k)
        return idx.astype(np.int64), d2

    def extended(self, parts: Sequence[np.ndarray], first_image: int,
                 after_chunk: Callable[[], None] | None = None) -> FaissVoteIndex:
        """A new index: a copy of this one plus `parts` (the descriptors of images numbered from
        `first_image` on). This one is left as it is (snapshots in use keep searching it)."""
        import faiss

        new = object.__new__(FaissVoteIndex)
        twin = self._trained()  # first: where it is a copy of the whole index, one at a time
        new.index = faiss.clone_index(self.index)
        for start in range(0, len(parts), 1000):  # float32 a thousand images at a time
            new.index.add(as_float(np.concatenate(parts[start:start + 1000])))
            if after_chunk is not None:
                after_chunk()
        new.owner = np.concatenate([self.owner, _owners(parts, first_image)])
        new._twin, new._path = twin, None  # the same quantiser and codebooks
        new.photos = None  # the caller knows the new photos' keys (`vote_saved`, `vote_masked.reuse`)
        return new

    def empty_twin(self) -> Any:
        """A new, empty faiss index with this one's coarse quantiser and codebooks (codes added to
        it are exactly the codes this index would hold), or None for an exact (flat) index. Kept
        from the build, or read from the file `save` wrote beside the index; a full copy, emptied,
        only where there is none (an index saved before it was)."""
        import faiss

        trained = self._trained()
        return None if trained is None else faiss.clone_index(trained)

    def _trained(self) -> Any:
        """The empty trained index `empty_twin` copies (read or made once), None for a flat one."""
        import faiss

        if faiss.try_extract_index_ivf(self.index) is None:
            return None
        saved = getattr(self, "_path", None)
        if getattr(self, "_twin", None) is None and saved is not None:
            try:  # saved beside the index by `save` (an index saved before it was: none)
                self._twin = faiss.read_index(str(_twin_path(saved)))
            except RuntimeError:
                pass
        if getattr(self, "_twin", None) is None:  # a copy of the whole index, once
            twin = faiss.clone_index(self.index)
            twin.reset()
            self._twin = twin
            if saved is not None:  # so that the next start need not copy it again
                try:
                    _write_index(twin, _twin_path(saved))
                except (RuntimeError, OSError):
                    pass
        return self._twin

    def save(self, path: Path) -> None:
        """Write the index and its owners (to temporary names, then renamed: complete or absent)."""
        import faiss

        path.parent.mkdir(parents=True, exist_ok=True)
        # Several workers may save the same key at once (a cold start with --workers 2): each writes
        # its own temporary files, and the renames make the last complete copy win.
        tmp, tmp_owner = _saved.partial(path), _saved.partial(path.with_name(path.name + ".owner"))
        try:
            faiss.write_index(self.index, str(tmp))
            with open(tmp_owner, "wb") as fh:
                np.save(fh, self.owner)
            if getattr(self, "_twin", None) is not None:  # ~1 MB: enrolment after a restart
                _write_index(self._twin, _twin_path(path))
            self.save_photos(path)
            tmp_owner.replace(path.with_name(path.name + ".owner.npy"))
            tmp.replace(path)
        finally:
            for t in (tmp, tmp_owner):
                t.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> FaissVoteIndex | None:
        """The index saved at `path`, or None when there is none (or it is unreadable)."""
        import faiss

        owners = path.with_name(path.name + ".owner.npy")
        if not path.is_file() or not owners.is_file():
            return None
        new = object.__new__(cls)
        try:
            new.index = faiss.read_index(str(path))
            new.owner = np.load(owners)
        except (RuntimeError, OSError, ValueError):
            return None
        new._twin, new._path, new.photos = None, path, None
        try:  # written beside it since photo removals reuse it (an older save has none)
            photos = np.load(_photos_path(path))
            new.photos = photos if photos.dtype == np.dtype("S16") else None
        except (OSError, ValueError):
            pass
        return new if new.index.ntotal == len(new.owner) else None

    def save_photos(self, path: Path) -> None:
        """Write `photos` beside the index saved at `path` (complete or absent)."""
        if self.photos is None:
            return
        tmp = _saved.partial(_photos_path(path))
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, self.photos)
            tmp.replace(_photos_path(path))
        finally:
            tmp.unlink(missing_ok=True)


def _photos_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".photos.npy")


def _twin_path(index_path: Path) -> Path:
    """Where the empty trained twin (`FaissVoteIndex.empty_twin`) is kept beside a saved index."""
    return index_path.with_name(index_path.name + ".empty")


def _write_index(index: Any, target: Path) -> None:
    """Write a faiss index to a temporary name, then rename it: complete or absent."""
    import faiss

    tmp = _saved.partial(target)
    try:
        faiss.write_index(index, str(tmp))
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


class TieredVoteIndex:
    """`base` (the index of the first `base_images` images) plus a delta index over the
    descriptors of the images enrolled after it (`delta_parts`, in image order): for an IVF base,
    an IVF with the base's quantiser and codebooks (`empty_twin`: the same codes, lists and
    distances as the base would give them); for an exact base, an exact index.

    Made once per enrolment, so nothing here is as large as the base: the owners of the base's
    descriptors are looked up in the base (`owners`), not copied (25M of them at 100k photos,
    0.2 s per copy), and the delta is the previous delta's copy plus the new descriptors."""

    def __init__(self, base: FaissVoteIndex, base_images: int, delta_parts: list[np.ndarray],
                 previous: TieredVoteIndex | None = None):
        import faiss

        self.base, self.base_images, self.delta_parts = base, base_images, delta_parts
        if previous is not None:  # the same base: its delta is a prefix of this one's
            self.delta = faiss.clone_index(previous.delta)
            self.delta_owner = previous.delta_owner
            new = delta_parts[len(previous.delta_parts):]
        else:
            twin = base.empty_twin()
            self.delta = twin if twin is not None else faiss.IndexFlatL2(128)
            self.delta_owner = np.zeros(0, np.int32)
            new = delta_parts
        if new:
            self.delta.add(as_float(np.concatenate(new)))
            self.delta_owner = np.concatenate([self.delta_owner,
                                               _owners(new, base_images + len(delta_parts) - len(new))])
        self._owner: np.ndarray | None = None

    @property
    def owner(self) -> np.ndarray:
        """Every descriptor's image (made on first use: `owners` is what a query uses)."""
        if self._owner is None:
            self._owner = np.concatenate([self.base.owner, self.delta_owner])
        return self._owner

    def owners(self, idx: np.ndarray) -> np.ndarray:
        nb = len(self.base)
        in_base = idx < nb
        out = np.empty(idx.shape, np.int32)
        out[in_base] = self.base.owner[idx[in_base]]
        out[~in_base] = self.delta_owner[idx[~in_base] - nb]
        return out

    def __len__(self) -> int:
        return len(self.base) + len(self.delta_owner)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(q, np.float32)
        results = [self.base.search(q, min(k, len(self.base)))] if len(self.base) else []
        if self.delta.ntotal:
            d2, idx = self.delta.search(q, min(k, self.delta.ntotal))
            results.append((np.where(idx >= 0, idx + len(self.base), -1).astype(np.int64), d2))
        return _merge(results, k)


def extend(index: VoteIndex, n_images: int, parts: Sequence[np.ndarray],
           fold_at: int = 20_000, after_chunk: Callable[[], None] | None = None) -> VoteIndex | None:
    """The index of a snapshot that has `parts` (descriptors of new images, in order) appended to
    the `n_images` images of `index`'s snapshot; None where it must be rebuilt (FLANN).

    New descriptors go to a delta tier. An exact one (small catalogs) is folded into a copy of the
    base once it holds `fold_at` descriptors (an exact search over a large delta would cost more
    than the IVF). An IVF one (the base's twin) costs what the base's lists do, so it is folded only
    past `FOLD_SHARE` of the base: until then no enrolment copies the base (0.5 GB at 50k photos)."""
    grown = getattr(index, "grown", None)  # a masked index (`vote_masked`) extends its inner one
    if grown is not None:
        return grown(n_images, parts, fold_at, after_chunk)
    if isinstance(index, TieredVoteIndex):
        base, base_images, delta = index.base, index.base_images, [*index.delta_parts, *parts]
        previous: TieredVoteIndex | None = index
    elif isinstance(index, FaissVoteIndex):
        base, base_images, delta, previous = index, n_images, list(parts), None
    else:
        return None
    import faiss

    exact = faiss.try_extract_index_ivf(base.index) is None
    if (len(previous.delta_owner) if previous else 0) + sum(len(p) for p in parts) >= (
            fold_at if exact else max(fold_at, int(FOLD_SHARE * len(base)))):
        return base.extended(delta, base_images, after_chunk)
    return TieredVoteIndex(base, base_images, delta, previous)
