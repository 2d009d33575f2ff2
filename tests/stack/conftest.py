"""The deployed topology on loopback (marker `stack`): nginx -> uvicorn --workers 2 -> PostgreSQL,
Prometheus scraping the API. Debian's nginx and prometheus and WHALES_TEST_POSTGRES_URL are
needed: absent, the tests skip (and fail in CI, WHALES_TEST_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_procs import (
    API_KEY,
    Proc,
    Stack,
    free_port,
    promtool_check,
    start_api,
    start_nginx,
    start_prometheus,
)

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def skip_or_fail(request: pytest.FixtureRequest, reason: str) -> None:
    root = request.config.pluginmanager.get_plugin(str(ROOT_CONFTEST))
    root.skip_or_fail(reason)


def _binary(name: str, *candidates: str) -> str | None:
    return shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    nginx = _binary("nginx", "/usr/sbin/nginx")
    prometheus = _binary("prometheus", "/usr/bin/prometheus")
    promtool = _binary("promtool", "/usr/bin/promtool")
    base_url = os.environ.get("WHALES_TEST_POSTGRES_URL")
    for found, reason in ((nginx, "nginx is missing: apt-get install nginx"),
                          (prometheus and promtool, "prometheus is missing: apt-get install prometheus"),
                          (base_url, "WHALES_TEST_POSTGRES_URL is not set (see .ci/run)")):
        if not found:
            skip_or_fail(request, reason)
    assert nginx and prometheus and promtool and base_url
    import psycopg
    from stack_procs import PROMETHEUS_YML

    promtool_check(promtool, PROMETHEUS_YML)  # the file that users deploy, as it is
    tmp = Path(tempfile.mkdtemp(prefix="whales-stack-"))
    tmp.chmod(0o755)  # nginx's workers run unprivileged
    schema = f"stack_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    api_port, web_port, prom_port = free_port(), free_port(), free_port()
    api_env = {"WHALES_DATABASE_URL": f"{base_url}{sep}options=-csearch_path%3D{schema}",
               "WHALES_API_KEYS": API_KEY, "WHALES_MODELS_DIR": str(Path(__file__).parents[2] / "models"),
               "WHALES_TRUSTED_PROXIES": "127.0.0.1", "WHALES_RATE_LIMIT": "100000/minute",
               "WHALES_CATALOG_REFRESH_S": "1", "WHALES_INFERENCE_THREADS": "1",
               "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"), "PYTHONUNBUFFERED": "1"}
    procs: list[Proc] = []
    stack_: Stack | None = None
    try:
        api = start_api(tmp, api_port, api_env)
        procs.append(api)
        procs.append(start_nginx(nginx, tmp, api_port, web_port))
        prom_proc = start_prometheus(prometheus, tmp, api_port, prom_port)
        procs.append(prom_proc)
        promtool_check(promtool, tmp / "prometheus.yml")
        stack_ = Stack(tmp, api, procs[1], prom_proc, f"http://127.0.0.1:{api_port}",
                       f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{prom_port}", api_port, api_env)
        stack_.wait_api_ready()
        yield stack_
    finally:
        for proc in [*procs, *([stack_.api] if stack_ else [])]:
            proc.stop()
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        shutil.rmtree(tmp, ignore_errors=True)
