"""EcoMarineAI: identify individual whales and dolphins in photographs.

The public API is curated here; heavy modules (torch, timm) load on first use, not on import.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
