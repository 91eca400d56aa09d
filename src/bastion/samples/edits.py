"""The edits re-shared images go through and PDQ does not survive, as deterministic benign generators.

Used by the robust image signal's tests and by ``bench/bench_robustness.py``: each family takes an image and a
random generator and returns the edited copy, drawn from the ranges the robustness target names (captions and logos
over 5-25 % of the picture, crops of 5-15 % a side, borders and meme padding of 5-30 %, rotations of 3-10 degrees,
a screenshot inside a phone's social-media frame, picture-in-picture, re-encodes and resizes). Nothing here depicts
anything: captions are random words, the phone frame is grey boxes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]

_WORDS = ("the", "a", "new", "old", "blue", "red", "river", "city", "night", "day", "north", "south", "village",
          "morning", "market", "bridge", "road")  # fmt: skip


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(str(rng.choice(_WORDS)) for _ in range(n)).upper()


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def caption(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A caption band (top or bottom) or an opaque logo box, covering 5-25 % of the picture."""
    img = img.convert("RGB").copy()
    w, h = img.size
    share = rng.uniform(0.05, 0.25)
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # a caption band across the width
        band = max(1, int(h * share))
        y0 = 0 if rng.random() < 0.5 else h - band
        draw.rectangle([0, y0, w, y0 + band], fill=_colour(rng))
        font = ImageFont.load_default(size=max(8, int(band * 0.5)))
        draw.text((w * 0.03, y0 + band * 0.2), _text(rng, 4), fill=_colour(rng), font=font)
    else:  # a logo: a box with a mark and a name, anywhere
        side_w = int(w * np.sqrt(share) * rng.uniform(0.8, 1.25))
        side_h = max(1, min(h, int(w * h * share / max(side_w, 1))))
        side_w = min(w, side_w)
        x0, y0 = int(rng.integers(0, w - side_w + 1)), int(rng.integers(0, h - side_h + 1))
        draw.rectangle([x0, y0, x0 + side_w, y0 + side_h], fill=_colour(rng))
        r = min(side_w, side_h) // 3
        draw.ellipse([x0 + r // 2, y0 + r // 2, x0 + r // 2 + r, y0 + r // 2 + r], fill=_colour(rng))
        font = ImageFont.load_default(size=max(8, side_h // 4))
        draw.text((x0 + 2 * r, y0 + side_h // 3), _text(rng, 1), fill=_colour(rng), font=font)
    return _jpeg(img, 85)


def crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """5-15 % cut from each side, independently."""
    w, h = img.size
    left, top, right, bottom = rng.uniform(0.05, 0.15, 4)
    box = (int(w * left), int(h * top), int(w * (1 - right)), int(h * (1 - bottom)))
    return _jpeg(img.convert("RGB").crop(box), 85)


def border(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A plain border, or meme padding (a white band with text above and/or below), adding 5-30 %."""
    img = img.convert("RGB")
    w, h = img.size
    share = rng.uniform(0.05, 0.30)
    if rng.random() < 0.5:  # a border on every side
        pad = int(round(min(w, h) * share / 2))
        out = Image.new("RGB", (w + 2 * pad, h + 2 * pad), _colour(rng))
        out.paste(img, (pad, pad))
    else:  # meme padding: text bands
        extra = int(h * share)
        top = extra if rng.random() < 0.4 else (0 if rng.random() < 0.5 else extra // 2)
        bottom = extra - top
        out = Image.new("RGB", (w, h + extra), (255, 255, 255))
        out.paste(img, (0, top))
        draw = ImageDraw.Draw(out)
        for y0, band in ((0, top), (top + h, bottom)):
            if band > 8:
                font = ImageFont.load_default(size=max(8, int(band * 0.45)))
                draw.text((w * 0.04, y0 + band * 0.2), _text(rng, 4), fill=(0, 0, 0), font=font)
    return _jpeg(out, 85)


def rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotated 3-10 degrees either way; the corners filled (expanded) or cut off (same size)."""
    angle = float(rng.uniform(3, 10) * rng.choice([-1, 1]))
    expand = bool(rng.random() < 0.5)
    out = img.convert("RGB").rotate(angle, Image.Resampling.BILINEAR, expand=expand, fillcolor=_colour(rng))
    return _jpeg(out, 85)


def phone_screenshot(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The picture as a post in a phone app: status bar, header with avatar and name, actions, text, at phone size."""
    img = img.convert("RGB")
    sw = int(rng.choice([720, 828, 1080]))
    sh = int(sw * rng.uniform(2.0, 2.17))
    dark = rng.random() < 0.5
    bg, fg = ((16, 16, 16), (230, 230, 230)) if dark else ((255, 255, 255), (20, 20, 20))
    out = Image.new("RGB", (sw, sh), bg)
    draw = ImageDraw.Draw(out)
    u = sw // 30
    font = ImageFont.load_default(size=int(u * 1.2))
    draw.text((u, u // 2), "9:41", fill=fg, font=font)
    draw.rectangle([sw - 4 * u, u // 2, sw - u, int(u * 1.5)], outline=fg)
    y = 3 * u
    draw.ellipse([u, y, 4 * u, y + 3 * u], fill=_colour(rng))
    draw.text((5 * u, y + u // 2), _text(rng, 2).lower(), fill=fg, font=font)
    y += 4 * u
    margin = int(rng.choice([0, u]))
    pw = sw - 2 * margin
    ph = int(img.height * pw / img.width)
    ph = min(ph, sh - y - 10 * u)
    pw = int(img.width * ph / img.height)
    out.paste(img.resize((pw, ph), Image.Resampling.BILINEAR), ((sw - pw) // 2, y))
    y += ph + u
    for i in range(4):
        draw.ellipse([u + i * 4 * u, y, 3 * u + i * 4 * u, y + 2 * u], outline=fg, width=3)
    y += 3 * u
    for _ in range(3):
        draw.text((u, y), _text(rng, 5).lower(), fill=fg, font=font)
        y += 2 * u
    draw.rectangle([0, sh - 4 * u, sw, sh], fill=(40, 40, 40) if dark else (235, 235, 235))
    return _jpeg(out, int(rng.integers(75, 92)))


def picture_in_picture(
    img: Image.Image, rng: np.random.Generator, background: Image.Image | None = None
) -> Image.Image:
    """The picture as an inset (40-60 % of the width) over another picture, in a corner."""
    img = img.convert("RGB")
    if background is None:
        background = Image.new("RGB", img.size, _colour(rng))
    bg = background.convert("RGB").resize((1280, 720), Image.Resampling.BILINEAR)
    iw = int(1280 * rng.uniform(0.40, 0.60))
    ih = min(700, int(img.height * iw / img.width))
    iw = int(img.width * ih / img.height)
    inset = img.resize((iw, ih), Image.Resampling.BILINEAR)
    frame = 4
    x = int(rng.choice([20, 1280 - iw - 20]))
    y = int(rng.choice([10, 720 - ih - 10]))
    draw = ImageDraw.Draw(bg)
    draw.rectangle([x - frame, y - frame, x + iw + frame, y + ih + frame], fill=(255, 255, 255))
    bg.paste(inset, (x, y))
    return _jpeg(bg, 85)


def reencode_resize(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Resized to 30-80 % and re-encoded as JPEG at quality 30-70."""
    img = img.convert("RGB")
    f = rng.uniform(0.3, 0.8)
    small = img.resize((max(16, int(img.width * f)), max(16, int(img.height * f))), Image.Resampling.BILINEAR)
    return _jpeg(small, int(rng.integers(30, 71)))


#: every family, by the name the bench tables and tests use
FAMILIES: dict[str, Edit] = {
    "caption": caption,
    "crop": crop,
    "border": border,
    "rotate": rotate,
    "phone_screenshot": phone_screenshot,
    "picture_in_picture": picture_in_picture,
    "reencode_resize": reencode_resize,
}

__all__ = ["FAMILIES", "Edit", *FAMILIES]
