"""PDQ: Meta's perceptual hash for photos, the image hash GIFCT, ThreatExchange and Tech Against Terrorism share.

A PDQ hash is 256 bits written as 64 lower-case hex characters, with a quality from 0 to 100. Two hashes match
when their Hamming distance is at most ``settings.pdq_match_threshold`` (31); hashes of quality below
``settings.pdq_min_quality`` (50) are computed but not :meth:`~PDQSignal.usable`.

Interoperability: PDQ blurs the luminance with two passes of box ("Jarosz") filters, samples a 64x64 grid, and
hashes the signs of 16x16 DCT coefficients against their median. We compute that 64x64 grid ourselves, with the
reference's exact filter weights, from a smaller decode of the image (JPEGs decode at 1/2 to 1/8 scale in the DCT
domain, other formats are box-reduced; never below 256 pixels a side), then hand the grid to the ``pdqhash``
package (Meta's C++ code) for the DCT, bits, quality and the 8 rotations/mirrors. Hashes stay within a few bits of
``pdqhash`` on the full decode (tests check 10 bits at quality >= 80) while a 1024x768 JPEG hashes 6-9x faster
(bench/bench_hashing.py).

EXIF orientation is deliberately **not** applied: Meta's reference hashes the stored pixels, and so do the hashes
in every exchange; a copy whose EXIF says "rotate" still matches through the dihedral variants (``meta["_variants"]``,
which the matcher queries when ``settings.pdq_match_dihedral`` is on). Alpha is dropped (as the reference and
``pdqhash`` do); 16-bit samples are scaled to 8 bits; animated images hash their first frame.
"""

from __future__ import annotations

import string
from functools import lru_cache

import numpy as np
import pdqhash
from PIL import Image

from bastion.content import Content, ContentType
from bastion.errors import InvalidSignal
from bastion.settings import get_settings
from bastion.signals.base import Signal, SignalType
from bastion.signals.media import SOURCE_SIZE, image_errors, open_image

#: the smallest side a reduced decode may go down to. PDQ samples a 64x64 grid; 256 keeps even sharp-edged images
#: within ~6 bits of the full decode (128 was measured at up to 10), and a 1024x768 JPEG decodes at 1/2 scale.
MIN_SIDE = 256
#: pdqhash.compute_dihedral's output order, named after the PIL transpose that, applied to the image, gives the hash
#: (checked by tests): "rotate90" is counter-clockwise like ``Image.Transpose.ROTATE_90``.
DIHEDRAL_NAMES = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flip_top_bottom",
    "flip_left_right",
    "transpose",
    "transverse",
)
_HEX = frozenset(string.hexdigits)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@lru_cache(maxsize=256)
def _axis_kernel(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PDQ's 1-D downsampling of a length-``n`` axis to 64 samples, applied to that axis reduced ``k`` times.

    PDQ runs a box filter of width ``w = ceil(n / 128)`` twice (its off-centre window and shrinking edges included)
    and then takes sample ``int((i + 0.5) * n / 64)``: a linear map with ~2w non-zero weights per sample. Reduced
    pixel ``q`` stands for source pixels ``q*k .. q*k+k-1``, so its weight is the sum of theirs. Returns gather
    indices and weights, both (64, L), over the reduced axis of length ``ceil(n / k)``.
    """
    w = (n + 127) // 128
    half = (w + 2) // 2

    def lo(i: int) -> int:
        return max(0, i - (w - half))

    def hi(i: int) -> int:
        return min(n - 1, i + half - 1)

    rows = []
    for r in range(64):
        s = int((r + 0.5) * n / 64)
        a, b = lo(s), hi(s)
        start, end = lo(a), hi(b)
        weights = np.zeros(end - start + 1)
        for j in range(a, b + 1):
            weights[lo(j) - start : hi(j) - start + 1] += 1.0 / ((b - a + 1) * (hi(j) - lo(j) + 1))
        q0 = start // k
        rows.append((q0, np.bincount(np.arange(start, end + 1) // k - q0, weights=weights)))
    length = max(len(wts) for _, wts in rows)
    m = -(-n // k)
    index = np.array([q0 + np.arange(length) for q0, _ in rows]).clip(max=m - 1)
    weights = np.zeros((64, length), np.float32)
    for r, (_, wts) in enumerate(rows):
        weights[r, : len(wts)] = wts
    index.flags.writeable = weights.flags.writeable = False
    return index, weights


def downsample64(luma: np.ndarray, source_size: tuple[int, int] | None = None, scale: int = 1) -> np.ndarray:
    """The 64x64 grid PDQ would compute from the full-size image, from ``luma`` (that image reduced ``scale``x).

    ``luma`` is float32 (rows, cols) in 0..255; ``source_size`` is the full image's (width, height).
    """
    width, height = source_size or (luma.shape[1], luma.shape[0])
    row_index, row_weights = _axis_kernel(height, scale)
    col_index, col_weights = _axis_kernel(width, scale)
    rows = np.einsum("rl,rlc->rc", row_weights, luma[row_index])
    return np.einsum("cl,rcl->rc", col_weights, rows[:, col_index])


def hash_grid(grid: np.ndarray, *, dihedral: bool = True) -> tuple[str, int, dict[str, str]]:
    """PDQ hash, quality and the 8 dihedral variants (empty unless ``dihedral``) of a 64x64 luminance grid.

    The DCT, median and bits are Meta's C++ code (``pdqhash``); a 64x64 input passes its blur and sampling unchanged.
    """
    grid8 = np.repeat(np.clip(np.rint(grid), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    if not dihedral:
        vector, quality = pdqhash.compute(grid8)
        return _hex(vector), int(quality), {}
    vectors, quality = pdqhash.compute_dihedral(grid8)
    hexes = [_hex(v) for v in vectors]
    return hexes[0], int(quality), dict(zip(DIHEDRAL_NAMES, hexes, strict=True))


def _hex(bits: np.ndarray) -> str:
    # pdqhash lists bit 255 first, the order of the reference's hex form (word 15 first)
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def image_luma(img: Image.Image) -> np.ndarray:
    """The image's luminance as float32 in 0..255 (0.299 R + 0.587 G + 0.114 B, like the reference)."""
    mode = img.mode
    if mode == "L":
        return np.asarray(img, np.float32)
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, np.float32)
        if mode != "F" or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit range to 8-bit
        return np.clip(arr, 0, 255)
    if mode != "RGB":
        img = img.convert("RGB")  # palette, alpha, CMYK, YCbCr, 1-bit: drop alpha like the reference
    return np.asarray(img, np.float32) @ _LUMA


