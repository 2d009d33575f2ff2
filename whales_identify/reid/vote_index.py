"""Approximate nearest neighbours over every reference RootSIFT descriptor (the LNBNN vote's index).

Two implementations with one interface (`len`, `owner`, `search(q, k) -> (idx, d2)`):

- `FlannVoteIndex`: OpenCV FLANN randomised k-d trees over float32 descriptors, built in shards.
- `FaissVoteIndex`: a faiss inverted-file index with 8-bit scalar-quantised codes (IVF-SQ8):
  a quarter of the memory of float32, built incrementally (no second copy), with a search budget
  (`nprobe` lists) that finds more of the true neighbours than FLANN's for the same time.

`idx` is -1 where an index has fewer than k results for a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from whales_identify.reid.local_features import as_float


class VoteIndex(Protocol):
    owner: np.ndarray  # reference image of each indexed descriptor

    def __len__(self) -> int: ...
    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _owners(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(parts)])


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

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx_parts, d2_parts = [], []
        for offset, index in self.shards:
            idx, d2 = index.knnSearch(q, k, params=dict(checks=self.checks))
            idx_parts.append(idx.astype(np.int64) + offset)
            d2_parts.append(d2)
        if len(self.shards) == 1:
            return idx_parts[0], d2_parts[0]
        idx, d2 = np.concatenate(idx_parts, axis=1), np.concatenate(d2_parts, axis=1)
        order = np.argsort(d2, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(idx, order, axis=1), np.take_along_axis(d2, order, axis=1)


class FaissVoteIndex:
    """faiss IVF-SQ8 (exact flat search below `exact_below` descriptors).

    Args:
        parts: uint8 RootSIFT descriptors per reference image.
        nprobe: inverted lists visited per query descriptor (the search budget).
        list_size: descriptors per inverted list, on average (sets the number of lists).
        exact_below: catalogs with fewer descriptors are searched exhaustively.
        seed: sampling and k-means seed (the index, hence every result, is reproducible).
    """

    def __init__(self, parts: Sequence[np.ndarray], *, nprobe: int = 16, list_size: int = 600,
                 exact_below: int = 50_000, seed: int = 0, chunk: int = 100_000):
        import faiss

        self.owner = _owners(parts)
        n, dim = len(self.owner), 128
        stacked = np.concatenate(parts) if parts else np.zeros((0, dim), np.uint8)  # uint8: small
        if n < exact_below:
            self.index: Any = faiss.IndexFlatL2(dim)
        else:
            nlist = max(16, n // list_size)
            # faiss's Python wrapper keeps the quantizer alive with the index
            self.index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(dim), dim, nlist,
                                                       faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
            self.index.cp.niter = 10  # k-means iterations: bounded start-up time
            self.index.cp.seed = seed
            self.index.nprobe = min(nprobe, nlist)
            take = np.sort(np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False))
            self.index.train(as_float(stacked[take]))
        for start in range(0, n, chunk):  # float32 one chunk at a time
            self.index.add(as_float(stacked[start:start + chunk]))

    def __len__(self) -> int:
        return len(self.owner)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d2, idx = self.index.search(np.ascontiguousarray(q, np.float32), k)
        return idx.astype(np.int64), d2

