"""Why a query matched a candidate: the verified keypoint pairs between the query photo and one
reference photo of the candidate, in each stored image's own pixels.

Nothing of the verification is stored per prediction: `explain_match` recomputes it from the stored
query photo and the reference photo's stored local features, with the same steps and parameters as
matching (`local_features.verify_pairs`: ratio test, one-to-one, RANSAC similarity transform). It
costs one RootSIFT extraction of the query and one ratio-test product (tens of milliseconds; the
measurement and the comparison with storing are in docs/REID.md, "Explanations").

Coordinates: keypoints live in a *feature frame* (the photo downscaled to `LocalFeatureConfig.max_side`).
The query's stored photo is the one features are recomputed from, so its frame follows from its
size. A reference photo's stored image is its thumbnail; its frame is `CatalogImage.feature_size`,
kept at enrolment. Records enrolled before that have none: when the thumbnail is smaller than
`MatchConfig.thumbnail_side` the photo was never downscaled and the frame follows exactly; otherwise
it is estimated from the extent of the keypoints (SIFT finds keypoints up to a few pixels from the
border), which can misplace points by a few per cent of the image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from whales_identify.records.store import CatalogImage
from whales_identify.reid.local_features import LocalFeatures, extract, feature_frame, verify_pairs
from whales_identify.reid.matching import MatchConfig

MAX_PAIRS = 100  # pairs returned at most (best first); the inlier count is never capped


@dataclass(frozen=True)
class MatchPair:
    query: tuple[float, float]  # (x, y) in the stored query photo's pixels
    reference: tuple[float, float]  # (x, y) in the stored reference image's pixels
    score: float  # descriptor cosine similarity of the pair, 0..1


@dataclass(frozen=True)
class MatchExplanation:
    """The verified inlier pairs of one query and one reference photo.

    Attributes:
        reference_image_id: the catalog photo compared with.
        inliers: RANSAC inliers (the evidence matching scored); `pairs` holds at most `MAX_PAIRS`.
        query_size / reference_size: (width, height) of the stored images the coordinates refer to.
        pairs: the inlier pairs, most similar descriptors first.
        transform: 3x3 similarity transform (row-major) mapping query to reference pixels, or None.
        tentative: one-to-one ratio-test matches that RANSAC started from.
        reason: why there are no pairs (None when there are).
    """

    reference_image_id: str
    inliers: int
    query_size: tuple[int, int] | None
    reference_size: tuple[int, int] | None
    pairs: list[MatchPair] = field(default_factory=list)
    transform: list[list[float]] | None = None
    tentative: int = 0
    reason: str | None = None


def image_size(jpeg: bytes | None) -> tuple[int, int] | None:
    """(width, height) of an encoded image from its header (no pixel decoding), or None."""
    if not jpeg:
        return None
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            return im.size
    except Exception:  # an unreadable thumbnail only loses the drawing, never the answer
        return None


def reference_frame(reference: CatalogImage, thumb_size: tuple[int, int],
                    cfg: MatchConfig) -> tuple[int, int]:
    """The size of the image `reference.keypoints` are measured in (see the module docstring)."""
    if reference.feature_size is not None:
        return reference.feature_size
    if max(thumb_size) < cfg.thumbnail_side:  # a thumbnail is never upscaled: this is the photo's size
        return feature_frame(thumb_size, cfg.local)
    kp = reference.keypoints if reference.keypoints is not None else np.zeros((0, 2))
    axis = 0 if thumb_size[0] >= thumb_size[1] else 1
    extent = float(kp[:, axis].max()) + 1.0 if len(kp) else 0.0
    long = cfg.local.max_side if extent >= 0.97 * cfg.local.max_side else max(extent, max(thumb_size))
    scale = long / max(thumb_size)
    return max(1, round(thumb_size[0] * scale)), max(1, round(thumb_size[1] * scale))


def _to_pixels(frame: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """3x3 map from feature-frame to stored-image coordinates (pixel centres kept aligned)."""
    sx, sy = size[0] / frame[0], size[1] / frame[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _apply(m: np.ndarray, pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = pts @ m[:2, :2].T + m[:2, 2]
    return np.clip(out, 0.0, np.array(size, np.float64) - 1e-3)


def explain_match(query: Image.Image, reference: CatalogImage, config: MatchConfig | None = None, *,
                  query_features: LocalFeatures | None = None,
                  max_pairs: int = MAX_PAIRS) -> MatchExplanation:
    """The verified inlier pairs between a stored query photo and one reference photo.

    Args:
        query: the stored query photo (its pixels are the query coordinates).
        reference: the reference record with its keypoints, descriptors and thumbnail.
        config: matching parameters (ratio, RANSAC threshold, keypoints); the catalog's own.
        query_features: precomputed features of `query` (else extracted here).
        max_pairs: most pairs returned.

    Returns:
        A `MatchExplanation`; `reason` says why when there are no pairs.
    """
    cfg = config or MatchConfig()
    q_size = query.size
    r_size = image_size(reference.thumbnail)
    out = MatchExplanation(reference.image_id, 0, q_size, r_size)

    def without(reason: str, tentative: int = 0) -> MatchExplanation:
        return MatchExplanation(out.reference_image_id, 0, q_size, r_size, tentative=tentative, reason=reason)

    if not cfg.use_local:
        return without("local features are disabled on this server (global embedding only): "
                       "there was no geometric verification")
    if reference.descriptors is None or reference.keypoints is None or not len(reference.descriptors):
        return without("the reference photo has no local features: it was matched on the global "
                       "embedding only")
    if r_size is None:
        return without("the reference photo has no stored thumbnail to draw the pairs on")
    lf = query_features if query_features is not None else extract(query, cfg.local)
    if not len(lf.descriptors):
        return without("no keypoints were found in the query photo")
    found = verify_pairs(lf, LocalFeatures(reference.keypoints, reference.descriptors), ratio=cfg.ratio,
                         max_keypoints=cfg.verify_keypoints, threshold=cfg.ransac_threshold)
    if found.transform is None or not len(found.query):
        return without(f"no geometrically consistent matches ({found.tentative} ratio-test matches, "
                       f"no transform with enough inliers)", found.tentative)
    to_q = _to_pixels(feature_frame(q_size, cfg.local), q_size)
    to_r = _to_pixels(reference_frame(reference, r_size, cfg), r_size)
    qp = _apply(to_q, found.query.astype(np.float64), q_size)
    rp = _apply(to_r, found.gallery.astype(np.float64), r_size)
    m = np.vstack([found.transform, [0.0, 0.0, 1.0]])
    transform = to_r @ m @ np.linalg.inv(to_q)  # stored query pixels -> stored reference pixels
    pairs = [MatchPair((round(float(a[0]), 1), round(float(a[1]), 1)),
                       (round(float(b[0]), 1), round(float(b[1]), 1)), round(float(s), 4))
             for a, b, s in zip(qp[:max_pairs], rp[:max_pairs], found.similarity[:max_pairs], strict=True)]
    return MatchExplanation(reference.image_id, len(found.query), q_size, r_size, pairs,
                            [[round(float(v), 6) for v in row] for row in transform], found.tentative)
