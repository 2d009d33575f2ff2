"""`whales train` and the cross-fitted evaluation: folds never straddle an individual, the trained
checkpoint is a strict registry model (torch and ONNX agree), and a fold model is never allowed
to score an individual it was trained on."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from whales_identify.data import ManifestRow, read_manifest
from whales_identify.embed import l2_normalize
from whales_identify.errors import ModelIntegrityError
from whales_identify.evaluation.crossfit import CrossFitError, check_folds, run_crossfit_evaluation
from whales_identify.evaluation.harness import split_of
from whales_identify.train.reid import TrainConfig, fold_of, training_rows


def _row(name: str, ind: str, source: str = "src") -> ManifestRow:
    return ManifestRow(relpath=f"cetaceans/{source}/{name}.jpg", label="cetacean", individual_id=ind,
                       species="sp")


def test_folds_are_by_individual_and_cover_everyone():
    rows = [_row(str(i), f"ind{i // 4}") for i in range(400)]
    folds: dict[str, set[int]] = {}
    for r in rows:
        folds.setdefault(r.individual_id, set()).add(fold_of(r, 3))
    assert all(len(f) == 1 for f in folds.values())
    sizes = [sum(f == {k} for f in folds.values()) for k in range(3)]
    assert min(sizes) > 15, sizes  # 100 individuals in 3 folds: none is empty or tiny


def test_training_rows_leave_out_the_held_out_fold_and_singletons():
    rows = [_row(str(i), f"ind{i // 3}") for i in range(90)] + [_row("lone", "lonely")]
    cfg = TrainConfig(tag="t", folds=2, hold_out_fold=1)
    kept = training_rows(rows, cfg)
    assert kept and all(fold_of(r, 2) == 0 for r in kept)
    assert "lonely" not in {r.individual_id for r in kept}
    assert len(training_rows(rows, TrainConfig(tag="t"))) == 90


@pytest.mark.parametrize("bad", [{"tag": "a.b"}, {"tag": "x", "folds": 2, "hold_out_fold": 2},
                                 {"tag": "x", "batch_size": 1}])
def test_train_config_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


# ----------------------------------------------------------------------------- synthetic photos
def _pattern(seed: int, shift: int) -> Image.Image:
    """An individual's 'skin': a fixed random blob pattern, photographed with a small shift."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 255, (24, 24, 3)), np.ones((12, 12, 1))).astype(np.uint8)
    return Image.fromarray(np.roll(base, shift, axis=(0, 1))[:256, :256])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    (root / "cetaceans" / "src").mkdir(parents=True)
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["relpath", "label", "individual_id", "species"])
        for ind in range(24):
            for photo in range(3):
                rel = f"cetaceans/src/w{ind}_{photo}.png"
                _pattern(ind, 5 * photo).save(root / rel)
                w.writerow([rel, "cetacean", f"whale{ind}", "eubalaena_glacialis"])
    return root


class PixelEmbedder:
    """A stand-in global embedding (downsampled pixels) named like a fold model."""

    dim = 192

    def __init__(self, model_id: str):
        self.model_id = model_id

    def __call__(self, images):
        return l2_normalize(np.stack([np.asarray(im.convert("RGB").resize((8, 8)), np.float32).ravel()
                                      for im in images]))


def _metas(rows, folds=2):
    return [{"train": {"folds": folds, "hold_out_fold": k, "fold_salt": "reid-crossfit-v1"},
             "training_individuals": sorted({r.individual_id for r in rows if fold_of(r, folds) != k})}
            for k in range(folds)]


def test_crossfit_scores_every_query_with_the_model_that_never_saw_it(synthetic, tmp_path):
    rows = read_manifest(synthetic / "manifest.csv")
    metas = _metas(rows)
    out = run_crossfit_evaluation(synthetic / "manifest.csv", synthetic,
                                  [PixelEmbedder("m.f0"), PixelEmbedder("m.f1")], metas,
                                  calibrate_for="m.final", fit_out=tmp_path / "cal.json",
                                  cache_dir=tmp_path / "cache")
    assert out["crossfit"]["fold_models"] == ["m.f0", "m.f1"]
    assert out["model_id"] == "m.final"
    assert json.loads((tmp_path / "cal.json").read_text())["model_id"] == "m.final"
    n_report = sum(split_of(r) == "report" for r in rows)
    assert out["report"]["n_queries"] == n_report  # every reported photo queried once, by one fold
    assert out["report"]["top1"] > 0.9  # the patterns are distinctive: the harness really matches


def test_crossfit_refuses_a_model_that_saw_its_query(synthetic, tmp_path):
    rows = read_manifest(synthetic / "manifest.csv")
    metas = _metas(rows)
    metas[0]["training_individuals"].append(next(r.individual_id for r in rows if fold_of(r, 2) == 0))
    with pytest.raises(CrossFitError, match="held-out fold"):
        run_crossfit_evaluation(synthetic / "manifest.csv", synthetic,
                                [PixelEmbedder("m.f0"), PixelEmbedder("m.f1")], metas,
                                calibrate_for="m.final", fit_out=tmp_path / "cal.json",
                                cache_dir=tmp_path / "cache")


