"""Benign sample media, generated: the stand-in for "known content" in the demo, tests and benchmarks.

Bastion never ships real terrorist material. Banks in tests and the demo hold these generated pictures, videos
and texts instead; they are deterministic (same seed, same bytes) and free of any licence (CC0, made here).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps


def generate_image(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """A deterministic, photo-like RGB picture: smooth colour fields, shapes and texture (PDQ quality ~100)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx /= width
    yy /= height
    base = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        field = np.zeros((height, width), np.float32)
        for _ in range(4):
            fx, fy = rng.uniform(0.5, 4.0, 2)
            ph = rng.uniform(0, 2 * np.pi)
            field += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        base[..., c] = 128 + 45 * field / 2
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.1, 0.9, 2) * (width, height)
        w, h = rng.uniform(0.08, 0.45, 2) * (width, height)
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        elif shape == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            pts = [tuple(p) for p in (rng.uniform(0, 1, (int(rng.integers(3, 6)), 2)) * (width, height))]
            draw.polygon(pts, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(1.0, width / 400)))
    noise = rng.normal(0, 6, (height, width, 3))
    arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        kwargs.setdefault("quality", 90)
        img = img.convert("RGB")
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def altered_copies(img: Image.Image, seed: int = 0) -> Iterator[tuple[str, Image.Image]]:
    """The everyday alterations re-uploads go through, each still a PDQ match of the original."""
    w, h = img.size
    yield "resized", img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BILINEAR)
    yield "recompressed", Image.open(io.BytesIO(encode(img, quality=55)))
    yield "mirrored", ImageOps.mirror(img)
    yield "rotated90", img.rotate(90, expand=True)
    yield "brighter", Image.eval(img, lambda v: min(255, int(v * 1.1) + 8))
    yield "greyscale", ImageOps.grayscale(img).convert("RGB")


def sample_texts() -> list[str]:
    """Benign paragraphs used as "known" texts in tests and the demo."""
    return [
        "The committee met on Tuesday to review the harbour's winter schedule. Ferries to the northern islands "
        "will run twice a day until March, weather permitting, and the evening crossing moves to half past six.",
        "Preheat the oven to two hundred degrees. Whisk the eggs with the sugar until pale, fold in the flour "
        "and the melted butter, then bake the sponge for twenty minutes until a skewer comes out clean.",
        "Volunteers planted four hundred oak saplings along the river path this weekend. The council thanked "
        "the local schools, whose pupils raised the money for the trees over the summer term.",
    ]


def generate_video(
    path: str | os.PathLike[str],
    seconds: float = 4.0,
    fps: int = 30,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    *,
    codec: str | None = None,
    scene_seconds: float = 2.0,
    options: dict[str, str] | None = None,
) -> str:
    """Write a deterministic, benign MP4 and return the codec used (libx264 when PyAV has it, else mpeg4).

    The video is a sequence of generated pictures (a new one every ``scene_seconds``), each slowly panned across,
    so that one frame a second looks different from the next, like real footage. Sizes must be even.
    """
    import av

    width, height = size
    if width % 2 or height % 2:
        raise ValueError("video sizes must be even")
    codec = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    frames = max(1, round(seconds * fps))
    per_scene = max(1, round(scene_seconds * fps))
    pan = max(2, width // 3)
    with av.open(os.fspath(path), "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        opts = {"preset": "veryfast"} if codec == "libx264" else {}
        if codec == "mpeg4":
            stream.bit_rate = 8 * width * height  # about 0.3 bits a pixel a frame at 30 fps: clean enough
        opts.update(options or {})
        stream.options = opts
        base = None
        for i in range(frames):
            scene, t = divmod(i, per_scene)
            if t == 0 or base is None:
                base = np.asarray(generate_image(seed * 10_007 + scene, width + pan, height + pan // 2))
            x = round(pan * t / per_scene)
            y = round(pan // 2 * t / per_scene)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[y : y + height, x : x + width]), "rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return codec
