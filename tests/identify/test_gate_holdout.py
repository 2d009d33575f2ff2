"""Leave-one-population-out: a data source the gate never trains or calibrates on, scored whole."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.identify.gate_fakes import ColourEmbedder
from whales_identify.train import gate as gt
from whales_identify.train.gate_synthetic import fin_view


def _manifest(tmp_path: Path) -> Path:
    """Two positive sources (40 + 20 photos, pairs per animal) and one negative source (30)."""
    rng = np.random.default_rng(0)
    lines = ["relpath,label,individual_id,species"]
    spec = [("positives/toy", 40, [30, 60, 200]), ("positives/toy_fins", 20, [40, 90, 190]),
            ("negatives/toy_sharks", 30, [200, 60, 30])]
    for folder, count, colour in spec:
        (tmp_path / folder).mkdir(parents=True)
        positive = folder.startswith("positives")
        for n in range(count):
            arr = np.clip(np.array(colour) + rng.normal(0, 25, 3) + rng.normal(0, 20, (32, 32, 3)), 0, 255)
            Image.fromarray(arr.astype(np.uint8)).save(tmp_path / folder / f"{n}.png")
            ident = f"{folder[-4:]}_{n // 2}" if positive else ""
            lines.append(f"{folder}/{n}.png,{'cetacean' if positive else 'non_cetacean'},{ident},"
                         f"{'dolphin' if n % 2 else 'whale'}")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


FAST = {"n_generated_cal": 2, "n_generated_test": 2, "reg_grid": (1.0,), "hidden": 0, "folds": 3,
        "progress": False}


def test_held_out_source_is_out_of_training_and_scored_on_every_photo(tmp_path: Path):
    manifest = _manifest(tmp_path)
    _, rep = gt.calibrate(manifest, tmp_path, ColourEmbedder(), hold_out_sources=["toy_fins"],
                          cache_dir=tmp_path / "cache", **FAST)
    assert "toy_fins" not in rep["split"]["calibration"] and "toy_fins" not in rep["test"]["per_source"]
    assert rep["training"]["hold_out_sources"] == ["toy_fins"]
    held = rep["population_holdout"]["per_source"]["toy_fins"]
    assert held["metric"] == "TPR" and held["n"] == 20 and held["n_groups"] == 10
    assert held["rate"] == held["correct"] / 20 and held["wilson95"][0] <= held["rate"] <= held["wilson95"][1]
    assert sum(e["n"] for e in held["per_species"].values()) == 20
    assert held["roc_auc_vs_test_negatives"] > 0.9 and len(held["worst"]) == 8
    assert rep["population_holdout"]["threshold"] == rep["test"]["threshold"]
    # The other sources are split exactly as without the hold-out: same test photos.
    _, plain = gt.calibrate(manifest, tmp_path, ColourEmbedder(), cache_dir=tmp_path / "cache", **FAST)
    assert rep["split"]["test"]["toy"] == plain["split"]["test"]["toy"]
    assert "population_holdout" not in plain


def test_an_unknown_source_to_hold_out_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="toy_seals"):
        gt.calibrate(_manifest(tmp_path), tmp_path, ColourEmbedder(), hold_out_sources=["toy_seals"],
                     cache_dir=tmp_path / "cache", **FAST)


def test_fin_views_are_seeded_and_join_the_training_rows(tmp_path: Path):
    im = Image.new("RGB", (400, 300), (10, 80, 160))
    a, b = fin_view(im, random.Random("k")), fin_view(im, random.Random("k"))
    assert a.mode == "RGB" and a.tobytes() == b.tobytes() and 96 <= max(a.size) <= 512
    manifest = _manifest(tmp_path)
    _, base = gt.calibrate(manifest, tmp_path, ColourEmbedder(), cache_dir=tmp_path / "cache", **FAST)
    _, more = gt.calibrate(manifest, tmp_path, ColourEmbedder(), fin_views=2,
                           cache_dir=tmp_path / "cache", **FAST)
    cal = base["split"]["calibration"]
    scarce = sum(e["images"] for s, e in cal.items() if not s.startswith("generated"))
    assert more["training"]["rows"] - base["training"]["rows"] == 2 * scarce


def test_a_boost_moves_weight_between_positive_sources_not_between_classes():
    sources = ["a"] * 6 + ["b"] * 2 + ["n"] * 4
    labels = [True] * 8 + [False] * 4
    w = gt.source_weights(sources, labels, {"b": 2.0})
    src = np.array(sources)
    assert w[src == "b"].sum() == pytest.approx(2 * w[src == "a"].sum())
    assert w[:8].sum() == pytest.approx(w[8:].sum())
    np.testing.assert_allclose(gt.source_weights(sources, labels, {}), gt.source_weights(sources, labels))


def test_cli_hold_out_keeps_the_shipped_head_and_merges_readings(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    import whales_identify.embed
    import whales_identify.models
    from whales_cli import app

    monkeypatch.setattr(whales_identify.models, "create_model", lambda *_a: None)
    monkeypatch.setattr(whales_identify.embed, "Embedder", lambda _m: ColourEmbedder())
    calibrate = gt.calibrate  # the real pipeline, with a head that fits in a blink
    fast = {k: v for k, v in FAST.items() if k != "progress"}
    monkeypatch.setattr(gt, "calibrate", lambda *a, **k: calibrate(*a, **{**k, **fast}))
    manifest = _manifest(tmp_path / "data")
    models, report = tmp_path / "models", tmp_path / "holdout.json"
    base = ["gate", "calibrate", "--manifest", str(manifest), "--root", str(tmp_path / "data"),
            "--models-dir", str(models), "--cache-dir", str(tmp_path / "cache"), "--report", str(report)]
    for extra in (["--hold-out-source", "toy_fins"], ["--hold-out-source", "toy", "--fin-views", "1"]):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 0, result.output
        assert "held out entirely" in result.output
    assert not (models / "gate").exists()  # nothing written where the service looks for its head
    readings = json.loads(report.read_text())["readings"]
    assert set(readings) == {"toy_fins", "toy; fin_views=1"}
    cand = tmp_path / "cand"
    result = CliRunner().invoke(app, [*base, "--hold-out-source", "toy_fins", "--out", str(cand)])
    assert result.exit_code == 0, result.output
    assert (cand / "gate" / "cetacean_lite0.npz").is_file() and not (models / "gate").exists()
    assert set(json.loads(report.read_text())["readings"]) == {"toy_fins", "toy; fin_views=1"}
