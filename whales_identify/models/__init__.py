"""Model registry and factory (timm-style): `create_model("efficientnet_lite0.imagenet")`."""

from whales_identify.models._factory import create_model
from whales_identify.models._pretrained import (
    ModelStatus,
    PretrainedCfg,
    WeightSource,
    check_model,
    pull_model,
    resolve_models_dir,
)
from whales_identify.models._registry import get_pretrained_cfg, list_models, register_model
from whales_identify.models.entries import DEFAULT_REID_MODEL, GATE_FEATURE_MODEL

__all__ = [
    "DEFAULT_REID_MODEL",
    "GATE_FEATURE_MODEL",
    "ModelStatus",
    "PretrainedCfg",
    "WeightSource",
    "check_model",
    "create_model",
    "get_pretrained_cfg",
    "list_models",
    "pull_model",
    "register_model",
    "resolve_models_dir",
]
