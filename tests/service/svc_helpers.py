"""Image and archive builders for service tests (hostile ones included), generated in memory."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational


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


def directory_only_zip(n: int, claimed: int | None = None, name: bytes = b"a") -> bytes:
    """A ZIP whose central directory lists `n` entries that all point at one empty stored file:
    ~47 bytes per entry (1,000,000 entries: 47 MB), with zip64 end records. `claimed` is the
    entry count the end records state (default `n`; less to lie about it)."""
    claimed = n if claimed is None else claimed
    crc = zlib.crc32(b"")
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0) + name
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0, 0, 0,
                         0, 0, 0) + name
    directory = record * n
    offset, size = len(local), len(directory)
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, claimed, claimed, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + size, 1)
    short = min(claimed, 0xFFFF)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, min(size, 0xFFFFFFFF),
                      min(offset, 0xFFFFFFFF), 0)
    return local + directory + zip64 + locator + end


def _dms(value: float) -> tuple[IFDRational, ...]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 10000), 10000)


def gps_photo(colour: tuple[int, int, int], lat: float | None = None, lon: float | None = None,
              seed: int = 0) -> bytes:
    """A 96x64 JPEG of one colour with noise (the fake embedder tells colours apart), with GPS."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 12, (64, 96, 3)), 0, 255)
    exif = Image.Exif()
    if lat is not None and lon is not None:
        exif.get_ifd(0x8825).update({1: "N" if lat >= 0 else "S", 2: _dms(abs(lat)),
                                     3: "E" if lon >= 0 else "W", 4: _dms(abs(lon))})
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()
