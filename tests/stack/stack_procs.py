"""The compose topology on loopback, without containers: Debian's nginx with frontend/nginx.conf,
Debian's Prometheus with deploy/prometheus.yml (both copied into a temporary folder with the
compose service names replaced by loopback addresses; the files themselves are never edited) and
`uvicorn --workers 2` on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "frontend" / "nginx.conf"
PROMETHEUS_YML = ROOT / "deploy" / "prometheus.yml"
API_KEY = "stack-key"
READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, probe: Callable[[], object], timeout: float,
               alive: Callable[[], bool] | None = None, log: Path | None = None) -> object:
    """Polls `probe` until it returns something truthy (returned) or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            break
        try:
            last = probe()
            if last:
                return last
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what}: not after {timeout:.0f} s (last: {last!r})\n{tail}")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    with open(log, "ab") as fh:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return Proc(name, process, log)


# --- nginx --------------------------------------------------------------------------------------

def nginx_site(api_port: int, web_port: int, html: Path) -> str:
    """frontend/nginx.conf with the upstream `api:8000` -> loopback, listening on loopback."""
    conf = NGINX_CONF.read_text()
    conf, n_upstream = re.subn(r"(\bserver\s+)api:8000\b", rf"\g<1>127.0.0.1:{api_port}", conf)
    conf, n_listen = re.subn(r"\blisten\s+8080\b", f"listen 127.0.0.1:{web_port}", conf)
    conf, n_root = re.subn(r"^(\s*root\s+)/usr/share/nginx/html\s*;", rf"\g<1>{html};", conf, flags=re.M)
    assert (n_upstream, n_listen, n_root) == (1, 1, 1), \
        "frontend/nginx.conf changed shape: the upstream api:8000, listen 8080 or root was not found"
    return conf


def start_nginx(binary: str, tmp: Path, api_port: int, web_port: int) -> Proc:
    """Debian's nginx with the site file above; checked with `nginx -t` first."""
    html = tmp / "html"
    shutil.copytree(ROOT / "frontend", html)  # world-readable for nginx's unprivileged workers
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir()
        (tmp / sub).chmod(0o777)
    (tmp / "site.conf").write_text(nginx_site(api_port, web_port, html))
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / sub};" for kind, sub in
                           (("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
                            ("uwsgi", "uwsgi"), ("scgi", "scgi")))
    (tmp / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {tmp / 'access.log'};
{temp_paths}
    include {tmp / 'site.conf'};
}}
""")
    cmd = [binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")]
    check = subprocess.run([*cmd, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"nginx -t refused the shipped site config:\n{check.stderr}"
    return start("nginx", cmd, tmp / "nginx.out")


# --- Prometheus ---------------------------------------------------------------------------------

def prometheus_config(api_port: int, interval_s: int = 1) -> dict:
    """deploy/prometheus.yml with each job's `api:8000` discovery replaced by the loopback target,
    scraped every `interval_s` seconds."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config.setdefault("global", {}).update(scrape_interval=f"{interval_s}s",
                                           evaluation_interval=f"{interval_s}s")
    replaced = 0
    for job in config["scrape_configs"]:
        for sd in job.pop("dns_sd_configs", []):
            assert [f"{n}:{sd['port']}" for n in sd["names"]] == ["api:8000"], sd
            job.setdefault("static_configs", []).append({"targets": [f"127.0.0.1:{api_port}"]})
            replaced += 1
        for sc in job.get("static_configs", []):
            sc["targets"] = [f"127.0.0.1:{api_port}" if t == "api:8000" else t for t in sc["targets"]]
    assert replaced or any("127.0.0.1" in str(j) for j in config["scrape_configs"]), config
    return config


def promtool_check(promtool: str, path: Path) -> None:
    proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"promtool check config {path}:\n{proc.stdout}{proc.stderr}"


def start_prometheus(binary: str, tmp: Path, api_port: int, port: int) -> Proc:
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(prometheus_config(api_port)))
    return start("prometheus", [binary, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}"], tmp / "prometheus.out")


def prom_query(url: str, query: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10)
    r.raise_for_status()
    return list(r.json()["data"]["result"])


# --- the API ------------------------------------------------------------------------------------

def start_api(tmp: Path, port: int, env: dict[str, str]) -> Proc:
    """`uvicorn whales_be_service.main:app --workers 2` with the real default models."""
    prom = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(prom, ignore_errors=True)  # as the compose tmpfs: empty at every start
    prom.mkdir(parents=True)
    cmd = [sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--workers", "2",
           "--host", "127.0.0.1", "--port", str(port)]
    return start("api", cmd, tmp / "api.out", env={**os.environ, **env})


def known_by_worker(prom_dir: Path) -> dict[str, float]:
    """Predictions answered `known` per worker pid, read from each worker's metrics file."""
    from prometheus_client.mmap_dict import MmapedDict

    out: dict[str, float] = {}
    for path in sorted(prom_dir.glob("counter_*.db")):
        pid = path.stem.rsplit("_", 1)[-1]
        out[pid] = sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
                       if json.loads(key)[1] == "whales_predictions_total"
                       and json.loads(key)[2].get("outcome") == "known")
    return out


@dataclass
class Stack:
    tmp: Path
    api: Proc
    nginx: Proc
    prometheus: Proc
    api_url: str
    web_url: str
    prom_url: str
    api_port: int
    api_env: dict[str, str]

    @property
    def prom_dir(self) -> Path:
        return Path(self.api_env["PROMETHEUS_MULTIPROC_DIR"])

    def wait_api_ready(self) -> None:
        # /ready answers for the worker that took the connection: 8 in a row on new connections,
        # so that both workers have loaded
        streak = [0]

        def ready() -> bool:
            try:
                ok = httpx.get(f"{self.api_url}/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            streak[0] = streak[0] + 1 if ok else 0
            return streak[0] >= 8

        wait_until("the API's /ready", ready, READY_TIMEOUT_S, alive=self.api.alive, log=self.api.log)

    def restart_api(self) -> None:
        self.api.stop()
        self.api = start_api(self.tmp, self.api_port, self.api_env)
        self.wait_api_ready()
