"""`whales identify` (the CLI twin of POST /v1/predict) and `whales --version`, with the real models."""

from __future__ import annotations

import csv
import io
import json
from importlib.metadata import version

import pytest
from PIL import Image
from test_catalog_cli import _texture as texture  # one synthetic-photo helper for the CLI tests
from typer.testing import CliRunner

from whales_cli import app
from whales_identify.identify import EMPTY_CATALOG_WARNING

pytest.importorskip("integrations.sqlite")


def _texture(seed: int) -> Image.Image:
    return texture(seed, size=160)


@pytest.fixture()
def enrolled(tmp_path):
    """A catalog of two synthetic 'individuals' enrolled with the CLI, and a folder of query photos."""
    db = f"sqlite:///{tmp_path / 'w.db'}"
    run = CliRunner().invoke
    for k, ind in enumerate(["ind_a", "ind_b"]):
        p = tmp_path / f"ref{k}.png"
        _texture(k).save(p)
        res = run(app, ["catalog", "add", str(p), "--gate", "off", "--individual", ind, "--species",
                        "humpback_whale", "--db", db])
        assert res.exit_code == 0, res.output
    queries = tmp_path / "queries"
    (queries / "sub").mkdir(parents=True)
    _texture(1).rotate(3).save(queries / "sub" / "q_b.jpg", quality=90)  # a new photo of ind_b
    _texture(0).save(queries / "q_a.png")
    (queries / "notes.txt").write_text("not a photo, and not picked up from the folder")
    return db, queries


def test_identify_json_csv_and_human_output(tmp_path, enrolled):
    db, queries = enrolled
    run = CliRunner().invoke
    res = run(app, ["identify", str(queries), "--db", db, "--gate", "off", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["summary"] == {"photos": 2, "identified": 2, "failed": 0}
    by_name = {r["photo"].rsplit("/", 1)[1]: r for r in doc["results"]}
    assert by_name["q_a.png"]["individual_id"] == "ind_a"
    assert by_name["q_b.jpg"]["candidates"][0]["individual_id"] == "ind_b"
    for r in doc["results"]:
        assert r["species"] == "humpback_whale" and r["species_common_name"] == "Humpback whale"
        assert r["gate_backend"] == "off" and r["model_version"].startswith("efficientnet_lite0")
        assert r["outcome"] in {"known", "new_individual"} and 0 <= r["probability"] <= 1
    res = run(app, ["identify", str(queries / "q_a.png"), "--db", db, "--gate", "off", "--csv"])
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert res.exit_code == 0 and len(rows) == 1
    assert rows[0]["individual_id"] == "ind_a" and rows[0]["candidates"].startswith("ind_a:")
    res = run(app, ["identify", str(queries / "q_a.png"), "--db", db, "--gate", "off"])
    assert res.exit_code == 0 and "q_a.png: ind_a (p=" in res.stdout
    assert run(app, ["identify", str(queries), "--json", "--csv", "--db", db]).exit_code != 0


def test_identify_lists_unreadable_files_and_exits_1(tmp_path, enrolled):
    db, queries = enrolled
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    res = CliRunner().invoke(app, ["identify", str(queries / "q_a.png"), str(broken),
                                   str(tmp_path / "missing.jpg"), "--db", db, "--gate", "off", "--json"])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    doc = json.loads(res.stdout)
    assert doc["summary"] == {"photos": 3, "identified": 1, "failed": 2}
    assert {e["photo"].rsplit("/", 1)[1] for e in doc["errors"]} == {"broken.jpg", "missing.jpg"}
    assert f"cannot read {broken}" in res.stderr and "missing.jpg" in res.stderr


def test_identify_on_an_empty_catalog_says_so(tmp_path):
    photo = tmp_path / "p.png"
    _texture(5).save(photo)
    res = CliRunner().invoke(app, ["identify", str(photo), "--db", f"sqlite:///{tmp_path / 'e.db'}",
                                   "--gate", "off", "--json"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["results"]
    assert r["is_new_individual"] and r["species"] == "unknown" and EMPTY_CATALOG_WARNING in r["warnings"]


def test_identify_real_photos_with_the_gate(tmp_path, data_dir, manifest):
    """Real right-whale head crops: a catalog photo is found again, a street scene is rejected."""
    crops = [r for r in manifest if "noaa_right_whale_headcrops" in r.relpath][:6]
    scene = next(r for r in manifest if "intel_scenes" in r.relpath)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    run = CliRunner().invoke
    for r in crops:
        assert run(app, ["catalog", "add", str(data_dir / r.relpath), "--individual", r.individual_id,
                         "--species", r.species, "--db", db]).exit_code == 0
    res = run(app, ["identify", str(data_dir / crops[2].relpath), str(data_dir / scene.relpath),
                    "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    whale, street = json.loads(res.stdout)["results"]
    assert whale["candidates"][0]["individual_id"] == crops[2].individual_id
    assert whale["is_cetacean"] and whale["gate_backend"] == "embedded"
    assert street["rejected"] and street["outcome"] == "rejected" and street["candidates"] == []


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"whales {version('ecomarineai')}"


def test_catalog_show_and_stats_read_as_text_and_keep_json(enrolled):
    db, _ = enrolled
    run = CliRunner().invoke
    res = run(app, ["catalog", "stats", "--db", db])
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[0]
    assert first.startswith("2 photo(s) of 2 individual(s), embedded with efficientnet_lite0")
    assert "2 individual(s)  Humpback whale, Megaptera novaeangliae" in res.stdout
    assert json.loads(run(app, ["catalog", "stats", "--db", db, "--json"]).stdout)["individuals"] == 2
    res = run(app, ["catalog", "show", "ind_a", "--db", db])
    assert res.exit_code == 0, res.output
    head, photo = res.stdout.splitlines()
    assert head == "ind_a (Humpback whale, Megaptera novaeangliae): 1 photo(s), last seen date unknown"
    assert photo.startswith("  ref0.png: date unknown, ") and "keypoints" in photo
    assert json.loads(run(app, ["catalog", "show", "ind_a", "--db", db, "--json"]).stdout)["n_images"] == 1
    empty = run(app, ["catalog", "stats", "--db", db.replace("w.db", "empty.db")])
    assert "the catalog is empty" in empty.stdout


def test_identify_uses_a_calibration_fitted_on_the_users_catalog(tmp_path, enrolled):
    from whales_identify.models import DEFAULT_REID_MODEL
    from whales_identify.reid.calibrate import Calibration

    db, queries = enrolled
    run = CliRunner().invoke
    args = ["identify", str(queries / "q_a.png"), "--db", db, "--gate", "off", "--json"]
    (known,) = json.loads(run(app, args).stdout)["results"]
    assert known["individual_id"] == "ind_a"
    strict = tmp_path / "strict.json"  # an open-set threshold nothing reaches: every photo is new
    strict.write_text(json.dumps(Calibration(model_id=DEFAULT_REID_MODEL, new_individual_threshold=1e9,
                                             fitted=True).to_dict()))
    res = run(app, [*args, "--calibration", str(strict)])
    (new,) = json.loads(res.stdout)["results"]
    assert new["is_new_individual"] and new["individual_id"] is None
    other = tmp_path / "other.json"
    other.write_text(json.dumps(Calibration(model_id="efficientnet_lite2.imagenet", fitted=True).to_dict()))
    res = run(app, [*args, "--calibration", str(other)])
    assert res.exit_code == 1 and "fitted for efficientnet_lite2.imagenet" in res.output
