"""`whales train`: fine-tune an embedding backbone for re-identification with sub-center ArcFace.

The trained model is a registry model like any other (`<arch>.<tag>`, loaded strictly, exported to
ONNX, tagged on every catalog embedding), so a catalog re-indexed with it is matched exactly as
before; the ArcFace class centres are thrown away after training, and adding an individual to a
catalog still never needs training.

Cross-fitting: with `folds=K, hold_out_fold=k` the individuals whose
`stable_fraction(group_key, fold_salt)` falls in fold k are left out of training; the config JSON
lists every individual trained on, and `whales evaluate --crossfit` refuses to score a query
with a model that saw its individual.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whales_identify.data import FOLD_SALT, ManifestRow, fold_of
from whales_identify.models._pretrained import TRAINED_SUBDIR, resolve_models_dir
from whales_identify.models.entries import DEFAULT_BASE_MODEL


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (written, resolved, beside the checkpoint)."""

    tag: str
    base_model: str = DEFAULT_BASE_MODEL
    epochs: int = 12
    batch_size: int = 32
    lr_backbone: float = 3e-4
    lr_head: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    arcface_scale: float = 30.0
    arcface_margin: float = 0.3
    sub_centers: int = 2
    embedding_dim: int = 512
    gem_p: float = 3.0
    min_photos: int = 2  # individuals with fewer photos teach ArcFace nothing about invariance
    crop_scale_min: float = 0.6
    rotation_degrees: float = 20.0
    seed: int = 0
    folds: int = 1
    hold_out_fold: int | None = None
    fold_salt: str = FOLD_SALT
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.tag or "." in self.tag or "/" in self.tag:
            raise ValueError(f"tag must be a plain name (no '.' or '/'), got {self.tag!r}")
        if self.hold_out_fold is not None and not 0 <= self.hold_out_fold < self.folds:
            raise ValueError(f"hold_out_fold must be in [0, {self.folds}), got {self.hold_out_fold}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs >= 1 and batch_size >= 2 are required")


def training_rows(rows: Sequence[ManifestRow], config: TrainConfig) -> list[ManifestRow]:
    """Cetacean photos with an individual id, outside the held-out fold, of individuals with at
    least `min_photos` photos (of the selected sources)."""
    keep = [r for r in rows if r.is_cetacean and r.individual_id
            and (not config.sources or r.source in config.sources)
            and (config.hold_out_fold is None
                 or fold_of(r, config.folds, config.fold_salt) != config.hold_out_fold)]
    count: dict[str, int] = {}
    for r in keep:
        count[r.individual_id] = count.get(r.individual_id, 0) + 1
    return [r for r in keep if count[r.individual_id] >= config.min_photos]


@dataclass
class TrainResult:
    model_id: str
    weights: Path
    config_path: Path
    history: list[dict[str, float]] = field(default_factory=list)


