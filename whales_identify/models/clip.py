"""open_clip ViT-B-32 (LAION-2B) used as a zero-shot cetacean gate when its weights are present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from whales_identify.errors import ModelIntegrityError
from whales_identify.models._pretrained import PretrainedCfg
from whales_identify.models.entries import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD  # noqa: F401 - re-exported


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
