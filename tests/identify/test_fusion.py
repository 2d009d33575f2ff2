"""The learned fusion, P(new) and the open-set rule, coverage at precision, repeated splits and
stored records: hand-written numbers (no data, no models)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from whales_identify.evaluation.metrics import (
    QueryRecord,
    coverage_at_precision,
    fit_calibration,
    target_for_rate,
    threshold_for_rate,
)
from whales_identify.evaluation.records import load_records, merge_records, save_records
from whales_identify.evaluation.repeated import mean_se, split_of_individual
from whales_identify.reid.calibrate import Calibration, FusionWeights, load_calibration, save_calibration
from whales_identify.reid.fusion import (
    FEATURES,
    RANK_CAP,
    LogisticFusion,
    NewIndividualModel,
    candidate_features,
    fit_logistic,
    fit_logistic_fusion,
    top_two,
)
from whales_identify.reid.matching import Scores, rank


def test_candidate_features_by_hand():
    x = candidate_features(np.array([0.5, 0.3, 0.4]), np.array([0.0, 2.0, 1.0]), np.array([0, 10, 4]))
    col = {name: x[:, i] for i, name in enumerate(FEATURES)}
    ln = math.log
    assert np.allclose(col["cos"], [0.5, 0.3, 0.4])
    assert np.allclose(col["cos_gap"], [0.0, -0.2, -0.1])
    assert np.allclose(col["log_cos_rank"], [0.0, ln(3), ln(2)])
    assert np.allclose(col["log_vote"], [0.0, ln(3), ln(2)])
    assert np.allclose(col["vote_share"], [0.0, 1.0, 0.5])
    assert np.allclose(col["log_vote_rank"], [ln(1 + RANK_CAP), 0.0, ln(2)])  # no vote: the cap
    assert np.allclose(col["log_inliers"], [0.0, ln(11), ln(5)])
    # margin over the best OTHER candidate: the leader over the runner-up, the others below the leader
    assert np.allclose(col["inlier_margin"], [-ln(11), ln(11) - ln(5), ln(5) - ln(11)])


def test_a_tie_for_most_inliers_gives_no_margin():
    x = candidate_features(np.array([0.1, 0.2, 0.3]), np.zeros(3), np.array([6, 6, 2]))
    assert np.allclose(x[:, FEATURES.index("inlier_margin")], [0.0, 0.0, math.log(3) - math.log(7)])


def test_logistic_fusion_is_a_dot_product_and_refuses_other_features():
    coef = tuple(float(i) for i in range(len(FEATURES)))
    cos, vote, inl = np.array([0.5, 0.3]), np.array([1.0, 0.0]), np.array([3, 0])
    fused = LogisticFusion(coef).fuse(cos, vote, inl)
    assert np.allclose(fused, candidate_features(cos, vote, inl) @ np.arange(len(FEATURES)))
    with pytest.raises(ValueError, match="refit"):
        LogisticFusion(coef[:-1], FEATURES[:-1]).fuse(cos, vote, inl)


def _queries(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Queries whose truth is near the top of the global ranking, with votes and inliers that are
    pure noise (uninformative local features)."""
    out = []
    for _ in range(n):
        cos = rng.normal(0.30, 0.05, 40)
        t = int(rng.integers(40))
        cos[t] = cos.max() + rng.normal(0.0, 0.03)
        out.append((cos, rng.exponential(1.0, 40), rng.poisson(4, 40).astype(float), t))
    return out


def test_learned_fusion_keeps_the_global_candidate_when_local_evidence_is_noise():
    rng = np.random.default_rng(0)
    fit = fit_logistic_fusion([(candidate_features(c, v, i), t) for c, v, i, t in _queries(rng, 300)])
    # a query: the truth is the 2nd by cosine; six other candidates have large chance votes
    cos = np.array([0.40, 0.39] + [0.30] * 6 + [0.20] * 10)
    vote = np.array([0.0, 0.0] + [30.0] * 6 + [0.0] * 10)
    inl = np.full(18, 4.0)
    learned = np.argsort(-fit.fuse(cos, vote, inl))[:5]
    linear = np.argsort(-FusionWeights(1.0, 0.8, 0.0).fuse(cos, vote, inl))[:5]
    assert 1 in learned and 1 not in linear


