"""open_clip ViT-B-32 (LAION-2B) used as a zero-shot cetacean gate when its weights are present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from whales_identify.errors import ModelIntegrityError
from whales_identify.models._registry import PretrainedCfg, WeightSource, register_model

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipModel(nn.Module):
    """An open_clip model plus its tokenizer; `encode_image` / `encode_text` as in open_clip."""

    def __init__(self, cfg: PretrainedCfg, model: nn.Module, tokenizer: Any):
        super().__init__()
        self.pretrained_cfg = cfg
        self.model = model
        self.tokenizer = tokenizer

    def encode_image(self, x):  # type: ignore[no-untyped-def]
        return self.model.encode_image(x)

    def encode_text(self, texts: list[str]):  # type: ignore[no-untyped-def]
        return self.model.encode_text(self.tokenizer(texts))


def build_clip(cfg: PretrainedCfg, weights: Path) -> ClipModel:
    import open_clip

    name = cfg.build_args["open_clip_name"]
    try:
        # A file path as `pretrained` loads with strict=True inside open_clip.
        model = open_clip.create_model(name, pretrained=str(weights), require_pretrained=True,
                                       **cfg.build_args.get("model_kwargs", {}))
    except Exception as exc:  # open_clip raises RuntimeError/KeyError on mismatched checkpoints
        raise ModelIntegrityError(f"cannot load {weights} as open_clip {name}: {exc}") from exc
    return ClipModel(cfg, model, open_clip.get_tokenizer(name)).eval()


register_model(
    PretrainedCfg(
        model_id="clip_vit_b32.laion2b_s34b_b79k",
        architecture="clip_vit_b32",
        task="zero_shot_gate",
        source=WeightSource(filename="clip_vit_b32.laion2b_s34b_b79k.bin",
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
    ),
    build_clip,
)
