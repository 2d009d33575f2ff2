"""Fixtures for the browser tests: a live uvicorn with the embedded models, and headless Chromium.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run), driven by Playwright; no browser is
downloaded. Where it is absent the tests skip (and fail in CI, WHALES_TEST_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

try:
    from tests.conftest import ROOT, skip_or_fail
except ModuleNotFoundError:  # bare `pytest` (not `python -m pytest`) leaves the project root off sys.path
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_whales_tests_conftest", Path(__file__).parents[1] / "conftest.py")
    assert _spec is not None and _spec.loader is not None
    _root_conftest = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_root_conftest)
    ROOT, skip_or_fail = _root_conftest.ROOT, _root_conftest.skip_or_fail

CHROMIUM = Path(os.environ.get("WHALES_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "reports" / "screenshots"
API_KEY = "test-key"
READY_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gate_backend() -> str:
    """`embedded` when the gate head is on disk (models/gate/), else `off` (rejection is then untestable)."""
    gate_dir = Path(os.environ.get("WHALES_MODELS_DIR") or ROOT / "models") / "gate"
    heads = gate_dir.glob("*.npz") if gate_dir.is_dir() else []
    return "embedded" if any(p.with_suffix(".json").is_file() for p in heads) else "off"


def _served_gate(url: str) -> str:
    """The gate backend the running service reports in `GET /v1/models`."""
    models = httpx.get(f"{url}/v1/models", timeout=10).json().get("models", [])
    return next((m.get("backend", "off") for m in models if m.get("role") == "gate"), "off")


@dataclass
class LiveService:
    url: str
    gate: str
    log_path: Path
    api_key: str = API_KEY

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(lines[-n:])


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A real `uvicorn whales_be_service.main:app` on a free loopback port, ready to answer.

    `WHALES_TEST_WEB_URL` points the tests at a service already running instead (e.g. the Docker
    Compose stack behind nginx); it must accept the key `test-key` and start with an empty catalog.
    """
    external = os.environ.get("WHALES_TEST_WEB_URL")
    if external:
        url = external.rstrip("/")
        yield LiveService(url, _served_gate(url), Path(os.devnull))
        return
    if not (ROOT / "whales_be_service" / "main.py").is_file():
        skip_or_fail("whales_be_service.main is not there yet: nothing to serve the page")
    tmp = tmp_path_factory.mktemp("web-service")
    port = _free_port()
    gate = _gate_backend()
    env = {**os.environ, "WHALES_DATABASE_URL": f"sqlite:///{tmp / 'w.db'}", "WHALES_API_KEYS": API_KEY,
           "WHALES_GATE": gate, "WHALES_RATE_LIMIT_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
    log_path = tmp / "uvicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "whales_be_service.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    service = LiveService(f"http://127.0.0.1:{port}", gate, log_path)  # gate re-read once ready
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited with {proc.returncode}:\n{service.log_tail()}")
            try:
                ready = httpx.get(f"{service.url}/ready", timeout=5)
                if ready.status_code == 200:
                    break
                components = (ready.json().get("error", {}).get("details") or {}).get("components", {})
                broken = {k: v for k, v in components.items() if v not in ("ok", "pending")}
                if broken and all(v != "pending" for v in components.values()):
                    pytest.fail(f"the service cannot become ready: {broken}")
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"service not ready after {READY_TIMEOUT_S:.0f} s:\n{service.log_tail()}")
            time.sleep(0.5)
        service.gate = _served_gate(service.url)
        yield service
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.is_file():
        skip_or_fail(f"{CHROMIUM} is missing: apt-get install chromium (no browser is downloaded)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class PageWatch:
    """What the page did that it should not: console errors, uncaught exceptions, non-loopback requests."""

    origin: str
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.external_requests, f"requests left the service origin: {self.external_requests}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


def _new_page(browser, live_service: LiveService, viewport: dict[str, int]):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(60_000)
    watch = PageWatch(origin=live_service.url)

    def route(r):
        url = r.request.url
        watch.requests.append(url)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != watch.origin:
            watch.external_requests.append(url)
            return r.abort()
        return r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watch.console_errors.append(f"uncaught: {e}"))
    return context, page, watch


@pytest.fixture
def web(browser, live_service):
    """A fresh desktop-sized page (own context, so sessionStorage starts empty) and its watcher."""
    context, page, watch = _new_page(browser, live_service, {"width": 1280, "height": 900})
    yield page, watch
    context.close()


@pytest.fixture
def phone(browser, live_service):
    context, page, watch = _new_page(browser, live_service, {"width": 390, "height": 844})
    yield page, watch
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
