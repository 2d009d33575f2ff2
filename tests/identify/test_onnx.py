"""ONNX export of the embedding model: same features as PyTorch, verified on load, fail closed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from whales_identify.embed import Embedder, OnnxEmbedder, create_embedder
from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError
from whales_identify.models._onnx import export_onnx, onnx_paths, verified_onnx

MODEL = "efficientnet_lite0.imagenet"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    models_dir = tmp_path_factory.mktemp("models")
    meta = export_onnx(MODEL, models_dir)
    assert meta["check"]["max_abs_diff"] < 1e-3
    return models_dir


@pytest.fixture()
def copy_of(exported, tmp_path) -> Path:
    shutil.copytree(exported, tmp_path / "models")
    return tmp_path / "models"


def photos(data_dir: Path | None = None) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for w, h in [(224, 224), (640, 480), (180, 400)]]
    images.append(Image.linear_gradient("L").resize((300, 200)))
    return images


def test_onnx_features_equal_torch_features(exported, lite0):
    images = photos()
    onnx_embedder = create_embedder(MODEL, exported, backend="onnx", batch_size=3)
    assert isinstance(onnx_embedder, OnnxEmbedder) and onnx_embedder.backend == "onnx"
    a, b = Embedder(lite0, batch_size=3).features(images), onnx_embedder.features(images)
    assert a.shape == b.shape == (4, 1280)
    assert np.abs(a - b).max() < 1e-3
    cos = (onnx_embedder(images) * Embedder(lite0)(images)).sum(1)
    assert cos.min() > 0.99999


def test_onnx_features_on_real_photos(exported, lite0, manifest, data_dir):
    rows = [r for r in manifest if r.label == "cetacean"][::200][:6]
    images = [Image.open(data_dir / r.relpath).convert("RGB") for r in rows]
    a = Embedder(lite0)(images)
    b = create_embedder(MODEL, exported, backend="onnx")(images)
    assert ((a * b).sum(1)).min() > 0.99999


def test_missing_export(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="whales models export-onnx"):
        create_embedder(MODEL, tmp_path, backend="onnx")
    # auto falls back to PyTorch only when the export is absent (same features either way)
    assert create_embedder(MODEL, tmp_path, backend="auto").backend == "torch"


def test_tampered_export_is_refused(copy_of):
    path, _ = onnx_paths(MODEL, copy_of)
    with open(path, "r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    for backend in ("onnx", "auto"):  # a corrupt export never falls back silently
        with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
            create_embedder(MODEL, copy_of, backend=backend)


def test_stale_export_is_refused(copy_of):
    _, meta_path = onnx_paths(MODEL, copy_of)
    meta = json.loads(meta_path.read_text())
    meta["source_weights_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match="stale export"):
        verified_onnx(MODEL, copy_of)


def test_unreadable_metadata_is_refused(copy_of):
    onnx_paths(MODEL, copy_of)[1].write_text("{not json")
    with pytest.raises(ModelIntegrityError, match="unreadable"):
        create_embedder(MODEL, copy_of, backend="auto")


def test_cli_export_is_idempotent(copy_of):
    from whales_cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["models", "export-onnx", "--models-dir", str(copy_of), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["status"] == "up-to-date"
    out = runner.invoke(app, ["models", "export-onnx", "clip_vit_b32.laion2b_s34b_b79k",
                              "--models-dir", str(copy_of)])
    assert out.exit_code != 0 and "only embedding models" in out.output


def test_service_serves_without_torch(exported, tmp_path):
    """The served process, built on the exports (the default re-identification model, and the
    gate's feature model beside it), never imports torch, timm or torchvision."""
    from whales_identify.models import DEFAULT_REID_MODEL

    models_dir = tmp_path / "models"
    shutil.copytree(exported, models_dir)
    shutil.copytree(ROOT / "models" / "gate", models_dir / "gate")
    if DEFAULT_REID_MODEL != MODEL:
        export_onnx(DEFAULT_REID_MODEL, models_dir)
    code = (
        "import sys, time\n"
        "from fastapi.testclient import TestClient\n"
        "from whales_be_service.main import create_app\n"
        "from whales_be_service.settings import Settings\n"
        f"s = Settings(database_url='memory://', models_dir={str(models_dir)!r}, inference_backend='onnx')\n"
        "with TestClient(create_app(s)) as client:\n"
        "    for _ in range(300):\n"
        "        if client.get('/ready').status_code == 200: break\n"
        "        time.sleep(0.1)\n"
        "    assert client.get('/ready').status_code == 200, client.get('/ready').json()\n"
        "    models = client.get('/v1/models').json()['models']\n"
        "    assert models[0]['backend'] == 'onnx', models\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
