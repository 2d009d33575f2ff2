"""The model registry: embedded weights are present, verified, real; bad files fail closed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError, UnknownModelError
from whales_identify.models import check_model, create_model, get_pretrained_cfg, list_models
from whales_identify.models._pretrained import resolve_weight_path
from whales_identify.transforms import to_batch

KILLER_WHALE, GREY_WHALE = 148, 147


def test_every_entry_is_arch_dot_tag_and_lite_models_are_embedded():
    ids = list_models()
    assert all("." in m for m in ids)
    for n in (0, 1, 2):
        status = check_model(get_pretrained_cfg(f"efficientnet_lite{n}.imagenet"))
        assert status.present and status.verified is True, status.message


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownModelError, match="efficientnet_lite0.imagenet"):
        get_pretrained_cfg("nope.nothing")


def test_missing_production_model_fails_closed_with_fix(tmp_path: Path):
    with pytest.raises(ModelNotAvailableError, match="whales models pull effb4_arcface.happywhale"):
        create_model("effb4_arcface.happywhale", models_dir=tmp_path)


def test_corrupt_override_file_is_rejected_by_sha256(tmp_path: Path):
    cfg = get_pretrained_cfg("efficientnet_lite0.imagenet")
    (tmp_path / cfg.source.filename).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        create_model(cfg.model_id, models_dir=tmp_path)


def test_models_dir_copy_takes_precedence_and_verifies(tmp_path: Path):
    cfg = get_pretrained_cfg("efficientnet_lite0.imagenet")
    packaged = resolve_weight_path(cfg, tmp_path)
    assert packaged is not None and "site-packages" in str(packaged)
    shutil.copyfile(packaged, tmp_path / cfg.source.filename)
    assert resolve_weight_path(cfg, tmp_path) == tmp_path / cfg.source.filename
    assert check_model(cfg, tmp_path).verified is True


def _top3(model, image: Image.Image) -> list[int]:
    with torch.inference_mode():
        logits = model.classify(model(to_batch([image], model.pretrained_cfg)))
    return logits[0].topk(3).indices.tolist()


@pytest.mark.parametrize("relpath", [
    "positives/bottlenose_fins_aberdeen/id1056_1_IMG_4904_0.JPG",
    "positives/noaa_right_whale_headcrops/w_1.jpg",
])
def test_embedded_weights_are_real_imagenet_whale(lite0, data_dir: Path, relpath: str):
    path = data_dir / relpath
    if not path.is_file():
        pytest.skip(f"{path} absent")
    top = _top3(lite0, Image.open(path).convert("RGB"))
    assert {KILLER_WHALE, GREY_WHALE} & set(top), f"top-3 ImageNet classes {top}"


def test_embedded_weights_street_is_not_a_whale(lite0, manifest, data_dir: Path):
    streets = [r for r in manifest if r.species == "street"][:5]
    if not streets:
        pytest.skip("no street scenes in the manifest")
    for row in streets:
        top = _top3(lite0, Image.open(data_dir / row.relpath).convert("RGB"))
        assert not {KILLER_WHALE, GREY_WHALE} & set(top), f"{row.relpath}: {top}"


def test_whale_classes_are_majority_on_a_sample(lite0, manifest, data_dir: Path):
    # Not one lucky photo: most of 20 right-whale crops land in the whale classes.
    rows = [r for r in manifest if r.source == "noaa_right_whale_headcrops"][:20]
    whale = {KILLER_WHALE, GREY_WHALE}
    hits = sum(bool(whale & set(_top3(lite0, Image.open(data_dir / r.relpath).convert("RGB"))))
               for r in rows)
    assert hits >= 12, hits
