"""Preprocessing derived from a model's `PretrainedCfg` only (never configured twice)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision import transforms as T

from whales_identify.models._registry import PretrainedCfg

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def create_transform(cfg: PretrainedCfg) -> Callable[[Image.Image], torch.Tensor]:
    """Eval transform: resize the short side to size / crop_pct, centre-crop, normalise."""
    size = cfg.input_size[-1]
    resize = int(math.floor(size / cfg.crop_pct))
    return T.Compose([
        T.Resize(resize, interpolation=_INTERPOLATION[cfg.interpolation]),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(cfg.mean, cfg.std),
    ])


def to_batch(images: Sequence[Image.Image], cfg: PretrainedCfg) -> torch.Tensor:
    """Stack preprocessed RGB images into one (N, 3, H, W) tensor."""
    transform = create_transform(cfg)
    return torch.stack([transform(im.convert("RGB")) for im in images])
