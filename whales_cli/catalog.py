"""`whales catalog import|list|show|add|remove|stats|reindex`: each wraps one `Catalog` call."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import typer

from whales_cli._common import (
    Db,
    MaxPixels,
    Model,
    ModelsDir,
    emit_json,
    fail,
    stderr_is_tty,
)
from whales_identify.errors import WhalesError
from whales_identify.images import DEFAULT_MAX_PIXELS
from whales_identify.models.entries import DEFAULT_REID_MODEL

GateOption = Annotated[str, typer.Option("--gate", envvar="WHALES_GATE", help="Cetacean gate that refuses "
                                         "photos without a whale or dolphin, as the service's enrolment "
                                         "does: embedded, clip or off.")]

app = typer.Typer(help="Manage the catalog of known individuals (reference photos).",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _open(db: str | None, model: str, load: bool = True, calibration: Path | None = None) -> Any:
    from integrations import open_store
    from whales_identify.reid.calibrate import resolve_calibration
    from whales_identify.reid.catalog import Catalog

    try:
        cal = resolve_calibration(model, calibration) if calibration else None
    except ValueError as exc:
        fail(str(exc))
    catalog = Catalog(open_store(db), model, calibration=cal)
    if load:
        try:
            catalog.load()
        except WhalesError as exc:
            fail(str(exc))
    return catalog


def _embedder(model_id: str, models_dir: Path | None) -> Any:
    from whales_identify.embed import create_embedder

    try:
        return create_embedder(model_id, models_dir)  # ONNX Runtime when exported: same features
    except WhalesError as exc:
        fail(str(exc))


def _enroller(model_id: str, models_dir: Path | None, gate: str) -> Any:
    """The library's `Enroller` with the catalog's embedder and the gate the service would use."""
    from whales_cli.gate import build_gate
    from whales_identify.enroll import Enroller

    embedder = _embedder(model_id, models_dir)
    try:
        the_gate = build_gate(gate, None, None, models_dir, embedder=embedder)
    except (WhalesError, ValueError, OSError) as exc:
        fail(str(exc))
    return Enroller(embedder, the_gate)


def _progress(total: int, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="img", disable=not stderr_is_tty() and total < 50)


def _read(path: Path, max_pixels: int) -> tuple[Any, Any]:
    """(RGB pixels, the EXIF sighting) from one open of the photo (`images.decode_image`)."""
    from whales_identify.images import decode_image
    from whales_identify.records.sighting import sighting_from_exif

    decoded = decode_image(path.read_bytes(), max_pixels=max_pixels)
    return decoded.pixels, sighting_from_exif(decoded.exif)


def _source(filename: str) -> str:
    """The folder that names a photo's data source (as the evaluation manifest lays them out)."""
    parts = filename.split("/")
    return parts[1] if len(parts) > 2 else (parts[0] if len(parts) == 2 else "import")


def _files_under(root: Path) -> list[str]:
    return [str(p.relative_to(root).as_posix()) for p in root.rglob("*") if p.is_file()]


