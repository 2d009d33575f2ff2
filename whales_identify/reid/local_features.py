"""Local features for re-ranking: RootSIFT on CLAHE-equalised grey images, batched ratio-test
matching and RANSAC geometric verification.

Descriptors are stored compactly (uint8, RootSIFT scaled by 255) with (K, 2) float32 keypoint
coordinates, strongest keypoints first, so that truncating an array keeps the best ones.
Work per query is bounded: a query is verified against at most a fixed number of candidates
(see `whales_identify.reid.catalog.MatchConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from PIL import Image

from whales_identify.reid._integer_matmul import scaled_products

DESCRIPTOR_DIM = 128


@dataclass(frozen=True)
class LocalFeatureConfig:
    """How local features are extracted.

    Args:
        max_keypoints: keypoints kept per image (strongest first).
        max_side: images are downscaled so that their long side is at most this (boat photos are
            large; right-whale head crops are 224 px and are left alone).
        clahe_clip: CLAHE clip limit (0 disables equalisation).
    """

    max_keypoints: int = 500
    max_side: int = 800
    clahe_clip: float = 2.0


@dataclass(frozen=True)
class LocalFeatures:
    keypoints: np.ndarray  # (K, 2) float32 pixel coordinates in the resized image
    descriptors: np.ndarray  # (K, 128) uint8 RootSIFT * 255


def feature_frame(size: tuple[int, int], cfg: LocalFeatureConfig | None = None) -> tuple[int, int]:
    """(width, height) of the image that keypoint coordinates are measured in, for a photo of
    `size`: downscaled so that its long side is at most `cfg.max_side`, never upscaled."""
    cfg = cfg or LocalFeatureConfig()
    w, h = size
    scale = cfg.max_side / max(h, w, 1)
    if scale >= 1.0:
        return w, h
    return max(1, round(w * scale)), max(1, round(h * scale))


def _grey(image: Image.Image, cfg: LocalFeatureConfig) -> np.ndarray:
    grey = np.asarray(image.convert("L"))
    h, w = grey.shape
    frame = feature_frame((w, h), cfg)
    if frame != (w, h):
        grey = cv2.resize(grey, frame, interpolation=cv2.INTER_AREA)
    if cfg.clahe_clip > 0:
        grey = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(8, 8)).apply(grey)
    return grey


def extract(image: Image.Image, cfg: LocalFeatureConfig | None = None) -> LocalFeatures:
    """RootSIFT keypoints and descriptors of one RGB image (empty arrays when there are none)."""
    cfg = cfg or LocalFeatureConfig()
    grey = _grey(image, cfg)
    sift = cv2.SIFT_create(nfeatures=cfg.max_keypoints)
    kps, desc = sift.detectAndCompute(grey, None)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_DIM), np.uint8))
    order = np.argsort([-k.response for k in kps], kind="stable")[: cfg.max_keypoints]
    pts = np.array([kps[i].pt for i in order], np.float32)
    return LocalFeatures(pts, to_rootsift_u8(desc[order]))


def to_rootsift_u8(desc: np.ndarray) -> np.ndarray:
    """SIFT -> RootSIFT (L1-normalise, square root: unit L2 norm), quantised to uint8."""
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
    return np.clip(np.round(np.sqrt(desc) * 255.0), 0, 255).astype(np.uint8)


def as_float(desc: np.ndarray) -> np.ndarray:
    """uint8 RootSIFT -> float32 unit vectors (dot product = cosine similarity)."""
    x = desc.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-7)  # in place: no second copy
    return x


def inverse_norms(desc: np.ndarray) -> np.ndarray:
    """1 / L2 norm of each uint8 descriptor (0 for an all-zero row), float32: what `as_float`
    divides by, from the exact integer sum of squares."""
    x = desc.astype(np.float32)
    sq = np.einsum("ij,ij->i", x, x).astype(np.float64)  # exact: at most 128 * 255**2 < 2**24
    return np.divide(1.0, np.sqrt(sq), out=np.zeros(len(desc)), where=sq > 0).astype(np.float32)


def ratio_matches(query: np.ndarray, gallery: Sequence[np.ndarray], ratio: float = 0.8
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowe ratio-test matches of one query against N gallery images in one product.

    The cosines are exact integer dot products of the uint8 descriptors over their norms
    (`_integer_matmul`: twice the float32 BLAS rate); the float32 product of normalised copies that
    this replaces agrees up to float rounding (tests/identify/test_verify_equivalence.py).

    Args:
        query: (Kq, 128) uint8 RootSIFT descriptors.
        gallery: N arrays of (K_i, 128) uint8 descriptors.
        ratio: the distance ratio of the best to the second-best neighbour.

    Returns:
        (N, Kq) index of the best gallery keypoint per query keypoint, its (N, Kq) float32 cosine
        similarity, and an (N, Kq) boolean array of which matches pass the ratio test.
    """
    n, kq = len(gallery), len(query)
    # at least 2 columns: a one-keypoint image's second neighbour is a zero padding row (cosine 0)
    k = max(2, max((len(g) for g in gallery), default=0))
    if n == 0 or kq == 0:
        return np.zeros((n, kq), np.int64), np.zeros((n, kq), np.float32), np.zeros((n, kq), bool)
    stacked = np.zeros((n * k, DESCRIPTOR_DIM), np.uint8)
    for i, g in enumerate(gallery):
        stacked[i * k:i * k + len(g)] = g
    # (Kq, N, K): each query keypoint's cosine times its norm (a positive factor per row leaves
    # the arg-max and the ratio alone), reduced over the contiguous last axis. RootSIFT vectors
    # are non-negative, so zero padding rows (0) never beat a real neighbour.
    sims = scaled_products(query, stacked, inverse_norms(stacked)).reshape(kq, n, k)
    best_idx = np.argmax(sims, axis=2)  # (Kq, N)
    best = np.take_along_axis(sims, best_idx[..., None], axis=2)[..., 0]
    np.put_along_axis(sims, best_idx[..., None], -2.0, axis=2)
    second = sims.max(axis=2)
    inv_q = inverse_norms(query)[:, None]
    best_idx, best, second = best_idx.T, (best * inv_q).T, (second * inv_q).T  # (N, Kq)
    # unit vectors: squared distance = 2 - 2 cos
    d1 = np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0))
    d2 = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
    ok = (d1 < ratio * d2) & (best > 0)
    return best_idx, best, ok