def train(rows: Sequence[ManifestRow], root: Path, config: TrainConfig, *,
          models_dir: Path | str | None = None, manifest_sha256: str | None = None,
          threads: int | None = None,
          progress: Callable[[str, int], Callable[[int], None]] | None = None) -> TrainResult:
    """Fine-tune `config.base_model` on `rows` (already filtered by `training_rows`) and write
    `<models_dir>/trained/<arch>.<tag>.safetensors` plus its resolved config JSON."""
    import torch

    from whales_identify.models import create_model, get_pretrained_cfg
    from whales_identify.models._pretrained import sha256_file, trained_cfg
    from whales_identify.models._registry import discover_trained
    from whales_identify.models.finetuned import FineTunedEncoder, SubCenterArcFace, new_backbone

    noop: Callable[[str, int], Callable[[int], None]] = lambda label, total: (lambda n: None)  # noqa: E731
    progress = progress or noop
    if threads:
        torch.set_num_threads(threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    base_cfg = get_pretrained_cfg(config.base_model)
    timm_name = base_cfg.build_args.get("timm_name")
    if base_cfg.task != "embedding" or not str(base_cfg.architecture).startswith("efficientnet_lite"):
        raise ValueError(f"{config.base_model} cannot be fine-tuned here: only the EfficientNet-Lite "
                         f"ImageNet models are supported as a base")
    labels = sorted({r.individual_id for r in rows})
    if len(labels) < 2:
        raise ValueError(f"need photos of at least 2 individuals with >= {config.min_photos} photos "
                         f"each, got {len(labels)}")
    model_id = f"{base_cfg.architecture}.{config.tag}"
    cfg_dict = {
        "model_id": model_id, "architecture": base_cfg.architecture,
        "input_size": list(base_cfg.input_size), "mean": list(base_cfg.mean), "std": list(base_cfg.std),
        "interpolation": base_cfg.interpolation, "crop_pct": base_cfg.crop_pct,
        "embedding_dim": config.embedding_dim, "license": "Apache-2.0 (backbone); trained on the "
        "manifest named in this file: check its data licence",
        "description": f"{config.base_model} fine-tuned with sub-center ArcFace by `whales train` on "
                       f"{len(rows)} photos of {len(labels)} individuals "
                       f"({', '.join(sorted({r.source for r in rows}))})",
        "build_args": {"timm_name": timm_name, "base_model": config.base_model},
    }
    pre_cfg = trained_cfg({"pretrained_cfg": cfg_dict, "weights_sha256": "-"})

    base = create_model(config.base_model, models_dir)
    backbone = new_backbone(timm_name)
    state = {k: v for k, v in base.backbone.state_dict().items() if not k.startswith("classifier.")}
    backbone.load_state_dict(state, strict=True)
    model = FineTunedEncoder(pre_cfg, backbone, config.gem_p)
    head = SubCenterArcFace(config.embedding_dim, len(labels), config.sub_centers,
                            config.arcface_scale, config.arcface_margin)
    del base

    images = [_load(root / r.relpath, base_cfg.input_size[-1]) for r in rows]
    targets = [labels.index(r.individual_id) for r in rows]
    augment = _augmentation(base_cfg, config)
    steps_per_epoch = max(1, len(rows) // config.batch_size)
    total = steps_per_epoch * config.epochs
    optimiser = torch.optim.AdamW([
        {"params": model.backbone.parameters(), "lr": config.lr_backbone},
        {"params": [*model.pool.parameters(), *model.neck.parameters(), *head.parameters()],
         "lr": config.lr_head},
    ], weight_decay=config.weight_decay)
    warmup = max(1, int(total * config.warmup_fraction))

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    history: list[dict[str, float]] = []
    update = progress("training", total)
    model.train()
    head.train()
    order = list(range(len(rows)))
    for epoch in range(config.epochs):
        random.shuffle(order)
        t0, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size]
            x = torch.stack([augment(images[i]) for i in idx])
            y = torch.tensor([targets[i] for i in idx])
            logits = head(model(x), y)
            loss = torch.nn.functional.cross_entropy(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            update(1)
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "seconds": time.perf_counter() - t0})
    model.eval()

    out_dir = resolve_models_dir(models_dir) / TRAINED_SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{model_id}.safetensors"
    _save(model, weights)
    meta: dict[str, Any] = {
        "model_id": model_id, "weights_sha256": sha256_file(weights), "pretrained_cfg": cfg_dict,
        "train": asdict(config), "manifest_sha256": manifest_sha256,
        "n_images": len(rows), "n_individuals": len(labels), "training_individuals": labels,
        "sources": sorted({r.source for r in rows}), "history": history,
        "torch_version": torch.__version__, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    config_path = out_dir / f"{model_id}.json"
    config_path.write_text(json.dumps(meta, indent=2) + "\n")
    discover_trained(models_dir)
    return TrainResult(model_id, weights, config_path, history)


def _load(path: Path, size: int) -> Any:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    im.thumbnail((2 * size, 2 * size))  # keeps memory small; the crops are taken from this
    return im


def _augmentation(cfg: Any, config: TrainConfig) -> Callable[[Any], Any]:
    import torch
    from torchvision.transforms import v2

    size = cfg.input_size[-1]
    # no flips: a mirrored callosity pattern or fin outline is another animal's
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(config.crop_scale_min, 1.0), ratio=(0.8, 1.25),
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomRotation(config.rotation_degrees, interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(0.3, 0.3, 0.2, 0.02),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(cfg.mean), list(cfg.std)),
    ])


def _save(model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    # half precision halves the file; features move by < 1e-3 and the ONNX export is checked
    # against this same file, so both backends agree
    state = {k: (v.half() if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)

