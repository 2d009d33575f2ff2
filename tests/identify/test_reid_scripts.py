"""The issue-17 scripts run against the library: the fusion comparison on stored records
(synthetic, fast) and the fresh-catalog protocol through a real service (small, slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from whales_identify.evaluation.metrics import QueryRecord
from whales_identify.evaluation.records import save_records
from whales_identify.reid.matching import Scores

ROOT = Path(__file__).resolve().parents[2]


def _records(n: int = 240) -> list[QueryRecord]:
    rng = np.random.default_rng(0)
    ids = [f"rw_{k}" for k in range(30)]
    out = []
    for q in range(n):
        truth = ids[q % 30]
        cos = rng.normal(0.3, 0.05, 30)
        mode = "new" if q % 6 == 0 else "known"
        if mode == "known":
            cos[ids.index(truth)] += 0.15
        scores = Scores(ids, ["s"] * 30, cos, rng.exponential(1.0, 30), rng.poisson(3, 30).astype(float),
                        np.arange(30), [f"im_{i}" for i in ids], [("s", 0.9)])
        out.append(QueryRecord(f"{q}.jpg", truth, "s", "src", "calibration", mode, scores, 0.01))
    return out


def test_compare_fusions_tabulates_every_variant(tmp_path):
    save_records(_records(), tmp_path / "r.npz", meta={"model_id": "m"})
    out = tmp_path / "cmp.json"
    res = subprocess.run([sys.executable, "scripts/reid_compare_fusions.py", str(tmp_path / "r.npz"),
                          "--seeds", "3", "--json", str(out)], cwd=ROOT, check=True, capture_output=True,
                         text=True, timeout=300)
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"linear+threshold", "linear+probability", "logistic+threshold",
                                       "logistic+probability"}
    for variant in report["variants"].values():
        assert len(variant["per_seed"]) == 3 and variant["mean_se"]["top1"]["n"] == 3
    assert res.stdout.count("| all |") == 4


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fresh_catalog_runs_small(tmp_path, data_dir):
    """A real service, an empty catalog, 6 individuals enrolled through the API, one query each."""
    out = tmp_path / "fresh.json"
    subprocess.run([sys.executable, "scripts/reid_fresh_catalog.py", "--root", str(data_dir),
                    "--model", "efficientnet_lite0.imagenet", "--max-individuals", "6", "--split", "all",
                    "--new-fraction", "0.2", "--out", str(out)], cwd=ROOT, check=True, capture_output=True,
                   timeout=900)
    report = json.loads(out.read_text())
    assert report["queried_individuals_seen_in_training"] == 0
    assert report["known_queries"] + report["new_queries"] >= 3
    assert report["catalog"]["photos"] > 0 and 0.0 <= report["top1"] <= report["top5"] <= 1.0


def test_fewer_verified_zeroes_inliers_outside_the_budget(monkeypatch):
    """`reid_fewer_verified.with_budget`: an individual outside the top G by cosine and the top V
    by vote (vote > 0) loses its inliers, every other score is kept; budgets the records cannot
    simulate exactly are refused."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from reid_fewer_verified import with_budget

    ids = [f"w{i}" for i in range(6)]
    cos = np.array([0.9, 0.8, 0.7, 0.6, 0.5, -np.inf])
    vote = np.array([0.0, 0.0, 0.0, 3.0, 0.0, 9.0])  # w5 has the top vote but no usable photo
    inliers = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 7.0])
    q = QueryRecord("q.jpg", "w3", "s", "src", "report", "known",
                    Scores(ids, ["s"] * 6, cos, vote, inliers, np.arange(6), ids, []), 0.0)
    (out,) = with_budget([q], 2, 1)  # w0, w1 by cosine; the top vote w5 is not finite: none by vote
    assert out.scores.inliers.tolist() == [5.0, 4.0, 0.0, 0.0, 0.0, 0.0]
    (out,) = with_budget([q], 1, 2)  # w0 by cosine; w5 (not finite) and w3 by vote
    assert out.scores.inliers.tolist() == [5.0, 0.0, 0.0, 2.0, 0.0, 0.0]
    assert out.scores.cos is q.scores.cos and out.scores.vote is q.scores.vote
    assert q.scores.inliers.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 7.0]  # the input is untouched
    with pytest.raises(ValueError, match="not exact"):
        with_budget([q], 41, 10)


def test_fewer_verified_reports_each_budget(tmp_path):
    save_records(_records(), tmp_path / "r.npz", meta={"model_id": "m", "config": {
        "global_candidates": 30, "vote_candidates": 80}})
    out = tmp_path / "fewer.json"
    res = subprocess.run([sys.executable, "scripts/reid_fewer_verified.py", str(tmp_path / "r.npz"),
                          "--budgets", "5:5", "1:0", "--json", str(out)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["budgets"]) == {"30:80", "5:5", "1:0"} and report["stored_budget"] == "30:80"
    assert report["budgets"]["30:80"]["paired_top1_vs_stored"] == {"right_only_here": 0,
                                                                    "right_only_stored": 0}
    for budget in report["budgets"].values():
        assert 0 <= budget["mean_se"]["top1"]["mean"] <= 1


def test_compare_runs_pairs_each_run_with_the_first(tmp_path):
    """`reid_compare_runs.py`: one run per configuration over the same queries; a run equal to the
    first pairs 0 / 0, one whose true whale lost its inliers pairs 0 / n, and runs over other
    queries are refused."""
    from dataclasses import replace

    records = _records()
    save_records(records, tmp_path / "a.npz", meta={"model_id": "m", "config": {"ivf_codes": "SQ8"}})
    save_records(records, tmp_path / "same.npz", meta={"model_id": "m", "config": {"ivf_codes": "X"}})
    worse = [replace(q, scores=replace(q.scores, cos=q.scores.cos - 0.15 * (
        np.array(q.scores.individual_ids) == q.individual_id))) for q in records]
    save_records(worse, tmp_path / "worse.npz", meta={"model_id": "m", "config": {"ivf_codes": "Y"}})
    out = tmp_path / "runs.json"
    res = subprocess.run([sys.executable, "scripts/reid_compare_runs.py", *(str(tmp_path / f"{n}.npz")
                          for n in ("a", "same", "worse")), "--json", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    first, same, lost = (runs[str(tmp_path / f"{n}.npz")] for n in ("a", "same", "worse"))
    assert first["paired_top1_vs_first"] is None and same["ivf_codes"] == "X"
    assert same["paired_top1_vs_first"] == {"right_only_here": 0, "right_only_first": 0,
                                            "known_queries": len([q for q in records if q.mode == "known"])}
    assert lost["paired_top1_vs_first"]["right_only_first"] > 20
    assert lost["mean_se"]["top1"]["mean"] < first["mean_se"]["top1"]["mean"]
    save_records(records[:100], tmp_path / "other.npz", meta={"model_id": "m"})
    res = subprocess.run([sys.executable, "scripts/reid_compare_runs.py", str(tmp_path / "a.npz"),
                          str(tmp_path / "other.npz")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "not the same known queries" in res.stderr
