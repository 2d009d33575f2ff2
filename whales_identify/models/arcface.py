"""The reference EfficientNet-B4 ArcFace re-identification checkpoint (Happywhale, 15,587 classes).

Layout: timm `efficientnet_b4` backbone (`num_classes=0, global_pool=''`) -> average pooling ->
`Linear(1792 -> 512)` embedding -> ArcFace weight `[15587, 512]`, of which the first 13,837 rows are
real individuals. Checkpoint keys: `model.*` (backbone), `embedding.*`, `arc.weight`. Companion files:
`encoder_classes.npy` (class index -> individual_id) and `species_map.csv` (individual_id -> species).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from whales_identify.errors import ModelIntegrityError
from whales_identify.models._pretrained import PretrainedCfg
from whales_identify.models.efficientnet import load_torch_file
from whales_identify.models.entries import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 - re-exported


class ArcFaceEncoder(nn.Module):
    """Backbone + pooling + embedding; `class_logits` gives cosine scores against ArcFace centres."""

    def __init__(self, cfg: PretrainedCfg, backbone: nn.Module, in_features: int):
        super().__init__()
        args = cfg.build_args
        self.pretrained_cfg = cfg
        self.model = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding = nn.Linear(in_features, cfg.embedding_dim)
        self.arc = nn.Module()
        self.arc.weight = nn.Parameter(torch.empty(args["num_classes"], cfg.embedding_dim))
        self.num_real_classes = int(args["num_real_classes"])
        self.classes: np.ndarray = np.array([], dtype=object)
        self.species_map: dict[str, str] = {}

    @property
    def embedding_dim(self) -> int:
        return int(self.pretrained_cfg.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.pool(self.model(x)).flatten(1))

    def class_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity to each real individual's ArcFace centre."""
        centres = F.normalize(self.arc.weight[: self.num_real_classes], dim=1)
        return F.normalize(embeddings, dim=1) @ centres.T


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """`load_state_dict(strict=True)` with an error that lists the offending keys."""
    expected = set(module.state_dict())
    got = set(state)
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise ModelIntegrityError(
            f"checkpoint {where} does not match the model: missing keys {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}; unexpected keys {unexpected[:10]}"
            f"{' ...' if len(unexpected) > 10 else ''}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise ModelIntegrityError(f"checkpoint {where} does not match the model: {exc}") from exc


def build_arcface(cfg: PretrainedCfg, weights: Path) -> ArcFaceEncoder:
    import timm

    backbone = timm.create_model(cfg.build_args["timm_name"], pretrained=False, num_classes=0,
                                 global_pool="")
    model = ArcFaceEncoder(cfg, backbone, backbone.num_features)
    load_strict(model, load_torch_file(weights), weights)
    classes_path = weights.parent / "encoder_classes.npy"
    model.classes = np.load(classes_path, allow_pickle=True)
    if len(model.classes) < model.num_real_classes:
        raise ModelIntegrityError(
            f"{classes_path} has {len(model.classes)} ids, expected {model.num_real_classes}")
    with open(weights.parent / "species_map.csv", newline="") as fh:
        model.species_map = {row["individual_id"]: row["species"] for row in csv.DictReader(fh)}
    return model.eval()
