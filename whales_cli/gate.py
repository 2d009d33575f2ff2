"""`whales gate calibrate|score`: train and calibrate the embedded gate, score photos."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from whales_cli._common import ModelsDir, emit_json, fail, stderr_is_tty
from whales_identify.errors import WhalesError
from whales_identify.gate.head import DEFAULT_HEAD
from whales_identify.models.entries import GATE_FEATURE_MODEL
from whales_identify.transforms import FRAMINGS, LETTERBOX

# the choices come from transforms.FRAMINGS, the one list of framings the library knows
Framing = StrEnum("Framing", [(f, f) for f in FRAMINGS])  # type: ignore[misc]
DEFAULT_FRAMING = Framing(LETTERBOX)


app = typer.Typer(help="Anti-fraud gate: train, calibrate, score.", no_args_is_help=True)

DEFAULT_REPORT = Path("reports/gate_metrics.json")
HOLDOUT_REPORT = Path("reports/gate_population_holdout.json")
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# The gate's threshold and band come from its head's json; these are an operator's overrides, read
# from the same variables as the service's settings.
GATE_CONFIG_HELP = "Yaml of explicit overrides (threshold, borderline, head); default: none, the head's own."
GateConfigOpt = Annotated[Path | None, typer.Option(
    "--gate-config", envvar="WHALES_GATE_CONFIG", exists=True, dir_okay=False, help=GATE_CONFIG_HELP)]
ThresholdOpt = Annotated[float | None, typer.Option(
    "--threshold", envvar="WHALES_GATE_THRESHOLD", min=0.0, max=1.0,
    help="Override of the gate's calibrated threshold.")]


@app.command("calibrate")
def calibrate_cmd(
    manifest: Annotated[Path, typer.Option(help="Labelled manifest CSV (cetaceans/manifest.csv layout).")],
    root: Annotated[Path, typer.Option(help="Folder the manifest's relpaths are relative to.")],
    model: Annotated[str, typer.Option(help="Feature model id.")] = GATE_FEATURE_MODEL,
    name: Annotated[str, typer.Option(help="Head name: models/gate/<name>.npz/.json.")] = DEFAULT_HEAD,
    models_dir: ModelsDir = None,
    report: Annotated[Path | None, typer.Option(
        help=f"Metrics json to write (default: {DEFAULT_REPORT}; <out>/gate_metrics.json with --out; "
             f"with --hold-out-source, {HOLDOUT_REPORT}, where each reading replaces only its own "
             "entry).")] = None,
    hold_out_source: Annotated[list[str] | None, typer.Option(
        "--hold-out-source", metavar="<source>",
        help="Leave every photo of this data source (a manifest folder, e.g. bottlenose_fins_aberdeen) "
             "out of training and threshold choice, and report its rate on all of them: a population "
             "the head has never seen. Repeatable. The head is then written only with --out.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the head to <out>/gate/<name>.npz/.json instead of the models folder (a candidate "
             "never replaces the shipped head).")] = None,
    frame_views: Annotated[int, typer.Option(min=0, help="Clean reframings per scarce photo.")] = 4,
    fin_views: Annotated[int, typer.Option(
        min=0, help="Fin-like views per scarce photo (tighter crop, tilt, scale, blur, exposure).")] = 0,
    scarce_positive_boost: Annotated[float, typer.Option(
        min=0.1, help="Share of each scarce positive source within the positive class, x this.")] = 1.0,
    test_fraction: Annotated[float, typer.Option(min=0.1, max=0.9)] = 0.5,
    threads: Annotated[int, typer.Option(help="torch threads (1 is fastest on a busy 2-core box).")] = 1,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", envvar="WHALES_GATE_CACHE",
        help="Feature cache, never in the repository (default: /tmp/gate_cache).")] = None,
    framing: Annotated[Framing, typer.Option(
        help="letterbox: the gate sees the whole photo (default); centre_crop: the backbone's own "
             "crop, whose features a catalog on the same model can share (one pass, but wide "
             "photos lose their sides).")] = DEFAULT_FRAMING,
    write: Annotated[bool, typer.Option(help="Write the head (with its threshold and band) and the "
                                              "report (else only print).")] = True,
    json_out: JsonFlag = False,
) -> None:
    """Split (no image, individual or burst in both parts) -> train the head on the calibration part ->
    pick the threshold there -> report TPR/TNR/ROC-AUC with 95% intervals on the test part. The
    threshold and band are written into the head's json, which the service and CLI read."""
    import torch

    from whales_identify.embed import Embedder
    from whales_identify.models import create_model, resolve_models_dir
    from whales_identify.train import gate as gt

    torch.set_num_threads(threads)
    command = "whales gate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        embedder = Embedder(create_model(model, models_dir))
        head, rep = gt.calibrate(manifest, root, embedder, test_fraction=test_fraction, cache_dir=cache_dir,
                                 framing=framing.value, frame_views=frame_views, fin_views=fin_views,
                                 scarce_positive_boost=scarce_positive_boost,
                                 hold_out_sources=hold_out_source or (), progress=stderr_is_tty(),
                                 log=lambda m: typer.echo(m, err=True))
        if not hold_out_source:
            from PIL import Image

            sample = [Image.open(root / i.key).convert("RGB") for i in gt.cap_per_source(
                gt.manifest_items(manifest, root), 2)[:12] if i.path is not None]
            rep["cost"] = gt.measure_cost(embedder, head, sample)
    except (WhalesError, ValueError) as exc:
        fail(str(exc))
    threshold = float(rep["threshold_choice"]["threshold"])
    rep.update(command=command, created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    head.meta = {**head.meta, "threshold": threshold, "borderline": rep["borderline"],
                 "manifest_sha256": rep["manifest_sha256"], "created_by": command,
                 "created_at": rep["created_at"], "training": rep["training"],
                 "split": {k: rep["split"][k] for k in ("salt", "test_fraction", "unit")},
                 "metrics": gt.summarise(rep)}
    if write:
        if out is not None or not hold_out_source:
            head.save(out if out is not None else resolve_models_dir(models_dir), name)
            rep["head"] = head.version
        if hold_out_source:
            _merge_reading(report or HOLDOUT_REPORT, rep)
        else:
            path = report or (out / "gate_metrics.json" if out is not None else DEFAULT_REPORT)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rep, indent=2, default=str) + "\n")
    if json_out:
        emit_json(rep)
        return
    _print_table(rep)