def _parse_columns(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        role, sep, name = pair.partition("=")
        if not sep or not role.strip() or not name.strip():
            fail(f"--column {pair!r}: expected ROLE=HEADER, e.g. filename=Photo")
        out[role.strip()] = name.strip()
    return out


def _report_problems(problems: list[Any], shown: int = 20) -> None:
    # rows a `label` column marks as not cetacean are expected in the evaluation manifest: last
    problems = sorted(problems, key=lambda p: p.code == "not_cetacean")
    for p in problems[:shown]:
        where = f"line {p.line}" + (f", column {p.column!r}" if p.column else "")
        typer.echo(f"skipped {where}: {p.message}" + (f" ({p.filename})" if p.filename else ""), err=True)
    if len(problems) > shown:
        typer.echo(f"... and {len(problems) - shown} more skipped row(s)", err=True)


@app.command("import")
def import_cmd(
    manifest: Annotated[Path, typer.Argument(help="Catalog CSV: filename,individual_id,species[,date,"
                                             "latitude,longitude,location,observer]; the evaluation "
                                             "manifest (relpath,label,...) works too.")],
    root: Annotated[Path, typer.Option("--root", help="Folder the file names are relative to (a bare "
                                       "file name is also found in a subfolder when unique).")],
    source: Annotated[list[str] | None, typer.Option("--source", help="Only these sources (repeatable).")]
    = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Import at most N photos.")] = None,
    column: Annotated[list[str] | None, typer.Option("--column", help="ROLE=HEADER when a column has "
                                                     "another name, e.g. filename=Photo (repeatable; "
                                                     "roles: filename, individual_id, species, date, "
                                                     "latitude, longitude, location, observer).")] = None,
    gate: GateOption = "embedded",
    db: Db = None, model: Model = DEFAULT_REID_MODEL, models_dir: ModelsDir = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
) -> None:
    """Import labelled photos from a spreadsheet (CSV); skips photos already in the catalog.

    Each photo goes through the gate as the service's enrolment does (refused: reported as
    not_cetacean). Every skipped row is reported with its line and column; exits 1 when no row could
    be imported.
    """
    from whales_identify.enroll import describe_refusal
    from whales_identify.records.catalog_csv import CatalogCsvError, RowProblem, match_files, read_catalog_csv
    from whales_identify.records.sighting import merge_sightings

    try:
        sheet = read_catalog_csv(manifest, _parse_columns(column))
    except (OSError, CatalogCsvError) as exc:
        fail(f"{manifest}: {exc}")
    if not root.is_dir():
        fail(f"--root {root} is not a folder")
    pairs, problems = match_files(sheet.rows, _files_under(root), sheet.columns["filename"])
    problems = sorted(sheet.problems + problems, key=lambda p: p.line)
    catalog = _open(db, model)
    known = {(im.individual_id, im.filename) for im in catalog.store.list_catalog_images()}
    todo = [(r, path) for r, path in pairs if not source or _source(path) in source]
    already = sum(1 for r, path in todo if (r.individual_id, path) in known)
    todo = [(r, path) for r, path in todo if (r.individual_id, path) not in known]
    todo = todo[:limit] if limit else todo
    enroller = _enroller(catalog.model_id, models_dir, gate) if todo else None
    added = 0
    with _progress(len(todo), "import") as bar:
        for r, path in todo:
            assert enroller is not None
            try:
                image, exif = _read(root / path, max_pixels)
            except (OSError, WhalesError) as exc:
                problems.append(_unreadable(r, path, exc, sheet.columns["filename"]))
                bar.update(1)
                continue
            done = enroller(catalog, [image], r.individual_id, r.species,
                            sightings=[merge_sightings(r.sighting, exif)], filenames=[path],
                            source=_source(path))
            for _, verdict in done.refused:
                problems.append(RowProblem(r.line, "not_cetacean", f"the gate refused the photo: "
                                           f"{describe_refusal(verdict)}", sheet.columns["filename"], path))
            added += len(done.added)
            bar.update(1)
    _report_problems(problems)
    stats = catalog.stats()
    typer.echo(f"imported {added} photo(s); already in the catalog: {already}; skipped {len(problems)} "
               f"row(s){_by_code(problems)}; catalog: {stats['images']} photo(s) of "
               f"{stats['individuals']} individual(s)")
    if added == 0 and already == 0:
        fail("no photo was imported")


def _unreadable(row: Any, path: str, exc: Exception, column: str) -> Any:
    from whales_identify.records.catalog_csv import RowProblem

    return RowProblem(row.line, "invalid_image", f"cannot read the photo: {exc}", column, path)


def _by_code(problems: list[Any]) -> str:
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.code] = counts.get(p.code, 0) + 1
    return " (" + ", ".join(f"{n} {code}" for code, n in sorted(counts.items())) + ")" if counts else ""


@app.command("add")
def add_cmd(
    files: Annotated[list[Path], typer.Argument(help="Photos of one individual.")],
    individual: Annotated[str, typer.Option("--individual", help="Individual id.")],
    species: Annotated[str, typer.Option("--species", help="Species (Happywhale-style name).")],
    source: Annotated[str, typer.Option("--source", help="Where the photos come from.")] = "",
    gate: GateOption = "embedded",
    db: Db = None, model: Model = DEFAULT_REID_MODEL, models_dir: ModelsDir = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
) -> None:
    """Add photos of one individual (no retraining needed); photos the gate refuses are not added."""
    from whales_identify.enroll import describe_refusal

    catalog = _open(db, model)
    enroller = _enroller(catalog.model_id, models_dir, gate)
    loaded = [_read(f, max_pixels) for f in files]
    done = enroller(catalog, [im for im, _ in loaded], individual, species,
                    sightings=[s for _, s in loaded], filenames=[f.name for f in files], source=source)
    for i, verdict in done.refused:
        typer.echo(f"refused {files[i]}: {describe_refusal(verdict)}", err=True)
    typer.echo(f"added {len(done.added)} photo(s) of {individual}")
    if not done.added:
        fail("no photo was added")


@app.command("remove")
def remove_cmd(individual: Annotated[str, typer.Argument(help="Individual id.")], db: Db = None,
               model: Model = DEFAULT_REID_MODEL) -> None:
    """Remove an individual and all its photos."""
    catalog = _open(db, model, load=False)
    n = catalog.remove_individual(individual)
    if n == 0:
        fail(f"no individual {individual!r} in the catalog")
    typer.echo(f"removed {n} photo(s) of {individual}")


