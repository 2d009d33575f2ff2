"""A learned fusion of the per-candidate evidence, and the probability that a query is a new individual.

The hand-made linear fusion (`calibrate.FusionWeights`) adds log-scaled votes and inliers to the
global cosine. When verification is uninformative (a few chance inliers everywhere, as on most
photos of whales the embedding has not learned well), the vote term alone reorders the global
ranking and a candidate the embedding put at rank 2 can fall out of the top 5. The learned fusion
scores each candidate with features that mean the same thing in any catalog (ranks, gaps to the
query's best, margins over the best *other* candidate) and lets a conditional logistic regression
(softmax over the candidates of one query, the truth as the label) weigh them. It is fitted on
calibration individuals only, with numpy; serving only evaluates a dot product.

`NewIndividualModel` gives P(new individual) from the fused scores of a query's two best
candidates (a binary logistic regression on calibration queries, known vs. left-out individuals).
It is stored as a likelihood ratio plus an explicit prior, so the share of new whales one expects
is a stated number, and "new individual" is decided by `P(new) >= target`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

RANK_CAP = 30  # ranks beyond this are one value: evaluation keeps >= 40 candidates per score

FEATURES = (
    "cos",  # global cosine
    "cos_gap",  # cosine minus the query's best cosine (<= 0)
    "log_cos_rank",  # log1p(rank by cosine, 0 = best), capped
    "log_vote",  # log1p(LNBNN vote)
    "vote_share",  # vote / the query's best vote
    "log_vote_rank",  # log1p(rank by vote), capped; the cap when the vote is 0
    "log_inliers",  # log1p(RANSAC inliers)
    "inlier_margin",  # log1p(inliers) - log1p(most inliers of any OTHER candidate)
)


def _capped_rank(x: np.ndarray, cap: int = RANK_CAP) -> np.ndarray:
    """Rank of each value (0 = largest; ties broken by position), capped at `cap`."""
    order = np.argsort(-x, kind="stable")
    rank = np.empty(len(x), np.float64)
    rank[order] = np.arange(len(x), dtype=np.float64)
    return np.minimum(rank, cap)


def candidate_features(cos: np.ndarray, vote: np.ndarray, inliers: np.ndarray) -> np.ndarray:
    """(n, len(FEATURES)) features of the n candidate individuals of ONE query.

    `cos` must be finite (the caller replaces missing cosines). Features are relative to the
    query's own candidates where a raw value would depend on the photo type or catalog size.
    """
    cos = np.asarray(cos, np.float64)
    vote = np.maximum(np.asarray(vote, np.float64), 0.0)
    inl = np.maximum(np.asarray(inliers, np.float64), 0.0)
    n = len(cos)
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    out[:, 0] = cos
    out[:, 1] = cos - cos.max()
    out[:, 2] = np.log1p(_capped_rank(cos))
    out[:, 3] = np.log1p(vote)
    vmax = vote.max()
    out[:, 4] = vote / vmax if vmax > 0 else 0.0
    out[:, 5] = np.log1p(np.where(vote > 0, _capped_rank(vote), RANK_CAP))
    log_inl = np.log1p(inl)
    out[:, 6] = log_inl
    if n == 1:
        out[:, 7] = log_inl
    else:
        top2 = np.sort(log_inl)[-2:]  # (second best, best)
        best_other = np.where(log_inl >= top2[1], top2[0], top2[1])
        # (a tie for the best gives the tied candidates a margin of 0: top2[0] == top2[1])
        out[:, 7] = log_inl - best_other
    return out


@dataclass(frozen=True)
class LogisticFusion:
    """fused = coef . candidate_features(...) (the log-odds of a conditional logistic regression)."""

    coef: tuple[float, ...] = ()
    features: tuple[str, ...] = FEATURES

    def fuse(self, cos: np.ndarray, vote: np.ndarray, inliers: np.ndarray) -> np.ndarray:
        if tuple(self.features) != FEATURES or len(self.coef) != len(FEATURES):
            raise ValueError(f"logistic fusion fitted on features {list(self.features)}, this version "
                             f"computes {list(FEATURES)}: refit the calibration")
        return candidate_features(cos, vote, inliers) @ np.asarray(self.coef, np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"coef": list(self.coef), "features": list(self.features)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogisticFusion:
        return cls(tuple(float(v) for v in data.get("coef", ())),
                   tuple(str(v) for v in data.get("features", FEATURES)))


def fit_conditional_logit(groups: list[tuple[np.ndarray, int]], l2: float = 1.0,
                          iterations: int = 50) -> np.ndarray:
    """Coefficients maximising sum over groups of log softmax(X w)[truth] - l2/2 |w|^2 (Newton).

    Args:
        groups: (X, t) per query: the (n, F) candidate features and the truth's row.
        l2: ridge penalty on the standardised coefficients (keeps the fit stable when a feature
            never varies on the calibration queries).
    """
    groups = [(np.asarray(x, np.float64), int(t)) for x, t in groups if len(x) > 1]
    if not groups:
        raise ValueError("no calibration query has its individual among >= 2 candidates")
    x = np.concatenate([g[0] for g in groups])
    gid = np.concatenate([np.full(len(g[0]), i) for i, g in enumerate(groups)])
    offsets = np.cumsum([0] + [len(g[0]) for g in groups])[:-1]
    truth_rows = offsets + np.array([t for _, t in groups])
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    z = (x - mean) / std  # a per-feature shift cancels in the softmax; scaling eases Newton
    n_groups, n_feat = len(groups), z.shape[1]
    w = np.zeros(n_feat)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = z @ w
        smax = np.full(n_groups, -np.inf)
        np.maximum.at(smax, gid, s)
        e = np.exp(s - smax[gid])
        norm = np.bincount(gid, e, n_groups)
        ll = float(s[truth_rows].sum() - (smax + np.log(norm)).sum() - 0.5 * l2 * w @ w)
        return ll, e / norm[gid]

    ll, p = objective(w)
    for _ in range(iterations):
        mu = np.stack([np.bincount(gid, p * z[:, f], n_groups) for f in range(n_feat)], axis=1)
        grad = z[truth_rows].sum(0) - mu.sum(0) - l2 * w
        hess = (z * p[:, None]).T @ z - mu.T @ mu + l2 * np.eye(n_feat)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-4:
            new_ll, new_p = objective(w + t * step)
            if new_ll >= ll - 1e-12:
                break
            t /= 2
        w, converged = w + t * step, abs(new_ll - ll) < 1e-9
        ll, p = new_ll, new_p
        if converged:
            break
    return w / std  # back to the raw features (the shift is irrelevant to a per-query ranking)


def fit_logistic_fusion(groups: list[tuple[np.ndarray, int]], l2: float = 1.0) -> LogisticFusion:
    return LogisticFusion(tuple(float(c) for c in fit_conditional_logit(groups, l2)), FEATURES)


def top_two(fused: np.ndarray) -> np.ndarray:
    """[best, best - second best] of one query's fused scores: what P(new) is computed from."""
    s = np.sort(np.asarray(fused, np.float64)[np.isfinite(fused)])[::-1]
    if len(s) == 0:
        return np.array([-1e3, 0.0])
    return np.array([s[0], s[0] - s[1] if len(s) > 1 else 0.0])


