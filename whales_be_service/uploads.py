"""Turning uploaded bytes into images, safely: size caps, format sniffing, hardened ZIP reading.

ZIP entry names are labels only; nothing is ever written to or read from the filesystem by name.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from PIL import Image

from whales_be_service.errors import ServiceError, too_large, unsupported_media
from whales_be_service.settings import Settings
from whales_identify.images import DecodedImage, UnsupportedImageFormatError, decode_image
from whales_identify.records.sighting import sighting_from_exif
from whales_identify.records.store import Sighting

# Formats a camera or phone produces; others (EPS, PSD, ...) are refused before any decoder runs.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
ZIP_MAX_ENTRIES = 2000  # central-directory records, directories and metadata included
# zipfile parses the central directory by its size, not its entry count: this bounds that work
# (46-byte records plus names and extras; 1 KiB per allowed entry is ample for real archives).
ZIP_MAX_DIRECTORY_BYTES = ZIP_MAX_ENTRIES * 1024
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes + comment)
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes, just before the EOCD record
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes, just before the locator
_CHUNK = 1 << 20


@dataclass
class Decoded:
    """One uploaded photo, decoded once (`whales_identify.images.decode_image`), with what is needed to
    store it: the pixels for analysis, the EXIF read from the same open, the bytes and their hash."""

    name: str
    photo: DecodedImage  # RGB, longest side <= settings.analysis_max_side
    sha256: str
    data: bytes

    @property
    def image(self) -> Image.Image:
        return self.photo.pixels

    @property
    def original_size(self) -> tuple[int, int]:
        return self.photo.original_size

    @property
    def scale(self) -> float:
        return self.photo.scale

    @property
    def sighting(self) -> Sighting:
        """EXIF time and GPS position (empty where absent or unreadable); no second open."""
        return sighting_from_exif(self.photo.exif)


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def read_limited(fh: IO[bytes], limit: int, what: str) -> bytes:
    """Read at most `limit` bytes; more is a 413, never a silent truncation."""
    data = fh.read(limit + 1)
    if len(data) > limit:
        raise too_large(f"{what} is larger than the limit of {limit} bytes", {"limit_bytes": limit})
    return data


def decode(name: str, data: bytes, settings: Settings) -> Decoded:
    """Check, decode (EXIF-rotated, RGB, pixel-capped) and downscale one photo, opening it once.

    Raises:
        InvalidImageError: empty or undecodable (400); ImageTooLargeError: too many pixels (413).
        ServiceError: 415 when the bytes are not a supported image at all (a ZIP included).
    """
    if is_zip(data[:4]):
        raise unsupported_media("this is a ZIP archive; send it to /v1/predict-batch as `archive`")
    try:
        photo = decode_image(data, settings.max_pixels, formats=ALLOWED_FORMATS,
                             max_side=settings.analysis_max_side)
    except UnsupportedImageFormatError:
        raise unsupported_media(
            "the file is not an image in a supported format (JPEG, PNG, GIF, BMP, TIFF, WEBP)") from None
    return Decoded(name, photo, hashlib.sha256(data).hexdigest(), data)


def encode_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# ---- batches -------------------------------------------------------------------------------------

@dataclass
class BatchItem:
    """One image of a batch: a lazy reader of its bytes, or the reason it is not processed."""

    name: str
    read: Callable[[], bytes] | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def skipped(self) -> bool:
        return self.error_code == "skipped"


@dataclass
class BatchPlan:
    items: list[BatchItem]

    @property
    def images(self) -> int:
        return sum(1 for it in self.items if it.read is not None)


def _unsafe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")
            or "\x00" in name)


def _skip_reason(info: zipfile.ZipInfo) -> str | None:
    parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
    if info.is_dir():
        return "directory"
    if any(p == "__MACOSX" for p in parts):
        return "macOS metadata (__MACOSX)"
    if any(p.startswith(".") and p != ".." for p in parts):
        return "hidden file"
    return None


def directory_size(fh: IO[bytes], label: str) -> tuple[int, int]:
    """(entries, bytes) of a ZIP's central directory, from its end records alone (zip64 included).

    Reads at most the last 64 KiB + 98 bytes, like `zipfile` finds the same records, so an archive
    whose directory is too large is refused before anything is parsed.
    """
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    tail_len = min(size, _EOCD.size + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ServiceError(400, "invalid_archive", f"{label} is not a readable ZIP archive: no end of "
                                                   f"central directory record")
    _, _, _, _, entries, cd_bytes, _, _ = _EOCD.unpack(tail[at:at + _EOCD.size])
    locator_at = size - tail_len + at - _ZIP64_LOCATOR.size
    if locator_at >= _ZIP64_EOCD.size:
        fh.seek(locator_at - _ZIP64_EOCD.size)
        block = fh.read(_ZIP64_EOCD.size + _ZIP64_LOCATOR.size)
        if block[_ZIP64_EOCD.size:_ZIP64_EOCD.size + 4] == b"PK\x06\x07" and block[:4] == b"PK\x06\x06":
            fields = _ZIP64_EOCD.unpack(block[:_ZIP64_EOCD.size])
            entries, cd_bytes = fields[7], fields[8]
    fh.seek(0)
    return int(entries), int(cd_bytes)


def plan_archive(fh: IO[bytes], label: str, settings: Settings) -> list[BatchItem]:
    """Validate a ZIP's central directory and return one item per entry (no data read yet).

    The entry count and directory size come from the end records first: an archive listing more
    entries than allowed is refused in constant time and memory, before `zipfile` parses anything.
    """
    entries, cd_bytes = directory_size(fh, label)
    if entries > ZIP_MAX_ENTRIES or cd_bytes > ZIP_MAX_DIRECTORY_BYTES:
        raise too_large(f"{label} lists {entries} entries in a {cd_bytes}-byte central directory; the "
                        f"limit is {ZIP_MAX_ENTRIES} entries ({ZIP_MAX_DIRECTORY_BYTES} bytes)",
                        {"entries": entries, "directory_bytes": cd_bytes, "limit": ZIP_MAX_ENTRIES})
    try:
        archive = zipfile.ZipFile(fh)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise ServiceError(400, "invalid_archive", f"{label} is not a readable ZIP archive: {exc}") from exc
    if len(infos) > ZIP_MAX_ENTRIES:
        raise too_large(f"{label} has {len(infos)} entries; the limit is {ZIP_MAX_ENTRIES}",
                        {"entries": len(infos), "limit": ZIP_MAX_ENTRIES})
    declared = sum(max(0, i.file_size) for i in infos)
    if declared > settings.zip_max_total_bytes:
        raise too_large(f"{label} expands to {declared} bytes; the limit is {settings.zip_max_total_bytes}",
                        {"uncompressed_bytes": declared, "limit": settings.zip_max_total_bytes})
    budget = {"left": settings.zip_max_total_bytes}
    items: list[BatchItem] = []
    for info in infos:
        name = info.filename[:255]
        reason = _skip_reason(info)
        if reason:
            items.append(BatchItem(name, None, "skipped", f"skipped: {reason}"))
        elif _unsafe_name(info.filename):
            items.append(BatchItem(name, None, "unsafe_entry_name",
                                   "absolute or parent-relative entry names are refused"))
        elif info.flag_bits & 0x1:
            items.append(BatchItem(name, None, "encrypted_entry", "encrypted entries are not supported"))
        elif info.file_size > settings.max_upload_bytes:
            items.append(BatchItem(name, None, "payload_too_large",
                                   f"entry expands to {info.file_size} bytes; the limit is "
                                   f"{settings.max_upload_bytes}"))
        elif info.compress_size > 0 and info.file_size / info.compress_size > settings.zip_max_ratio:
            items.append(BatchItem(name, None, "suspicious_compression",
                                   f"compression ratio {info.file_size / info.compress_size:.0f} exceeds "
                                   f"{settings.zip_max_ratio:.0f} (zip bomb guard)"))
        else:
            items.append(BatchItem(name, _entry_reader(archive, info, settings, budget)))
    return items


def _entry_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, settings: Settings,
                  budget: dict[str, int]) -> Callable[[], bytes]:
    def read() -> bytes:
        limit = min(info.file_size, settings.max_upload_bytes, budget["left"])
        try:
            with archive.open(info) as fh:
                data = fh.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise ServiceError(400, "corrupt_entry", f"cannot extract this entry: {exc}") from exc
        if len(data) > limit:
            raise too_large("entry is larger than its declared size or the remaining archive budget")
        budget["left"] -= len(data)
        return data

    return read


def _upload_reader(fh: IO[bytes], settings: Settings, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        fh.seek(0)
        return read_limited(fh, settings.max_upload_bytes, f"file {name!r}")

    return read


def plan_batch(parts: list[tuple[str, IO[bytes]]], settings: Settings) -> BatchPlan:
    """Expand uploaded parts (ZIPs recognised by their bytes, others taken as images) into items.

    Raises `ServiceError` 413 when an archive or the number of images exceeds its cap, 400 when an
    archive is unreadable.
    """
    items: list[BatchItem] = []
    for label, fh in parts:
        fh.seek(0)
        head = fh.read(4)
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(0)
        if is_zip(head):
            if size > settings.max_archive_bytes:
                raise too_large(f"archive {label!r} is {size} bytes; the limit is "
                                f"{settings.max_archive_bytes}",
                                {"limit_bytes": settings.max_archive_bytes})
            items.extend(plan_archive(fh, repr(label), settings))
        elif size > settings.max_upload_bytes:
            items.append(BatchItem(label, None, "payload_too_large",
                                   f"file is {size} bytes; the limit is {settings.max_upload_bytes}"))
        else:
            items.append(BatchItem(label, _upload_reader(fh, settings, label)))
    plan = BatchPlan(items)
    if plan.images > settings.max_batch_images:
        raise too_large(f"the batch holds {plan.images} images; the limit is {settings.max_batch_images}",
                        {"images": plan.images, "limit": settings.max_batch_images})
    return plan


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(code, message) of a per-image failure, for a batch's `errors` list."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code, str(exc)
    return "failed", f"{type(exc).__name__}: {exc}"


__all__ = ["BatchItem", "BatchPlan", "Decoded", "decode", "describe_error", "encode_jpeg",
           "is_zip", "plan_batch", "read_limited"]