def test_learned_fusion_does_not_follow_noise_on_new_queries():
    fit = fit_logistic_fusion([(candidate_features(c, v, i), t)
                               for c, v, i, t in _queries(np.random.default_rng(1), 200)])
    test = _queries(np.random.default_rng(2), 200)
    learned = np.mean([np.argmax(fit.fuse(c, v, i)) == t for c, v, i, t in test])
    by_cos = np.mean([np.argmax(c) == t for c, v, i, t in test])
    by_linear = np.mean([np.argmax(FusionWeights(1.0, 0.3, 0.3).fuse(c, v, i)) == t for c, v, i, t in test])
    assert learned >= by_cos - 0.03 and learned > by_linear + 0.1


def test_p_new_by_hand_and_the_prior():
    m = NewIndividualModel(coef=(-2.0, 0.0), llr_intercept=1.0, prior=0.5)
    fused = np.array([0.5, 0.2, -1.0])
    assert np.allclose(top_two(fused), [0.5, 0.3])
    assert math.isclose(m.p_new(fused), 0.5)  # -2 * 0.5 + 1 + logit(0.5) = 0
    low = NewIndividualModel(coef=(-2.0, 0.0), llr_intercept=1.0, prior=0.2)
    assert math.isclose(low.p_new(fused), 0.2)  # the likelihood ratio is 1: P(new) is the prior


def test_open_set_rule_follows_the_target_and_still_lists_candidates():
    m = NewIndividualModel(coef=(-2.0, 0.0), llr_intercept=1.0, prior=0.5)  # P(new) = 0.5 below
    scores = Scores(["a", "b"], ["s", "s"], np.array([0.5, 0.2]), np.zeros(2), np.zeros(2),
                    np.zeros(2, np.int64), ["i0", "i1"], [("s", 0.5)])
    weights = FusionWeights(1.0, 0.0, 0.0)  # fused = cos: top two 0.5, 0.2
    at = rank(scores, Calibration(weights=weights, new_model=m, new_probability_target=0.5), 5)
    above = rank(scores, Calibration(weights=weights, new_model=m, new_probability_target=0.6), 5)
    assert at.is_new_individual and at.individual_id is None
    assert [c.individual_id for c in at.candidates] == ["a", "b"]  # listed whatever the decision
    assert not above.is_new_individual and above.individual_id == "a"
    thr = rank(scores, Calibration(weights=weights, new_individual_threshold=0.6), 5)
    assert thr.is_new_individual  # the earlier rule: fused top-1 0.5 < 0.6
    assert Calibration(weights=weights, new_model=m).open_set_rule == "probability"
    assert Calibration(weights=weights).open_set_rule == "none"


def test_catalog_target_override():
    from whales_identify.records.store import InMemoryStore
    from whales_identify.reid.catalog import Catalog

    cal = Calibration(model_id="m", new_model=NewIndividualModel(), fitted=True)
    assert Catalog(InMemoryStore(), "m", calibration=cal, new_individual_target=0.9
                   ).calibration.new_probability_target == 0.9
    assert Catalog(InMemoryStore(), "m", calibration=cal).calibration.new_probability_target == 0.5


def test_calibration_round_trip_with_learned_fusion(tmp_path):
    cal = Calibration(model_id="m", fusion="logistic", logistic=LogisticFusion(tuple(range(len(FEATURES)))),
                      new_model=NewIndividualModel((-1.0, -2.0), 0.5, 0.15), new_probability_target=0.7,
                      fitted=True)
    path = tmp_path / "cal.json"
    save_calibration(cal, path)
    back = load_calibration(path)
    assert back == Calibration.from_dict(cal.to_dict())
    assert back.fusion == "logistic" and back.new_model == cal.new_model
    assert back.new_probability_target == 0.7
    old = {"model_id": "m", "weights": {"global": 1, "vote": 0.2, "inliers": 0.4},
           "new_individual_threshold": 1.0, "format_version": 1}
    v1 = Calibration.from_dict(old)  # a version-1 file: the linear fusion and the threshold rule
    assert v1.fusion == "linear" and v1.open_set_rule == "threshold"
    with pytest.raises(ValueError):
        Calibration.from_dict({**old, "fusion": "logistic"})  # no coefficients


def test_fit_logistic_by_hand():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [1.0], [2.0]])
    y = np.array([0, 0, 1, 1, 1, 0])
    coef, intercept = fit_logistic(x, y, l2=0.0)
    # symmetric data around 1.5: P = 0.5 there
    assert coef[0] > 0 and math.isclose(coef[0] * 1.5 + intercept, 0.0, abs_tol=1e-6)


