"""The anti-fraud gate: is there a whale or dolphin in this photo?

`Gate(images, features=None) -> list[GateResult]`. Backends: `embedded` (a small head on the shared
EfficientNet-Lite features, offline default) and `clip` (open_clip zero-shot, when its weights exist).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class GateResult:
    is_cetacean: bool
    cetacean_score: float  # in [0, 1]
    band: str  # "accept" | "borderline" | "reject"
    backend: str  # "embedded" | "clip" | "off"
    version: str  # model id + head hash: what produced the score


class Gate(Protocol):
    backend: str
    version: str

    def __call__(self, images: Sequence[Image.Image],
                 features: np.ndarray | None = None) -> list[GateResult]:
        """Score a batch. `features` are the shared backbone's pooled features, when available."""
        ...


class OffGate:
    """`WHALES_GATE=off`: an explicit operator choice, echoed in every response."""

    backend = "off"
    version = "off"

    def __call__(self, images: Sequence[Image.Image],
                 features: np.ndarray | None = None) -> list[GateResult]:
        return [GateResult(True, 1.0, "accept", "off", "off") for _ in images]