@app.command("list")
def list_cmd(species: Annotated[str | None, typer.Option("--species", help="Only this species.")] = None,
             db: Db = None, model: Model = DEFAULT_REID_MODEL, json_out: JsonFlag = False) -> None:
    """List individuals: id, species, photos, last seen."""
    rows = [{"individual_id": s.individual_id, "species": s.species, "n_images": s.n_images,
             "last_seen": s.last_seen} for s in _open(db, model).list_individuals(species)]
    if json_out:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['individual_id']}\t{r['species']}\t{r['n_images']}\t{r['last_seen'] or '-'}")


@app.command("show")
def show_cmd(individual: Annotated[str, typer.Argument(help="Individual id.")], db: Db = None,
             model: Model = DEFAULT_REID_MODEL, json_out: JsonFlag = False) -> None:
    """Show one individual with its photos."""
    catalog = _open(db, model)
    summary = catalog.get_individual(individual)
    if summary is None:
        fail(f"no individual {individual!r} in the catalog")
    images = [catalog.store.get_catalog_image(i) for i in summary.image_ids]
    doc = {"individual_id": summary.individual_id, "species": summary.species,
           "n_images": summary.n_images, "last_seen": summary.last_seen,
           "images": [{"image_id": im.image_id, "filename": im.filename, "source": im.source,
                       "observed_at": im.sighting.observed_at, "latitude": im.sighting.latitude,
                       "longitude": im.sighting.longitude, "location": im.sighting.location,
                       "keypoints": 0 if im.descriptors is None else len(im.descriptors)}
                      for im in images if im is not None]}
    if json_out:
        emit_json(doc)
        return
    typer.echo(f"{doc['individual_id']} ({_species_name(doc['species'])}): {doc['n_images']} photo(s), "
               f"last seen {_when(doc['last_seen'])}")
    for im in doc["images"]:
        where = im["location"] or (f"{im['latitude']:.4f}, {im['longitude']:.4f}"
                                   if im["latitude"] is not None and im["longitude"] is not None else "")
        parts = [_when(im["observed_at"]), where, f"source {im['source']}" if im["source"] else "",
                 f"{im['keypoints']} keypoints", f"id {im['image_id']}"]
        typer.echo(f"  {im['filename'] or '(no file name)'}: " + ", ".join(p for p in parts if p))


def _when(value: Any) -> str:
    if value is None:
        return "date unknown"
    return value.isoformat(sep=" ", timespec="minutes") if hasattr(value, "isoformat") else str(value)


def _species_name(key: str) -> str:
    from whales_identify.species import species_info

    info = species_info(key)
    return f"{info.common_name}, {info.scientific_name}" if info.key == key and key else key or "unknown"


@app.command("stats")
def stats_cmd(db: Db = None, model: Model = DEFAULT_REID_MODEL, json_out: JsonFlag = False) -> None:
    """Catalog size per species, embedding model, calibration state."""
    stats = _open(db, model).stats()
    if json_out:
        emit_json(stats)
        return
    typer.echo(f"{stats['images']} photo(s) of {stats['individuals']} individual(s), embedded with "
               f"{stats['model_id']}")
    typer.echo(f"local features: {stats['with_local_features']} of {stats['images']} photo(s); "
               f"calibration: {'fitted' if stats['calibrated'] else 'default (not fitted)'}")
    if not stats["species"]:
        typer.echo("no species yet: the catalog is empty (whales catalog import)")
    for key, n in sorted(stats["species"].items(), key=lambda kv: (-kv[1], kv[0])):
        typer.echo(f"  {n:>6} individual(s)  {_species_name(key)}")


@app.command("reindex")
def reindex_cmd(
    root: Annotated[Path | None, typer.Option("--root", help="Re-embed from original files under this "
                                              "folder where found (else from stored thumbnails).")] = None,
    db: Db = None, model: Model = DEFAULT_REID_MODEL, models_dir: ModelsDir = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
) -> None:
    """Re-embed every catalog photo with the current model (after a model change)."""
    from PIL import Image

    from whales_identify.reid.catalog import with_model

    catalog = _open(db, model, load=False)
    embedder = _embedder(catalog.model_id, models_dir)
    images = catalog.store.list_catalog_images()
    stale = [im for im in images if im.model_id != catalog.model_id]
    missing = 0
    with _progress(len(stale), "reindex") as bar:
        for im in stale:
            original = root / im.filename if root is not None and im.filename else None
            if original is not None and original.is_file():
                pil, _ = _read(original, max_pixels)
            elif im.thumbnail:
                pil = Image.open(io.BytesIO(im.thumbnail)).convert("RGB")
            else:
                missing += 1
                bar.update(1)
                continue
            catalog.store.add_catalog_images([with_model(im, catalog.model_id, embedder([pil])[0])])
            bar.update(1)
    if missing:
        fail(f"{missing} photo(s) have neither an original under --root nor a thumbnail")
    typer.echo(f"re-embedded {len(stale) - missing} photo(s) with {catalog.model_id}")
