"""The container path without a Docker engine: the compose file, Dockerfile, Prometheus and Grafana
files parse, agree with each other, and refer to files, ports, settings and metrics that exist."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    out: list[list[str]] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(ln)
    return out


def _ports(service: dict) -> set[str]:
    return {str(p).split(":")[-1] for p in service.get("ports", [])}


def test_compose_has_the_services_and_ports(compose):
    services = compose["services"]
    assert {"api", "frontend", "postgres", "prometheus"} <= set(services)
    assert _ports(services["api"]) == {"8000"}
    assert _ports(services["frontend"]) == {"8080"}


def test_compose_local_files_exist(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            build = service["build"]
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: {context / dockerfile} is missing"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: undeclared volume {source}"


def test_api_uses_postgres_once_it_is_healthy(compose):
    api, pg = compose["services"]["api"], compose["services"]["postgres"]
    url = api["environment"]["WHALES_DATABASE_URL"]
    env = pg["environment"]
    assert url == (f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
                   f"@postgres:5432/{env['POSTGRES_DB']}")
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])


def test_compose_whales_variables_are_settings(compose):
    from whales_be_service.settings import Settings

    known = {f"WHALES_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for var in service.get("environment") or {}:
            if var.startswith("WHALES_"):
                assert var in known, f"{name} sets {var}, which is no setting of whales_be_service"


def test_trusted_proxy_is_the_nginx_container(compose):
    api, front = compose["services"]["api"], compose["services"]["frontend"]
    assert api["environment"]["WHALES_TRUSTED_PROXIES"] == front["networks"]["default"]["ipv4_address"]


def test_nginx_serves_8080_and_proxies_the_api(compose):
    conf = (ROOT / "frontend" / "nginx.conf").read_text()
    assert re.search(r"listen\s+(\[::\]:)?8080\b", conf), "nginx.conf must listen on 8080 (compose port)"
    upstreams = {name: body for name, body in re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf)}
    targets = set(re.findall(r"proxy_pass\s+http://([^/;\s]+)", conf))
    upstream = "api:8000" in targets or any(
        re.search(r"server\s+api:8000\b", upstreams.get(t, "")) for t in targets)
    assert upstream, "nginx.conf must proxy to api:8000 (the compose service)"
    proxied = [(mod, pattern) for mod, pattern, body in
               re.findall(r"location\s+(~\*?|=|\^~)?\s*(\S+)\s*\{([^}]*)\}", conf) if "proxy_pass" in body]

    def routed(path: str) -> bool:
        return any(re.search(pat, path, re.I if mod == "~*" else 0) if mod.startswith("~")
                   else (path == pat if mod == "=" else path.startswith(pat)) for mod, pat in proxied)

    for path in ("/v1/predict", "/v1/predict-batch", "/health", "/ready", "/metrics"):
        assert routed(path), f"nginx.conf does not proxy {path} to the API"
    assert not routed("/index.html")
    mounts = {v.split(":")[1] for v in compose["services"]["frontend"]["volumes"]}
    root = re.search(r"^\s*root\s+([^;]+);", conf, re.M)
    assert root is None or root.group(1).strip().rstrip("/") in mounts, "nginx root is not the page mount"


def test_prometheus_scrapes_the_api_metrics(compose):
    prom = compose["services"]["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for sc in job.get("static_configs", []):
            targets |= set(sc["targets"])
        for sd in job.get("dns_sd_configs", []):
            targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    assert targets == {"api:8000"}
    assert "8000" in _ports(compose["services"]["api"])


def test_grafana_dashboard_uses_real_metrics():
    source = (ROOT / "whales_be_service" / "metrics.py").read_text()
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "ecomarineai.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    for name in {m for e in exprs for m in re.findall(r"\bwhales_[a-z_]+", e)}:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f'"{base}"' in source, f"the dashboard queries {name}, not defined in metrics.py"
    datasource = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_dockerfile_is_multistage_nonroot_and_healthchecked(stages):
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    runtime = stages[-1]
    users = [ln.split()[1] for ln in runtime if ln.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the runtime stage must run as a non-root user"
    health = [ln for ln in runtime if ln.upper().startswith("HEALTHCHECK ")]
    assert health and "127.0.0.1:8000/ready" in health[0]
    assert any(ln.upper().startswith("VOLUME ") and "/app/models" in ln for ln in runtime)
    cmd = next(ln for ln in runtime if ln.upper().startswith("CMD "))
    assert "uvicorn" in cmd and "0.0.0.0" in cmd and "8000" in cmd
    assert any(ln.upper().startswith("EXPOSE ") and "8000" in ln for ln in runtime)


def _requirements(extras: list[str]) -> set[str]:
    """The distributions that `pip install ".[extras]"` names directly (self-references resolved)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def name(req: str) -> str:
        return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()

    names = {name(r) for r in project["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra not in seen:
            seen.add(extra)
            for req in project["optional-dependencies"][extra]:
                if name(req) == project["name"]:
                    todo += re.search(r"\[([^\]]+)\]", req).group(1).split(",")
                else:
                    names.add(name(req))
    return names


TORCH_STACK = {"torch", "torchvision", "timm", "open-clip-torch"}


def test_serving_installs_without_torch():
    """`pip install ".[service,postgres]"` (make run, the image) names no PyTorch package; exporting,
    training and CLIP bring it; test installs have everything."""
    assert not _requirements(["service", "postgres"]) & (TORCH_STACK | {"scikit-learn", "onnx"})
    assert {"torch", "torchvision", "timm", "onnx"} <= _requirements(["export"])
    assert {"torch", "scikit-learn"} <= _requirements(["train"])
    assert "open-clip-torch" in _requirements(["clip"])
    make = (ROOT / "Makefile").read_text()
    serve = re.search(r"^\$\(SERVE_STAMP\):.*\n\t(.*)$", make, re.M).group(1)
    full = re.search(r"^\$\(STAMP\):.*\n\t(.*)$", make, re.M).group(1)
    assert "EXTRAS=service,postgres " in serve and "scripts/install.sh" in serve
    assert {"dev", "train"} <= set(re.search(r"EXTRAS=(\S+)", full).group(1).split(","))
    assert re.search(r"^run: \$\(SERVE_STAMP\)$", make, re.M), "make run must not install the dev extras"
    assert re.search(r"^test: \$\(STAMP\)$", make, re.M)


def test_image_installs_through_the_one_install_script(stages):
    """The builder runs scripts/install.sh with the serving extras only; `make run` runs the same."""
    text = " ".join(ln for stage in stages for ln in stage)
    assert re.search(r"RUN .*bash scripts/install\.sh", text)
    assert "EXTRAS=service,postgres" in text.replace('"', "")
    assert "TORCH_INDEX" not in text and "torch==" not in text
    assert "id=ca_bundle" in text, "pip behind TLS interception gets the CA bundle as a build secret"
    assert "scripts/install.sh" in (ROOT / "Makefile").read_text()


def test_shipped_onnx_exports_verify():
    """The default models' ONNX exports are in git and in the image's context, and match the
    installed weights, so a torch-free install serves them (make run, the image)."""
    from whales_identify.models._onnx import onnx_paths, verified_onnx
    from whales_identify.models.entries import DEFAULT_REID_MODEL, GATE_FEATURE_MODEL

    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for model_id in (GATE_FEATURE_MODEL, DEFAULT_REID_MODEL):
        for path in onnx_paths(model_id, ROOT / "models"):
            rel = str(path.relative_to(ROOT))
            assert f"!{rel}" in ignore, f".dockerignore leaves {rel} out of the image"
            if shutil.which("git") and (ROOT / ".git").exists():
                tracked = subprocess.run(["git", "ls-files", "--error-unmatch", rel], cwd=ROOT,
                                         capture_output=True)
                assert tracked.returncode == 0, f"{rel} is not committed"
        verified_onnx(model_id, ROOT / "models")  # raises when stale or altered


def test_service_predicts_with_torch_blocked(tmp_path):
    """The served path imports no PyTorch, timm, torchvision, scikit-learn or onnx: the real app
    with the default models starts, is ready and predicts with those imports made to fail."""
    code = """
import io, sys
for name in ("torch", "torchvision", "timm", "sklearn", "onnx", "open_clip", "huggingface_hub"):
    sys.modules[name] = None  # any import of them raises ImportError
from fastapi.testclient import TestClient
from PIL import Image
from whales_be_service.main import app
buf = io.BytesIO()
Image.new("RGB", (320, 240), (40, 90, 140)).save(buf, "JPEG")
with TestClient(app) as client:
    import time
    for _ in range(240):
        ready = client.get("/ready")
        if ready.status_code == 200:
            break
        time.sleep(0.25)
    assert ready.status_code == 200, ready.text
    r = client.post("/v1/predict", files={"file": ("x.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 200, r.text
    models = client.get("/v1/models").json()["models"]
    assert [m["backend"] for m in models if m["role"] == "embedding"] == ["onnx"], models
print("ok")
"""
    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
           "WHALES_MODELS_DIR": str(ROOT / "models")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_metrics_tmpfs_belongs_to_the_image_user(compose, stages):
    """The workers' metrics folder stays writable for the non-root user after a restart."""
    runtime = " ".join(stages[-1])
    uid = re.search(r"useradd .*--uid (\d+)", runtime).group(1)
    gid = re.search(r"groupadd .*--gid (\d+)", runtime).group(1)
    api = compose["services"]["api"]
    folder = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert f"{folder}:uid={uid},gid={gid}" in api["tmpfs"]


def test_dockerignore_keeps_what_the_image_needs():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for excluded in (".venv", ".git", "data/*", "models/*"):
        assert excluded in patterns
    assert "!models/gate" in patterns, "the committed gate head must be baked into the image"
    for needed in ("pyproject.toml", "scripts", "whales_identify", "whales_be_service", "integrations"):
        assert needed not in patterns


def test_docker_compose_config_validates():
    """`docker compose config` needs no daemon; skipped where no compose client is installed."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for cmd in candidates:
        if shutil.which(cmd[0]) and subprocess.run(cmd + ["version"], capture_output=True).returncode == 0:
            proc = subprocess.run(cmd + ["-f", str(COMPOSE), "--profile", "grafana", "config", "-q"],
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert proc.returncode == 0, proc.stderr
            return
    pytest.skip("no compose client here (neither the `docker compose` plugin nor docker-compose); "
                "the structure is checked by the other tests of this module")


def test_benchmark_holds_queries_out_of_the_catalog(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as `python scripts/benchmark.py` has it
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(bench)
    columns = ["relpath", "label", "individual_id", "species"]
    rows = [[f"positives/src{i % 2}/{i}.jpg", "cetacean", f"id{i // 3}", "x"] for i in range(12)]
    rows += [["positives/src0/noid, 1.jpg", "cetacean", "", "x"],
             ["negatives/n/1.jpg", "non_cetacean", "", "y"]]
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([columns, *rows])
    queries, catalog, cols = bench.select_photos(tmp_path, 3)
    assert cols == columns and len(queries) == 3
    assert {r["label"] for r in queries + catalog} == {"cetacean"}
    assert not {q["relpath"] for q in queries} & {c["relpath"] for c in catalog}
    assert all(c["individual_id"] for c in catalog)


def test_benchmark_report_has_the_headline_keys():
    report = json.loads((ROOT / "reports" / "benchmark.json").read_text())
    assert isinstance(report["throughput_ratio"], float)
    assert "gpu" in report and "machine" in report


def test_image_and_install_export_the_onnx_model(stages):
    """The served process runs the embedding model on ONNX Runtime: the export happens at install
    (scripts/install.sh, hence `make install` and CI) and in the image after the code is copied."""
    builder = " ".join(stages[0])
    copy_at = builder.index("COPY . .")
    export_at = builder.index("whales models export-onnx")
    assert export_at > copy_at, "the export needs the real code, so it must run after COPY . ."
    assert "EXPORT_ONNX=0" in builder[:copy_at], "install.sh must skip its export before the code is in"
    assert "WHALES_MODELS_DIR=/app/models" in builder[copy_at:]
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'models export-onnx' in install and "EXPORT_ONNX" in install