def test_coverage_at_precision_by_hand():
    assert coverage_at_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 1])) == 0.5
    assert coverage_at_precision(np.array([0.9, 0.9, 0.8]), np.array([1, 0, 1])) == 0.0  # ties stay
    assert coverage_at_precision(np.array([0.9, 0.8]), np.array([1, 1])) == 1.0


def test_mean_and_standard_error_over_splits():
    got = mean_se([{"top1": 0.5}, {"top1": 0.6}, {"top1": 0.7}])["top1"]
    assert math.isclose(got["mean"], 0.6) and math.isclose(got["se"], 0.1 / math.sqrt(3))
    assert mean_se([{"top1": 0.5}])["top1"]["se"] == 0.0


def test_split_of_individual_is_the_harness_rule():
    from whales_identify.data import ManifestRow
    from whales_identify.evaluation.harness import split_of

    for ind in ("rw_1", "rw_2", "hw_3", "bnd_1056", "rw_77"):
        row = ManifestRow(relpath="positives/s/x.jpg", label="cetacean", individual_id=ind, species="s")
        assert split_of(row) == split_of_individual(ind)


def _record(ind: str, mode: str, cos: list[float], ids: list[str], split: str = "calibration") -> QueryRecord:
    n = len(ids)
    scores = Scores(ids, ["s"] * n, np.array(cos), np.zeros(n), np.zeros(n), np.arange(n),
                    [f"im_{i}" for i in ids], [("s", 0.9)])
    return QueryRecord(f"{ind}.jpg", ind, "s", "src", split, mode, scores, 0.01)


def test_records_of_two_folds_pool_into_one_crossfit(tmp_path):
    def meta(fold, model="m"):
        return {"model_id": model, "manifest_sha256": "h", "config": {"k": 1}, "limit": None,
                "crossfit": {"folds": 2, "salt": "s", "fold_models": [f"f{fold}"],
                             "scored_folds": [fold], "partial": True}}
    save_records([_record("a", "known", [0.9, 0.1], ["a", "b"])], tmp_path / "f0.npz", meta(0))
    save_records([_record("c", "known", [0.2, 0.3], ["c", "d"]),
                  _record("e", "new", [0.2, 0.3], ["c", "d"])], tmp_path / "f1.npz", meta(1))
    recs, pooled = merge_records([tmp_path / "f0.npz", tmp_path / "f1.npz"])
    assert [q.individual_id for q in recs] == ["a", "c", "e"]
    assert pooled["crossfit"]["fold_models"] == ["f0", "f1"]
    assert pooled["crossfit"]["scored_folds"] == [0, 1] and pooled["crossfit"]["partial"] is False
    with pytest.raises(ValueError, match="already in an earlier file"):
        merge_records([tmp_path / "f0.npz", tmp_path / "f0.npz"])
    save_records([_record("x", "known", [0.5], ["x"])], tmp_path / "other.npz", meta(1, model="n"))
    with pytest.raises(ValueError, match="model_id differs"):
        merge_records([tmp_path / "f0.npz", tmp_path / "other.npz"])


def test_records_round_trip(tmp_path):
    recs = [_record("a", "known", [0.9, 0.1], ["a", "b"]),
            _record("c", "new", [0.2, 0.3], ["a", "b"], "report")]
    save_records(recs, tmp_path / "r.npz", meta={"model_id": "m"})
    back, meta = load_records(tmp_path / "r.npz")
    assert meta == {"model_id": "m"} and [q.mode for q in back] == ["known", "new"]
    assert back[1].scores.individual_ids == ["a", "b"] and np.allclose(back[1].scores.cos, [0.2, 0.3])
    assert [back[0].scores.image_ids[j] for j in back[0].scores.ref_image] == ["im_a", "im_b"]


def test_fit_calibration_learns_p_new_from_known_and_new_queries():
    rng = np.random.default_rng(2)
    ids = [f"i{k}" for k in range(10)]
    recs = []
    for q in range(120):
        truth = ids[q % 10]
        cos = rng.normal(0.3, 0.05, 10)
        if q % 4:  # known: the truth stands out
            cos[ids.index(truth)] += 0.3
            recs.append(_record(truth, "known", list(cos), ids))
        else:  # new: the individual is not in the gallery (no candidate stands out)
            recs.append(_record("new_" + truth, "new", list(cos), ids))
    cal = fit_calibration(recs, "m", fusion="logistic", open_set="probability")
    assert cal.fusion == "logistic" and cal.open_set_rule == "probability"
    assert math.isclose(cal.new_model.prior, 30 / 120)
    known = [r for r in recs if r.mode == "known"]
    new = [r for r in recs if r.mode == "new"]
    assert np.mean([rank(r.scores, cal, 5).is_new_individual for r in new]) > 0.8
    assert np.mean([rank(r.scores, cal, 5).is_new_individual for r in known]) < 0.1


