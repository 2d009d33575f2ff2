"""Negatives the project generates itself, and the photo perturbations used for robustness.

Generated negatives stand in for what users upload that no data set holds: rendered text, screenshots,
flat colours, noise, drawings, and grey natural-looking textures (rock, concrete, sand, a cratered
surface), which a gate trained on grey whale skin otherwise takes for a whale. Everything is drawn
from a seeded `random.Random`, so calibration and test sets come from different seeds and never
share content.
"""

from __future__ import annotations

import io
import random
import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from whales_identify.transforms import LETTERBOX_FILL

NEGATIVE_KINDS = ("text", "screenshot", "flat_colour", "noise", "drawing", "texture")
PERTURBATIONS = ("jpeg_q20", "gaussian_noise", "blur", "downscale_128", "rotate", "partial_crop")

_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


def _fonts() -> list[Path]:
    out: list[Path] = []
    for root in _FONT_DIRS:
        if root.is_dir():
            out += sorted(root.rglob("*.ttf"))
    return out


def _font(rng: random.Random, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    fonts = _fonts()
    if fonts:
        return ImageFont.truetype(str(rng.choice(fonts)), size)
    return ImageFont.load_default(size)


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _words(rng: random.Random, n: int) -> str:
    letters = string.ascii_letters + string.digits + "     .,:;!?@#%&"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(n))


def _size(rng: random.Random) -> tuple[int, int]:
    return rng.choice([(640, 480), (480, 640), (800, 450), (512, 512), (1080, 1920), (1280, 720)])


