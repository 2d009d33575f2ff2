"""Registering an embedding by configuration: a tiny ONNX graph built here, described by a spec file,
used by the library, the CLI (--model-spec / WHALES_MODEL_SPECS) and the service (WHALES_MODEL_SPECS);
a bad spec fails closed with a message that names the fix."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from whales_cli import app  # noqa: E402
from whales_identify.embed import create_embedder  # noqa: E402
from whales_identify.errors import ModelIntegrityError, ModelNotAvailableError  # noqa: E402
from whales_identify.models import get_pretrained_cfg  # noqa: E402
from whales_identify.models.spec import ModelSpecError, load_model_specs, register_model_specs  # noqa: E402
from whales_identify.transforms import preprocess  # noqa: E402

SIDE, DIM = 32, 8
WEIGHTS = np.random.default_rng(7).standard_normal((3, DIM)).astype(np.float32)
MODEL_ID = "tinyonnx.spec_v1"


@pytest.fixture(autouse=True)
def _unregister():
    """The registry is process-wide: take the test model out again, for the tests that follow."""
    yield
    from whales_identify.models import _registry

    _registry._CFGS.pop(MODEL_ID, None)
    _registry._BUILDERS.pop(MODEL_ID, None)


def _tiny_onnx(path: Path) -> str:
    """images (N,3,32,32) -> global average pool -> (N,3) @ W (3,8) -> features (N,8)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "W"], ["features"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", DIM])],
        [helper.make_tensor("W", TensorProto.FLOAT, WEIGHTS.shape, WEIGHTS.flatten().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _spec(tmp_path: Path, **changes) -> Path:
    sha = _tiny_onnx(tmp_path / "tiny.onnx")
    entry = {"id": MODEL_ID, "format": "onnx", "file": "tiny.onnx", "sha256": sha, "input_size": SIDE,
             "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "embedding_dim": DIM,
             "license": "MIT", "description": "a test graph",
             "card": {"intended_use": "tests only", "training_data": "none (random weights)",
                      "limits": "identifies nothing"}}
    entry.update(changes)
    entry = {k: v for k, v in entry.items() if v is not None}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}))
    return path


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).resize((96, 80))


def test_onnx_spec_is_registered_and_embeds_with_its_graph(tmp_path):
    (cfg,) = load_model_specs(_spec(tmp_path))
    assert cfg.input_size == (3, SIDE, SIDE)
    assert cfg.card is not None and cfg.card.limits == "identifies nothing"
    assert register_model_specs(str(_spec(tmp_path))) == [MODEL_ID]
    assert get_pretrained_cfg(MODEL_ID).source.filename == str((tmp_path / "tiny.onnx").resolve())
    embedder = create_embedder(MODEL_ID)
    assert embedder.backend == "onnx" and embedder.dim == DIM
    images = [_photo(1), _photo(2)]
    got = embedder.features(images)
    # the same preprocessing as every model (the spec's size, mean, std), then the graph's arithmetic
    want = preprocess(images, cfg).mean(axis=(2, 3)) @ WEIGHTS
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedder(images), axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ModelNotAvailableError, match="runs on ONNX Runtime"):
        create_embedder(MODEL_ID, backend="torch")


@pytest.mark.parametrize(("changes", "message"), [
    ({"sha256": None}, "missing `sha256`"),
    ({"format": "tensorflow"}, "`format` must be one of onnx, timm"),
    ({"id": "NoDot"}, "`id` must be 'arch.tag'"),
    ({"mean": [0.5, 0.5]}, "`mean` must be three numbers"),
    ({"input_size": [3, 32]}, "`input_size` must be"),
    ({"embedding": 8}, "unknown field(s) embedding"),
    ({"format": "timm"}, "needs `timm_name`"),
    ({"id": "efficientnet_lite0.imagenet"}, "is a built-in model"),
])
def test_bad_spec_is_refused_naming_the_field(tmp_path, changes, message):
    with pytest.raises(ModelSpecError) as err:
        register_model_specs(str(_spec(tmp_path, **changes)))
    assert message in str(err.value) and "models.yaml" in str(err.value)


