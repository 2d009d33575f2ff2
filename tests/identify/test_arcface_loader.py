"""The production EfficientNet-B4 ArcFace layout, proven with a tiny checkpoint in the same layout."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.models import create_model, get_pretrained_cfg, register_model
from whales_identify.models._pretrained import sha256_file, write_checksum
from whales_identify.models.arcface import build_arcface

TINY_ID = "effb4_arcface.tiny_test"


@pytest.fixture(scope="module")
def tiny_cfg():
    real = get_pretrained_cfg("effb4_arcface.happywhale")
    cfg = replace(real, model_id=TINY_ID, source=replace(real.source, filename="tiny_arcface.pt"),
                  input_size=(3, 64, 64), embedding_dim=16,
                  build_args={"timm_name": "test_efficientnet", "num_classes": 12,
                              "num_real_classes": 10})
    return register_model(cfg, build_arcface)


def _write_checkpoint(folder: Path, cfg, mutate=None) -> Path:
    import timm

    backbone = timm.create_model("test_efficientnet", pretrained=False, num_classes=0, global_pool="")
    state = {f"model.{k}": v for k, v in backbone.state_dict().items()}
    state["embedding.weight"] = torch.randn(cfg.embedding_dim, backbone.num_features)
    state["embedding.bias"] = torch.zeros(cfg.embedding_dim)
    state["arc.weight"] = torch.randn(cfg.build_args["num_classes"], cfg.embedding_dim)
    if mutate:
        mutate(state)
    path = folder / cfg.source.filename
    torch.save({"state_dict": state}, path)
    np.save(folder / "encoder_classes.npy", np.array([f"ind_{i}" for i in range(10)], dtype=object))
    with open(folder / "species_map.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["individual_id", "species"])
        writer.writerows([[f"ind_{i}", "humpback_whale"] for i in range(10)])
    return path


def test_tiny_checkpoint_loads_strictly_and_embeds(tmp_path: Path, tiny_cfg):
    _write_checkpoint(tmp_path, tiny_cfg)
    model = create_model(TINY_ID, models_dir=tmp_path)
    with torch.inference_mode():
        emb = model(torch.randn(2, 3, 64, 64))
        logits = model.class_logits(emb)
    assert emb.shape == (2, 16)
    assert logits.shape == (2, 10)  # only the real rows of the ArcFace weight
    assert model.classes[3] == "ind_3" and model.species_map["ind_3"] == "humpback_whale"


def test_unexpected_and_missing_keys_are_named(tmp_path: Path, tiny_cfg):
    def rename(state):
        state["head.weight"] = state.pop("embedding.weight")

    _write_checkpoint(tmp_path, tiny_cfg, mutate=rename)
    with pytest.raises(ModelIntegrityError, match=r"missing keys \['embedding.weight'\].*unexpected keys "
                                                  r"\['head.weight'\]"):
        create_model(TINY_ID, models_dir=tmp_path)


def test_wrong_shape_is_an_integrity_error(tmp_path: Path, tiny_cfg):
    def widen(state):
        state["arc.weight"] = torch.randn(13, tiny_cfg.embedding_dim)

    _write_checkpoint(tmp_path, tiny_cfg, mutate=widen)
    with pytest.raises(ModelIntegrityError, match="arc.weight"):
        create_model(TINY_ID, models_dir=tmp_path)


def test_checksum_mismatch_is_rejected(tmp_path: Path, tiny_cfg):
    path = _write_checkpoint(tmp_path, tiny_cfg)
    write_checksum(tmp_path, path.name, sha256_file(path))
    assert create_model(TINY_ID, models_dir=tmp_path) is not None
    with open(path, "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        create_model(TINY_ID, models_dir=tmp_path)


def test_missing_companion_file_fails_closed(tmp_path: Path, tiny_cfg):
    _write_checkpoint(tmp_path, tiny_cfg)
    (tmp_path / "species_map.csv").unlink()
    with pytest.raises(ModelNotAvailableError, match="species_map.csv"):
        create_model(TINY_ID, models_dir=tmp_path)


def test_lite_package_weights_reject_a_foreign_checkpoint(tmp_path: Path):
    # Positional mapping refuses a checkpoint with another tensor count, not silently half-loads it.
    from whales_identify.models.efficientnet import build_efficientnet_lite

    bad = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelIntegrityError, match="tensors"):
        build_efficientnet_lite(get_pretrained_cfg("efficientnet_lite0.imagenet"), bad)
