"""The anti-fraud gate: is there a whale or dolphin in this photo?

`Gate(images, features=None) -> list[GateResult]`. Backends: `embedded` (a small head on the shared
EfficientNet-Lite features, offline default) and `clip` (open_clip zero-shot, when its weights exist),
plus `off` (an explicit operator choice, echoed in every response). `create_gate` fails closed: a
head or checkpoint that is missing, corrupt or made for another feature model raises
`ModelNotAvailableError`/`ModelIntegrityError`; it never falls back to letting everything through.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.gate.head import DEFAULT_HEAD, GateHead, load_head
from whales_identify.models.entries import CLIP_MODEL_ID
from whales_identify.transforms import CENTRE_CROP, frame

BACKENDS = ("embedded", "clip", "off")
# The CLIP gate is not calibrated (its weights are not available offline): these are its defaults,
# stated once. The embedded gate's threshold and band live in its head's json.
CLIP_THRESHOLD = 0.5
CLIP_BAND_LOW = 0.2


def clip_band(threshold: float = CLIP_THRESHOLD) -> tuple[float, float]:
    """The CLIP gate's default borderline band for `threshold`."""
    return min(CLIP_BAND_LOW, threshold), threshold

POSITIVE_PROMPTS = (
    "a photo of a whale", "a photo of a dolphin", "an aerial view of a whale in the sea",
    "an aerial photo of a whale's head", "a whale's fluke above the water", "the tail fluke of a whale",
    "the dorsal fin of a dolphin", "the dorsal fin of a whale", "a killer whale", "a humpback whale",
    "a beluga whale", "a pod of dolphins swimming", "a whale breaching", "a whale surfacing",
)
NEGATIVE_PROMPTS = (
    "a photo of a shark", "the dorsal fin of a shark", "a photo of a seal", "a photo of a sea lion",
    "a walrus", "a photo of a fish", "a photo of a boat", "a surfer", "a photo of a person",
    "a selfie", "text", "a screenshot", "a document", "an empty sea", "the ocean surface with waves",
    "a photo of a bird", "a seagull", "a beach", "a photo of a city street", "a drawing",
    "a photo of a dog", "a photo of a cat", "a turtle", "a jellyfish", "a forest", "a mountain",
)


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
        """Score a batch. `features` are the shared backbone's pooled features, passed only when
        `shares_features(gate, embedder)` says they are the ones the gate was trained on."""
        ...


class OffGate:
    """`WHALES_GATE=off`: an explicit operator choice, echoed in every response."""

    backend = "off"
    version = "off"

    def __call__(self, images: Sequence[Image.Image],
                 features: np.ndarray | None = None) -> list[GateResult]:
        return [GateResult(True, 1.0, "accept", "off", "off") for _ in images]


@dataclass(frozen=True)
class GateConfig:
    """An operator's explicit overrides for one backend (an optional yaml, `load_gate_config`).

    `None` means "not set here": the head's own calibrated values apply (for CLIP, `CLIP_THRESHOLD`
    and `clip_band`). The head carries its threshold, so a head swapped in brings its own.
    """

    backend: str = "embedded"
    threshold: float | None = None
    band_low: float | None = None
    band_high: float | None = None
    head: str = DEFAULT_HEAD
    source: str = "defaults"


def load_gate_config(path: str | os.PathLike[str] | None = None, backend: str = "embedded") -> GateConfig:
    """Read an operator's overrides for `backend` from the yaml at `path`.

    The file is optional and holds only what an operator set on purpose, one section per backend:
    `embedded: {head: NAME, threshold: T, borderline: {low: L, high: H}}`, `clip: {...}`.

    Args:
        path: the yaml (`WHALES_GATE_CONFIG`, `--gate-config`); None: no overrides.
        backend: `embedded` or `clip`.

    Raises:
        ValueError: a threshold or band outside [0, 1], or a band with low > high.
    """
    import yaml

    section: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        section = dict(doc.get(backend) or {})
        source = str(path)
    band = section.get("borderline") or {}
    cfg = GateConfig(backend=backend, threshold=_unit(section.get("threshold"), "threshold"),
                     band_low=_unit(band.get("low"), "borderline.low"),
                     band_high=_unit(band.get("high"), "borderline.high"),
                     head=str(section.get("head") or DEFAULT_HEAD), source=source)
    if cfg.band_low is not None and cfg.band_high is not None and cfg.band_low > cfg.band_high:
        raise ValueError(f"gate borderline band low {cfg.band_low} > high {cfg.band_high} ({source})")
    return cfg