def test_target_for_rate_by_hand():
    p = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    assert np.sum(p >= target_for_rate(p, 0.4)) == 2  # 40 % of 5: the two highest
    assert np.sum(p >= target_for_rate(p, 0.0)) == 0
    assert np.sum(p >= target_for_rate(p, 1.0)) == 5
    tie = np.array([0.5, 0.5, 0.2])
    assert np.sum(tie >= target_for_rate(tie, 0.34)) == 0  # a tie is not split


def _mixed_queries(seed: int, n: int = 200, n_ids: int = 10, every_new: int = 4,
                   split=lambda q: "calibration", prefix: str = "") -> list[QueryRecord]:
    """Known queries (half with a truth that stands out, half ambiguous) and, every `every_new`-th,
    a query of an individual the gallery lacks."""
    rng = np.random.default_rng(seed)
    ids = [f"i{k}" for k in range(n_ids)]
    recs = []
    for q in range(n):
        truth = ids[q % n_ids]
        cos = rng.normal(0.3, 0.05, n_ids)
        if q % every_new:
            cos[ids.index(truth)] += 0.3 if q % 2 else 0.05
            rec = _record(truth, "known", list(cos), ids, split(q))
        else:
            rec = _record("new_" + truth, "new", list(cos), ids, split(q))
        recs.append(replace(rec, relpath=f"{prefix}{q}_{rec.relpath}"))
    return recs


def test_fit_calibration_fits_the_p_new_target_to_a_rate_of_known_queries():
    recs = _mixed_queries(3)
    known = [r for r in recs if r.mode == "known"]
    for rate in (0.05, 0.2):
        cal = fit_calibration(recs, "m", fusion="logistic", open_set="probability", new_rate_on_known=rate)
        flagged = np.mean([rank(r.scores, cal, 5).is_new_individual for r in known])
        assert flagged <= rate and flagged > rate - 0.05  # the stated share, on these queries
        assert cal.provenance["new_rate_on_known_target"] == rate
    strict = fit_calibration(recs, "m", fusion="logistic", open_set="probability", new_rate_on_known=0.05)
    loose = fit_calibration(recs, "m", fusion="logistic", open_set="probability", new_rate_on_known=0.2)
    assert strict.new_probability_target > loose.new_probability_target


def test_threshold_for_rate_by_hand():
    top = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    assert np.sum(top < threshold_for_rate(top, 0.4)) == 2  # 40 % of 5: the two lowest
    assert np.sum(top < threshold_for_rate(top, 0.0)) == 0
    assert np.sum(top < threshold_for_rate(top, 1.0)) == 5
    tie = np.array([0.2, 0.2, 0.5])
    assert np.sum(tie < threshold_for_rate(tie, 0.34)) == 0  # a tie is not split
    assert threshold_for_rate(np.array([]), 0.2) == -math.inf  # nothing to fit: never "new"


def test_fit_calibration_fits_the_threshold_to_a_rate_of_known_queries():
    # the MAP@5-optimal threshold flags far more known whales than a biologist accepts; a stated
    # rate moves only the cut (same fusion, same ranking) and a stricter rate flags fewer
    recs = _mixed_queries(5)
    known = [r for r in recs if r.mode == "known"]
    new = [r for r in recs if r.mode == "new"]
    free = fit_calibration(recs, "m", fusion="linear", open_set="threshold")
    rates = {}
    for rate in (0.05, 0.2):
        cal = fit_calibration(recs, "m", fusion="linear", open_set="threshold", new_rate_on_known=rate)
        assert cal.open_set_rule == "threshold" and cal.weights == free.weights
        flagged = np.mean([rank(r.scores, cal, 5).is_new_individual for r in known])
        assert rate - 0.05 < flagged <= rate
        assert cal.provenance["new_rate_on_known_target"] == rate
        rates[rate] = cal.new_individual_threshold
        assert np.mean([rank(r.scores, cal, 5).is_new_individual for r in new]) > flagged  # still finds new
    assert rates[0.05] < rates[0.2]


