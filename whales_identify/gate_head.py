"""The embedded gate's head: logistic regression on pooled backbone features, stored without pickle.

Files: `models/gate/<name>.npz` (mean, scale, coef, intercept as float arrays) and
`models/gate/<name>.json` (feature model id, the npz's sha256, training manifest sha256, metrics,
threshold, the command that made it). Loading checks the npz against the sha256 in the json.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError

DEFAULT_HEAD = "cetacean_lite0"
_ARRAYS = ("mean", "scale", "coef", "intercept")


@dataclass
class GateHead:
    """`score(features) -> (N,)` cetacean probabilities from raw (N, D) pooled features."""

    feature_model_id: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)
    version: str = "unsaved"

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def decision(self, features: np.ndarray) -> np.ndarray:
        x = _normalise(np.asarray(features, dtype=np.float64))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"gate head expects (N, {self.dim}) features, got {x.shape}")
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def score(self, features: np.ndarray) -> np.ndarray:
        z = np.clip(self.decision(features), -50, 50)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float64)

    def save(self, models_dir: Path | str, name: str = DEFAULT_HEAD) -> Path:
        """Write `<models_dir>/gate/<name>.npz` and `.json`; returns the json path."""
        folder = Path(models_dir) / "gate"
        folder.mkdir(parents=True, exist_ok=True)
        npz = folder / f"{name}.npz"
        with open(npz, "wb") as fh:  # a file handle: np.savez would append '.npz' to a str path
            np.savez(fh, mean=self.mean, scale=self.scale, coef=self.coef,
                     intercept=np.array([self.intercept]))
        digest = hashlib.sha256(npz.read_bytes()).hexdigest()
        self.version = f"{name}@{digest[:12]}"
        meta = dict(self.meta, name=name, feature_model_id=self.feature_model_id,
                    weights_sha256=digest, version=self.version)
        self.meta = meta
        path = folder / f"{name}.json"
        path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_jsonable) + "\n")
        return path


def _normalise(x: np.ndarray) -> np.ndarray:
    # L2 first: makes the head indifferent to global feature magnitude (exposure, contrast).
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def head_paths(models_dir: Path | str | None, name: str = DEFAULT_HEAD) -> tuple[Path, Path]:
    from whales_identify.models import resolve_models_dir

    folder = resolve_models_dir(models_dir) / "gate"
    return folder / f"{name}.npz", folder / f"{name}.json"


def load_head(models_dir: Path | str | None = None, name: str = DEFAULT_HEAD) -> GateHead:
    """Load and verify a head.

    Raises:
        ModelNotAvailableError: the npz or json is missing (the message names the command to train one).
        ModelIntegrityError: sha256 mismatch, unreadable or inconsistent arrays.
    """
    npz, meta_path = head_paths(models_dir, name)
    fix = "train one with: whales gate calibrate --manifest M --root DIR"
    for p in (npz, meta_path):
        if not p.is_file():
            raise ModelNotAvailableError(f"gate head file {p} is missing; {fix}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"gate head metadata {meta_path} is unreadable: {exc}") from exc
    raw = npz.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if meta.get("weights_sha256") != digest:
        raise ModelIntegrityError(
            f"gate head {npz} has sha256 {digest}, its metadata says {meta.get('weights_sha256')}; {fix}")
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in _ARRAYS}
    except Exception as exc:  # zip/npy format errors of every kind
        raise ModelIntegrityError(f"gate head {npz} is unreadable: {exc}") from exc
    d = arrays["coef"].shape
    if len(d) != 1 or arrays["mean"].shape != d or arrays["scale"].shape != d or arrays["intercept"].size != 1:
        raise ModelIntegrityError(f"gate head {npz} has inconsistent shapes")
    if not meta.get("feature_model_id"):
        raise ModelIntegrityError(f"gate head metadata {meta_path} does not name its feature model")
    return GateHead(feature_model_id=str(meta["feature_model_id"]), mean=arrays["mean"],
                    scale=arrays["scale"], coef=arrays["coef"], intercept=float(arrays["intercept"][0]),
                    meta=meta, version=str(meta.get("version") or f"{name}@{digest[:12]}"))


def fit_head(features: np.ndarray, labels: np.ndarray, feature_model_id: str, c: float = 0.5,
             sample_weight: np.ndarray | None = None) -> GateHead:
    """Fit standardisation + class-balanced logistic regression on raw pooled features."""
    from sklearn.linear_model import LogisticRegression

    x = _normalise(np.asarray(features, dtype=np.float64))
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    clf.fit((x - mean) / scale, np.asarray(labels, dtype=int), sample_weight=sample_weight)
    return GateHead(feature_model_id=feature_model_id, mean=mean, scale=scale,
                    coef=clf.coef_[0].astype(np.float64), intercept=float(clf.intercept_[0]))
