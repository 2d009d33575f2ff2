"""The model registry: one `PretrainedCfg` per `arch.tag` id, the single source of truth for
where a model's weights come from and how its inputs are preprocessed (timm's pattern)."""

from __future__ import annotations

import importlib
import json
import logging
import os
from typing import Any

from whales_identify.errors import UnknownModelError
from whales_identify.models._pretrained import (
    SHIPPED_SUBDIR,
    TRAINED_BUILDER,
    TRAINED_SUBDIR,
    Builder,
    PretrainedCfg,
    resolve_models_dir,
    trained_cfg,
)
from whales_identify.models.entries import builtin_entries

log = logging.getLogger(__name__)

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
    # The entries (pure data in entries.py) are registered on first use, not at import: importing
    # the registry has no side effects beyond defining functions.
    global _LOADED
    if not _LOADED:
        for cfg, builder in builtin_entries():
            register_model(cfg, builder)
        _LOADED = True
        discover_trained(resolve_models_dir())


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