def test_partial_crossfit_scores_only_the_held_out_folds_present(synthetic, tmp_path):
    rows = read_manifest(synthetic / "manifest.csv")
    metas = _metas(rows)[:1]  # only fold 0's model
    with pytest.raises(CrossFitError, match="one model per fold"):
        run_crossfit_evaluation(synthetic / "manifest.csv", synthetic, [PixelEmbedder("m.f0")], metas,
                                calibrate_for="m.final", fit_out=tmp_path / "cal.json",
                                cache_dir=tmp_path / "cache")
    out = run_crossfit_evaluation(synthetic / "manifest.csv", synthetic, [PixelEmbedder("m.f0")], metas,
                                  calibrate_for="m.final", fit_out=tmp_path / "cal.json",
                                  cache_dir=tmp_path / "cache", partial=True)
    assert out["crossfit"]["partial"] is True and out["crossfit"]["scored_folds"] == [0]
    n_fold0 = sum(split_of(r) == "report" and fold_of(r, 2) == 0 for r in rows)
    assert 0 < n_fold0 < sum(split_of(r) == "report" for r in rows)
    assert out["report"]["n_queries"] == n_fold0  # fold 1's photos only as gallery


def test_check_folds_wants_every_fold_once():
    ok = [{"train": {"folds": 2, "hold_out_fold": k, "fold_salt": "s"}} for k in (0, 1)]
    assert check_folds(ok) == (2, "s")
    with pytest.raises(CrossFitError):
        check_folds(ok[:1])
    with pytest.raises(CrossFitError):
        check_folds([ok[0], ok[0]])
    assert check_folds(ok[:1], partial=True) == (2, "s")
    with pytest.raises(CrossFitError):
        check_folds([ok[0], ok[0]], partial=True)


# ----------------------------------------------------------------------------- real training
def test_train_writes_a_strict_registry_model_that_exports(synthetic, tmp_path):
    from whales_cli import app
    from whales_identify.embed import create_embedder
    from whales_identify.models import check_model, get_pretrained_cfg
    from whales_identify.models._onnx import export_onnx

    models = tmp_path / "models"
    result = CliRunner().invoke(app, [
        "train", "--manifest", str(synthetic / "manifest.csv"), "--root", str(synthetic),
        "--tag", "unit_test", "--epochs", "1", "--batch-size", "8", "--embedding-dim", "16",
        "--sources", "src", "--models-dir", str(models), "--threads", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["model_id"] == "efficientnet_lite0.unit_test"
    meta = json.loads((models / "trained" / "efficientnet_lite0.unit_test.json").read_text())
    assert meta["n_individuals"] == 24 and len(meta["training_individuals"]) == 24
    assert meta["history"][0]["loss"] > 0 and meta["train"]["epochs"] == 1

    torch_emb = create_embedder("efficientnet_lite0.unit_test", models, backend="torch")
    assert get_pretrained_cfg("efficientnet_lite0.unit_test").embedding_dim == 16
    ims = [_pattern(1, 0), _pattern(2, 0)]
    a = torch_emb(ims)
    assert a.shape == (2, 16) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)

    export_onnx("efficientnet_lite0.unit_test", models)
    b = create_embedder("efficientnet_lite0.unit_test", models, backend="onnx")(ims)
    assert float(np.abs(a - b).max()) < 1e-3

    weights = models / "trained" / "efficientnet_lite0.unit_test.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    assert check_model(get_pretrained_cfg("efficientnet_lite0.unit_test"), models).verified is False
    with pytest.raises(ModelIntegrityError, match="sha256"):
        create_embedder("efficientnet_lite0.unit_test", models, backend="torch")


def test_loader_is_strict_about_keys(tmp_path):
    import torch
    from safetensors.torch import save_file

    from whales_identify.models._pretrained import trained_cfg
    from whales_identify.models.finetuned import build_finetuned

    cfg = trained_cfg({"weights_sha256": "-", "pretrained_cfg": {
        "model_id": "efficientnet_lite0.broken", "architecture": "efficientnet_lite0",
        "input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
        "crop_pct": 0.875, "embedding_dim": 16, "license": "-", "description": "-",
        "build_args": {"timm_name": "efficientnet_lite0"}}})
    path = tmp_path / "w.safetensors"
    save_file({"neck.0.weight": torch.zeros(16, 1280)}, str(path))
    with pytest.raises(ModelIntegrityError, match="missing keys"):
        build_finetuned(cfg, path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelIntegrityError, match="cannot read"):
        build_finetuned(cfg, path)


def test_plain_evaluation_refuses_a_model_trained_on_its_queries(synthetic, tmp_path):
    from whales_identify.evaluation.harness import TrainedOnQueriesError, run_evaluation

    with pytest.raises(TrainedOnQueriesError, match="own training data"):
        run_evaluation(synthetic / "manifest.csv", synthetic, PixelEmbedder("m.trained"),
                       trained_on=[f"whale{i}" for i in range(24)], cache_dir=tmp_path / "cache")
    out = run_evaluation(synthetic / "manifest.csv", synthetic, PixelEmbedder("m.trained"),
                         trained_on=["someone_else"], cache_dir=tmp_path / "cache")
    assert out["report"]["n_queries"] > 0
