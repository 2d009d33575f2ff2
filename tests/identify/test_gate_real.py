"""The committed gate head on the held-out part of the real data (slow: ~1,350 backbone passes when the
feature cache under /tmp/gate_cache is cold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whales_identify.gate import create_gate
from whales_identify.train import gate as gt
from whales_identify.train import gate_calibration as gc

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "gate_metrics.json"


@pytest.fixture(scope="module")
def held_out(data_dir: Path, lite0_embedder):
    gate = create_gate("embedded", embedder=lite0_embedder, models_dir=ROOT / "models")
    split = gate.head.meta["split"]
    manifest = data_dir / "manifest.csv"
    cal, _ = gt.split_items(gt.manifest_items(manifest, data_dir), split["test_fraction"], split["salt"])
    items = gt.test_part(manifest, data_dir, split["salt"], split["test_fraction"])
    feats = gt.extract_features(lite0_embedder, items, "clean", progress=False, framing=gate.framing)
    results = gate(images=[None] * len(items), features=feats)  # type: ignore[list-item]
    scores = [r.cetacean_score for r in results]
    res = gc.evaluate_scores(scores, [i.label for i in items], [i.source for i in items],
                             [i.group for i in items], gate.threshold, n_boot=200)
    return gate, cal, items, res


def test_held_out_part_shares_nothing_with_calibration(held_out):
    _, cal, items, _ = held_out
    assert not {i.group for i in cal} & {i.group for i in items}
    assert not {i.key for i in cal} & {i.key for i in items}


def test_committed_report_is_what_the_committed_head_measures(held_out):
    gate, _, _, res = held_out
    report = json.loads(REPORT.read_text())
    assert report["head"] == gate.version
    assert res["confusion"] == report["test"]["confusion"]
    assert res["roc_auc"] == pytest.approx(report["test"]["roc_auc"], abs=1e-6)


def test_held_out_ranking_is_near_perfect(held_out):
    assert held_out[3]["roc_auc"] >= 0.995


TARGETS = ["tpr_overall>=0.98", "tpr:noaa_right_whale_headcrops>=0.97", "tpr:happywhale>=0.97",
           "tpr:bottlenose_fins_aberdeen>=0.97", "tpr:noaa_right_whale_fullres>=0.97", "tnr:hard>=0.98",
           "tnr:scenes>=0.995", "tnr:generated>=0.995"]
# Measured misses of the committed head (reports/gate_metrics.json). strict: once one is met, the
# xfail turns into a failure, so this list cannot go stale silently.
KNOWN_MISSES = {
    "tpr:bottlenose_fins_aberdeen>=0.97": ("0.956 (65/68): one fin fewer than the head before the "
                                           "texture negatives; within the interval"),
    "tpr:noaa_right_whale_fullres>=0.97": "0.8 (4/5, one individual): too few to measure",
    "tnr:hard>=0.98": "0.959 (47/49): one white-shark fin and one seal accepted",
}


@pytest.mark.parametrize("target", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[t])) if t in KNOWN_MISSES else t
    for t in TARGETS])
def test_held_out_target(held_out, target: str):
    """TNR >= 0.98 hard negatives, >= 0.995 scenes and generated; TPR >= 0.98 overall, >= 0.97 per source."""
    met = held_out[3]["targets_met"]
    assert set(met) == set(TARGETS)
    assert met[target] is True