def reading_key(training: dict) -> str:  # type: ignore[type-arg]
    """`<held-out sources>` plus the recipe where it is not the default, e.g. `happywhale; fin_views=4`."""
    key = "+".join(training["hold_out_sources"])
    if training["fin_views_scarce_sources"]:
        key += f"; fin_views={training['fin_views_scarce_sources']}"
    if training["frame_views_scarce_sources"] != 4:
        key += f"; frame_views={training['frame_views_scarce_sources']}"
    if training["scarce_positive_boost"] != 1.0:
        key += f"; scarce_positive_boost={training['scarce_positive_boost']:g}"
    return key


def _merge_reading(path: Path, rep: dict) -> None:  # type: ignore[type-arg]
    # One file holds every leave-population-out reading; a rerun replaces only its own entry.
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("readings", {})[reading_key(rep["training"])] = rep
    data["readings"] = dict(sorted(data["readings"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _print_table(rep: dict) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    test = rep["test"]
    table = Table("source", "metric", "rate", "95% CI (bootstrap)", "n (groups)", "ROC-AUC")
    for src, e in test["per_source"].items():
        auc = e["roc_auc_vs_other_class"]
        table.add_row(src, e["metric"], f"{e['rate']:.4f}", f"{e['ci95'][0]:.3f}-{e['ci95'][1]:.3f}",
                      f"{e['n']} ({e['n_groups']})", "-" if auc is None else f"{auc:.4f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"threshold {test['threshold']:.4f}  ROC-AUC {test['roc_auc']:.4f}  "
                  f"TPR {test['tpr']['rate']:.4f}  TNR {test['tnr']['rate']:.4f}  "
                  f"confusion {test['confusion']}")
    for k, v in test["targets_met"].items():
        console.print(f"  {'ok  ' if v else 'MISS'} {k}")
    for src, e in rep.get("population_holdout", {}).get("per_source", {}).items():
        console.print(f"held out entirely: {src} {e['metric']} {e['rate']:.4f} ({e['correct']}/{e['n']}), "
                      f"Wilson 95% {e['wilson95'][0]:.3f}-{e['wilson95'][1]:.3f}")


@app.command("score")
def score_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    backend: Annotated[str, typer.Option(help="embedded | clip | off")] = "embedded",
    config: Annotated[Path | None, typer.Option(
        "--config", "--gate-config", envvar="WHALES_GATE_CONFIG", exists=True, dir_okay=False,
        help=GATE_CONFIG_HELP)] = None,
    threshold: ThresholdOpt = None,
    models_dir: ModelsDir = None,
    json_out: JsonFlag = False,
) -> None:
    """Score photos with the gate: cetacean score, band, accepted or rejected."""
    from whales_identify.images import load_image

    try:
        gate = build_gate(backend, config, threshold, models_dir)
        results = gate([load_image(p.read_bytes()) for p in images])
    except (WhalesError, ValueError, OSError) as exc:
        fail(str(exc))
    rows = [{"path": str(p), "is_cetacean": r.is_cetacean, "cetacean_score": round(r.cetacean_score, 4),
             "band": r.band, "backend": r.backend, "version": r.version}
            for p, r in zip(images, results, strict=True)]
    if json_out:
        emit_json(rows)
        return
    for r in rows:
        verdict = "cetacean" if r["is_cetacean"] else "REJECTED"
        typer.echo(f"{r['path']}: {verdict} score={r['cetacean_score']:.4f} band={r['band']}")


def build_gate(backend: str, config: Path | None, threshold: float | None, models_dir: Path | None,
               embedder: object | None = None) -> object:
    """The gate as the service builds it: the head's own threshold and band, unless overridden."""
    from whales_identify.gate import create_gate, load_gate_config

    overrides = load_gate_config(config, backend) if backend != "off" and config is not None else None
    return create_gate(backend, embedder=embedder, models_dir=models_dir, threshold=threshold,
                       config=overrides)
