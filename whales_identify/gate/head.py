"""The embedded gate's head: a tiny MLP (or logistic regression) on pooled backbone features, no pickle.

Files: `models/gate/<name>.npz` (mean, scale, w0, b0, w1, b1 as float arrays) and
`models/gate/<name>.json` (feature model id, framing, the npz's sha256, training manifest sha256, metrics,
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
from whales_identify.transforms import CENTRE_CROP, FRAMINGS

DEFAULT_HEAD = "cetacean_lite0"


@dataclass
class GateHead:
    """`score(features) -> (N,)` cetacean probabilities from raw (N, D) pooled features.

    Preprocessing (square root, L2, standardisation) then `layers`: ReLU between them, a sigmoid on
    the last one's single output. One layer is logistic regression; two are a tiny MLP.
    """

    feature_model_id: str
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    meta: dict[str, Any] = field(default_factory=dict)
    version: str = "unsaved"

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def framing(self) -> str:
        """How photos are framed before the backbone (`transforms.frame`); heads written before
        the field existed were trained on the model's centre crop."""
        return str(self.meta.get("framing") or CENTRE_CROP)

    @property
    def kind(self) -> str:
        hidden = "x".join(str(w.shape[1]) for w, _ in self.layers[:-1])
        return f"mlp{hidden}" if hidden else "logreg"

    def decision(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"gate head expects (N, {self.dim}) features, got {x.shape}")
        z = (_normalise(x) - self.mean) / self.scale
        for n, (w, b) in enumerate(self.layers):
            z = z @ w + b
            if n < len(self.layers) - 1:
                z = np.maximum(z, 0.0)
        return z[:, 0]

    def score(self, features: np.ndarray) -> np.ndarray:
        z = np.clip(self.decision(features), -50, 50)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float64)

    def save(self, models_dir: Path | str, name: str = DEFAULT_HEAD) -> Path:
        """Write `<models_dir>/gate/<name>.npz` and `.json`; returns the json path."""
        folder = Path(models_dir) / "gate"
        folder.mkdir(parents=True, exist_ok=True)
        npz = folder / f"{name}.npz"
        arrays = {"mean": self.mean, "scale": self.scale}
        for n, (w, b) in enumerate(self.layers):
            arrays[f"w{n}"], arrays[f"b{n}"] = w.astype(np.float32), b.astype(np.float32)
        with open(npz, "wb") as fh:  # a file handle: np.savez would append '.npz' to a str path
            np.savez(fh, **arrays)
        digest = hashlib.sha256(npz.read_bytes()).hexdigest()
        self.version = f"{name}@{digest[:12]}"
        meta = dict(self.meta, name=name, feature_model_id=self.feature_model_id, preprocess=PREPROCESS,
                    head_kind=self.kind, weights_sha256=digest, version=self.version)
        self.meta = meta
        path = folder / f"{name}.json"
        path.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_jsonable) + "\n")
        return path


PREPROCESS = "sqrt_l2_standardise"


def _normalise(x: np.ndarray) -> np.ndarray:
    # Power (square-root) then L2 normalisation: damps the few dominant channels and makes the head
    # indifferent to global feature magnitude (exposure, contrast). Pooled features are >= 0.
    x = np.sqrt(np.maximum(x, 0.0))
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
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
    except Exception as exc:  # zip/npy format errors of every kind
        raise ModelIntegrityError(f"gate head {npz} is unreadable: {exc}") from exc
    if meta.get("preprocess") != PREPROCESS:
        raise ModelIntegrityError(
            f"gate head {meta_path} uses preprocessing {meta.get('preprocess')!r}, this code {PREPROCESS!r}")
    if not meta.get("feature_model_id"):
        raise ModelIntegrityError(f"gate head metadata {meta_path} does not name its feature model")
    if meta.get("framing", CENTRE_CROP) not in FRAMINGS:
        raise ModelIntegrityError(f"gate head {meta_path} uses framing {meta.get('framing')!r}, "
                                  f"this code knows {', '.join(FRAMINGS)}")
    layers = []
    while f"w{len(layers)}" in arrays:
        n = len(layers)
        layers.append((arrays[f"w{n}"], arrays.get(f"b{n}", np.zeros(0))))
    width = arrays.get("mean", np.zeros(0)).shape
    for w, b in layers:
        if w.ndim != 2 or (w.shape[0],) != width or b.shape != (w.shape[1],):
            raise ModelIntegrityError(f"gate head {npz} has inconsistent shapes")
        width = (w.shape[1],)
    if not layers or width != (1,) or arrays.get("scale", np.zeros(0)).shape != arrays["mean"].shape:
        raise ModelIntegrityError(f"gate head {npz} has inconsistent shapes")
    return GateHead(feature_model_id=str(meta["feature_model_id"]), mean=arrays["mean"],
                    scale=arrays["scale"], layers=layers, meta=meta,
                    version=str(meta.get("version") or f"{name}@{digest[:12]}"))


def fit_head(features: np.ndarray, labels: np.ndarray, feature_model_id: str, reg: float = 0.01,
             sample_weight: np.ndarray | None = None, hidden: int = 64, seed: int = 0,
             ensemble: int = 1) -> GateHead:
    """Fit standardisation + a tiny MLP (`hidden` ReLU units; 0: logistic regression).

    Args:
        reg: L2 penalty: the MLP's `alpha`, or 1/C for logistic regression.
        sample_weight: per-row weights (class and source balance).
        ensemble: MLPs fitted with seeds `seed..seed+ensemble-1`, merged exactly into one wider MLP
            whose output logit is the mean of theirs (same file format, `hidden * ensemble` units).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    x = _normalise(np.asarray(features, dtype=np.float64))
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    z, y = (x - mean) / scale, np.asarray(labels, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if hidden <= 0:
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(C=1.0 / reg, max_iter=3000).fit(z, y, sample_weight=sample_weight)
            layers = [(clf.coef_.T.copy(), clf.intercept_.copy())]
        else:
            from sklearn.neural_network import MLPClassifier

            fits = [MLPClassifier((hidden,), alpha=reg, max_iter=300, random_state=seed + k)
                    .fit(z, y, sample_weight=sample_weight) for k in range(max(1, ensemble))]
            layers = [(np.hstack([m.coefs_[0] for m in fits]),
                       np.concatenate([m.intercepts_[0] for m in fits])),
                      (np.vstack([m.coefs_[1] for m in fits]) / len(fits),
                       np.mean([m.intercepts_[1] for m in fits], axis=0))]
    return GateHead(feature_model_id=feature_model_id, mean=mean, scale=scale, layers=layers)