@dataclass(frozen=True)
class NewIndividualModel:
    """P(new) = sigmoid(coef . [best fused, margin over the second] + llr_intercept + logit(prior)).

    `prior` is the share of new individuals among queries the probability is meant for (the
    calibration queries' share unless stated otherwise); `llr_intercept` excludes it, so changing
    the prior does not need a refit.
    """

    coef: tuple[float, float] = (0.0, 0.0)
    llr_intercept: float = 0.0
    prior: float = 0.5

    def p_new(self, fused: np.ndarray) -> float:
        x = top_two(fused)
        prior = min(max(self.prior, 1e-6), 1 - 1e-6)
        logit = float(np.dot(self.coef, x)) + self.llr_intercept + math.log(prior / (1 - prior))
        return 1.0 / (1.0 + math.exp(-min(max(logit, -700.0), 700.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"coef": list(self.coef), "llr_intercept": self.llr_intercept, "prior": self.prior}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NewIndividualModel:
        c = [float(v) for v in data.get("coef", (0.0, 0.0))]
        return cls((c[0], c[1]), float(data.get("llr_intercept", 0.0)), float(data.get("prior", 0.5)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50
                 ) -> tuple[np.ndarray, float]:
    """Binary logistic regression (Newton, ridge on the coefficients): (coef, intercept)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -700, 700)))
        grad = z.T @ (y - p) - reg * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w = w + step
        if np.abs(step).max() < 1e-10:
            break
    coef = w[:-1] / std
    return coef, float(w[-1] - coef @ mean)


def fit_new_individual_model(top: np.ndarray, is_new: np.ndarray) -> NewIndividualModel:
    """Fit on the [best, margin] rows (`top_two`) of known and new calibration queries."""
    y = np.asarray(is_new, bool)
    if y.all() or not y.any():
        raise ValueError("P(new) needs both known and new calibration queries")
    coef, intercept = fit_logistic(np.asarray(top, np.float64), y.astype(float))
    prior = float(y.mean())
    return NewIndividualModel((float(coef[0]), float(coef[1])),
                              intercept - math.log(prior / (1 - prior)), prior)