def hash_image(img: Image.Image) -> tuple[str, int, dict[str, str]]:
    """PDQ of a decoded (possibly JPEG-drafted, see ``open_image``) image: hash, quality, dihedral variants."""
    source = img.info.get(SOURCE_SIZE, img.size)
    width, height = source
    scale = next((k for k in (1, 2, 4, 8) if -(-width // k) == img.width and -(-height // k) == img.height), None)
    if scale is None:  # resized by someone else: hash what we have
        source, scale = img.size, 1
    if scale == 1 and img.mode in ("L", "RGB", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):
        while scale < 8 and min(width, height) // (scale * 2) >= MIN_SIDE:
            scale *= 2
        if scale > 1:
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            img = img.reduce(scale)
    return hash_grid(downsample64(image_luma(img), source, scale))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


class PDQSignal(SignalType):
    name = "pdq"
    content_types = frozenset({ContentType.IMAGE})
    exact = False

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        img = open_image(content, draft=("L", MIN_SIDE))
        with image_errors():
            value, quality, variants = hash_image(img)
        return [Signal(cls.name, value, quality, {"_variants": variants})]

    @classmethod
    def validate(cls, value: str) -> str:
        v = value.strip().lower() if isinstance(value, str) else ""
        if len(v) != 64 or not set(v) <= _HEX:
            raise InvalidSignal(f"a PDQ hash is 64 hexadecimal characters, got {value!r:.80}", signal_type=cls.name)
        return v

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        return float(hamming(a, b))

    @classmethod
    def is_match(cls, distance: float) -> bool:
        return distance <= get_settings().pdq_match_threshold

    @classmethod
    def usable(cls, signal: Signal) -> bool:
        return signal.quality is None or signal.quality >= get_settings().pdq_min_quality

    @classmethod
    def examples(cls) -> list[str]:
        return [
            # Meta's pdq/data/bridge-mods reference image, as published in python-threatexchange
            "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
            # bastion.samples.generate_image(1) and (2), 640x480 PNG
            "e6720d8c71e186632c9cd9d18d2f32e647c3fdb9f10c05631ff3fd4240d4266a",
            "f2bd266606d80c86c182d197723d16579ee6dfcaf39b74321036d196e3072d69",
        ]

    @classmethod
    def invalid_examples(cls) -> list[str]:
        return [
            "",
            "   ",
            "xyz",
            "0" * 63,
            "0" * 65,
            "g" * 64,
            "f8f8f0cee0f4a84f 6370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
        ]


SIGNAL_TYPE = PDQSignal
__all__ = ["PDQSignal", "SIGNAL_TYPE", "hash_image", "hash_grid", "downsample64", "hamming", "DIHEDRAL_NAMES"]
