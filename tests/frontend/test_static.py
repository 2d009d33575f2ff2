"""Checks on the page's files that need no browser: local assets only, no HTML injection sinks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
PAGE_FILES = sorted(p for p in FRONTEND.iterdir() if p.suffix in {".html", ".js", ".css", ".svg"})


def test_page_files_exist():
    names = {p.name for p in PAGE_FILES}
    assert {"index.html", "app.js", "style.css"} <= names


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_no_external_urls(path: Path):
    text = path.read_text()
    # the SVG namespace is an identifier, not a request
    text = text.replace("http://www.w3.org/2000/svg", "")
    found = re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I)
    assert not found, f"{path.name} names an external URL: {found.group(0)}"


@pytest.mark.parametrize("path", [p for p in PAGE_FILES if p.suffix == ".js"], ids=lambda p: p.name)
def test_no_html_injection_sinks_or_persistent_storage(path: Path):
    text = path.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in text, f"{path.name} uses {sink}: build elements with dom.h() instead"
    assert "localStorage" not in text, f"{path.name}: the API key belongs in sessionStorage only"


def test_index_references_only_local_files():
    html = (FRONTEND / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs
    for ref in refs:
        assert (FRONTEND / ref).is_file(), f"index.html references missing {ref}"
    for module in re.findall(r'from "\./([^"]+)"', "".join(p.read_text() for p in FRONTEND.glob("*.js"))):
        assert (FRONTEND / module).is_file(), f"missing module {module}"