def test_altered_file_or_wrong_dimension_fails_when_loaded(tmp_path):
    register_model_specs(str(_spec(tmp_path, embedding_dim=DIM + 1)))
    with pytest.raises(ModelIntegrityError, match=r"not \[1, 9\]; check `embedding_dim`"):
        create_embedder(MODEL_ID)
    spec = _spec(tmp_path)
    register_model_specs(str(spec))
    (tmp_path / "tiny.onnx").write_bytes((tmp_path / "tiny.onnx").read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch.*check `file` and `sha256`"):
        create_embedder(MODEL_ID)


def test_cli_lists_and_uses_a_spec_model(tmp_path, monkeypatch):
    pytest.importorskip("integrations.sqlite")
    spec = _spec(tmp_path)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    run = CliRunner().invoke
    rows = {r["id"]: r for r in json.loads(run(app, ["--model-spec", str(spec), "models", "list",
                                                     "--json"]).stdout)}
    assert rows[MODEL_ID]["verified"] is True and rows[MODEL_ID]["intended_use"] == "tests only"
    ref = tmp_path / "ref.png"
    _photo(3).save(ref)
    monkeypatch.setenv("WHALES_MODEL_SPECS", str(spec))  # the variable works as the option does
    res = run(app, ["catalog", "add", str(ref), "--gate", "off", "--individual", "a", "--species",
                    "humpback_whale", "--db", db, "--model", MODEL_ID])
    assert res.exit_code == 0, res.output
    res = run(app, ["identify", str(ref), "--db", db, "--model", MODEL_ID, "--gate", "off", "--json"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.stdout)["results"]
    assert r["model_version"] == MODEL_ID and r["candidates"][0]["individual_id"] == "a"
    monkeypatch.delenv("WHALES_MODEL_SPECS")
    bad = _spec(tmp_path, mean=[1, 2])
    res = run(app, ["--model-spec", str(bad), "models", "list"])
    assert res.exit_code == 1 and "`mean` must be three numbers" in res.output
    assert "Traceback" not in res.output


def test_service_serves_a_spec_model_and_is_not_ready_on_a_bad_spec(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
    from fastapi.testclient import TestClient
    from svc_fakes import API_KEY, FakeGate, fake_settings, wait_ready

    from whales_be_service.main import create_app
    from whales_identify.records.store import InMemoryStore

    spec = _spec(tmp_path)
    app_ = create_app(fake_settings(model_specs=[str(spec)], embedding_model=MODEL_ID),
                      store=InMemoryStore(), gate=FakeGate())
    with TestClient(app_, raise_server_exceptions=False) as client:
        wait_ready(client)
        (embedding,) = [m for m in client.get("/v1/models").json()["models"] if m["role"] == "embedding"]
        assert embedding["model_id"] == MODEL_ID and embedding["backend"] == "onnx"
        assert embedding["sha256"] == get_pretrained_cfg(MODEL_ID).sha256
        assert embedding["card"]["intended_use"] == "tests only"
        buf = tmp_path / "q.jpg"
        _photo(4).save(buf)
        r = client.post("/v1/predict", files={"file": ("q.jpg", buf.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == MODEL_ID
    bad = _spec(tmp_path, embedding_dim=DIM * 2)
    app_ = create_app(fake_settings(model_specs=[str(bad)], embedding_model=MODEL_ID),
                      store=InMemoryStore(), gate=FakeGate())
    with TestClient(app_, raise_server_exceptions=False) as client:
        for _ in range(200):
            r = client.get("/ready", headers={"X-API-Key": API_KEY})
            if r.status_code == 503 and r.json()["error"]["details"]["components"]["embedder"] != "pending":
                break
        assert r.status_code == 503
        message = r.json()["error"]["details"]["components"]["embedder"]
        assert "check `embedding_dim`" in message and "models.yaml" in message, message
        assert client.post("/v1/predict", files={"file": ("q.jpg", buf.read_bytes(), "image/jpeg")}
                           ).status_code == 503


def test_timm_spec_loads_its_weights_strictly(tmp_path):
    """A timm architecture + a safetensors file (a classifier in it is dropped; the rest must fit)."""
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    from whales_identify.models import create_model

    source = timm.create_model("test_efficientnet", pretrained=False, num_classes=10).eval()
    weights = tmp_path / "tiny_timm.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    dim = source.num_features
    spec = _spec(tmp_path, id="tinytimm.spec_v1", format="timm", file=weights.name, sha256=sha,
                 embedding_dim=dim, timm_name="test_efficientnet", input_size=64)
    try:
        assert register_model_specs(str(spec)) == ["tinytimm.spec_v1"]
        model = create_model("tinytimm.spec_v1")
        x = torch.randn(2, 3, 64, 64)
        with torch.inference_mode():
            want = source.forward_head(source.forward_features(x), pre_logits=True)
            assert torch.allclose(model(x), want, atol=1e-5)  # the file's weights, not a fresh init
        embedder = create_embedder("tinytimm.spec_v1", backend="torch")
        assert embedder([_photo(1)]).shape == (1, dim)
        other = timm.create_model("test_convnext", pretrained=False, num_classes=0)
        save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
        register_model_specs(str(_spec(tmp_path, id="tinytimm.spec_v1", format="timm", file=weights.name,
                                       sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
                                       embedding_dim=dim, timm_name="test_efficientnet", input_size=64)))
        with pytest.raises(ModelIntegrityError, match="do not fit timm's test_efficientnet"):
            create_model("tinytimm.spec_v1")
    finally:
        from whales_identify.models import _registry

        _registry._CFGS.pop("tinytimm.spec_v1", None)
        _registry._BUILDERS.pop("tinytimm.spec_v1", None)