def _unit(value: Any, name: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (0.0 <= v <= 1.0) or math.isnan(v):
        raise ValueError(f"gate {name} must be in [0, 1], got {value!r}")
    return v


def decide(score: float, threshold: float, band: tuple[float, float]) -> tuple[bool, str]:
    """(is_cetacean, band). The band always contains the threshold, whatever the operator set."""
    low, high = min(band[0], threshold), max(band[1], threshold)
    label = "reject" if score < low else "accept" if score >= high else "borderline"
    return bool(score >= threshold), label


def shares_features(gate: Any, embedder: Any) -> bool:
    """Whether `gate` can score `embedder`'s own features of a photo (same model, same centre-crop
    framing), so that one backbone pass serves both; otherwise the gate makes its own pass."""
    return (getattr(gate, "feature_model_id", None) == getattr(embedder, "model_id", "")
            and getattr(gate, "framing", CENTRE_CROP) == CENTRE_CROP)


class EmbeddedGate:
    """Logistic-regression head on pooled EfficientNet-Lite features.

    Args:
        head: a loaded `GateHead` (see `gate.head.load_head`); its `framing` says how photos are
            framed before the backbone (a letterboxed head sees the whole photo).
        embedder: computes features when the caller passes none; must be the head's feature model.
        threshold: decision threshold (default: the head's calibrated one, from its json).
        band: (low, high) borderline band (default: the head's).
    """

    backend = "embedded"

    def __init__(self, head: GateHead, embedder: Any | None = None, threshold: float | None = None,
                 band: tuple[float, float] | None = None):
        if embedder is not None and embedder.model_id != head.feature_model_id:
            raise ModelIntegrityError(
                f"gate head {head.version} was trained on {head.feature_model_id} features, "
                f"but the embedder is {embedder.model_id}; retrain it with whales gate calibrate "
                f"--model {embedder.model_id}")
        self.head = head
        self.embedder = embedder
        self.version = head.version
        self.feature_model_id = head.feature_model_id
        self.framing = head.framing
        t = threshold if threshold is not None else head.meta.get("threshold")
        if t is None:
            raise ModelIntegrityError(f"gate head {head.version} has no threshold; set one")
        self.threshold = float(t)
        self.band = tuple(band or head.meta.get("borderline") or (self.threshold, self.threshold))

    def __call__(self, images: Sequence[Image.Image],
                 features: np.ndarray | None = None) -> list[GateResult]:
        if features is None:
            if self.embedder is None:
                raise ModelNotAvailableError(
                    "the embedded gate got no features and has no embedder to compute them")
            features = self.embedder.features(frame(images, self.framing))
        if len(features) != len(images):
            raise ValueError(f"{len(images)} images but {len(features)} feature rows")
        scores = self.head.score(features) if len(images) else np.zeros(0)
        return [self._result(float(s)) for s in scores]

    def _result(self, score: float) -> GateResult:
        ok, band = decide(score, self.threshold, self.band)  # type: ignore[arg-type]
        return GateResult(ok, score, band, self.backend, self.version)


class ClipGate:
    """open_clip zero-shot gate: score = softmax probability mass on the cetacean prompts.

    Args:
        model: a registry `ClipModel` (`encode_image`, `encode_text`, `pretrained_cfg`, `model.logit_scale`).
        threshold, band: decision threshold and borderline band on that probability mass.
        positives, negatives: the prompts; their text embeddings are computed once, here.
    """

    backend = "clip"
    feature_model_id = None  # never shares the re-identification backbone's features

    def __init__(self, model: Any, threshold: float = CLIP_THRESHOLD, band: tuple[float, float] | None = None,
                 positives: Sequence[str] = POSITIVE_PROMPTS, negatives: Sequence[str] = NEGATIVE_PROMPTS,
                 batch_size: int = 16):
        import torch

        self.model = model.eval()
        self.cfg = model.pretrained_cfg
        self.threshold, self.batch_size = float(threshold), batch_size
        self.band = tuple(band or clip_band(self.threshold))
        self.n_pos = len(positives)
        with torch.inference_mode():
            text = model.encode_text(list(positives) + list(negatives)).float()
        self.text = torch.nn.functional.normalize(text, dim=-1)
        scale = getattr(getattr(model, "model", model), "logit_scale", None)
        self.logit_scale = float(scale.exp()) if scale is not None else 100.0
        prompts = "|".join(positives) + "||" + "|".join(negatives)
        self.version = f"{self.cfg.model_id}+prompts@{hashlib.sha256(prompts.encode()).hexdigest()[:8]}"

    def scores(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        from whales_identify.transforms import to_batch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                img = self.model.encode_image(to_batch(images[start:start + self.batch_size], self.cfg))
                img = torch.nn.functional.normalize(img.float(), dim=-1)
                probs = (self.logit_scale * img @ self.text.T).softmax(dim=-1)
                out.append(probs[:, : self.n_pos].sum(dim=-1).clamp(0, 1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def __call__(self, images: Sequence[Image.Image],
                 features: np.ndarray | None = None) -> list[GateResult]:
        results = []
        for s in self.scores(images):
            ok, band = decide(float(s), self.threshold, self.band)  # type: ignore[arg-type]
            results.append(GateResult(ok, float(s), band, self.backend, self.version))
        return results


def create_gate(backend: str, embedder: Any | None = None, models_dir: Path | str | None = None,
                threshold: float | None = None, config: GateConfig | None = None, *,
                inference_backend: str = "auto", threads: int | None = None) -> Gate:
    """Build the configured gate, or raise: never a silent pass-through.

    Args:
        backend: `embedded`, `clip` or `off`.
        embedder: the catalog's embedder, shared with the gate when the head reads its features;
            when None or another model (e.g. a fine-tuned re-identification model), the gate gets
            its own embedder of the head's feature model (`inference_backend`, `threads`).
        models_dir: weights folder (heads under `<models_dir>/gate/`).
        threshold: overrides everything else (the service's WHALES_GATE_THRESHOLD, the CLI's
            --threshold); else the config's, else the head's own calibrated one.
        config: an operator's overrides from `load_gate_config` (band, head name, threshold).

    Raises:
        ValueError: unknown backend.
        ModelNotAvailableError / ModelIntegrityError: head or checkpoint missing or corrupt.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown gate backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "off":
        return OffGate()
    cfg = config or GateConfig(backend=backend)
    threshold = _unit(threshold, "threshold") if threshold is not None else cfg.threshold
    band = (cfg.band_low, cfg.band_high) if cfg.band_low is not None and cfg.band_high is not None else None
    from whales_identify.models import create_model

    if backend == "clip":
        model = create_model(CLIP_MODEL_ID, models_dir)
        t = CLIP_THRESHOLD if threshold is None else threshold
        return ClipGate(model, threshold=t, band=band or clip_band(t))
    head = load_head(models_dir, cfg.head)
    if embedder is None or embedder.model_id != head.feature_model_id:
        from whales_identify.embed import create_embedder

        embedder = create_embedder(head.feature_model_id, models_dir, backend=inference_backend,  # type: ignore[arg-type]
                                   threads=threads)
    return EmbeddedGate(head, embedder, threshold=threshold, band=band)
