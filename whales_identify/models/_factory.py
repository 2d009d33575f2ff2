"""`create_model("arch.tag")`: resolve, verify and strictly load a registered model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whales_identify.models._pretrained import require_weights
from whales_identify.models._registry import discover_trained, get_builder, get_pretrained_cfg


def create_model(model_id: str, models_dir: Path | str | None = None) -> Any:
    """Build the model `model_id` with its verified weights, in eval mode.

    Raises:
        UnknownModelError: the id is not registered.
        ModelNotAvailableError: the weights (or companion files) are missing; the message says how
            to get them.
        ModelIntegrityError: sha256 mismatch, unreadable file, or keys/shapes that do not match.
    """
    if models_dir is not None:
        discover_trained(models_dir)
    cfg = get_pretrained_cfg(model_id)
    weights = require_weights(cfg, Path(models_dir) if models_dir else None)
    return get_builder(model_id)(cfg, weights)
