"""Embedders: PIL images -> float32 unit vectors, batched, with one model.

Two backends with one interface (`model_id`, `dim`, `cfg`, `features`, `__call__`):

- `Embedder(model)`: a PyTorch registry model, run under `inference_mode`;
- `OnnxEmbedder(session, cfg)`: the same model exported by `whales models export-onnx`, run by
  ONNX Runtime; the process never imports torch (the service's default when the export exists).

`create_embedder` picks one. Both use the same preprocessing (`transforms.preprocess`).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from whales_identify.models._pretrained import PretrainedCfg
from whales_identify.transforms import preprocess

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "torch"]


class _BatchedEmbedder:
    cfg: PretrainedCfg
    batch_size: int
    backend: str

    @property
    def model_id(self) -> str:
        return str(self.cfg.model_id)

    @property
    def dim(self) -> int:
        return int(self.cfg.embedding_dim)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw pooled features (not normalised), shape (N, D)."""
        out = [self._forward(preprocess(images[start:start + self.batch_size], self.cfg))
               for start in range(0, len(images), self.batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        return l2_normalize(self.features(images))


class Embedder(_BatchedEmbedder):
    """PyTorch backend.

    Args:
        model: a registry model whose forward returns (N, D) features and that carries
            `pretrained_cfg` (preprocessing is derived from it).
        batch_size: images per forward pass.
    """

    backend = "torch"

    def __init__(self, model: Any, batch_size: int = 16):
        self.model = model.eval()
        self.cfg = model.pretrained_cfg
        self.batch_size = batch_size

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).float().cpu().numpy()


class OnnxEmbedder(_BatchedEmbedder):
    """ONNX Runtime backend.

    Args:
        session: an `onnxruntime.InferenceSession` of the exported model (see `load_onnx_session`).
        cfg: the registry entry it was exported from (preprocessing and dimensions).
        batch_size: images per run.
        input_name: the graph's input.
    """

    backend = "onnx"

    def __init__(self, session: Any, cfg: PretrainedCfg, batch_size: int = 16,
                 input_name: str = "images"):
        self.session = session
        self.cfg = cfg
        self.batch_size = batch_size
        self.input_name = input_name

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def create_embedder(model_id: str, models_dir: Path | str | None = None, *,
                    backend: Backend = "auto", batch_size: int = 16,
                    threads: int | None = None) -> Embedder | OnnxEmbedder:
    """The embedder for `model_id`.

    `backend="onnx"` requires a verified export (else `ModelNotAvailableError` /
    `ModelIntegrityError` naming the command); `"torch"` builds the PyTorch model; `"auto"` uses
    the export when it and ONNX Runtime are present, else PyTorch (same features either way: the
    export is checked against PyTorch when it is made, and refused if its weights changed since).
    """
    from whales_identify.errors import ModelNotAvailableError
    from whales_identify.models import get_pretrained_cfg
    from whales_identify.models._onnx import load_onnx_session
    from whales_identify.models._registry import discover_trained

    if models_dir is not None:
        discover_trained(models_dir)  # models written by `whales train` under that folder
    cfg = get_pretrained_cfg(model_id)
    if cfg.build_args.get("format") == "onnx":  # registered from a model spec: ONNX Runtime only
        from whales_identify.models.spec import load_onnx_spec_session

        if backend == "torch":
            raise ModelNotAvailableError(f"{model_id} is an ONNX model (spec {cfg.build_args.get('spec')}): "
                                         "it runs on ONNX Runtime; set WHALES_INFERENCE_BACKEND=auto or onnx")
        session, input_name = load_onnx_spec_session(cfg, models_dir, threads)
        return OnnxEmbedder(session, cfg, batch_size, input_name)
    if backend in ("auto", "onnx"):
        try:
            session, meta = load_onnx_session(model_id, models_dir, threads=threads)
            return OnnxEmbedder(session, get_pretrained_cfg(model_id), batch_size, meta["input_name"])
        except ModelNotAvailableError as exc:
            # integrity errors subclass ModelNotAvailableError; only a missing export falls back
            if backend == "onnx" or type(exc) is not ModelNotAvailableError:
                raise
            log.info("serving %s with PyTorch: %s", model_id, exc)
            if importlib.util.find_spec("torch") is None:
                raise ModelNotAvailableError(f"{exc}; PyTorch, the fallback, is not installed (a "
                                             "service install serves the ONNX export only)") from None
    import torch

    from whales_identify.models import create_model

    if threads:
        torch.set_num_threads(threads)
    return Embedder(create_model(model_id, models_dir), batch_size=batch_size)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)).astype(np.float32)
