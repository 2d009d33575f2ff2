"""EcoMarineAI: identify individual whales and dolphins in photographs.

The public API is curated here; heavy modules (torch, timm) load on first use, not on import::

    from whales_identify import create_model, Embedder, create_gate, Catalog, Identifier, Enroller
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "whales_identify.models",
    "list_models": "whales_identify.models",
    "Embedder": "whales_identify.embed",
    "load_image": "whales_identify.images",
    "decode_image": "whales_identify.images",
    "create_gate": "whales_identify.gate",
    "GateResult": "whales_identify.gate",
    "Catalog": "whales_identify.reid.catalog",
    "Identifier": "whales_identify.identify",
    "Enroller": "whales_identify.enroll",
    "Prediction": "whales_identify.results",
    "MatchResult": "whales_identify.results",
    "Candidate": "whales_identify.results",
    "InMemoryStore": "whales_identify.records.store",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'whales_identify' has no attribute {name!r}")
