"""Image and archive builders for service tests (hostile ones included), generated in memory."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image


def image_bytes(colour: tuple[int, int, int] = (30, 60, 120), size: tuple[int, int] = (96, 64),
                fmt: str = "JPEG", mode: str = "RGB", seed: int | None = None, **save: object) -> bytes:
    if seed is not None:
        rng = np.random.default_rng(seed)
        base = np.asarray(colour, np.float32)[None, None, :]
        arr = np.clip(base + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, "RGB")
    else:
        im = Image.new("RGB", size, colour)
    if mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def png_16bit(size: tuple[int, int] = (80, 60)) -> bytes:
    arr = (np.linspace(0, 65535, size[0] * size[1]).reshape(size[1], size[0])).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")  # uint16 -> mode I;16
    return buf.getvalue()


def exif_rotated_jpeg(size: tuple[int, int] = (120, 60), orientation: int = 6) -> bytes:
    im = Image.new("RGB", size, (20, 90, 160))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (greyscale), zlib-compressed zeros."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(200)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
    return buf.getvalue()


def zip_bomb(uncompressed: int = 200 * 1024 * 1024) -> bytes:
    """One entry of zeros: ~200 KB on the wire, `uncompressed` bytes declared."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("zeros.jpg", "w", force_zip64=True) as fh:
        block = b"\x00" * (1 << 20)
        for _ in range(uncompressed >> 20):
            fh.write(block)
    return buf.getvalue()


def many_entries_zip(n: int = 10_000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"img_{i:05d}.jpg", b"x")
    return buf.getvalue()
