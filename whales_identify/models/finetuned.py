"""Re-identification encoders fine-tuned by `whales train`: a timm backbone, GeM pooling and a
linear + batch-norm neck that yields the embedding (ArcFace's class centres are a training-time
head only and are not part of the checkpoint: matching compares embeddings, never classes, so
adding an individual to a catalog never needs the model again).

Checkpoint layout (`models/trained/<model_id>.safetensors`): `backbone.*` (timm, no classifier),
`pool.p`, `neck.0.*` (Linear), `neck.1.*` (BatchNorm1d). The resolved config beside it
(`<model_id>.json`) is what the registry reads (see `_registry.discover_trained`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from whales_identify.errors import ModelIntegrityError
from whales_identify.models._pretrained import PretrainedCfg
from whales_identify.models.arcface import load_strict


class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic et al.), p learned; p=1 is average pooling."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(p), 1).pow(1.0 / p).flatten(1)


class FineTunedEncoder(nn.Module):
    """Backbone -> GeM -> Linear -> BatchNorm1d: one embedding per image (not normalised)."""

    def __init__(self, cfg: PretrainedCfg, backbone: nn.Module, gem_p: float = 3.0):
        super().__init__()
        self.pretrained_cfg = cfg
        self.backbone = backbone
        self.pool = GeM(gem_p)
        self.neck = nn.Sequential(nn.Linear(backbone.num_features, cfg.embedding_dim),
                                  nn.BatchNorm1d(cfg.embedding_dim))

    @property
    def embedding_dim(self) -> int:
        return int(self.pretrained_cfg.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.backbone.forward_features(x)))


def new_backbone(timm_name: str) -> nn.Module:
    import timm

    return timm.create_model(timm_name, pretrained=False, num_classes=0, global_pool="")


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise ModelIntegrityError(f"cannot read checkpoint {path}: {exc}") from exc


def build_finetuned(cfg: PretrainedCfg, weights: Path) -> FineTunedEncoder:
    """The registry builder: the architecture from `cfg.build_args`, weights loaded strictly."""
    model = FineTunedEncoder(cfg, new_backbone(cfg.build_args["timm_name"]))
    state = {k: v.float() for k, v in load_safetensors(weights).items()}
    load_strict(model, state, weights)
    return model.eval()


class SubCenterArcFace(nn.Module):
    """Sub-center ArcFace logits (Deng et al. 2020): k centres per class, the closest one counts;
    the additive angular margin `m` is applied to the target class, everything scaled by `s`.
    Training only: the centres are not saved with the encoder."""

    def __init__(self, dim: int, classes: int, sub_centers: int = 2, s: float = 30.0, m: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes * sub_centers, dim))
        nn.init.xavier_uniform_(self.weight)
        self.classes, self.k, self.s, self.m = classes, sub_centers, s, m

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(embeddings) @ F.normalize(self.weight).T
        cos = cos.view(-1, self.classes, self.k).amax(-1).clamp(-1 + 1e-7, 1 - 1e-7)
        target = torch.cos(torch.acos(cos) + self.m)
        # beyond pi - m the margin would make the target easier again: fall back to a linear penalty
        target = torch.where(cos > math.cos(math.pi - self.m), target,
                             cos - math.sin(math.pi - self.m) * self.m)
        one_hot = F.one_hot(labels, self.classes).bool()
        return self.s * torch.where(one_hot, target, cos)
