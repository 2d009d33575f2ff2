"""Verification features off the heap (`MatchConfig.features_dir`): the descriptors and keypoints of
the catalog's photos packed into two files mapped read-only, each photo's arrays views into them.

At 100k photos the uint8 descriptors and float32 keypoints are ~6.3 GB, and a query verifies at
most a few hundred photos; mapped, only the pages that are read are resident, and the kernel may
drop them again (they are file pages, not the heap).

`FeaturePacker` is given each photo as the store streams them (`Catalog.load`):
- a photo found in a pack saved with the same settings (same `digest`: id, descriptor
  count, first and last descriptor, every keypoint; also the vote index's key) becomes a view into that
  pack; the load can tell from the store's `FeatureHead` alone (`head_digest`, `take`), without
  reading the descriptors. The load tries the saved packs newest first (`FeaturePack.saved`): another
  catalog sharing the folder may have saved the newest;
- others (enrolled since the pack was written) stay in RAM while they are few (`UNPACKED_SHARE`
  of the pack's photos);
- beyond that, or without a pack, a new pack is written as the photos stream (the photos already
  seen copied in first), under temporary names renamed into place (`_saved`), and read back mapped;
  so is one when fewer than half of the saved pack's photos are still in the catalog.

Files, per key: `feat-KEY.desc` (rows x 128 uint8), `feat-KEY.kp` (rows x 2 float32), raw;
`feat-KEY.photos.npz` (per photo: offsets into the rows and a digest); `feat-KEY.json` last.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from whales_identify.records.store import FeatureHead
from whales_identify.reid import _saved
from whales_identify.reid.local_features import DESCRIPTOR_DIM

log = logging.getLogger(__name__)
PREFIX = "feat"
_SUFFIXES = (".desc", ".kp", ".photos.npz")
# photos missing from the pack that are kept in RAM instead of writing a new pack, at most this
# share of the pack's photos (or UNPACKED_MIN): a restart after a few enrolments rewrites nothing
UNPACKED_SHARE = 0.1
UNPACKED_MIN = 64
Features = tuple[np.ndarray, np.ndarray]  # (keypoints, descriptors)


def packable(keypoints: np.ndarray | None, descriptors: np.ndarray | None) -> bool:
    """Whether a photo's arrays have the pack's layout (others simply stay in RAM)."""
    return (keypoints is not None and descriptors is not None and descriptors.dtype == np.uint8
            and descriptors.ndim == 2 and descriptors.shape[1] == DESCRIPTOR_DIM
            and keypoints.dtype == np.float32 and keypoints.shape == (len(descriptors), 2))


def digest(image_id: str, keypoints: np.ndarray, descriptors: np.ndarray) -> bytes:
    """Which photo, and which features of it: the id, the count, the first (strongest) and last
    descriptor and every keypoint (a re-extracted or changed photo changes them; hashing every
    descriptor would cost ~10 s at 100k photos, and reading them from the store at start-up is
    what the pack avoids)."""
    return _digest(image_id, len(descriptors), descriptors[:1], descriptors[-1:], keypoints)


def head_digest(image_id: str, head: FeatureHead, keep: int) -> bytes | None:
    """`digest` of a photo's first `keep` features, from the head the store read instead of them
    (`Store.iter_catalog_heads(keep)`); None when they are not of the pack's layout."""
    kp, first, last = head.keypoints, head.first_descriptor, head.last_descriptor
    if (kp is None or first is None or last is None or first.dtype != np.uint8
            or first.shape != (1, DESCRIPTOR_DIM) or kp.dtype != np.float32 or kp.shape != (head.rows, 2)):
        return None
    rows = min(head.rows, keep)
    return _digest(image_id, rows, first, last, kp[:rows])


def _digest(image_id: str, rows: int, first: np.ndarray, last: np.ndarray, keypoints: np.ndarray) -> bytes:
    h = hashlib.blake2b(f"{image_id}|{rows}|".encode(), digest_size=16)
    if rows:
        h.update(np.ascontiguousarray(first).tobytes())
        h.update(np.ascontiguousarray(last).tobytes())
    h.update(np.ascontiguousarray(keypoints).tobytes())
    return h.digest()


def prefetch(arrays: Iterable[np.ndarray]) -> None:
    """Ask the kernel to read now, all at once, the pages of these arrays that are views into a
    mapped pack (`MADV_WILLNEED`; arrays in RAM are skipped). A query's verification reads about a
    hundred photos' features: from a cold page cache, one fault after another cost the match
    stage ~0.17 s at 100k photos; read ahead together they overlap."""
    page = mmap.PAGESIZE
    for a in arrays:
        owner = a.base
        while owner is not None and not isinstance(owner, np.memmap):
            owner = owner.base
        raw = getattr(owner, "_mmap", None)
        if raw is None or not a.nbytes or not hasattr(mmap, "MADV_WILLNEED"):
            continue
        # the mapping starts at the memmap's offset rounded down to the allocation granularity
        mapped_at = owner.__array_interface__["data"][0] - owner.offset % mmap.ALLOCATIONGRANULARITY
        at = a.__array_interface__["data"][0] - mapped_at
        start = at // page * page
        with contextlib.suppress(OSError, ValueError):  # a hint: never fails a query
            raw.madvise(mmap.MADV_WILLNEED, start, at + a.nbytes - start)


