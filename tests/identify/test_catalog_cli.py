"""`whales catalog ...` on a temporary SQLite database with the real embedded Lite0 model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from whales_cli import app
from whales_identify.models import DEFAULT_REID_MODEL

pytest.importorskip("integrations.sqlite")


def _texture(seed: int, size: int = 128) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    (root / "positives" / "src").mkdir(parents=True)
    rows = []
    for k, ind in enumerate(["rw_1", "rw_1", "rw_2"]):
        rel = f"positives/src/p{k}.jpg"
        _texture(k).save(root / rel)
        rows.append({"relpath": rel, "label": "cetacean", "individual_id": ind,
                     "species": "north_atlantic_right_whale"})
    rows.append({"relpath": "negatives/x.jpg", "label": "non_cetacean", "individual_id": "",
                 "species": "sea"})
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest, root


def test_import_list_show_stats_remove(tmp_path, photos):
    manifest, root = photos
    db = f"sqlite:///{tmp_path / 'whales.db'}"
    run = CliRunner().invoke
    res = run(app, ["catalog", "import", str(manifest), "--root", str(root), "--gate", "off", "--db", db])
    assert res.exit_code == 0, res.output
    assert "imported 3 photo(s)" in res.output
    again = run(app, ["catalog", "import", str(manifest), "--root", str(root), "--gate", "off", "--db", db])
    assert "imported 0 photo(s)" in again.output  # idempotent
    res = run(app, ["catalog", "list", "--db", db, "--json"])
    assert [r["individual_id"] for r in json.loads(res.output)] == ["rw_1", "rw_2"]
    res = run(app, ["catalog", "show", "rw_1", "--db", db, "--json"])
    shown = json.loads(res.output)
    assert shown["n_images"] == 2 and shown["images"][0]["keypoints"] > 0
    stats = json.loads(run(app, ["catalog", "stats", "--db", db, "--json"]).output)
    assert stats["images"] == 3 and stats["model_id"] == DEFAULT_REID_MODEL
    extra = tmp_path / "new.jpg"
    _texture(9).save(extra)
    res = run(app, ["catalog", "add", str(extra), "--gate", "off", "--individual", "rw_3", "--species",
                    "north_atlantic_right_whale", "--db", db])
    assert res.exit_code == 0, res.output
    res = run(app, ["catalog", "remove", "rw_1", "--db", db])
    assert "removed 2 photo(s)" in res.output
    assert run(app, ["catalog", "remove", "rw_1", "--db", db]).exit_code == 1
    # another model refuses the catalog, reindex fixes it
    res = run(app, ["catalog", "stats", "--db", db, "--model", "efficientnet_lite1.imagenet"])
    assert res.exit_code == 1 and "whales catalog reindex" in res.output
    res = run(app, ["catalog", "reindex", "--db", db, "--model", "efficientnet_lite1.imagenet"])
    assert res.exit_code == 0, res.output
    stats = json.loads(run(app, ["catalog", "stats", "--db", db, "--json", "--model",
                                 "efficientnet_lite1.imagenet"]).output)
    assert stats["images"] == 2 and stats["model_id"] == "efficientnet_lite1.imagenet"


def test_import_reports_rows_and_fails_when_nothing_imported(tmp_path, photos):
    _, root = photos
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Photo;Whale;Species;Date\n"
                     "p0.jpg;rw_1;north_atlantic_right_whale;2023-02-30\n"  # impossible date
                     "p2.jpg;rw_2;north_atlantic_right_whale;2023-02-03\n"  # found in positives/src/
                     "nope.jpg;rw_3;north_atlantic_right_whale;\n")
    db = f"sqlite:///{tmp_path / 'w.db'}"
    run = CliRunner().invoke
    res = run(app, ["catalog", "import", str(sheet), "--root", str(root), "--gate", "off", "--db", db,
                    "--column", "individual_id=Whale"])
    assert res.exit_code == 0, res.output
    assert "line 2, column 'Date'" in res.output and "line 4, column 'Photo'" in res.output
    assert "imported 1 photo(s)" in res.output and "1 file_not_found, 1 invalid_value" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,individual_id\nnope.jpg,rw_9\n")
    res = run(app, ["catalog", "import", str(bad), "--root", str(root), "--gate", "off", "--db", db])
    assert res.exit_code == 1 and "no photo was imported" in res.output
    res = run(app, ["catalog", "import", str(tmp_path / "w.db"), "--root", str(root), "--gate", "off",
                    "--db", db])
    assert res.exit_code == 1 and "Traceback" not in res.output
