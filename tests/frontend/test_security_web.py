"""The page under the issue 19 rules, in headless Chromium: served with its CSP (no violation while
it works), and usable when every read needs a key (photos fetched with the key the user entered)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

SERVICE_TESTS = ROOT / "tests" / "service"
sys.path.insert(0, str(SERVICE_TESTS))
from svc_fakes import API_KEY  # noqa: E402
from svc_helpers import gps_photo  # noqa: E402
from svc_server import start_uvicorn, stop_process  # noqa: E402


@pytest.fixture
def keyed_service(tmp_path: Path):
    """The fake-model app (real store and catalog) with WHALES_REQUIRE_KEY_FOR_READS on."""
    env = {**os.environ, "WHALES_TEST_DB_URL": f"sqlite:///{tmp_path / 'w.db'}",
           "WHALES_TEST_REQUIRE_KEY": "1", "PYTHONPATH": f"{SERVICE_TESTS}{os.pathsep}{ROOT}"}
    url, proc = start_uvicorn(["svc_shared_app:create", "--factory"], env, tmp_path / "log", 60)
    try:
        yield url
    finally:
        stop_process(proc)


def test_photos_behind_a_key_show_once_the_key_is_entered(browser, keyed_service):
    url = keyed_service
    r = httpx.post(f"{url}/v1/individuals/eg_1001/images", headers={"X-API-Key": API_KEY},
                   files=[("files", ("fin.jpg", gps_photo((40, 90, 160), 41.72, -69.91), "image/jpeg"))],
                   data={"species": "north_atlantic_right_whale"})
    assert r.status_code == 200, r.text
    assert httpx.get(f"{url}/v1/individuals/eg_1001").status_code == 401  # reads need the key
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        csp: list[str] = []
        page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
        response = page.goto(f"{url}/")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.fill("#api-key", API_KEY)
        page.click("#key-form button[type=submit]")
        page.goto(f"{url}/#catalog/eg_1001")
        page.wait_for_selector("[data-testid=individual-page]")
        page.wait_for_function("""() => {
            const imgs = [...document.querySelectorAll('[data-testid=individual-page] img')];
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""", timeout=20_000)
        sources = page.eval_on_selector_all("[data-testid=individual-page] img", "els => els.map(e => e.src)")
        assert sources and all(s.startswith("blob:") for s in sources), sources  # fetched with the key
        assert not csp, csp
    finally:
        context.close()
