"""Every decoder failure is a 400 (issue 19 #5): a fixed-seed, time-bounded mutation fuzz of the
upload decoder over every accepted format, and the mutated TIFF that made Pillow raise TypeError
inside load() (the service answered 500)."""

from __future__ import annotations

import base64
import io
import random
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from whales_be_service.errors import ServiceError
from whales_be_service.settings import Settings
from whales_be_service.uploads import decode
from whales_identify.errors import InvalidImageError

# 206 bytes, found by this fuzzer (seed 1): Pillow 13 raises "TypeError: 'str' object cannot be
# interpreted as an integer" in ImageFile.load() (a strip offset tag holding text).
TIFF_TYPEERROR_IN_LOAD = base64.b64decode(
    "SUkqAAgAAAAIAAABBAABAAAAIAAAAAEBBAABAAAAGAAAAAMBAwABAAAAAQAAAAYBAwABAAAAAQAAABEBAgABAAAAbgAAABYB"
    "BAABAAAAGAAAABcBBAABAAAAYAAAABwBAwABAAAAAQAAAAAAAABala6t1cpiakU7MlBdSJVPKqulZdSUkpor065Tmo2ZKSVk"
    "67dVKpZJTOtVHaSVpXZbuSKrgSRtVD7ytm/KlMuqrU6aq9EhqlpU+lOmS5RJDW2rU2pSVW2rrcSkdDJ+lUo=")

SEED = 19
MAX_CASES = 10000
TIME_BUDGET_S = 20.0
SETTINGS = Settings(frontend_dir=None, max_pixels=4_000_000)


def _seeds() -> dict[str, bytes]:
    pixels = np.random.default_rng(SEED).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    rgb = Image.fromarray(pixels)
    out: dict[str, bytes] = {}
    variants = [("JPEG", "RGB", {}), ("JPEG", "RGB", {"progressive": True}), ("PNG", "RGB", {}),
                ("PNG", "P", {}), ("PNG", "LA", {}), ("GIF", "P", {}), ("BMP", "RGB", {}),
                ("WEBP", "RGB", {}), ("TIFF", "RGB", {}), ("TIFF", "L", {}), ("TIFF", "1", {}),
                ("TIFF", "LA", {}), ("TIFF", "CMYK", {}), ("TIFF", "RGB", {"compression": "tiff_lzw"}),
                ("TIFF", "L", {"compression": "packbits"}),
                ("TIFF", "RGB", {"compression": "tiff_adobe_deflate"})]
    for fmt, mode, options in variants:
        buffer = io.BytesIO()
        rgb.convert(mode).save(buffer, fmt, **options)
        out[f"{fmt}/{mode}/{options}"] = buffer.getvalue()
    return out


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    start = int.from_bytes(out[4:8], "little") if out[:2] == b"II" else 0  # a TIFF's first IFD
    for _ in range(rng.randint(1, 6)):
        low = start if start < len(out) and rng.random() < 0.7 else 0
        pos = rng.randrange(low, len(out))
        op = rng.random()
        if op < 0.5:
            out[pos] = rng.randrange(256)
        elif op < 0.7:
            out[pos] = rng.choice((0, 1, 2, 3, 0x7F, 0x80, 0xFF))
        elif op < 0.8:
            out[pos:pos + 2] = rng.randrange(65536).to_bytes(2, "little")
        elif op < 0.9:
            del out[pos:pos + rng.randint(1, 64)]
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        if not out:
            break
    return bytes(out)


def _outcome(data: bytes) -> str:
    try:
        decode("fuzz", data, SETTINGS)
    except InvalidImageError as exc:  # ImageTooLargeError included: 400 / 413
        return type(exc).__name__
    except ServiceError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.code)
        return exc.code
    return "decoded"


def test_the_tiff_that_raised_typeerror_in_load_is_invalid_image():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidImageError, match="TypeError"):
            decode("mutated.tif", TIFF_TYPEERROR_IN_LOAD, SETTINGS)


def test_the_tiff_that_raised_typeerror_is_a_400_from_the_service(client):
    r = client.post("/v1/predict", files={"file": ("mutated.tif", TIFF_TYPEERROR_IN_LOAD, "image/tiff")})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_image"


def test_mutation_fuzz_of_the_decoder_never_escapes_the_error_shape():
    """Fixed seed, at most MAX_CASES mutations or TIME_BUDGET_S seconds, whichever comes first."""
    rng = random.Random(SEED)
    seeds = list(_seeds().items())
    outcomes: dict[str, int] = {}
    started = time.monotonic()
    cases = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the corrupt tags it skips
        while cases < MAX_CASES and time.monotonic() - started < TIME_BUDGET_S:
            name, seed = seeds[cases % len(seeds)]
            data = _mutate(rng, seed)
            try:
                result = _outcome(data)
            except Exception as exc:  # anything else would be a 500
                pytest.fail(f"{name} mutation #{cases}: {type(exc).__name__}: {exc} "
                            f"(bytes: {base64.b64encode(data).decode()})")
            outcomes[result] = outcomes.get(result, 0) + 1
            cases += 1
    print(f"decoder fuzz: {cases} cases in {time.monotonic() - started:.1f} s: {outcomes}")
    assert cases >= 500, "the time budget ran out before the fuzz meant anything"
    assert outcomes.get("decoded", 0) and outcomes.get("InvalidImageError", 0)  # both paths exercised
