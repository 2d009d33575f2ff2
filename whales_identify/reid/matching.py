"""Matching one query photo against a catalog snapshot, training-free.

1. **Global**: cosine similarity of the query embedding to every reference embedding (one matrix
   product), best score per individual.
2. **Local vote** (HotSpotter's LNBNN): every query RootSIFT descriptor looks up its nearest
   gallery descriptors in one approximate-nearest-neighbour index over all reference descriptors
   (faiss IVF, fast-scan codes re-ranked by SQ8 codes by default, see `vote_index.py`); each
   individual among the first k neighbours gets the distance margin to the (k+1)-th neighbour.
   Summed per individual, this recovers candidates the global embedding ranks low.
3. **Geometric verification** of a bounded candidate set (top individuals by global score and by
   vote, at most two images each): ratio-test matches in one batched matrix product, then RANSAC
   inliers of a similarity transform.
4. **Fusion** of the three scores, fitted on a calibration split (`calibrate.py`: the learned
   logistic fusion of `fusion.py`, or linear weights); `is_new_individual` follows the
   calibration's open-set rule (P(new) >= a target, or a fused-score threshold) and the fused
   top-1 score gives the calibrated probability.

`score_query(index, ...)` gives the per-individual evidence (steps 1-3) and `rank(scores,
calibration, top_k)` the decision (step 4). `Catalog` (catalog.py) owns the photos and the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial

import numpy as np

from whales_identify.reid.calibrate import Calibration
from whales_identify.reid.feature_pack import prefetch
from whales_identify.reid.local_features import LocalFeatureConfig, LocalFeatures, as_float, verify
from whales_identify.reid.snapshot import MatchIndex
from whales_identify.results import Candidate, MatchResult

UNKNOWN_SPECIES = "unknown"
VERIFY_CHUNK = 16  # gallery photos per batched ratio-test product in verification


@dataclass(frozen=True)
class MatchConfig:
    """Work bounds and matching parameters (not fitted: chosen once, the same for every source).

    Args:
        local: how local features are extracted (enrolment and queries must agree).
        use_local: disable to match on the global embedding alone.
        global_candidates / vote_candidates: individuals verified geometrically, taken from the top
            of the global ranking and of the LNBNN vote ranking (bounded work per query).
        lnbnn_k: neighbours per query descriptor that vote.
        index_keypoints: descriptors per reference image put into the vote index.
        verify_keypoints: strongest keypoints per image used in geometric verification.
        flann_trees / flann_checks: the approximate-nearest-neighbour index accuracy.
        vote_shard_size: most descriptors per FLANN shard (bounds the memory peak of a build).
        vote_index / ivf_nprobe: "flann" (k-d trees) or "faiss" (IVF, `ivf_nprobe` lists
            searched per descriptor); see `vote_index.py`.
        ivf_codes / ivf_list_size / ivf_max_lists: the faiss index's codes (default: a
            fast-scan search re-ranked by 8-bit codes, "PQ64x4fs,Refine(SQ8)": SQ8's neighbours at
            ~4x its speed; "SQ8" alone; or fast-scan codes alone such as "PQ64x4fs": 4x less
            memory, lower recall),
            descriptors per list, and a cap on the number of lists (0: none); docs/REID.md "Scale".
        vote_index_dir: where built faiss vote indexes are saved and read back at start-up ("":
            nowhere, always built); keyed by the photos and these settings.
        features_dir: where the verification features (descriptors and keypoints) are packed
            into files mapped read-only instead of held in RAM ("": in RAM); shared by workers,
            keyed by the photos (`feature_pack.py`, docs/REID.md "Scale").
        vote_fold_at: descriptors enrolled since the last build that are searched exactly
            before they are folded into a copy of the index (enrolment without a rebuild).
        verify_threads: verification chunks of one query run on this many threads of a
            process-wide pool (1: on the caller's thread). The integer products and RANSAC release
            the GIL, so 2 halves a lone query's wall time on 2 cores; under concurrent requests it
            buys nothing (the cores are busy anyway), so the default leaves parallelism to requests.
        ratio / ransac_threshold: Lowe ratio and RANSAC reprojection threshold (pixels).
        species_neighbours: reference images whose species vote for the query's species.
        thumbnail_side: long side of stored JPEG thumbnails.
    """

    local: LocalFeatureConfig = field(default_factory=LocalFeatureConfig)
    use_local: bool = True
    # 20:30, not 30:80 (until 2026-12-07): the same accuracy on the full cross-fit's records (top-1
    # 0.637 vs 0.635, top-5 0.695 vs 0.696; scripts/reid_fewer_verified.py) for half the verification
    global_candidates: int = 20
    vote_candidates: int = 30
    lnbnn_k: int = 5
    index_keypoints: int = 500
    flann_trees: int = 4
    flann_checks: int = 64
    vote_shard_size: int = 400_000
    vote_index: str = "faiss"
    ivf_nprobe: int = 16
    ivf_codes: str = "PQ64x4fs,Refine(SQ8)"
    ivf_list_size: int = 600
    ivf_max_lists: int = 0
    vote_index_dir: str = ""
    features_dir: str = ""
    vote_fold_at: int = 20_000
    verify_keypoints: int = 500
    verify_threads: int = 1
    ratio: float = 0.9
    ransac_threshold: float = 6.0
    species_neighbours: int = 10
    thumbnail_side: int = 384


@dataclass
class Scores:
    """Per-individual evidence for one query (arrays aligned with `individual_ids`)."""

    individual_ids: list[str]
    species: list[str]
    cos: np.ndarray  # best global cosine per individual (-inf where no usable image)
    vote: np.ndarray  # LNBNN vote
    inliers: np.ndarray  # best RANSAC inlier count over verified images (0 when not verified)
    ref_image: np.ndarray  # index of the image that supports each individual best
    image_ids: list[str]
    neighbour_species: list[tuple[str, float]]  # (species, cos) of the nearest reference images


def score_query(ix: MatchIndex, embedding: np.ndarray, local: LocalFeatures | None,
                exclude: Iterable[str] = ()) -> Scores:
    """Per-individual evidence for one query, ignoring the reference images in `exclude`.

    `exclude` exists for leave-one-out evaluation (the query itself, its burst frames, or a
    whole individual for the open-set test).
    """
    cfg = ix.cfg  # the parameters the snapshot (and its vote index) was built with
    n_img, n_ind = len(ix.images), len(ix.individuals)
    excluded = np.zeros(n_img, bool)
    pos = {iid: i for i, iid in enumerate(ix.image_ids)} if exclude else {}
    for iid in exclude:
        if iid in pos:
            excluded[pos[iid]] = True
    sims = ix.similarities(embedding) if n_img else np.zeros(0)
    sims = np.where(excluded, -np.inf, sims)
    cos = np.maximum.reduceat(sims[ix.by_label], ix.starts) if n_img else np.zeros(0)
    vote = np.zeros(n_ind)
    img_vote = np.zeros(n_img)
    inliers = np.zeros(n_ind)
    ref = np.zeros(n_ind, np.int64)
    best = np.flatnonzero(sims == cos[ix.labels])  # the image that gives each individual its cos
    ref[ix.labels[best]] = best
    use_local = cfg.use_local and local is not None and len(local.descriptors) > 0
    if use_local and local is not None:
        _vote(ix, local, excluded, vote, img_vote)
        _verify(ix, local, excluded, sims, cos, vote, img_vote, inliers, ref)
    k = min(cfg.species_neighbours, n_img)
    order = np.argpartition(-sims, k - 1)[:k] if k else np.zeros(0, np.int64)
    order = order[np.argsort(-sims[order])]
    neighbours = [(ix.images[j].species, float(sims[j])) for j in order if np.isfinite(sims[j])]
    return Scores(ix.individuals, ix.species, cos, vote, inliers, ref, ix.image_ids, neighbours)


def _vote(ix: MatchIndex, local: LocalFeatures, excluded: np.ndarray, vote: np.ndarray,
          img_vote: np.ndarray) -> None:
    index = ix.vote_index()
    if index is None:
        return
    k = ix.cfg.lnbnn_k
    n_excl = int(excluded.sum())
    # ask for extra neighbours so that excluded images (self, burst frames) can be dropped
    extra = min(64, 2 + (n_excl * 4 if n_excl < 16 else 64))
    ks = min(k + 1 + extra, len(index))
    q = as_float(local.descriptors)
    idx, d2 = index.search(q, ks)
    dist = np.sqrt(np.maximum(d2, 0.0))
    img = index.owners(np.maximum(idx, 0))
    valid = (idx >= 0) & ~excluded[img]
    rank = np.cumsum(valid, axis=1)
    # the normaliser: distance of the (k+1)-th valid neighbour (else the farthest valid one)
    has_norm = (rank[:, -1] >= k + 1)
    last_valid = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    norm_col = np.where(has_norm, np.argmax(rank >= k + 1, axis=1), last_valid)
    norm = dist[np.arange(len(q)), norm_col]
    voters = valid & (rank <= k)
    rows, cols = np.nonzero(voters)
    contrib = np.maximum(norm[rows] - dist[rows, cols], 0.0)
    imgs = img[rows, cols]
    labs = ix.labels[imgs]
    # one vote per (query descriptor, individual): the nearest neighbour of that individual
    key = rows * len(ix.individuals) + labs
    first = np.unique(key, return_index=True)[1]  # rows are ordered by distance already
    np.add.at(vote, labs[first], contrib[first])
    np.add.at(img_vote, imgs, contrib)


def _verify(ix: MatchIndex, local: LocalFeatures, excluded: np.ndarray, sims: np.ndarray,
            cos: np.ndarray, vote: np.ndarray, img_vote: np.ndarray, inliers: np.ndarray,
            ref: np.ndarray) -> None:
    cfg = ix.cfg
    finite = np.isfinite(cos)
    by_cos = [i for i in _top(cos, cfg.global_candidates) if finite[i]]
    by_vote = [i for i in _top(vote, cfg.vote_candidates) if finite[i] and vote[i] > 0]
    cands = list(dict.fromkeys([*by_cos, *by_vote]))
    pairs: list[tuple[int, int]] = []
    for ind in cands:
        m = ix.members(ind)
        m = m[~excluded[m]]
        if not len(m):
            continue
        picks = {int(m[np.argmax(sims[m])]), int(m[np.argmax(img_vote[m])])}
        pairs.extend((ind, j) for j in sorted(picks))
    if not pairs:
        return
    # in chunks of 16 photos: the same counts, a (Kq, 16, K) similarity block (16 MB at 500
    # keypoints) instead of one (Kq, N, K) block (160 MB for 160 photos), and ~14 % faster. A
    # chunk is padded to its photo with the most keypoints, and a photo's count does not depend
    # on the others in its chunk: photos of similar size go together (~5 % fewer products at 2k).
    by_size = np.argsort([len(ix.local[j].descriptors) for _, j in pairs], kind="stable")
    gallery = [ix.local[pairs[p][1]] for p in by_size]
    prefetch([a for lf in gallery for a in (lf.descriptors, lf.keypoints)])  # where mapped from a pack
    chunks = [gallery[s:s + VERIFY_CHUNK] for s in range(0, len(gallery), VERIFY_CHUNK)]
    run = partial(verify, local, ratio=cfg.ratio, max_keypoints=cfg.verify_keypoints,
                  threshold=cfg.ransac_threshold)
    threads = min(cfg.verify_threads, len(chunks))
    counts = np.empty(len(pairs), np.float32)
    counts[by_size] = np.concatenate(list(_pool(threads).map(run, chunks)) if threads > 1 else
                                     [run(c) for c in chunks])
    for (ind, j), c in zip(pairs, counts, strict=True):
        if c > inliers[ind]:
            inliers[ind] = c
            ref[ind] = j


def rank(scores: Scores, cal: Calibration, top_k: int) -> MatchResult:
    """Fuse, calibrate and decide (new individual, species) from per-individual evidence."""
    finite = np.isfinite(scores.cos)
    fused = cal.fuse(np.where(finite, scores.cos, -1.0), scores.vote, scores.inliers)
    fused = np.where(finite, fused, -np.inf)
    order = [i for i in np.argsort(-fused, kind="stable")[:top_k] if np.isfinite(fused[i])]
    probs = cal.probability(probability_inputs(scores, cal, fused, finite)[order]) if order else np.zeros(0)
    candidates = [Candidate(individual_id=scores.individual_ids[i], species=scores.species[i],
                            score=float(fused[i]), probability=float(p),
                            reference_image_id=scores.image_ids[scores.ref_image[i]],
                            inliers=int(scores.inliers[i]))
                  for i, p in zip(order, probs, strict=True)]
    if not candidates:
        return MatchResult([], None, True, 0.0, UNKNOWN_SPECIES, 0.0)
    is_new = cal.is_new(_with_a_second(scores, cal, fused, finite))  # candidates listed whatever the decision
    species, species_score = _species(candidates, scores, is_new, cal.species_threshold)
    return MatchResult(candidates=candidates,
                       individual_id=None if is_new else candidates[0].individual_id,
                       is_new_individual=is_new, probability=candidates[0].probability,
                       species=species, species_score=species_score)


def _with_a_second(scores: Scores, cal: Calibration, fused: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """The finite fused scores P(new) reads. P(new) weighs the gap between the two best; a catalog
    of one individual has no second, and a gap of 0 read as "ambiguous" called even the enrolled
    photo itself new. Such a query is judged against a virtual second individual with no evidence
    (an orthogonal embedding, no vote, no inliers): what an unrelated whale would score."""
    if int(finite.sum()) != 1:
        return fused[finite]
    i = int(np.flatnonzero(finite)[0])
    return cal.fuse(np.array([scores.cos[i], 0.0]), np.array([scores.vote[i], 0.0]),
                    np.array([scores.inliers[i], 0.0]))


def probability_inputs(scores: Scores, cal: Calibration, fused: np.ndarray,
                       finite: np.ndarray) -> np.ndarray:
    """Per candidate, what the calibration's probability map reads (`Calibration.probability_inputs`);
    a lone candidate's lead is over the virtual second individual of `_with_a_second`."""
    out = cal.probability_inputs(fused)
    if cal.probability_input == "lead" and int(finite.sum()) == 1:
        pair = _with_a_second(scores, cal, fused, finite)
        out[np.flatnonzero(finite)[0]] = pair[0] - pair[1]
    return out


def _species(candidates: list[Candidate], scores: Scores, is_new: bool,
             threshold: float) -> tuple[str, float]:
    votes: dict[str, float] = {}
    for sp, s in scores.neighbour_species:
        votes[sp] = votes.get(sp, 0.0) + max(s, 0.0)
    total = sum(votes.values())
    best, frac = (max(votes.items(), key=lambda kv: kv[1]) if votes else (UNKNOWN_SPECIES, 0.0))
    frac = frac / total if total > 0 else 0.0
    top = candidates[0]
    if not is_new and top.probability > frac:
        best, frac = top.species, top.probability
    if frac < threshold or not best:
        return UNKNOWN_SPECIES, float(frac)
    return best, float(frac)


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per size and process, made on first use and shared by concurrent queries."""
    return ThreadPoolExecutor(threads, thread_name_prefix="verify")


def _top(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (argpartition: O(n))."""
    k = min(k, len(x))
    if k <= 0:
        return np.zeros(0, np.int64)
    idx = np.argpartition(-x, k - 1)[:k]
    return idx[np.argsort(-x[idx], kind="stable")]
