"""Real HTTP servers for tests: uvicorn in a thread (app on fakes) or in a subprocess (real models)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ready(url: str, timeout: float, alive: Any = None, workers: int = 1) -> None:
    """Poll `/ready` until it is 200; with `workers` > 1, until that many worker processes said so.

    Each uvicorn worker accepts on the shared socket as soon as it starts and builds its models in
    the background (`/ready` 503 meanwhile), so one 200 says nothing of the other workers: the next
    request may land on one still loading and get its 503. The workers are told apart by the
    `X-Test-Pid` header the test app (svc_shared_app) sets; a new connection per probe lets the
    kernel hand it to any of them.
    """
    deadline = time.monotonic() + timeout
    last = ""
    ready_pids: set[str] = set()
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError("the server process exited")
        try:
            r = httpx.get(f"{url}/ready", timeout=5, headers={"Connection": "close"})
            if r.status_code == 200:
                if workers <= 1:
                    return
                if "x-test-pid" not in r.headers:
                    raise RuntimeError("several workers but no X-Test-Pid header: cannot tell them apart")
                ready_pids.add(r.headers["x-test-pid"])
                if len(ready_pids) >= workers:
                    return
                last = f"ready: {len(ready_pids)} of {workers} workers"
            else:
                last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s: {last}")


class ThreadedServer:
    """uvicorn serving an app object in a background thread (lifespan runs once)."""

    def __init__(self, app: Any):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        wait_http_ready(self.url, 30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class LiveServer:
    """`uvicorn whales_be_service.main:app` in a subprocess with the real embedded models."""

    url: str
    gate: str
    api_key: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def gate_backend() -> str:
    """`embedded` when a gate head is on disk (models/gate/*.npz with its .json), else `off`."""
    gate_dir = Path(os.environ.get("WHALES_MODELS_DIR") or ROOT / "models") / "gate"
    heads = list(gate_dir.glob("*.npz")) if gate_dir.is_dir() else []
    return "embedded" if any(p.with_suffix(".json").is_file() for p in heads) else "off"


def start_live_server(tmp: Path, api_key: str, extra_env: dict[str, str] | None = None,
                      timeout: float = 120.0) -> LiveServer:
    port = free_port()
    gate = gate_backend()
    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{tmp / 'w.db'}", "WHALES_API_KEYS": api_key,
           "WHALES_GATE": gate, "WHALES_RATE_LIMIT": "100000/minute", "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host", "127.0.0.1",
             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", gate, api_key, log_path, process)
    try:
        wait_http_ready(server.url, timeout, alive=lambda: process.poll() is None)
    except Exception as exc:
        stop_live_server(server)
        raise RuntimeError(f"{exc}\n--- server log ---\n{server.log_tail()}") from exc
    return server


def stop_live_server(server: LiveServer) -> None:
    stop_process(server.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_uvicorn(app: list[str], env: dict[str, str], log_path: Path, timeout: float = 90.0,
                  workers: int = 1) -> tuple[str, subprocess.Popen[bytes]]:
    """`uvicorn <app...> [--workers N]` on a free loopback port, waited for until every worker's
    /ready is 200 (the app must set X-Test-Pid when `workers` > 1); (url, process)."""
    port = free_port()
    args = [*app, *(["--workers", str(workers)] if workers > 1 else [])]
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port",
                                    str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ready(url, timeout, alive=lambda: process.poll() is None, workers=workers)
    except Exception as exc:
        stop_process(process)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{exc}\n--- server log ---\n{tail}") from exc
    return url, process
