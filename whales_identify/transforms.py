"""Preprocessing derived from a model's `PretrainedCfg` only (never configured twice).

One implementation, in PIL + numpy, serves every backend: `preprocess` feeds ONNX Runtime without
importing torch, `to_batch` wraps the same array as a tensor. It reproduces torchvision's eval
transform `Resize(floor(size / crop_pct)) -> CenterCrop(size) -> ToTensor -> Normalize` exactly
(torchvision resizes PIL images with PIL itself; tests/identify/test_transforms.py checks it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from whales_identify.models._pretrained import PretrainedCfg

if TYPE_CHECKING:
    import torch

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def _resize_short_side(image: Image.Image, short: int, resample: Image.Resampling) -> Image.Image:
    w, h = image.size
    if w <= h:
        size = (short, int(short * h / w))
    else:
        size = (int(short * w / h), short)
    return image.resize(size, resample) if size != image.size else image


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


CENTRE_CROP = "centre_crop"
LETTERBOX = "letterbox"
FRAMINGS = (CENTRE_CROP, LETTERBOX)
LETTERBOX_FILL = (124, 116, 104)  # the ImageNet mean colour: normalises to ~0, i.e. "no signal"


def letterbox(image: Image.Image, fill: tuple[int, int, int] = LETTERBOX_FILL) -> Image.Image:
    """Pad an RGB image to a square, centred, so that the model's centre crop sees all of it.

    A centre crop of a wide photo (a whale's back along the horizon, a fluke at 4:1) keeps only the
    middle square, often a stretch of grey skin or water with nothing recognisable; padding keeps
    the whole animal (smaller) at the cost of resolution.
    """
    image = image.convert("RGB")
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def frame(images: Sequence[Image.Image], framing: str) -> list[Image.Image]:
    """Apply a framing (`centre_crop`: as is, the model's own crop; `letterbox`: pad to square)."""
    if framing == CENTRE_CROP:
        return list(images)
    if framing == LETTERBOX:
        return [letterbox(im) for im in images]
    raise ValueError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")


def preprocess_image(image: Image.Image, cfg: PretrainedCfg) -> np.ndarray:
    """One RGB image -> float32 array (3, H, W): resize the short side to size / crop_pct,
    centre-crop, scale to [0, 1], normalise with the model's mean/std."""
    size = cfg.input_size[-1]
    image = _resize_short_side(image.convert("RGB"), int(math.floor(size / cfg.crop_pct)),
                               _RESAMPLE[cfg.interpolation])
    arr = np.asarray(_center_crop(image, size), dtype=np.float32) / 255.0
    mean = np.asarray(cfg.mean, np.float32)
    std = np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(((arr - mean) / std).transpose(2, 0, 1))


def preprocess(images: Sequence[Image.Image], cfg: PretrainedCfg) -> np.ndarray:
    """Stack preprocessed images into one float32 (N, 3, H, W) array."""
    size = cfg.input_size[-1]
    if not images:
        return np.zeros((0, 3, size, size), np.float32)
    return np.stack([preprocess_image(im, cfg) for im in images])


def to_batch(images: Sequence[Image.Image], cfg: PretrainedCfg) -> torch.Tensor:
    """The same batch as a torch tensor (N, 3, H, W)."""
    import torch

    return torch.from_numpy(preprocess(images, cfg))
