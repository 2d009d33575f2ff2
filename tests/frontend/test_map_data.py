"""The offline map's land outline: scripts/gen_coastline.py decodes TopoJSON correctly, and the
committed frontend/coastline.js is plausible Natural Earth land (no network, no tiles)."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]


def _gen() -> SimpleNamespace:
    return SimpleNamespace(**runpy.run_path(str(ROOT / "scripts" / "gen_coastline.py")))


def test_topojson_arcs_are_delta_decoded_and_joined(tmp_path):
    # two arcs of one square ring, the second one used reversed (~1): (0,0)->(10,0)->(10,10) and
    # (0,0)->(0,10)->(10,10) reversed; quantised with scale 0.5 and a translate
    topology = {"type": "Topology", "transform": {"scale": [0.5, 0.5], "translate": [-5, 40]},
                "arcs": [[[0, 0], [20, 0], [0, 20]], [[0, 0], [0, 20], [20, 0]]],
                "objects": {"land": {"type": "GeometryCollection",
                                     "geometries": [{"type": "Polygon", "arcs": [[0, -2]]}]}}}
    rings = _gen().rings(topology)
    # degrees x10: (-5,40) (5,40) (5,50) then back along arc 1: (-5,50) (-5,40)
    assert rings == [[-50, 400, 50, 400, 50, 500, -50, 500, -50, 400]]
    path = tmp_path / "land.json"
    path.write_text(json.dumps(topology))
    text = _gen().render(path)
    assert "public domain" in text and "ISC" in text and "export const LAND" in text


def test_committed_outline_is_world_land():
    text = (ROOT / "frontend" / "coastline.js").read_text()
    assert "Natural Earth" in text and "http" not in text.split("export const LAND")[1]
    body = re.search(r"export const LAND = (\[.*\]);", text, re.S).group(1)
    rings = json.loads(body.replace(",\n]", "\n]"))  # a JS trailing comma is not JSON
    assert len(rings) > 100
    points = [(r[i], r[i + 1]) for r in rings for i in range(0, len(r), 2)]
    assert all(-1800 <= x <= 1800 and -900 <= y <= 900 for x, y in points)
    # Cape Cod (41.7 N, 70.0 W) lies near the outline: some vertex within half a degree
    assert any(abs(x + 700) <= 5 and abs(y - 417) <= 5 for x, y in points)
