"""A vote index reused after photos were removed: the photos removed since it was built are
masked out of every search instead of rebuilding the index (a rebuild takes ~10 s at 2k photos
and 5-8 minutes at 100k, and a curator's removal would make the next query wait for it).

`reuse` takes an index built for other photos (a donor: the previous snapshot's, or one saved on
disk) and the photos of the snapshot now, each named by a `photo_keys` key (its id and
descriptors), and returns `MaskedVoteIndex`: the donor's descriptors of the photos still in the
catalog, its image numbers mapped to the snapshot's, and the photos it lacks added as a tier
(`vote_index.extend`). The mask is a faiss ID selector applied inside the search, so a query's k
neighbours are all current photos: the neighbours, distances and LNBNN votes are those of the
donor index with only the kept photos added (tests). Past `MASK_SHARE` of masked descriptors
(scanned for nothing) or with under half the photos covered, the index is rebuilt instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whales_identify.reid.vote_index import FaissVoteIndex, TieredVoteIndex, VoteIndex, _merge, extend

# a donor with more than this share of its descriptors removed is rebuilt, not masked
MASK_SHARE = 0.25
KEY_DTYPE = "S16"


def photo_identities(image_ids: Sequence[str], parts: Sequence[np.ndarray],
                     digests: Sequence[bytes] | None = None) -> Iterator[bytes]:
    """What names each photo: its id, descriptor count and first and last descriptor (a changed
    photo changes its descriptors), or its pack digest where given (`feature_pack.digest`: reading
    mapped rows would make the whole mapping resident)."""
    for i, (iid, p) in enumerate(zip(image_ids, parts, strict=True)):
        head = f"{iid}|{len(p)}|".encode()
        if digests is not None:
            yield head + digests[i]
        else:
            yield head + (p[0].tobytes() + p[-1].tobytes() if len(p) else b"")


def photo_keys(image_ids: Sequence[str], parts: Sequence[np.ndarray],
               digests: Sequence[bytes] | None = None) -> np.ndarray:
    """One 16-byte key per photo: a hash of its `photo_identities` (which `vote_saved.fingerprint`
    hashes for the whole catalog)."""
    keys = np.empty(len(image_ids), KEY_DTYPE)
    for i, identity in enumerate(photo_identities(image_ids, parts, digests)):
        keys[i] = hashlib.blake2b(identity, digest_size=16).digest()
    return keys


@dataclass(frozen=True)
class Reusable:
    """A built index that a later snapshot may reuse: `index` (plain or with its enrolment tier),
    `keys` of its images in its own numbering (`photo_keys`; a removed photo: a key no photo has),
    and the `settings` it was built with (None: checked by the caller, e.g. a saved index's key)."""

    index: FaissVoteIndex | TieredVoteIndex
    keys: np.ndarray
    settings: Any = None

    @classmethod
    def of(cls, index: VoteIndex | None, snapshot_keys: Callable[[], np.ndarray],
           settings: Any = None) -> Reusable | None:
        """A snapshot's built `index` (None for FLANN), given the keys of the snapshot's photos."""
        inner = index.inner if isinstance(index, MaskedVoteIndex) else index
        if not isinstance(inner, FaissVoteIndex | TieredVoteIndex):
            return None
        mine = snapshot_keys()
        if not isinstance(index, MaskedVoteIndex):
            return cls(inner, mine, settings)
        keys, kept = np.zeros(len(index.image_of), KEY_DTYPE), index.image_of >= 0
        keys[kept] = mine[index.image_of[kept]]
        return cls(inner, keys, settings)


def descriptor_counts(index: FaissVoteIndex | TieredVoteIndex, images: int) -> np.ndarray:
    """Descriptors per image of `index` (at least `images` long): the built index's own counts
    (`FaissVoteIndex.owner_counts`, counted once), a tier's added (without concatenating the
    owners)."""
    own = (index.base if isinstance(index, TieredVoteIndex) else index).owner_counts
    delta = np.bincount(index.delta_owner) if isinstance(index, TieredVoteIndex) else own[:0]
    counts = np.zeros(max(images, len(own), len(delta)), np.int64)
    counts[:len(own)] += own
    counts[:len(delta)] += delta
    return counts


def plan(donor_keys: np.ndarray, counts: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
    """Which donor image each photo of `keys` is (`image_of[donor image]` = its position, -1: gone)
    and which photos the donor lacks, or None where masking is not worth it (module docstring).
    `counts`: the donor's descriptors per image (`descriptor_counts`, or from a saved owners file
    before the index itself is read)."""
    if len(counts) != len(donor_keys):  # keys of other images than the index holds
        return None
    position = {k: i for i, k in enumerate(donor_keys.tolist())}
    image_of = np.full(len(donor_keys), -1, np.int64)
    new: list[int] = []
    for j, k in enumerate(keys.tolist()):
        i = position.get(k)
        if i is None or image_of[i] >= 0:
            new.append(j)
        else:
            image_of[i] = j
    if len(keys) - len(new) < len(keys) / 2 or counts[image_of < 0].sum() > MASK_SHARE * counts.sum():
        return None
    return image_of, new


def reuse(donor: Reusable, keys: np.ndarray, parts: Sequence[np.ndarray], fold_at: int = 20_000,
          after_chunk: Callable[[], None] | None = None,
          planned: tuple[np.ndarray, list[int]] | None = None) -> VoteIndex | None:
    """The index of the photos `keys` (descriptors `parts`, in snapshot order) made from `donor`,
    or None where it is not worth it (see the module). `planned`: its `plan`, where already made."""
    if planned is None:
        planned = plan(donor.keys, descriptor_counts(donor.index, len(donor.keys)), keys)
    if planned is None:
        return None
    image_of, new = planned
    inner: VoteIndex = donor.index
    if new:
        grown = extend(donor.index, len(image_of), [parts[j] for j in new], fold_at, after_chunk)
        if not isinstance(grown, FaissVoteIndex | TieredVoteIndex):
            return None
        if isinstance(grown, FaissVoteIndex):  # folded: a copy of the donor plus the new photos
            grown.photos = np.concatenate([donor.keys, keys[new]])
        inner = grown
        image_of = np.concatenate([image_of, np.asarray(new, np.int64)])
    if np.array_equal(image_of, np.arange(len(keys))):
        return inner  # photos appended in order only: the tier itself (or the donor)
    return MaskedVoteIndex(inner, image_of)


class MaskedVoteIndex:
    """`inner` (an index over more photos) with its image i shown as image `image_of[i]` of the
    snapshot, and the images where it is -1 left out of every search (module docstring)."""

    def __init__(self, inner: FaissVoteIndex | TieredVoteIndex, image_of: np.ndarray,
                 previous: MaskedVoteIndex | None = None):
        self.inner, self.image_of = inner, image_of
        kept = image_of >= 0
        base = inner.base if isinstance(inner, TieredVoteIndex) else inner
        self._base = base
        if previous is not None and previous._base is base:  # appended since: the same base mask
            self._base_bits, self._base_params, base_kept = (
                previous._base_bits, previous._base_params, previous._base_kept)
        else:
            keep = kept[base.owner]
            self._base_bits = np.packbits(keep, bitorder="little")
            self._base_params = _params(base.index, self._base_bits)
            base_kept = int(keep.sum())
        self._base_kept = base_kept
        self._delta_params: Any = None
        delta_kept = 0
        if isinstance(inner, TieredVoteIndex) and len(inner.delta_owner):
            keep = kept[inner.delta_owner]
            self._delta_bits = np.packbits(keep, bitorder="little")
            self._delta_params = _params(inner.delta, self._delta_bits)
            delta_kept = int(keep.sum())
        self._len = base_kept + delta_kept

    @property
    def owner(self) -> np.ndarray:
        """Every indexed descriptor's snapshot image (-1: a removed photo's, never returned)."""
        return self.image_of[self.inner.owner]

    def owners(self, idx: np.ndarray) -> np.ndarray:
        return self.image_of[self.inner.owners(idx)].astype(np.int32)

    def __len__(self) -> int:
        return self._len

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(q, np.float32)
        inner = self.inner
        base = inner.base if isinstance(inner, TieredVoteIndex) else inner
        results = []
        if self._base_kept:
            d2, idx = base.index.search(q, min(k, self._base_kept), params=self._base_params)
            results.append((idx.astype(np.int64), d2))
        if self._delta_params is not None and self._len > self._base_kept:
            assert isinstance(inner, TieredVoteIndex)
            d2, idx = inner.delta.search(q, min(k, self._len - self._base_kept), params=self._delta_params)
            results.append((np.where(idx >= 0, idx + len(base), -1).astype(np.int64), d2))
        if not results:
            return np.full((len(q), k), -1, np.int64), np.full((len(q), k), np.inf, np.float32)
        return _pad(_merge(results, k), k)

    def grown(self, n_images: int, parts: Sequence[np.ndarray], fold_at: int,
              after_chunk: Callable[[], None] | None = None) -> VoteIndex | None:
        """`vote_index.extend` of this index: the new photos (numbered from `n_images`, the
        snapshot's count) are added to the inner index, the mask kept."""
        inner = extend(self.inner, len(self.image_of), parts, fold_at, after_chunk)
        if not isinstance(inner, FaissVoteIndex | TieredVoteIndex):
            return None
        image_of = np.concatenate([self.image_of, np.arange(n_images, n_images + len(parts), dtype=np.int64)])
        return MaskedVoteIndex(inner, image_of, previous=self)


def _pad(result: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    idx, d2 = result
    if idx.shape[1] >= k:
        return idx, d2
    fill = k - idx.shape[1]
    return (np.pad(idx, ((0, 0), (0, fill)), constant_values=-1),
            np.pad(d2, ((0, 0), (0, fill)), constant_values=np.inf))


def _params(index: Any, bits: np.ndarray) -> Any:
    """faiss search parameters that leave out the ids whose bit is 0 (`bits`: little-endian
    packed, kept alive by the caller), with the index's own search budget."""
    import faiss

    sel = faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(bits))
    if isinstance(index, faiss.IndexRefine):
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = index.k_factor
        params.base_index_params = _params(index.base_index, bits)
    else:
        ivf = faiss.try_extract_index_ivf(index)
        params = faiss.SearchParametersIVF() if ivf is not None else faiss.SearchParameters()
        if ivf is not None:
            params.nprobe = ivf.nprobe
    params.sel = sel
    params._keep = (sel, bits)  # the selector reads `bits`; faiss holds neither
    return params
