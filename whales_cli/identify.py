"""`whales identify PHOTOS...`: the command-line twin of `POST /v1/predict`, without the service.

The same path as the service: `Identifier(gate, embedder, catalog)` on the configured catalog store,
photos decoded and downscaled as the service does, and each answer mapped by the library's
`prediction_fields` (the service's JSON fields, less its prediction id and stored sighting).
"""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from whales_be_service.settings import DEFAULT_ANALYSIS_MAX_SIDE
from whales_cli._common import Db, MaxPixels, Model, ModelsDir, emit_json, fail, stderr_is_tty
from whales_cli.gate import GateConfigOpt, ThresholdOpt
from whales_identify.errors import WhalesError
from whales_identify.images import DEFAULT_MAX_PIXELS
from whales_identify.models.entries import DEFAULT_REID_MODEL

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic"}
CSV_FIELDS = ("photo", "outcome", "individual_id", "probability", "species", "species_score",
              "cetacean_score", "gate_band", "candidates", "model_version", "warnings")


class Gate(StrEnum):
    embedded = "embedded"
    clip = "clip"
    off = "off"


def _photos(paths: list[Path]) -> list[Path]:
    """Files as given; a folder contributes its image files (recursively, sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _decode(path: Path, max_side: int, max_pixels: int) -> Any:
    """The photo's RGB pixels, downscaled to `max_side`, from one open (`images.decode_image`)."""
    from whales_identify.images import decode_image

    return decode_image(path.read_bytes(), max_pixels, max_side=max_side).pixels


def _identifier(db: str | None, model: str, models_dir: Path | None, gate: str,
                gate_config: Path | None, threshold: float | None, calibration: Path | None) -> Any:
    from whales_cli.catalog import _embedder, _open
    from whales_cli.gate import build_gate
    from whales_identify.identify import Identifier

    catalog = _open(db, model, calibration=calibration)
    embedder = _embedder(catalog.model_id, models_dir)
    try:
        the_gate = build_gate(gate, gate_config, threshold, models_dir, embedder=embedder)
        return Identifier(the_gate, embedder, catalog)
    except (WhalesError, ValueError, OSError) as exc:
        fail(str(exc))


def _row(path: Path, pred: Any) -> dict[str, Any]:
    from whales_identify.identify import outcome, prediction_fields

    return {"photo": str(path), "outcome": outcome(pred), **prediction_fields(pred)}


def _human(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        if r["rejected"]:
            line = f"not a cetacean (cetacean score {r['cetacean_score']:.2f})"
        elif r["individual_id"]:
            line = f"{r['individual_id']} (p={r['probability']:.2f}), {r['species']}"
        else:
            best = r["candidates"][0] if r["candidates"] else None
            near = f"; nearest {best['individual_id']} p={best['probability']:.2f}" if best else ""
            line = f"new individual, {r['species']}{near}"
        typer.echo(f"{r['photo']}: {line}")
        for w in r["warnings"]:
            typer.echo(f"  note: {w}")


def _csv(rows: list[dict[str, Any]]) -> None:
    w = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "candidates": " ".join(f"{c['individual_id']}:{c['probability']:.3f}"
                                                for c in r["candidates"]),
                    "warnings": " | ".join(r["warnings"])})


def identify(
    photos: Annotated[list[Path], typer.Argument(help="Photos, or folders of photos.")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document: results and errors.")]
    = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="One CSV row per identified photo.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=50, help="Candidates per photo.")] = 5,
    gate: Annotated[Gate, typer.Option("--gate", envvar="WHALES_GATE", help="Cetacean gate.")]
    = Gate.embedded,
    gate_config: GateConfigOpt = None,
    threshold: ThresholdOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=256)] = 8,
    db: Db = None,
    model: Model = DEFAULT_REID_MODEL,
    models_dir: ModelsDir = None,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", envvar="WHALES_CALIBRATION",
        help="Calibration JSON from `whales evaluate --fit-calibration` (default: the packaged one "
             "for the model).")] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    analysis_max_side: Annotated[int, typer.Option(
        "--analysis-max-side", envvar="WHALES_ANALYSIS_MAX_SIDE", min=224,
        help="Photos are downscaled to this side after decoding, as the service does.")]
    = DEFAULT_ANALYSIS_MAX_SIDE,
) -> None:
    """Identify photos against the catalog without the service: gate, embedding, match, species,
    new individual. Nothing is stored. Unreadable photos are listed and the exit code is 1."""
    if json_out and csv_out:
        fail("choose one of --json and --csv")
    files = _photos(photos)
    if not files:
        fail("no photos given (a folder contributes .jpg/.png/... files)")
    identifier = _identifier(db, model, models_dir, gate.value, gate_config, threshold, calibration)
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    with tqdm(total=len(files), desc="identify", unit="img",
              disable=not stderr_is_tty() and len(files) < 50) as bar:
        for start in range(0, len(files), batch_size):
            chunk = []
            for path in files[start:start + batch_size]:
                try:
                    chunk.append((path, _decode(path, analysis_max_side, max_pixels)))
                except (OSError, WhalesError) as exc:
                    errors.append({"photo": str(path), "error": str(exc) or type(exc).__name__})
                    bar.update(1)
            if chunk:
                preds = identifier([im for _, im in chunk], top_k=top_k)
                rows += [_row(path, p) for (path, _), p in zip(chunk, preds, strict=True)]
                bar.update(len(chunk))
    if json_out:
        emit_json({"results": rows, "errors": errors,
                   "summary": {"photos": len(files), "identified": len(rows), "failed": len(errors)}})
    elif csv_out:
        _csv(rows)
    else:
        _human(rows)
    for e in errors:
        typer.echo(f"error: cannot read {e['photo']}: {e['error']}", err=True)
    if errors:
        raise typer.Exit(1)