class FeaturePack:
    """A saved pack, mapped read-only."""

    def __init__(self, folder: Path, key: str):
        base = folder / f"{PREFIX}-{key}"
        with np.load(f"{base}.photos.npz") as z:
            self.offsets, digests = z["offsets"].astype(np.int64), z["digests"]
        self.key, self.paths = key, (Path(f"{base}.desc"), Path(f"{base}.kp"))
        self.index = {bytes(d): i for i, d in enumerate(digests)}
        rows = int(self.offsets[-1]) if len(self.offsets) else 0
        self._maps = [np.memmap(self.paths[0], np.uint8, "r", shape=(rows, DESCRIPTOR_DIM)),
                      np.memmap(self.paths[1], np.float32, "r", shape=(rows, 2))] if rows else []
        # plain ndarray views (no memmap subclass in the arithmetic); they keep the mapping alive
        self.desc = np.asarray(self._maps[0]) if rows else np.zeros((0, DESCRIPTOR_DIM), np.uint8)
        self.kp = np.asarray(self._maps[1]) if rows else np.zeros((0, 2), np.float32)

    @classmethod
    def saved(cls, folder: Path, settings: str) -> Iterator[FeaturePack]:
        """The packs saved with these settings that open, newest first (opened one at a time)."""
        for info in _saved.list_saved(folder, PREFIX, settings):
            try:
                pack = cls(folder, str(info["key"]))
            except (OSError, ValueError, KeyError, TypeError):  # pruned meanwhile, or incomplete
                continue
            yield pack

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def views(self, i: int) -> Features:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.kp[lo:hi], self.desc[lo:hi]

    def release(self) -> None:
        """Drop this process's resident pages of the mapping (after each chunk of a vote index
        build and after each query); they stay in the page cache and come back on the next read."""
        for m in self._maps:
            raw = getattr(m, "_mmap", None)
            if raw is not None and hasattr(mmap, "MADV_DONTNEED"):
                raw.madvise(mmap.MADV_DONTNEED)


