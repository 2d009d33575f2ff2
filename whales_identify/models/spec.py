"""Register embedding models from a small spec file (configuration, not code): an ONNX graph or a
timm architecture with a weight file, e.g. MegaDescriptor when you have its weights.

A spec is YAML (or JSON): one model, or a list of them under `models:`::

    models:
      - id: megadescriptor.l384            # arch.tag, the id everything else uses
        format: onnx                        # onnx (run by ONNX Runtime) or timm (PyTorch)
        file: MegaDescriptor-L-384.onnx     # relative to this spec file's folder
        sha256: 3f2a...                     # of that file; checked before every load
        input_size: 384                     # pixels (square) or [3, height, width]
        mean: [0.485, 0.456, 0.406]
        std: [0.229, 0.224, 0.225]
        embedding_dim: 1536
        interpolation: bicubic              # optional (bicubic, bilinear); default bicubic
        crop_pct: 1.0                       # optional; default 1.0 (whole photo)
        timm_name: swin_large_patch4_window12_384   # timm only
        license: CC-BY-NC-4.0
        description: MegaDescriptor-L-384 (BVRA), wildlife re-identification
        card: {intended_use: ..., training_data: ..., limits: ...}   # optional model card

The service reads specs from WHALES_MODEL_SPECS, the CLI from `whales --model-spec` (or the same
variable). A spec that does not parse or misses a field raises `ModelSpecError` naming the file,
the model and the field; the service then reports the embedder not ready with that message.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from whales_identify.errors import WhalesError
from whales_identify.models._pretrained import PretrainedCfg, WeightSource
from whales_identify.models._registry import register_model
from whales_identify.models.cards import ModelCard

FORMATS = ("onnx", "timm")
REQUIRED = ("id", "format", "file", "sha256", "input_size", "mean", "std", "embedding_dim")
OPTIONAL = ("interpolation", "crop_pct", "timm_name", "license", "description", "card")
ONNX_BUILDER = "whales_identify.models.spec:build_onnx_unsupported"
TIMM_BUILDER = "whales_identify.models.spec:build_timm"
DOC = "see whales_identify/models/spec.py or docs/MODELS.md for the format"


class ModelSpecError(WhalesError, ValueError):
    """A model spec file that cannot be used; the message names the file, model, field and fix."""


def _triple(value: Any, where: str, name: str) -> tuple[float, float, float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ModelSpecError(f"{where}: `{name}` must be three numbers (one per RGB channel), got {value!r}")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelSpecError(f"{where}: `{name}` must be three numbers, got {value!r}") from None
    if name == "std" and min(out) <= 0:
        raise ModelSpecError(f"{where}: `std` must be positive, got {value!r}")
    return out  # type: ignore[return-value]


def _input_size(value: Any, where: str) -> tuple[int, int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [3, value, value]
    if (not isinstance(value, list | tuple) or len(value) != 3 or value[0] != 3
            or not all(isinstance(v, int) and 16 <= v <= 4096 for v in value[1:])):
        raise ModelSpecError(f"{where}: `input_size` must be a side in pixels (e.g. 384) or "
                             f"[3, height, width], got {value!r}")
    return (3, int(value[1]), int(value[2]))


def parse_spec(entry: dict[str, Any], base: Path, source: str) -> PretrainedCfg:
    """One model's registry entry from its spec mapping (`base`: folder relative paths start from)."""
    where = f"{source}: model {entry.get('id', '?')!r}" if isinstance(entry, dict) else source
    if not isinstance(entry, dict):
        raise ModelSpecError(f"{where}: each model must be a mapping of fields; {DOC}")
    missing = [k for k in REQUIRED if entry.get(k) in (None, "")]
    if missing:
        raise ModelSpecError(f"{where}: missing {', '.join(f'`{k}`' for k in missing)}; {DOC}")
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ModelSpecError(f"{where}: unknown field(s) {', '.join(unknown)} (known: "
                             f"{', '.join(REQUIRED + OPTIONAL)})")
    model_id = str(entry["id"])
    if not re.fullmatch(r"[a-z0-9_]+\.[A-Za-z0-9_]+", model_id):
        raise ModelSpecError(f"{where}: `id` must be 'arch.tag' (lower-case letters, digits, _), "
                             f"e.g. megadescriptor.l384")
    fmt = str(entry["format"])
    if fmt not in FORMATS:
        raise ModelSpecError(f"{where}: `format` must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "timm" and not entry.get("timm_name"):
        raise ModelSpecError(f"{where}: a timm model needs `timm_name` (the architecture, as "
                             f"timm.create_model knows it)")
    sha = str(entry["sha256"]).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ModelSpecError(f"{where}: `sha256` must be 64 hex digits (sha256sum FILE)")
    dim = entry["embedding_dim"]
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2:
        raise ModelSpecError(f"{where}: `embedding_dim` must be a whole number >= 2, got {dim!r}")
    interpolation = str(entry.get("interpolation") or "bicubic")
    if interpolation not in ("bicubic", "bilinear", "nearest"):
        raise ModelSpecError(f"{where}: `interpolation` must be bicubic, bilinear or nearest")
    crop_pct = float(entry.get("crop_pct") or 1.0)
    if not 0.1 <= crop_pct <= 1.0:
        raise ModelSpecError(f"{where}: `crop_pct` must be between 0.1 and 1.0")
    card = None
    if entry.get("card") is not None:
        c = entry["card"]
        fields = ("intended_use", "training_data", "limits")
        if not isinstance(c, dict) or not all(isinstance(c.get(f), str) and c[f] for f in fields):
            raise ModelSpecError(f"{where}: `card` needs intended_use, training_data and limits (text)")
        card = ModelCard(*(c[f] for f in fields))
    path = (base / str(entry["file"])).resolve()
    return PretrainedCfg(
        model_id=model_id, architecture=model_id.split(".", 1)[0], task="embedding",
        source=WeightSource(filename=str(path)), sha256=sha,
        input_size=_input_size(entry["input_size"], where),
        mean=_triple(entry["mean"], where, "mean"), std=_triple(entry["std"], where, "std"),
        interpolation=interpolation, crop_pct=crop_pct, embedding_dim=int(dim),
        license=str(entry.get("license") or "not stated in the spec"),
        description=str(entry.get("description") or f"{fmt} model registered by {source}"),
        build_args={"format": fmt, "spec": source,
                    **({"timm_name": str(entry["timm_name"])} if fmt == "timm" else {})},
        card=card)


def load_model_specs(path: str | os.PathLike[str]) -> list[PretrainedCfg]:
    """Parse a spec file (YAML or JSON) into registry entries, without registering them."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        doc = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise ModelSpecError(f"cannot read the model spec {p}: {exc.strerror or exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise ModelSpecError(f"the model spec {p} does not parse: {exc}") from exc
    entries = doc.get("models") if isinstance(doc, dict) and "models" in doc else [doc]
    if not isinstance(entries, list) or not entries:
        raise ModelSpecError(f"the model spec {p} lists no model; {DOC}")
    cfgs = [parse_spec(e, p.parent, str(p)) for e in entries]
    ids = [c.model_id for c in cfgs]
    if len(set(ids)) != len(ids):
        raise ModelSpecError(f"the model spec {p} names a model twice")
    return cfgs


def register_model_specs(paths: str | os.PathLike[str] | list[Any] | None) -> list[str]:
    """Register the models of one spec file or several (a list, or one string with commas).

    Raises:
        ModelSpecError: a spec that cannot be used, or one that reuses a built-in model's id.
    """
    if not paths:
        return []
    items = paths if isinstance(paths, list) else [paths]
    paths = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    from whales_identify.errors import UnknownModelError
    from whales_identify.models._registry import get_pretrained_cfg

    out = []
    for path in paths:
        for cfg in load_model_specs(path):
            try:
                existing = get_pretrained_cfg(cfg.model_id)
            except UnknownModelError:
                existing = None
            if existing is not None and existing.build_args.get("spec") is None:
                raise ModelSpecError(f"{path}: {cfg.model_id} is a built-in model; give yours another id")
            register_model(cfg, TIMM_BUILDER if cfg.build_args["format"] == "timm" else ONNX_BUILDER,
                           replace=True)
            out.append(cfg.model_id)
    return out


def is_onnx_spec(cfg: PretrainedCfg) -> bool:
    return cfg.build_args.get("format") == "onnx"


def build_onnx_unsupported(cfg: PretrainedCfg, weights: Path) -> Any:
    from whales_identify.errors import ModelNotAvailableError

    raise ModelNotAvailableError(f"{cfg.model_id} is an ONNX model (spec {cfg.build_args.get('spec')}): "
                                 "it runs on ONNX Runtime only (WHALES_INFERENCE_BACKEND=auto or onnx)")


def build_timm(cfg: PretrainedCfg, weights: Path) -> Any:
    """A timm backbone with the spec's weights (a classifier in the file is dropped; every other
    tensor must fit: strict), returning pooled features, in eval mode."""
    import timm
    import torch

    from whales_identify.errors import ModelIntegrityError
    from whales_identify.models.efficientnet import ImageEncoder

    backbone = timm.create_model(cfg.build_args["timm_name"], pretrained=False, num_classes=0)
    classifier = str(getattr(backbone, "default_cfg", {}).get("classifier") or "head")
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
        backbone.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError, OSError, AttributeError) as exc:
        raise ModelIntegrityError(f"{cfg.model_id}: the weights {weights} do not fit timm's "
                                  f"{cfg.build_args['timm_name']} (spec {cfg.build_args.get('spec')}): "
                                  f"{str(exc)[:300]}") from exc
    return ImageEncoder(backbone, cfg).eval()


def load_onnx_spec_session(cfg: PretrainedCfg, models_dir: Path | str | None = None,
                           threads: int | None = None) -> tuple[Any, str]:
    """A session for a spec's ONNX file, after its sha256 check, and its input name. One image of
    the spec's size is run once: an output that is not (1, embedding_dim) is refused here."""
    import numpy as np
    import onnxruntime as ort

    from whales_identify.errors import ModelIntegrityError
    from whales_identify.models._pretrained import require_weights

    path = require_weights(cfg, Path(models_dir) if models_dir else None)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    where = f"{cfg.model_id} (spec {cfg.build_args.get('spec')})"
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        out = session.run(None, {name: np.zeros((1, *cfg.input_size), np.float32)})[0]
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidArgument types
        raise ModelIntegrityError(f"{where}: ONNX Runtime cannot run {path} on a "
                                  f"{list(cfg.input_size)} image: {str(exc)[:300]}; check `file` and "
                                  f"`input_size`") from exc
    if tuple(out.shape) != (1, cfg.embedding_dim):
        raise ModelIntegrityError(f"{where}: the graph answers shape {list(out.shape)} for one image, "
                                  f"not [1, {cfg.embedding_dim}]; check `embedding_dim` (or export the "
                                  f"pooled features, not a feature map)")
    return session, name
