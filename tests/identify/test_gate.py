"""The anti-fraud gate: splits, threshold choice, config, fail-closed loading, the committed head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.identify.gate_fakes import ColourEmbedder
from whales_identify.data import group_key, manifest_hash
from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.gate.backends import (
    CLIP_THRESHOLD,
    EmbeddedGate,
    GateResult,
    OffGate,
    clip_band,
    create_gate,
    decide,
    load_gate_config,
    shares_features,
)
from whales_identify.gate.head import fit_head, load_head
from whales_identify.train import gate_calibration as gc
from whales_identify.train.gate_synthetic import (
    NEGATIVE_KINDS,
    PERTURBATIONS,
    perturb,
    reframe,
    render_negative,
)
from whales_identify.transforms import CENTRE_CROP, LETTERBOX, LETTERBOX_FILL, frame, letterbox

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


# --- splits -------------------------------------------------------------------------------------

def test_split_keeps_every_group_whole_and_balances_sources():
    sources = ["a"] * 40 + ["b"] * 10 + ["c"] * 3
    groups = [f"a{i // 4}" for i in range(40)] + [f"b{i}" for i in range(10)] + ["c0"] * 3
    test = gc.split_groups(sources, groups, 0.5, salt="x")
    for g in set(groups):
        parts = {bool(t) for t, gg in zip(test, groups, strict=True) if gg == g}
        assert len(parts) == 1, g
    assert sum(test[:40]) == 20 and sum(test[40:50]) == 5


def test_real_manifest_split_has_no_group_in_both_parts(manifest):
    groups = [group_key(r) for r in manifest]
    test = gc.split_groups([r.source for r in manifest], groups, 0.5, salt="gate-v1")
    cal_groups = {g for g, t in zip(groups, test, strict=True) if not t}
    test_groups = {g for g, t in zip(groups, test, strict=True) if t}
    assert not cal_groups & test_groups
    # Burst frames of one fin encounter and photos of one seal share a group, so they move together.
    seals = [g for g in groups if g.startswith("seal:")]
    assert len(set(seals)) < len(seals)
    for source in {r.source for r in manifest} - {"noaa_right_whale_fullres"}:
        in_test = {t for r, t in zip(manifest, test, strict=True) if r.source == source}
        assert in_test == {True, False}, source


# --- threshold, intervals -------------------------------------------------------------------------

def test_threshold_is_lowest_that_meets_every_category_target():
    pos = np.array([0.95, 0.9, 0.8, 0.6, 0.4])
    hard = np.array([0.05, 0.1, 0.2, 0.7])  # one hard negative scores 0.7
    gen = np.array([0.01, 0.02, 0.3])
    scores = np.concatenate([pos, hard, gen])
    labels = np.array([1] * 5 + [0] * 7)
    cats = ["-"] * 5 + ["hard"] * 4 + ["generated"] * 3
    pick = gc.pick_threshold(scores, labels, cats, {"hard": 0.98, "generated": 0.995})
    # Every negative must be rejected (targets > 0.75 with 4 and 3 samples): above 0.7, below 0.8.
    assert pick["threshold"] == pytest.approx(0.75)
    assert pick["limiting_category"] == "hard"
    assert pick["calibration_tpr"] == pytest.approx(3 / 5) and pick["calibration_tnr"] == 1.0
    loose = gc.pick_threshold(scores, labels, cats, {"hard": 0.75, "generated": 0.6})
    assert loose["threshold"] == pytest.approx(0.25)  # one hard and one generated negative allowed


def test_threshold_ignores_what_it_is_not_given():
    # The choice depends on the calibration scores only: adding far-away "test" data to another call
    # changes nothing in this one, and changing a calibration negative moves it.
    scores, labels, cats = np.array([0.9, 0.8, 0.1, 0.3]), np.array([1, 1, 0, 0]), ["", "", "hard", "hard"]
    a = gc.pick_threshold(scores, labels, cats)["threshold"]
    b = gc.pick_threshold(scores.copy(), labels, cats)["threshold"]
    c = gc.pick_threshold(np.array([0.9, 0.8, 0.1, 0.5]), labels, cats)["threshold"]
    assert a == b == pytest.approx(0.55) and c == pytest.approx(0.65)


def test_rate_with_ci_clusters_groups_and_wilson_is_not_degenerate():
    r = gc.rate_with_ci(np.array([1, 1, 1, 0]), ["a", "a", "b", "c"], n_boot=500)
    assert r["rate"] == 0.75 and r["n_groups"] == 3
    assert 0 <= r["ci95"][0] < 0.75 < r["ci95"][1] <= 1
    perfect = gc.rate_with_ci(np.ones(50, bool), [str(i) for i in range(50)])
    assert perfect["ci95"] == [1.0, 1.0] and perfect["wilson95"][0] < 0.95


def test_evaluate_scores_reports_misses():
    res = gc.evaluate_scores(np.array([0.9, 0.2, 0.1, 0.8]), [True, True, False, False],
                             ["happywhale", "happywhale", "white_shark_fins", "intel_scenes"],
                             ["1", "2", "3", "4"], threshold=0.5, n_boot=50)
    assert res["confusion"] == {"tp": 1, "fn": 1, "tn": 1, "fp": 1}
    assert res["targets_met"]["tpr:happywhale>=0.97"] is False
    assert res["all_targets_met"] is False


def test_band_always_contains_the_threshold():
    assert decide(0.6, 0.5, (0.2, 0.8)) == (True, "borderline")
    assert decide(0.3, 0.5, (0.2, 0.8)) == (False, "borderline")
    assert decide(0.1, 0.5, (0.2, 0.8)) == (False, "reject")
    assert decide(0.85, 0.9, (0.2, 0.5)) == (False, "borderline")  # band widened to the threshold
    assert decide(0.95, 0.9, (0.2, 0.5)) == (True, "accept")
    lo, hi = gc.band_around(0.5)
    assert lo < 0.5 < hi


# --- config ---------------------------------------------------------------------------------------

def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    return path


def test_config_reads_an_operators_overrides(tmp_path: Path):
    path = _yaml(tmp_path, "embedded:\n  head: h\n  threshold: 0.4\n  borderline: {low: 0.1, high: 0.8}\n"
                           "clip:\n  threshold: 0.6\n")
    cfg = load_gate_config(path)
    assert (cfg.threshold, cfg.band_low, cfg.band_high, cfg.head) == (0.4, 0.1, 0.8, "h")
    assert load_gate_config(path, "clip").threshold == 0.6
    # an empty file, or none, overrides nothing: the head's own values apply
    for none in (load_gate_config(_yaml(tmp_path, "")), load_gate_config(None)):
        assert (none.threshold, none.band_low, none.band_high) == (None, None, None)


@pytest.mark.parametrize("text", ["embedded:\n  threshold: 1.5\n",
                                  "embedded:\n  borderline: {low: 0.9, high: 0.1}\n"])
def test_config_rejects_nonsense(tmp_path: Path, text: str):
    with pytest.raises(ValueError):
        load_gate_config(_yaml(tmp_path, text))


def test_clip_defaults_are_stated_once():
    assert clip_band() == (0.2, CLIP_THRESHOLD) and clip_band(0.1) == (0.1, 0.1)


def test_no_packaged_threshold_file_shadows_the_head():
    """The head's json is the one source of the calibrated threshold and band: nothing in the
    packages restates them (a copy would keep the old numbers when the head is swapped)."""
    assert not list((ROOT / "whales_be_service").rglob("*.yaml"))
    meta = json.loads((MODELS / "gate" / "cetacean_lite0.json").read_text())
    low, high = meta["borderline"]
    assert low <= meta["threshold"] <= high


# --- off, unknown, fail closed ------------------------------------------------------------------

def test_off_gate_is_explicit_and_echoed():
    gate = create_gate("off")
    assert isinstance(gate, OffGate)
    assert gate([Image.new("RGB", (8, 8))] * 2) == [GateResult(True, 1.0, "accept", "off", "off")] * 2


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="embedded, clip, off"):
        create_gate("everything")


class _FakeEmbedder:
    def __init__(self, model_id: str, dim: int = 8):
        self.model_id, self.dim, self.calls = model_id, dim, 0

    def features(self, images):
        self.calls += 1
        return np.stack([np.asarray(im.resize((2, 4)), np.float32).mean(-1).ravel() for im in images])


def _tiny_head(tmp_path: Path, model_id: str = "fake.model"):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1, 0.3, (40, 8)), rng.normal(-1, 0.3, (40, 8))]) + 5
    head = fit_head(x, np.array([1] * 40 + [0] * 40), model_id, 1.0)
    head.meta = {"threshold": 0.5, "borderline": [0.2, 0.8]}
    head.save(tmp_path, "tiny")
    return head


def test_head_round_trip_and_features_none_uses_embedder(tmp_path: Path):
    head = _tiny_head(tmp_path)
    loaded = load_head(tmp_path, "tiny")
    assert loaded.version == head.version and loaded.version.startswith("tiny@")
    x = np.random.default_rng(1).normal(0, 1, (5, 8))
    assert np.allclose(loaded.score(x), head.score(x))
    emb = _FakeEmbedder("fake.model")
    gate = EmbeddedGate(loaded, emb)
    assert gate.feature_model_id == "fake.model"
    res = gate([Image.new("RGB", (4, 4), (200, 200, 200))])
    assert emb.calls == 1 and res[0].backend == "embedded" and res[0].version == loaded.version
    with pytest.raises(ModelNotAvailableError, match="no embedder"):
        EmbeddedGate(loaded)([Image.new("RGB", (4, 4))])


# --- framing: the gate sees the whole photo ------------------------------------------------------

def test_letterbox_pads_to_a_centred_square_and_leaves_squares_alone():
    wide = letterbox(Image.new("RGB", (40, 10), (255, 0, 0)))
    assert wide.size == (40, 40)
    assert wide.getpixel((0, 0)) == LETTERBOX_FILL and wide.getpixel((39, 39)) == LETTERBOX_FILL
    assert wide.getpixel((20, 15)) == (255, 0, 0) and wide.getpixel((20, 24)) == (255, 0, 0)
    assert wide.getpixel((20, 14)) == LETTERBOX_FILL and wide.getpixel((20, 25)) == LETTERBOX_FILL
    tall = letterbox(Image.new("L", (3, 9), 7))
    assert tall.size == (9, 9) and tall.mode == "RGB" and tall.getpixel((4, 4)) == (7, 7, 7)
    square = Image.new("RGB", (8, 8), (1, 2, 3))
    assert letterbox(square).tobytes() == square.tobytes()
    assert frame([wide], CENTRE_CROP)[0] is wide
    with pytest.raises(ValueError, match="framing"):
        frame([wide], "fisheye")


class _SizeRecorder(_FakeEmbedder):
    def features(self, images):
        self.sizes = [im.size for im in images]
        return super().features(images)


def test_letterbox_head_frames_uploads_and_never_takes_shared_features(tmp_path: Path):
    head = _tiny_head(tmp_path)
    head.meta = {**head.meta, "framing": LETTERBOX}
    head.save(tmp_path, "boxed")
    emb = _SizeRecorder("fake.model")
    boxed = EmbeddedGate(load_head(tmp_path, "boxed"), emb)
    assert boxed.framing == LETTERBOX and not shares_features(boxed, emb)
    boxed([Image.new("RGB", (40, 10)), Image.new("RGB", (6, 6))])
    assert emb.sizes == [(40, 40), (6, 6)]
    # a head from before the field: centre crop, so the catalog's own features can be shared
    plain = EmbeddedGate(load_head(tmp_path, "tiny"), emb)
    assert plain.framing == CENTRE_CROP and shares_features(plain, emb)
    assert not shares_features(plain, _FakeEmbedder("other.model"))
    plain([Image.new("RGB", (40, 10))])
    assert emb.sizes == [(40, 10)]


def test_head_with_unknown_framing_fails_closed(tmp_path: Path):
    _tiny_head(tmp_path)
    meta_path = tmp_path / "gate" / "tiny.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "framing": "fisheye"}))
    with pytest.raises(ModelIntegrityError, match="framing 'fisheye'"):
        load_head(tmp_path, "tiny")


def test_missing_head_fails_closed(tmp_path: Path):
    with pytest.raises(ModelNotAvailableError, match="whales gate calibrate"):
        create_gate("embedded", embedder=_FakeEmbedder("fake.model"), models_dir=tmp_path)


def test_corrupt_head_fails_closed(tmp_path: Path):
    _tiny_head(tmp_path)
    npz = tmp_path / "gate" / "tiny.npz"
    npz.write_bytes(npz.read_bytes()[:-7] + b"garbage")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_head(tmp_path, "tiny")


def test_head_for_another_feature_model_gets_its_own_embedder(tmp_path: Path):
    """A catalog embedded by another model (e.g. a fine-tuned one) never feeds the head features it
    was not trained on: `create_gate` builds the head's own feature model, and a direct mismatch
    fails closed."""
    _tiny_head(tmp_path, "efficientnet_lite2.imagenet")
    from whales_identify.gate import EmbeddedGate, GateConfig

    gate = create_gate("embedded", embedder=_FakeEmbedder("efficientnet_lite0.imagenet"),
                       models_dir=tmp_path, config=GateConfig(head="tiny"), inference_backend="torch")
    assert gate.embedder.model_id == "efficientnet_lite2.imagenet"
    with pytest.raises(ModelIntegrityError, match="trained on efficientnet_lite2.imagenet"):
        EmbeddedGate(load_head(tmp_path, "tiny"), _FakeEmbedder("efficientnet_lite0.imagenet"))


def test_threshold_override_changes_decisions(tmp_path: Path):
    from whales_identify.gate import GateConfig

    _tiny_head(tmp_path)
    emb = _FakeEmbedder("fake.model")
    x = np.full((1, 8), 5.0)  # on the boundary between the two classes
    base = create_gate("embedded", embedder=emb, models_dir=tmp_path, config=GateConfig(head="tiny"))
    s = base([Image.new("RGB", (2, 2))], features=x)[0].cetacean_score
    high = create_gate("embedded", embedder=emb, models_dir=tmp_path, config=GateConfig(head="tiny"),
                       threshold=min(1.0, s + 0.01))
    assert high.threshold == pytest.approx(min(1.0, s + 0.01))
    assert not high([Image.new("RGB", (2, 2))], features=x)[0].is_cetacean
    low = create_gate("embedded", embedder=emb, models_dir=tmp_path, config=GateConfig(head="tiny"),
                      threshold=max(0.0, s - 0.01))
    assert low([Image.new("RGB", (2, 2))], features=x)[0].is_cetacean
    with pytest.raises(ValueError, match="threshold"):
        create_gate("embedded", embedder=emb, models_dir=tmp_path, threshold=1.5)


def test_a_swapped_head_brings_its_own_threshold_and_band(tmp_path: Path):
    """A head dropped into another models folder (WHALES_MODELS_DIR, --models-dir) is used with the
    threshold and band in its own json, not with numbers stated for the committed head."""
    head = _tiny_head(tmp_path)
    head.meta = {"threshold": 0.123, "borderline": [0.05, 0.4]}
    head.save(tmp_path, "cetacean_lite0")
    gate = create_gate("embedded", embedder=_FakeEmbedder("fake.model"), models_dir=tmp_path)
    assert gate.version.startswith("cetacean_lite0@") and gate.version != load_head(MODELS).version
    assert gate.threshold == 0.123 and gate.band == (0.05, 0.4)


# --- generated negatives, perturbations -----------------------------------------------------------

def test_generated_negatives_are_deterministic_and_seed_specific():
    for kind in NEGATIVE_KINDS:
        a, b = render_negative(kind, 1, 0), render_negative(kind, 1, 0)
        assert a.tobytes() == b.tobytes()
        assert render_negative(kind, 2, 0).tobytes() != a.tobytes()


def test_perturbations_return_rgb_images():
    im = Image.new("RGB", (300, 200), (10, 80, 160))
    for name in PERTURBATIONS:
        out = perturb(im, name)
        assert out.mode == "RGB" and min(out.size) > 0
    assert max(perturb(im, "downscale_128").size) == 128


def test_reframe_is_a_seeded_clean_crop():
    import random

    im = Image.new("RGB", (300, 200), (10, 80, 160))
    a, b = reframe(im, random.Random("k")), reframe(im, random.Random("k"))
    assert a.mode == "RGB" and a.tobytes() == b.tobytes()
    assert 0.65 * 300 - 1 <= a.width <= 0.95 * 300 and 0.65 * 200 - 1 <= a.height <= 0.95 * 200


def test_ensemble_head_is_one_wider_mlp_averaging_logits(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(0, 1, (120, 8)))
    y = (x[:, 0] > x[:, 1]).astype(int)
    merged = fit_head(x, y, "fake.model", 0.1, hidden=4, ensemble=3)
    members = [fit_head(x, y, "fake.model", 0.1, hidden=4, seed=k) for k in range(3)]
    assert merged.kind == "mlp12"
    assert np.allclose(merged.decision(x), np.mean([m.decision(x) for m in members], axis=0))
    merged.save(tmp_path, "ens")
    assert np.allclose(load_head(tmp_path, "ens").score(x), merged.score(x))


# --- the committed head with the real backbone ---------------------------------------------------

def test_committed_head_rejects_fresh_generated_negatives(lite0_embedder):
    gate = create_gate("embedded", embedder=lite0_embedder, models_dir=MODELS)
    images = [render_negative(k, 777, i) for k in NEGATIVE_KINDS for i in range(4)]  # unseen seed
    results = gate(images)
    accepted = [(k, r.cetacean_score) for k, r in zip(
        [k for k in NEGATIVE_KINDS for _ in range(4)], results, strict=True) if r.is_cetacean]
    assert not accepted, accepted


def test_committed_head_records_its_provenance(data_dir: Path):
    meta = json.loads((MODELS / "gate" / "cetacean_lite0.json").read_text())
    assert meta["feature_model_id"] == "efficientnet_lite0.imagenet"
    assert meta["framing"] == LETTERBOX
    assert meta["manifest_sha256"] == manifest_hash(data_dir / "manifest.csv")
    assert meta["created_by"].startswith("whales gate calibrate")


# --- the calibration pipeline end to end, with a fake backbone (fast) -----------------------------

def _toy_manifest(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    lines = ["relpath,label,individual_id,species"]
    for n in range(60):
        positive = n < 40
        folder = "positives/toy" if positive else "negatives/toy_sharks"
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        base = np.array([30, 60, 200] if positive else [200, 60, 30]) + rng.normal(0, 25, 3)
        arr = np.clip(base + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / folder / f"{n}.png")
        ident = f"toy_{n // 2}" if positive else ""
        lines.append(f"{folder}/{n}.png,{'cetacean' if positive else 'non_cetacean'},{ident},x")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_calibrate_pipeline_keeps_test_out_and_picks_threshold_on_calibration(tmp_path: Path):
    from whales_identify.train import gate as gt

    manifest = _toy_manifest(tmp_path)
    head, rep = gt.calibrate(manifest, tmp_path, ColourEmbedder(), n_generated_cal=2, n_generated_test=2,
                             reg_grid=(1.0,), hidden=0, folds=3, cache_dir=tmp_path / "cache",
                             progress=False)
    assert rep["split"]["shared_groups"] == 0
    assert rep["split"]["calibration"]["toy"]["groups"] == rep["split"]["test"]["toy"]["groups"] == 10
    assert rep["threshold_choice"]["threshold"] == rep["test"]["threshold"]
    assert rep["test"]["per_source"]["toy"]["n"] + rep["split"]["calibration"]["toy"]["images"] == 40
    assert rep["test"]["roc_auc"] > 0.9
    assert head.feature_model_id == "fake.colour" and head.kind == "logreg"
    assert rep["framing"] == head.framing == LETTERBOX  # the default: the whole photo
    # The held-out score of a test image does not depend on whether it was in training: it was not.
    items = gt.test_part(manifest, tmp_path, n_generated=2)
    assert {i.group for i in items}.isdisjoint(
        {i.group for i in gt.split_items(gt.manifest_items(manifest, tmp_path))[0]})


def test_cli_score_outputs_json(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from whales_cli import app

    render_negative("screenshot", 99, 0).save(tmp_path / "shot.png")
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["gate", "score", str(tmp_path / "shot.png"), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)[0]
    assert row["is_cetacean"] is False and row["backend"] == "embedded" and 0 <= row["cetacean_score"] <= 1


def test_cli_calibrate_refuses_an_unknown_framing(tmp_path: Path):
    from typer.testing import CliRunner

    from whales_cli import app

    manifest = _toy_manifest(tmp_path)
    result = CliRunner().invoke(app, ["gate", "calibrate", "--manifest", str(manifest), "--root",
                                      str(tmp_path), "--framing", "fisheye", "--no-write"])
    assert result.exit_code == 2
    assert "letterbox" in result.output and "centre_crop" in result.output


def test_cli_gate_is_the_same_from_any_working_directory(tmp_path: Path, monkeypatch):
    """`whales gate score` / `whales identify` once read a threshold yaml relative to the working
    directory, and silently ran without it elsewhere; the head now carries its threshold."""
    from whales_cli.gate import build_gate

    head = load_head(MODELS)
    monkeypatch.chdir(tmp_path)
    gate = build_gate("embedded", None, None, MODELS, embedder=_FakeEmbedder(head.feature_model_id))
    assert gate.threshold == head.meta["threshold"] and gate.band == tuple(head.meta["borderline"])
    assert build_gate("embedded", None, 0.5, MODELS,
                      embedder=_FakeEmbedder(head.feature_model_id)).threshold == 0.5
