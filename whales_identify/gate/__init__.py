"""The gate: is this photo a cetacean at all? (pipeline step 1)

`backends.py` holds the `Gate` protocol and its backends (the embedded head, CLIP, off);
`head.py` the linear head over a model's pooled features and its loader. Fitting a head is
training and lives in `whales_identify.train.gate`.
"""

from whales_identify.gate.backends import (
    BACKENDS,
    CLIP_MODEL_ID,
    CLIP_THRESHOLD,
    ClipGate,
    EmbeddedGate,
    Gate,
    GateConfig,
    GateResult,
    OffGate,
    clip_band,
    create_gate,
    decide,
    load_gate_config,
    shares_features,
)

__all__ = [
    "BACKENDS", "CLIP_MODEL_ID", "CLIP_THRESHOLD", "ClipGate", "EmbeddedGate", "Gate", "GateConfig",
    "GateResult", "OffGate", "clip_band", "create_gate", "decide", "load_gate_config", "shares_features",
]
