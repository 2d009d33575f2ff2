"""Export an embedding model to ONNX and load it back for ONNX Runtime, verified.

The exported file is derived data: `models/onnx/<model_id>.onnx` plus a `.json` beside it that
records the sha256 of the ONNX file, the sha256 of the weights it was exported from, and how far
its features are from PyTorch's on a fixed check batch. Loading refuses an export whose file was
altered or whose source weights are not the ones the registry resolves now (a stale export), so
the ONNX and PyTorch paths can never silently disagree. Serving from ONNX Runtime needs neither
torch nor timm in the process (about 0.6 GB less memory, and faster on CPU).
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.models._pretrained import PretrainedCfg, require_weights, resolve_models_dir, sha256_file
from whales_identify.models._registry import get_pretrained_cfg

OPSET = 17
# an export whose features drift further than this from PyTorch's is refused at export time
MAX_ABS_DIFF = 1e-3


def onnx_paths(model_id: str, models_dir: Path | str | None = None) -> tuple[Path, Path]:
    """Where the export of `model_id` lives: (`.onnx`, `.onnx.json`)."""
    base = resolve_models_dir(models_dir) / "onnx" / f"{model_id}.onnx"
    return base, base.with_name(base.name + ".json")


def _fix(model_id: str) -> str:
    return f"run: whales models export-onnx {model_id}"


def _check_batch(cfg: PretrainedCfg, n: int = 4) -> np.ndarray:
    c, h, w = cfg.input_size
    return np.random.default_rng(0).standard_normal((n, c, h, w)).astype(np.float32)


def export_onnx(model_id: str, models_dir: Path | str | None = None) -> dict[str, Any]:
    """Export `model_id` (an embedding model) with dynamic batch size, check it against PyTorch
    with ONNX Runtime, and write the file and its metadata. Returns the metadata."""
    import onnxruntime as ort

    try:
        import torch
    except ImportError:
        raise ModelNotAvailableError(f"exporting {model_id} to ONNX needs PyTorch, which this install "
                                     "does not have: pip install '.[export]'") from None

    from whales_identify.models._factory import create_model

    cfg = get_pretrained_cfg(model_id)
    if cfg.task != "embedding":
        raise ValueError(f"{model_id} is a {cfg.task} model; only embedding models are exported")
    weights = require_weights(cfg, Path(models_dir) if models_dir else None)
    model = create_model(model_id, models_dir)
    path, meta_path = onnx_paths(model_id, models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _check_batch(cfg)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / path.name
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).float().numpy()
        # the TorchScript-based exporter: deterministic, and needs no onnxscript
        torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(tmp_path), dynamo=False,
                          input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "n"}, "features": {0: "n"}}, opset_version=OPSET)
        session = ort.InferenceSession(str(tmp_path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": x})[0]
        diff = float(np.abs(ref - got).max())
        if not diff <= MAX_ABS_DIFF:
            raise ModelIntegrityError(f"ONNX export of {model_id} differs from PyTorch by {diff:.2e} "
                                      f"(limit {MAX_ABS_DIFF:.0e}); not written")
        tmp_path.replace(path)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    meta = {
        "model_id": model_id,
        "onnx_sha256": sha256_file(path),
        "source_weights_sha256": sha256_file(weights),
        "input_name": "images",
        "output_name": "features",
        "opset": OPSET,
        "check": {"batch": int(x.shape[0]), "max_abs_diff": diff, "min_cosine": float(cos.min())},
        "torch_version": torch.__version__,
        "onnxruntime_version": ort.__version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def verified_onnx(model_id: str, models_dir: Path | str | None = None) -> tuple[Path, dict[str, Any]]:
    """The export of `model_id`, checked against its metadata and the registry's current weights.

    Raises:
        ModelNotAvailableError: no export (the message names the command that makes it).
        ModelIntegrityError: altered file, unreadable metadata, or exported from other weights.
    """
    cfg = get_pretrained_cfg(model_id)
    path, meta_path = onnx_paths(model_id, models_dir)
    if not path.is_file() or not meta_path.is_file():
        raise ModelNotAvailableError(f"no ONNX export of {model_id} at {path}: {_fix(model_id)}")
    try:
        meta = json.loads(meta_path.read_text())
        want_onnx, want_source = meta["onnx_sha256"], meta["source_weights_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"unreadable {meta_path} ({exc}): {_fix(model_id)}") from exc
    if meta.get("model_id") != model_id:
        raise ModelIntegrityError(f"{meta_path} describes {meta.get('model_id')!r}, not {model_id}")
    got = sha256_file(path)
    if got != want_onnx:
        raise ModelIntegrityError(f"sha256 mismatch for {path}: expected {want_onnx}, got {got}; "
                                  f"{_fix(model_id)}")
    weights = require_weights(cfg, Path(models_dir) if models_dir else None)
    if sha256_file(weights) != want_source:
        raise ModelIntegrityError(f"{path} was exported from other weights than {weights} "
                                  f"(stale export): {_fix(model_id)}")
    return path, meta


def load_onnx_session(model_id: str, models_dir: Path | str | None = None,
                      threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """A verified ONNX Runtime session (CPU) for `model_id`, and the export's metadata."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelNotAvailableError("ONNX Runtime is not installed: pip install onnxruntime") from exc
    path, meta = verified_onnx(model_id, models_dir)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # the arena keeps the largest batch's buffers for the process's lifetime: off, memory returns
    # to the allocator after a batch (measured: RSS 291 MB -> 187 MB after a batch of 16)
    options.enable_cpu_mem_arena = False
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelIntegrityError(f"ONNX Runtime cannot load {path}: {exc}; {_fix(model_id)}") from exc
    return session, meta