def render_text(rng: random.Random) -> Image.Image:
    w, h = _size(rng)
    im = Image.new("RGB", (w, h), _colour(rng))
    draw = ImageDraw.Draw(im)
    y = rng.randint(0, h // 6)
    while y < h:
        size = rng.randint(14, 64)
        draw.text((rng.randint(0, w // 4), y), _words(rng, rng.randint(2, 8)), fill=_colour(rng),
                  font=_font(rng, size))
        y += int(size * rng.uniform(1.1, 2.0))
    return im


def render_screenshot(rng: random.Random) -> Image.Image:
    """A fake app or web page: title bar, panels, buttons, lines of text, sometimes a blue banner."""
    w, h = _size(rng)
    bg = rng.choice([(255, 255, 255), (245, 245, 245), (30, 30, 30), (18, 18, 40), _colour(rng)])
    im = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(im)
    bar = rng.randint(24, 70)
    draw.rectangle([0, 0, w, bar], fill=_colour(rng))
    draw.text((10, bar // 4), _words(rng, 3), fill=(255, 255, 255), font=_font(rng, max(12, bar // 2)))
    ink = (0, 0, 0) if sum(bg) > 380 else (230, 230, 230)
    y = bar + 10
    while y < h - 20:
        kind = rng.random()
        if kind < 0.15:  # an image placeholder or banner, often sea-blue: the hard case
            bh = rng.randint(40, h // 3)
            fill = rng.choice([(20, 60, 120), (40, 110, 170), _colour(rng)])
            draw.rectangle([10, y, w - 10, y + bh], fill=fill)
            y += bh + 10
        elif kind < 0.3:
            bw = rng.randint(60, 200)
            draw.rounded_rectangle([10, y, 10 + bw, y + 32], radius=6, fill=_colour(rng))
            draw.text((18, y + 8), _words(rng, 1), fill=(255, 255, 255), font=_font(rng, 14))
            y += 44
        else:
            size = rng.randint(11, 22)
            draw.text((10, y), _words(rng, rng.randint(3, 12)), fill=ink, font=_font(rng, size))
            y += int(size * 1.6)
    return im


def render_flat_colour(rng: random.Random) -> Image.Image:
    w, h = _size(rng)
    c0 = rng.choice([_colour(rng), (rng.randrange(40), rng.randrange(60, 140), rng.randrange(100, 220))])
    if rng.random() < 0.5:
        return Image.new("RGB", (w, h), c0)
    c1 = _colour(rng)
    t = np.linspace(0, 1, h if rng.random() < 0.5 else w)[:, None]
    ramp = (np.array(c0)[None] * (1 - t) + np.array(c1)[None] * t).astype(np.uint8)
    arr = np.broadcast_to(ramp[:, None, :], (h, w, 3)) if len(ramp) == h else np.broadcast_to(
        ramp[None, :, :], (h, w, 3))
    return Image.fromarray(np.ascontiguousarray(arr))


def render_noise(rng: random.Random) -> Image.Image:
    w, h = rng.choice([(256, 256), (512, 384), (384, 512)])
    nprng = np.random.default_rng(rng.randrange(2**32))
    kind = rng.choice(["uniform", "gaussian", "smooth", "blue"])
    if kind == "uniform":
        arr = nprng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    elif kind == "gaussian":
        arr = np.clip(nprng.normal(128, 60, (h, w, 3)), 0, 255).astype(np.uint8)
    else:
        small = nprng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(im).copy()
        if kind == "blue":  # choppy water-like texture
            arr[..., 0] //= 4
            arr[..., 1] = arr[..., 1] // 2 + 40
            arr[..., 2] = arr[..., 2] // 2 + 100
    return Image.fromarray(arr)


def render_drawing(rng: random.Random) -> Image.Image:
    w, h = _size(rng)
    im = Image.new("RGB", (w, h), rng.choice([(255, 255, 255), _colour(rng)]))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 25)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(-w // 2, w // 2), y0 + rng.randint(-h // 2, h // 2)
        box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        shape = rng.choice(["line", "ellipse", "rect", "polygon"])
        fill = _colour(rng) if rng.random() < 0.6 else None
        if shape == "line":
            draw.line(box, fill=_colour(rng), width=rng.randint(1, 12))
        elif shape == "ellipse":
            draw.ellipse(box, fill=fill, outline=_colour(rng), width=rng.randint(1, 6))
        elif shape == "rect":
            draw.rectangle(box, fill=fill, outline=_colour(rng), width=rng.randint(1, 6))
        else:
            pts = [(rng.randrange(w), rng.randrange(h)) for _ in range(rng.randint(3, 7))]
            draw.polygon(pts, fill=fill, outline=_colour(rng))
    return im


def render_texture(rng: random.Random) -> Image.Image:
    """Fractal (1/f-like) grey texture, sometimes tinted like sand or rock, with scattered pits and
    pebbles and uneven light: the grey, detailed, shapeless surfaces a gate must not call skin."""
    w, h = _size(rng)
    nprng = np.random.default_rng(rng.randrange(2**32))
    arr = np.zeros((h, w), np.float32)
    for octave in range(rng.randint(3, 6)):  # coarse to fine, each finer octave weaker
        cells = 2 ** (octave + rng.randint(1, 3))
        small = nprng.normal(0, 1, (max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))))
        layer = Image.fromarray(small.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BICUBIC)
        arr += np.asarray(layer) * rng.uniform(0.4, 0.7) ** octave
    arr = (arr - arr.mean()) / (arr.std() + 1e-6)
    arr = arr * rng.uniform(15, 45) + rng.uniform(70, 190)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.randint(0, 60)):  # pits and pebbles: small dark or bright soft discs
        cx, cy, r = rng.randrange(w), rng.randrange(h), rng.uniform(2, max(h, w) / 25)
        disc = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))
        arr += disc * rng.choice([-1, 1]) * rng.uniform(20, 80)
    gx, gy = rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15)  # light falling across the surface
    arr *= 1 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    tint = rng.choice([(1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (1.08, 1.0, 0.86), (1.0, 0.97, 0.93),
                       (0.95, 0.98, 1.04)])
    rgb = np.clip(arr[..., None] * np.array(tint, np.float32)[None, None], 0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


_RENDERERS: dict[str, Callable[[random.Random], Image.Image]] = {
    "text": render_text, "screenshot": render_screenshot, "flat_colour": render_flat_colour,
    "noise": render_noise, "drawing": render_drawing, "texture": render_texture,
}


GENERATOR_VERSION = "1"  # bump when a renderer changes: cached features are keyed by it


def render_negative(kind: str, seed: int, index: int) -> Image.Image:
    """The `index`-th generated negative of `kind` for `seed`: deterministic, so it can be redrawn."""
    return _RENDERERS[kind](random.Random(f"{seed}:{kind}:{index}"))


def negative_key(kind: str, seed: int, index: int) -> str:
    return f"generated/{kind}/s{seed}_{index}"


def perturb(image: Image.Image, name: str, rng: random.Random | None = None) -> Image.Image:
    """One named degradation at the benchmark's fixed strength (random parts drawn from `rng`).

    jpeg_q20: re-encode at JPEG quality 20; gaussian_noise: sigma 20/255; blur: Gaussian radius 3 px
    at 512 px scale; downscale_128: long side 128 px; rotate: 15-40 degrees either way (expand);
    partial_crop: a random crop keeping 40-60 % of each side.
    """
    rng = rng or random.Random(0)
    im = image.convert("RGB")
    if name == "jpeg_q20":
        return jpeg(im, 20)
    if name == "gaussian_noise":
        arr = np.asarray(im, dtype=np.float32)
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 20, arr.shape)
        return Image.fromarray(np.clip(arr + noise, 0, 255).astype(np.uint8))
    if name == "blur":
        return im.filter(ImageFilter.GaussianBlur(3 * max(im.size) / 512))
    if name == "downscale_128":
        scale = 128 / max(im.size)
        return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                         Image.Resampling.BILINEAR)
    if name == "rotate":
        angle = rng.uniform(15, 40) * rng.choice([-1, 1])
        return im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
    if name == "partial_crop":
        fw, fh = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
        cw, ch = max(1, int(im.width * fw)), max(1, int(im.height * fh))
        x, y = rng.randint(0, im.width - cw), rng.randint(0, im.height - ch)
        return im.crop((x, y, x + cw, y + ch))
    raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """A training-time view: one or two degradations at random strength (milder or different from
    the benchmark's fixed settings, so robustness numbers are not measured on training views)."""
    im = image.convert("RGB")
    for _ in range(rng.randint(1, 2)):
        op = rng.choice(["jpeg", "noise", "blur", "down", "rotate", "crop", "colour"])
        if op == "jpeg":
            im = jpeg(im, rng.randint(15, 60))
        elif op == "noise":
            arr = np.asarray(im, dtype=np.float32)
            sigma = rng.uniform(5, 25)
            arr = arr + np.random.default_rng(rng.randrange(2**32)).normal(0, sigma, arr.shape)
            im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        elif op == "blur":
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4) * max(im.size) / 512))
        elif op == "down":
            side = rng.randint(96, 200)
            scale = min(1.0, side / max(im.size))
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.BILINEAR)
        elif op == "rotate":
            im = im.rotate(rng.uniform(-45, 45), resample=Image.Resampling.BILINEAR, expand=True)
        elif op == "crop":
            fw, fh = rng.uniform(0.35, 0.8), rng.uniform(0.35, 0.8)
            cw, ch = max(1, int(im.width * fw)), max(1, int(im.height * fh))
            x, y = rng.randint(0, im.width - cw), rng.randint(0, im.height - ch)
            im = im.crop((x, y, x + cw, y + ch))
        else:
            arr = np.asarray(im, dtype=np.float32) * rng.uniform(0.5, 1.4) + rng.uniform(-30, 30)
            im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return im


