"""The CLIP gate with a tiny open_clip checkpoint in the real layout (the real weights are not here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.gate import ClipGate, create_gate
from whales_identify.models import PretrainedCfg, WeightSource, create_model, register_model
from whales_identify.models.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build_clip

open_clip = pytest.importorskip("open_clip")

TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _cfg(model_id: str, kwargs: dict) -> PretrainedCfg:
    return register_model(PretrainedCfg(
        model_id=model_id, architecture=model_id.split(".")[0], task="zero_shot_gate",
        source=WeightSource(filename=f"{model_id}.bin"), sha256=None, input_size=(3, 32, 32),
        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, interpolation="bicubic", crop_pct=1.0,
        embedding_dim=16, license="test", description="tiny random open_clip for tests",
        build_args={"open_clip_name": "ViT-B-32", "model_kwargs": kwargs}), build_clip)


def _save_random(path: Path, kwargs: dict, seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-32", pretrained=None, **kwargs)
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    cfg = _cfg("clip_tiny.test", TINY)
    _save_random(folder / cfg.source.filename, TINY)
    return create_model(cfg.model_id, models_dir=folder)


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]


def test_tiny_checkpoint_loads_strictly_and_scores_in_unit_interval(tiny_clip):
    calls = []
    original = tiny_clip.encode_text
    tiny_clip.encode_text = lambda texts: calls.append(len(texts)) or original(texts)
    gate = ClipGate(tiny_clip)
    results = gate(_images()) + gate(_images())
    assert len(calls) == 1  # prompt embeddings once, at construction
    assert all(0.0 <= r.cetacean_score <= 1.0 and r.backend == "clip" for r in results)
    assert results[0].version.startswith("clip_tiny.test+prompts@")
    del tiny_clip.encode_text


def test_score_is_probability_mass_on_positive_prompts(tiny_clip):
    images = _images()
    a = ClipGate(tiny_clip, positives=["a whale"], negatives=["a shark"]).scores(images)
    b = ClipGate(tiny_clip, positives=["a shark"], negatives=["a whale"]).scores(images)
    assert np.allclose(a + b, 1.0, atol=1e-5)
    only = ClipGate(tiny_clip, positives=["a whale", "a dolphin"], negatives=[]).scores(images)
    assert np.allclose(only, 1.0, atol=1e-5)


def test_corrupt_checkpoint_is_an_integrity_error(tmp_path: Path):
    cfg = _cfg("clip_tiny.test", TINY)
    (tmp_path / cfg.source.filename).write_bytes(b"\x80\x02 definitely not a checkpoint")
    with pytest.raises(ModelIntegrityError):
        create_model(cfg.model_id, models_dir=tmp_path)


def test_checkpoint_of_another_shape_is_an_integrity_error(tmp_path: Path):
    cfg = _cfg("clip_tiny.test", TINY)
    wider = {**TINY, "vision_cfg": {**TINY["vision_cfg"], "width": 48}}
    _save_random(tmp_path / cfg.source.filename, wider)
    with pytest.raises(ModelIntegrityError):
        create_model(cfg.model_id, models_dir=tmp_path)


def test_clip_backend_without_weights_fails_closed(tmp_path: Path):
    with pytest.raises(ModelNotAvailableError, match="clip_vit_b32"):
        create_gate("clip", models_dir=tmp_path)