def test_p_new_in_a_catalog_of_one_individual_does_not_call_its_own_photo_new():
    # P(new) reads the gap to the second best; with one individual there is none (a gap of 0 once
    # called the enrolled photo itself new: CI's live tests on the packaged logistic calibration)
    from pathlib import Path
    cal = load_calibration(Path(__file__).resolve().parents[2] / "reports" / "calibration_candidates"
                           / "efficientnet_lite0.rightwhale_arcface_v1.logistic_rate015.json")
    assert cal.open_set_rule == "probability"
    one = Scores(["a"], ["s"], np.array([0.99]), np.array([50.0]), np.array([300.0]), np.array([0]),
                 ["im"], [("s", 0.99)])
    assert cal.p_new(cal.fuse(one.cos, one.vote, one.inliers)) > 0.9  # the trap, unpadded
    assert not rank(one, cal, 5).is_new_individual


def test_evaluate_cli_pools_record_files_and_fits_the_threshold_to_a_rate(tmp_path):
    import json

    from typer.testing import CliRunner

    from whales_cli import app

    for fold in (0, 1):
        recs = _mixed_queries(11 + fold, n=120, n_ids=12, every_new=5, prefix=f"f{fold}_",
                              split=lambda q: "calibration" if q % 12 < 5 else "report")
        save_records(recs, tmp_path / f"f{fold}.npz", meta={"model_id": "m", "crossfit": {
            "folds": 2, "salt": "s", "fold_models": [f"m_f{fold}"], "scored_folds": [fold]}})
    (tmp_path / "manifest.csv").write_text("relpath,individual_id\n")
    res = CliRunner().invoke(app, [
        "evaluate", "--manifest", str(tmp_path / "manifest.csv"), "--root", str(tmp_path),
        "--from-records", str(tmp_path / "f0.npz"), "--from-records", str(tmp_path / "f1.npz"),
        "--fit-calibration", str(tmp_path / "cal.json"), "--open-set", "threshold",
        "--new-rate-on-known", "0.1", "--latest", str(tmp_path / "latest.json"), "--seeds", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "latest.json").read_text())
    assert out["crossfit"]["scored_folds"] == [0, 1] and out["crossfit"]["partial"] is False
    cal = load_calibration(tmp_path / "cal.json")
    assert cal.open_set_rule == "threshold" and cal.provenance["new_rate_on_known_target"] == 0.1
    assert out["calibration_split"]["open_set"]["new_rate_on_known"] <= 0.1
    assert out["report"]["n_queries"] + out["calibration_split"]["n_queries"] == 192  # both files


def test_lead_over_others_by_hand():
    from whales_identify.reid.calibrate import lead_over_others

    lead = lead_over_others(np.array([1.0, 3.0, -np.inf, 2.5]))
    assert np.allclose(lead[[0, 1, 3]], [-2.0, 0.5, -0.5]) and lead[2] == -np.inf
    assert lead_over_others(np.array([0.7])).tolist() == [0.0]  # alone: matching.rank adds a second


def test_the_learned_fusion_maps_the_top_1_lead_to_a_probability_and_keeps_it_on_disk(tmp_path):
    rng = np.random.default_rng(7)
    ids = [f"i{k}" for k in range(8)]
    recs = []
    for q in range(160):
        cos = rng.normal(0.3, 0.05, 8)
        cos[q % 8] += 0.3 if q % 3 else 0.02
        recs.append(_record(ids[q % 8], "known", list(cos), ids))
    cal = fit_calibration(recs, "m", fusion="logistic", open_set="threshold", new_rate_on_known=0.1)
    assert cal.probability_input == "lead"
    assert fit_calibration(recs, "m", fusion="linear").probability_input == "score"
    save_calibration(cal, tmp_path / "c.json")
    back = load_calibration(tmp_path / "c.json")
    assert back.probability_input == "lead"
    clear = rank(recs[1].scores, back, 5)  # the truth 0.3 above the others
    assert clear.probability == pytest.approx(float(back.probability(
        back.probability_inputs(back.fuse(recs[1].scores.cos, recs[1].scores.vote,
                                          recs[1].scores.inliers)).max())))
    # a lone candidate is judged by its lead over a virtual, evidence-free second individual
    one = Scores(["a"], ["s"], np.array([0.9]), np.zeros(1), np.zeros(1), np.array([0]), ["im"], [("s", 0.9)])
    pair = back.fuse(np.array([0.9, 0.0]), np.zeros(2), np.zeros(2))
    assert rank(one, back, 5).probability == pytest.approx(float(back.probability(pair[0] - pair[1])))
