"""The curated public API resolves lazily and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import whales_identify


def test_every_export_resolves():
    for name in whales_identify.__all__:
        assert getattr(whales_identify, name) is not None, name


def test_import_has_no_heavy_side_effects():
    code = "import sys, whales_identify; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