MAX_SCALE_CHANGE = 8.0  # a similarity transform scaling by more than this (or less than 1/this) is degenerate


def ransac_inliers(src: np.ndarray, dst: np.ndarray, threshold: float = 8.0) -> int:
    """Inliers of a RANSAC similarity transform (rotation, scale, translation) between point sets.

    A transform whose scale is below 1/MAX_SCALE_CHANGE or above MAX_SCALE_CHANGE counts 0: a
    near-zero scale collapses every query point onto one spot, so all matches that land there
    (e.g. many query keypoints matched to one featureless gallery keypoint) would be "inliers".
    """
    fit = ransac_fit(src, dst, threshold)
    return 0 if fit is None else int(fit[1].sum())


def ransac_fit(src: np.ndarray, dst: np.ndarray, threshold: float = 8.0
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The RANSAC similarity transform behind `ransac_inliers`: its (2, 3) matrix mapping `src`
    to `dst` and the (N,) boolean inlier mask, or None (too few points, no fit, degenerate scale)."""
    if len(src) < 3:
        return None
    m, inl = cv2.estimateAffinePartial2D(src.reshape(-1, 1, 2), dst.reshape(-1, 1, 2),
                                         method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                         maxIters=500, confidence=0.99)
    if m is None or inl is None:
        return None
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if not (1.0 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE):
        return None
    return m, inl.ravel().astype(bool)


def one_to_one(sel: np.ndarray, dst_idx: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """Of the query keypoints `sel` matched to gallery keypoints `dst_idx` (similarity `sim`),
    keep only the most similar match of each gallery keypoint (a gallery keypoint can be the
    image of one query keypoint only; "hub" descriptors otherwise collect dozens of matches)."""
    if len(sel) == 0:
        return sel
    order = np.lexsort((-sim, dst_idx))  # by gallery keypoint, most similar first
    first = np.ones(len(order), bool)
    first[1:] = dst_idx[order][1:] != dst_idx[order][:-1]
    return np.sort(sel[order[first]])


def verify(query: LocalFeatures, gallery: Sequence[LocalFeatures], ratio: float = 0.8,
           max_keypoints: int = 500, threshold: float = 8.0) -> np.ndarray:
    """Geometric-verification inlier counts of one query against each gallery image, shape (N,).

    Ratio-test matches are made one-to-one (each gallery keypoint keeps its most similar query
    keypoint) before RANSAC, and degenerate transforms count no inliers (`ransac_inliers`).
    """
    if not gallery or len(query.descriptors) == 0:
        return np.zeros(len(gallery), np.float32)
    qp = query.keypoints[:max_keypoints]
    idx, sim, ok = ratio_matches(query.descriptors[:max_keypoints],
                                 [g.descriptors[:max_keypoints] for g in gallery], ratio)
    out = np.zeros(len(gallery), np.float32)
    for i, g in enumerate(gallery):
        sel, _ = _tentative(idx[i], sim[i], ok[i])
        out[i] = ransac_inliers(qp[sel], _points(g)[idx[i, sel]], threshold)
    return out


def _points(features: LocalFeatures) -> np.ndarray:
    return np.asarray(features.keypoints, np.float32)


def _tentative(idx: np.ndarray, sim: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one ratio-test matches of one gallery image: query keypoint indices (their
    gallery keypoints are `idx[sel]`) and the descriptor cosine similarity of each."""
    sel = np.flatnonzero(ok)
    kept = one_to_one(sel, idx[sel], sim[sel])
    return kept, sim[kept]


@dataclass(frozen=True)
class Inliers:
    """What geometric verification found between a query and one gallery image (feature frames).

    Attributes:
        query / gallery: (N, 2) coordinates of the inlier pairs, most similar descriptors first.
        similarity: (N,) descriptor cosine similarity of each pair.
        transform: (2, 3) similarity transform mapping query to gallery coordinates, or None.
        tentative: one-to-one ratio-test matches RANSAC started from.
    """

    query: np.ndarray
    gallery: np.ndarray
    similarity: np.ndarray
    transform: np.ndarray | None
    tentative: int


def verify_pairs(query: LocalFeatures, gallery: LocalFeatures, ratio: float = 0.8,
                 max_keypoints: int = 500, threshold: float = 8.0) -> Inliers:
    """`verify` for one gallery image, keeping the inlier pairs and the transform, not just the
    count (the same steps: its `len(query)` equals `verify(query, [gallery], ...)[0]`)."""
    empty = Inliers(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                    None, 0)
    if len(query.descriptors) == 0 or len(gallery.descriptors) == 0:
        return empty
    idx, sims, ok = ratio_matches(query.descriptors[:max_keypoints],
                                  [gallery.descriptors[:max_keypoints]], ratio)
    sel, sim = _tentative(idx[0], sims[0], ok[0])
    src, dst = query.keypoints[:max_keypoints][sel], _points(gallery)[idx[0, sel]]
    fit = ransac_fit(src, dst, threshold)
    if fit is None:
        return replace(empty, tentative=len(sel))
    transform, inl = fit
    order = np.argsort(-sim[inl], kind="stable")
    return Inliers(src[inl][order], dst[inl][order], sim[inl][order], transform, len(sel))
