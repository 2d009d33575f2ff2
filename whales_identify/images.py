"""Safe image decoding: every odd-but-valid format becomes RGB, everything else a clear error.

`decode_image` opens the bytes once and keeps what later steps need from that one open (pixels, format,
size before downscaling, EXIF tags), so no caller has to open the photo again.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from whales_identify.errors import ImageTooLargeError, InvalidImageError

DEFAULT_MAX_PIXELS = 40_000_000  # ~ a 7,700 x 5,200 photo; larger images are rejected, not decoded

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


class UnsupportedImageFormatError(InvalidImageError):
    """The bytes are no image in an allowed format (the service answers 415)."""

    code = "unsupported_media_type"


@dataclass(frozen=True)
class ExifTags:
    """A photo's EXIF as plain dicts (tag number -> value): the main IFD, the Exif sub-IFD, GPS."""

    main: dict[int, Any] = field(default_factory=dict)
    photo: dict[int, Any] = field(default_factory=dict)
    gps: dict[int, Any] = field(default_factory=dict)


@dataclass
class DecodedImage:
    """One photo decoded once: RGB pixels (EXIF orientation applied, possibly downscaled) and what
    was read from the same open."""

    pixels: Image.Image
    format: str
    original_size: tuple[int, int]  # oriented, before downscaling
    exif: ExifTags = field(default_factory=ExifTags)

    @property
    def scale(self) -> float:
        """Original pixels per analysed pixel (to map boxes back to the photo)."""
        return self.original_size[0] / max(1, self.pixels.width)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                 formats: Sequence[str] | None = None, max_side: int | None = None) -> DecodedImage:
    """Decode bytes once: check the header, decode, read EXIF, orient, convert to RGB, downscale.

    Handles CMYK, 16-bit, palette and alpha images. The pixel limit is checked from the header,
    before any pixel is decoded, so a decompression bomb costs nothing.

    Args:
        data: the encoded photo.
        max_pixels: more pixels than this (from the header) is refused.
        formats: only these PIL formats are tried (None: any PIL knows); others raise
            `UnsupportedImageFormatError` before any decoder runs.
        max_side: downscale (bilinear) so that the longest side is at most this.

    Raises:
        InvalidImageError: empty, truncated or non-image bytes (`UnsupportedImageFormatError` when
            no allowed format recognises them).
        ImageTooLargeError: more than `max_pixels` pixels.
    """
    if not data:
        raise InvalidImageError("the file is empty")
    if formats is not None:
        Image.init()  # registers every plugin once; `formats=` only sees registered ones
        formats = [f for f in formats if f in Image.OPEN]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
            fmt = str(image.format)
            image.load()
    except ImageTooLargeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image rejected as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImageFormatError(f"cannot decode the image: {exc}") from exc
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise InvalidImageError(f"cannot decode the image: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # any other failure of a decoder on crafted bytes is bad input
        raise InvalidImageError(f"cannot decode the image ({type(exc).__name__})") from exc
    exif = _exif_tags(image)
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # a broken EXIF block must not lose an otherwise good photo
        pass
    try:
        rgb = to_rgb(image)
        original = rgb.size
        if max_side is not None and max(original) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    except MemoryError:
        raise
    except Exception as exc:  # a decoder bug on crafted bytes (TypeError in a TIFF mode...): bad input
        raise InvalidImageError(f"cannot decode the image ({type(exc).__name__})") from exc
    return DecodedImage(rgb, fmt, original, exif)


def _exif_tags(image: Image.Image) -> ExifTags:
    """The EXIF of the open image; empty where absent or unreadable (never raises)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = image.getexif()
            return ExifTags(dict(exif), dict(exif.get_ifd(_EXIF_IFD)), dict(exif.get_ifd(_GPS_IFD)))
    except Exception:
        return ExifTags()


def load_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to an RGB PIL image with EXIF orientation applied (`decode_image`'s pixels).

    Raises:
        InvalidImageError: empty, truncated or non-image bytes.
        ImageTooLargeError: more than `max_pixels` pixels.
    """
    return decode_image(data, max_pixels).pixels


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is flattened onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits from the image's own range.
        lo, hi = image.getextrema()
        scale = 255.0 / max(1, (hi - lo))
        image = image.point(lambda v: (v - lo) * scale).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def make_thumbnail(image: Image.Image, side: int) -> bytes:
    """A JPEG of at most `side` px a side (what the catalog stores and the web page shows)."""
    thumb = image.convert("RGB").copy()
    thumb.thumbnail((side, side))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def pixels_sha256(image: Image.Image) -> str:
    """The SHA-256 of the decoded pixels (the same photo re-encoded gives the same hash)."""
    import hashlib

    return hashlib.sha256(image.tobytes()).hexdigest()