class FeaturePacker:
    """Collects the streamed photos' features; `finish()` gives each one's arrays (views into a
    pack where packed). See the module docstring.

    Args:
        directory: the folder shared by the workers.
        settings: what the arrays depend on (the kept keypoints per photo): packs made with other
            settings are never used.
        base: the saved pack to take photos from (one of `FeaturePack.saved`), or None.
    """

    def __init__(self, directory: str, settings: str, base: FeaturePack | None):
        self.folder, self.settings = Path(directory), settings
        self.folder.mkdir(parents=True, exist_ok=True)
        self.base = base
        # per photo, in stream order: (image id, digest, where) with where = ("base", i),
        # ("ram", (kp, desc)) or ("new", row offset)
        self.photos: list[tuple[str, bytes, tuple]] = []
        self.unpacked = 0
        self.from_base = 0  # photos found in `base` (copied into a new pack or not)
        self.allowed = max(UNPACKED_MIN, int(UNPACKED_SHARE * len(self.base))) if self.base else -1
        self._files: list[tuple[Path, BinaryIO]] = []
        self._rows = 0
        self.pack: FeaturePack | None = None
        self.digests: dict[str, bytes] = {}  # of the photos that are views into `pack`

    def take(self, image_id: str, photo_digest: bytes) -> bool:
        """Take a photo known only by its digest (`head_digest`): True when the saved pack holds
        it (it becomes a view into the pack), else False (the caller reads its arrays: `add`)."""
        found = self.base.index.get(photo_digest) if self.base is not None and not self._files else None
        if found is None:
            return False
        self.photos.append((image_id, photo_digest, ("base", found)))
        self.from_base += 1
        return True

    def add(self, image_id: str, keypoints: np.ndarray | None, descriptors: np.ndarray | None) -> bool:
        """Take one photo's arrays (False: not packable, the caller keeps them)."""
        if not packable(keypoints, descriptors):
            return False
        assert keypoints is not None and descriptors is not None
        d = digest(image_id, keypoints, descriptors)
        found = self.base.index.get(d) if self.base is not None else None
        self.from_base += found is not None  # (counted while writing too: `is_mine`)
        if self._files:
            self.photos.append((image_id, d, ("new", self._write(keypoints, descriptors))))
            return True
        if found is not None:
            self.photos.append((image_id, d, ("base", found)))
            return True
        self.photos.append((image_id, d, ("ram", (keypoints, descriptors))))
        self.unpacked += 1
        if self.unpacked > self.allowed:
            self._start_writing()
        return True

    def base_mostly_taken(self) -> bool:
        """Whether at least half of the saved pack's photos were taken (else the catalog removed
        most of it, or it is another catalog's sharing the folder: its rows are not kept)."""
        return self.base is not None and self.from_base >= len(self.base) // 2

    def is_mine(self, photos: int) -> bool:
        """Whether the saved pack is this catalog's (of `photos` photos): each holds at least half
        of the other's. A catalog holding a subset of another's photos (the scale benchmark's 2k
        and 100k) tells the two packs apart; a copy of a catalog (staging) does not."""
        return self.base_mostly_taken() and 2 * self.from_base >= photos

    def _start_writing(self) -> None:
        """A new pack: the photos seen so far go in first (from the old pack's file, not its
        mapping, so that copying does not make its pages resident here)."""
        for suffix in (".desc", ".kp"):
            tmp = _saved.partial(self.folder / f"{PREFIX}-new{suffix}")
            self._files.append((tmp, open(tmp, "wb")))  # closed in finish/abort
        sources = [open(p, "rb") for p in self.base.paths] if self.base is not None else []
        try:
            for j, (iid, d, where) in enumerate(self.photos):
                if where[0] == "ram":
                    kp, desc = where[1]
                    self.photos[j] = (iid, d, ("new", self._write(kp, desc)))
                    continue
                assert self.base is not None
                lo, hi = int(self.base.offsets[where[1]]), int(self.base.offsets[where[1] + 1])
                start = self._rows
                for (_, out), src, width in zip(self._files, sources, (DESCRIPTOR_DIM, 8), strict=True):
                    src.seek(lo * width)
                    out.write(src.read((hi - lo) * width))
                self._rows += hi - lo
                self.photos[j] = (iid, d, ("new", start))
        finally:
            for src in sources:
                src.close()

    def _write(self, keypoints: np.ndarray, descriptors: np.ndarray) -> int:
        start = self._rows
        self._files[0][1].write(np.ascontiguousarray(descriptors).tobytes())
        self._files[1][1].write(np.ascontiguousarray(keypoints).tobytes())
        self._rows += len(descriptors)
        return start

    def finish(self) -> dict[str, Features]:
        """Every taken photo's (keypoints, descriptors): views into the pack, or the RAM arrays of
        the few photos left out of it (`digests` then holds the packed ones' digests). Raises
        OSError when a new pack cannot be written or read."""
        if not self._files and self.base is not None and not self.base_mostly_taken():
            self._start_writing()  # most of the saved pack was removed: do not keep its rows forever
        # writing: every photo is in the new pack, in stream order; else the saved one (or none)
        self.pack = self._save() if self._files else self.base
        out: dict[str, Features] = {}
        for n, (iid, d, where) in enumerate(self.photos):
            if where[0] == "ram" or self.pack is None:
                out[iid] = where[1]
            else:
                out[iid] = self.pack.views(n if where[0] == "new" else where[1])
                self.digests[iid] = d
        self.photos = []
        return out

    def _save(self) -> FeaturePack:
        # the saved pack this one replaces for the same catalog (not another catalog's, nor one
        # it kept little of: `is_mine`) is deleted now, so that rewrites after enrolments do not
        # prune the pack of another catalog sharing the folder
        superseded = self.base.key if self.base is not None and self.is_mine(len(self.photos)) else None
        for _, fh in self._files:
            fh.close()
        digests = np.frombuffer(b"".join(d for _, d, _ in self.photos), np.uint8).reshape(-1, 16)
        starts = [w[1] for _, _, w in self.photos]
        offsets = np.array([*starts, self._rows], np.int64)
        key = hashlib.blake2b(self.settings.encode() + digests.tobytes(), digest_size=12).hexdigest()
        base = self.folder / f"{PREFIX}-{key}"
        photos_tmp = _saved.partial(Path(f"{base}.photos.npz"))
        try:
            with open(photos_tmp, "wb") as fh:
                np.savez(fh, offsets=offsets, digests=digests)
            for (tmp, _), suffix in zip(self._files, (".desc", ".kp"), strict=True):
                tmp.replace(f"{base}{suffix}")
            photos_tmp.replace(f"{base}.photos.npz")
            _saved.write_meta(self.folder, PREFIX, key, {"images": len(self.photos), "rows": self._rows,
                                                         "settings": self.settings})
        finally:
            photos_tmp.unlink(missing_ok=True)
            self.abort()
        if superseded is not None and superseded != key:
            _saved.delete(self.folder, PREFIX, superseded, _SUFFIXES)
        _saved.prune(self.folder, PREFIX, keep=key, suffixes=_SUFFIXES)
        return FeaturePack(self.folder, key)

    def abort(self) -> None:
        """Close and delete the temporary files (a failed or refused load)."""
        for tmp, fh in self._files:
            fh.close()
            tmp.unlink(missing_ok=True)
        self._files = []
