"""`whales train`: fine-tune a re-identification embedding (sub-center ArcFace) on a manifest."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from whales_cli._common import ModelsDir, emit_json, fail, stderr_is_tty
from whales_identify.errors import WhalesError
from whales_identify.train.reid import TrainConfig

# The options' defaults are TrainConfig's (one source); the module imports no torch.
_D = {f.name: f.default for f in fields(TrainConfig)}


def train(
    manifest: Annotated[Path, typer.Option("--manifest", help="Manifest CSV with individual ids.")],
    root: Annotated[Path, typer.Option("--root", help="Folder the manifest's relpaths are relative to.")],
    tag: Annotated[str, typer.Option("--tag", help="Name of the new model: <arch>.<tag>, e.g. "
                                     "efficientnet_lite0.<tag>.")],
    base_model: Annotated[str, typer.Option("--base-model", help="Registry model to start from.")]
    = _D["base_model"],
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = _D["epochs"],
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = _D["batch_size"],
    lr_backbone: Annotated[float, typer.Option("--lr-backbone")] = _D["lr_backbone"],
    lr_head: Annotated[float, typer.Option("--lr-head", help="Pooling, neck and ArcFace centres.")]
    = _D["lr_head"],
    sub_centers: Annotated[int, typer.Option("--sub-centers", min=1)] = _D["sub_centers"],
    margin: Annotated[float, typer.Option("--margin", help="ArcFace additive angular margin.")]
    = _D["arcface_margin"],
    scale: Annotated[float, typer.Option("--scale", help="ArcFace logit scale.")] = _D["arcface_scale"],
    embedding_dim: Annotated[int, typer.Option("--embedding-dim", min=8)] = _D["embedding_dim"],
    sources: Annotated[list[str] | None, typer.Option("--sources", help="Only these sources "
                                                      "(repeatable).")] = None,
    folds: Annotated[int, typer.Option("--folds", min=1, help="Cross-fitting: split individuals "
                                       "into this many folds...")] = _D["folds"],
    hold_out_fold: Annotated[int | None, typer.Option(
        "--hold-out-fold", help="...and leave this one out of training (for `whales evaluate "
        "--crossfit`).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = _D["seed"],
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    models_dir: ModelsDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Fine-tune an embedding on a catalog's photos; writes models/trained/<arch>.<tag>.safetensors
    and the resolved config beside it. The model then works everywhere by its id (catalog
    reindex, evaluate, export-onnx, the service's WHALES_EMBEDDING_MODEL)."""
    from whales_identify.data import manifest_hash, read_manifest
    from whales_identify.train.reid import train as run_training
    from whales_identify.train.reid import training_rows

    if not manifest.is_file():
        fail(f"manifest not found: {manifest}")
    try:
        config = TrainConfig(tag=tag, base_model=base_model, epochs=epochs, batch_size=batch_size,
                             lr_backbone=lr_backbone, lr_head=lr_head, sub_centers=sub_centers,
                             arcface_margin=margin, arcface_scale=scale, embedding_dim=embedding_dim,
                             seed=seed, folds=folds, hold_out_fold=hold_out_fold,
                             sources=tuple(sources or ()))
        rows = training_rows(read_manifest(manifest), config)
        if not json_out:
            typer.echo(f"training on {len(rows)} photos of {len({r.individual_id for r in rows})} "
                       f"individuals", err=True)
        result = run_training(rows, root, config, models_dir=models_dir,
                              manifest_sha256=manifest_hash(manifest), threads=threads, progress=_bar)
    except (ValueError, WhalesError, OSError) as exc:
        fail(str(exc))
    summary = {"model_id": result.model_id, "weights": str(result.weights),
               "config": str(result.config_path), "history": result.history}
    if json_out:
        emit_json(summary)
        return
    for h in result.history:
        typer.echo(f"epoch {h['epoch']:>3}  loss {h['loss']:.3f}  train acc {h['train_accuracy']:.3f}  "
                   f"{h['seconds']:.0f} s")
    typer.echo(f"wrote {result.weights} and {result.config_path}; next: whales models export-onnx "
               f"{result.model_id}")


def _bar(label: str, total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="step", disable=not stderr_is_tty()).update
