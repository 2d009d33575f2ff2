"""`Embedder(model)(images)`: batched, L2-normalised global embeddings with inference_mode."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from whales_identify.transforms import to_batch


class Embedder:
    """Turns PIL images into float32 unit vectors with one model.

    Args:
        model: a registry model whose forward returns (N, D) features and that carries
            `pretrained_cfg` (preprocessing is derived from it).
        batch_size: images per forward pass.
    """

    def __init__(self, model: torch.nn.Module, batch_size: int = 16):
        self.model = model.eval()
        self.cfg = model.pretrained_cfg
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return str(self.cfg.model_id)

    @property
    def dim(self) -> int:
        return int(self.cfg.embedding_dim)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw pooled features (not normalised), shape (N, D)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = to_batch(images[start:start + self.batch_size], self.cfg)
                out.append(self.model(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        return l2_normalize(self.features(images))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)
