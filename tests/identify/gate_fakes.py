"""A fake gate backbone shared by the gate tests (not a test module)."""

from __future__ import annotations

import numpy as np


class ColourEmbedder:
    """Features = colour statistics: enough to tell blue 'whales' from red 'sharks'."""

    model_id, dim = "fake.colour", 6

    def features(self, images):
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB").resize((16, 16)), np.float32) / 255
            out.append(np.concatenate([a.mean((0, 1)), a.std((0, 1))]) + 1e-3)
        return np.stack(out)