def reframe(image: Image.Image, rng: random.Random) -> Image.Image:
    """A clean training view that keeps the subject: a mirror image half the time, then a crop keeping
    65-95 % of each side (a tighter or shifted framing), no degradation. Gives the scarce sources
    (boat-based photos, fin crops, shark fins, seals) more framings without label noise."""
    return _mirrored_crop(image, rng, 0.65, 0.95)


def _mirrored_crop(image: Image.Image, rng: random.Random, lo: float, hi: float) -> Image.Image:
    """A mirror image half the time, then a crop keeping `lo`-`hi` of each side."""
    im = image.convert("RGB")
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    fw, fh = rng.uniform(lo, hi), rng.uniform(lo, hi)
    cw, ch = max(1, int(im.width * fw)), max(1, int(im.height * fh))
    x, y = rng.randint(0, im.width - cw), rng.randint(0, im.height - ch)
    return im.crop((x, y, x + cw, y + ch))


def fin_view(image: Image.Image, rng: random.Random) -> Image.Image:
    """A training view for photos of another population or another camera: a tighter crop (40-90 %
    of each side, so a fin or back fills more of the frame), a small tilt (up to 15 degrees, as a
    rolling boat tilts the horizon), a new scale (long side 96-512 px), sometimes a mild blur, and
    another exposure and contrast (gamma 0.6-1.6). The subject stays recognisable: no label noise."""
    im = _mirrored_crop(image, rng, 0.4, 0.9)
    # the corners a tilt uncovers take the letterbox's colour, as padding does at serving time
    im = im.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR, fillcolor=LETTERBOX_FILL)
    scale = rng.randint(96, 512) / max(im.size)
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                   Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5) * max(im.size) / 512))
    arr = np.asarray(im, dtype=np.float32) / 255
    arr = arr ** rng.uniform(0.6, 1.6)
    arr = (arr - arr.mean()) * rng.uniform(0.7, 1.3) + arr.mean()
    return Image.fromarray(np.clip(arr * 255, 0, 255).astype(np.uint8))
