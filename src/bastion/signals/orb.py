"""ORB keypoints: Bastion's own image signal for the edited copies PDQ misses (captions, crops, borders, rotations,
phone screenshots, picture-in-picture).

PDQ hashes the whole picture, so anything that moves the frame (a 2 % crop, a border, a 2 degree rotation) or covers
part of it (a caption band) moves the hash past its threshold. Local features survive those edits: the corners and
textures of the picture itself are still there, at another place and scale. This signal is a set of ORB keypoints
(OpenCV: FAST corners over an 8-level pyramid, each with a rotation-invariant 256-bit binary descriptor) and their
positions. Two images match when enough descriptors are close *and* their positions agree on one similarity
transform (rotation, scale, shift) found by RANSAC; the number of agreeing keypoints (inliers) is the score and,
with the transform and the matched region, the evidence a reviewer sees. Measurements and the choice of method:
docs/robust_matching.md.

Design choices (each measured on real photos, bench/bench_robustness.py):

* The picture is scaled to a fixed *area* (512 x 384), not a fixed long side, so a tall phone screenshot keeps its
  embedded picture large enough to find the same corners.
* Keypoints are spread over an 8 x 8 grid (round-robin by cell, strongest first). Without it a caption or a
  screenshot's interface text takes every keypoint, and low-texture photos get none in their flat parts.
* The FAST threshold is low (5; 2 for very flat pictures) and the Harris response chooses: a higher threshold that
  dropped only when too few corners were found made bank and query disagree when a caption's letters supplied the
  corners the picture lacked (caption recall 90 % instead of 99 % on the bench's flatter tiles).
* The stored signal holds the first :data:`BANK_KEYPOINTS` (256) of the ordering; a submission is queried with
  :data:`QUERY_KEYPOINTS` (1000; kept in ``meta["_query"]``, never stored). The first 256 of that ordering are the
  same keypoints the bank side would store, so bank and query signals are computed by one function.

String form: ``orb1:`` + base64 of ``width, height, n`` (uint16 little-endian), ``n`` positions (x, y as uint16 in
1/32 pixel of the normalised image) and ``n`` descriptors of 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from bastion.content import Content, ContentType
from bastion.errors import InvalidSignal
from bastion.settings import get_settings
from bastion.signals.base import Signal, SignalType
from bastion.signals.media import image_errors, open_image

PREFIX = "orb1:"
#: the normalised image's area: 512 x 384 pixels (a 4:3 picture keeps those sides)
TARGET_AREA = 512 * 384
#: keypoints stored for a bank entry (and in every signal string)
BANK_KEYPOINTS = 256
#: keypoints a submission is queried with (1000: a picture filling a quarter of a screenshot still gets ~250)
QUERY_KEYPOINTS = 1000
#: fewer keypoints than this and the image is too flat to match by its corners (the signal is not usable)
MIN_KEYPOINTS = 64
#: the inliers a self-comparison needs at least; the distance is CAP - inliers (0 for 64 or more inliers)
DISTANCE_CAP = 64
GRID = 6
LEVELS = 8
FAST_THRESHOLDS = (5, 2)
POSITION_SCALE = 32  # positions are stored in 1/32 pixel
MAX_SIDE = 2047  # so a position fits a uint16 at that scale
MAX_UPSCALE = 3.0
_HEADER = struct.Struct("<HHH")


@dataclass(frozen=True)
class Keypoints:
    """Decoded keypoints: positions (n, 2) float32 in the normalised image, descriptors (n, 32) uint8."""

    width: int
    height: int
    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    def head(self, n: int) -> Keypoints:
        return Keypoints(self.width, self.height, self.points[:n], self.descriptors[:n])


def available() -> bool:
    """OpenCV (``opencv-python-headless``) is installed: without it the type is not registered."""
    return importlib.util.find_spec("cv2") is not None


@cache
def _cv2() -> Any:
    import cv2  # imported on first use: it adds ~0.2 s to every process start otherwise

    cv2.setNumThreads(1)  # one image per call; workers run in parallel already
    return cv2


# -- computing -------------------------------------------------------------------------------------------------------
def normalised_luma(img: Any) -> np.ndarray:
    """The image's luminance as uint8, scaled to :data:`TARGET_AREA` pixels (area averaging down, bilinear up to
    :data:`MAX_UPSCALE` times: a thumbnail's corners then sit at the pyramid levels where the bank's are)."""
    if img.mode != "L":
        img = img.convert("L")
    grey = np.asarray(img, np.uint8)
    h, w = grey.shape
    scale = min(MAX_UPSCALE, (TARGET_AREA / (w * h)) ** 0.5, MAX_SIDE / max(w, h))
    if abs(scale - 1.0) > 0.02:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        cv2 = _cv2()
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return np.ascontiguousarray(grey)


def detect(grey: np.ndarray, n: int = QUERY_KEYPOINTS) -> Keypoints:
    """Up to ``n`` ORB keypoints of a normalised luminance image, spread over the grid, strongest first per cell."""
    h, w = grey.shape
    found: list = []
    orb = None
    for threshold in FAST_THRESHOLDS:
        orb = _cv2().ORB_create(
            nfeatures=3 * n, scaleFactor=1.2, nlevels=LEVELS, edgeThreshold=15, patchSize=31, fastThreshold=threshold
        )
        found = list(orb.detect(grey, None))
        if len(found) >= min(n, BANK_KEYPOINTS):  # lower the bar only where even the bank's share is missing
            break
    if not found:
        return _empty(w, h)
    points = np.array([k.pt for k in found], np.float32)
    response = np.array([k.response for k in found], np.float32)
    level = np.array([k.octave for k in found], np.int64)
    # Stage 0: the strongest corners of each pyramid level, as many per level as ORB itself keeps for 3 x 256
    # keypoints; the bank's 256 are drawn from these only (weak corners in flat areas do not repeat). Stage 1: the
    # rest, which only the query side uses.
    stage = np.ones(len(found), np.int64)
    for lv, quota in enumerate(_level_quotas(3 * BANK_KEYPOINTS)):
        at = np.flatnonzero(level == lv)
        stage[at[np.argsort(-response[at], kind="stable")[:quota]]] = 0
    cell = np.minimum(points[:, 1] * GRID // h, GRID - 1) * GRID + np.minimum(points[:, 0] * GRID // w, GRID - 1)
    bucket = (stage * GRID * GRID + cell.astype(np.int64)) * LEVELS + level  # spread over the picture and scales
    by_bucket = np.lexsort((-response, bucket))  # each bucket's keypoints, strongest first
    sorted_buckets = bucket[by_bucket]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_buckets)) + 1]
    rank = np.empty(len(found), np.int64)
    rank[by_bucket] = np.arange(len(found)) - np.repeat(starts, np.diff(np.r_[starts, len(found)]))
    chosen = np.lexsort((-response, rank, stage))[:n]  # stage 0 first, round-robin over the buckets
    for order, i in enumerate(chosen.tolist()):
        found[i].class_id = order
    kept, descriptors = orb.compute(grey, [found[i] for i in chosen])
    if descriptors is None or not kept:
        return _empty(w, h)
    # ORB hands keypoints back grouped by pyramid level: restore our order (the bank's share is a prefix of it)
    back = np.argsort([k.class_id for k in kept], kind="stable")
    points = np.array([kept[i].pt for i in back], np.float32)
    return Keypoints(w, h, points, np.ascontiguousarray(descriptors[back], np.uint8))


@cache
def _level_quotas(total: int) -> list[int]:
    """Keypoints per pyramid level for ``total``, distributed the way OpenCV's ORB does (geometric in the scale)."""
    factor = 1 / 1.2
    first = total * (1 - factor) / (1 - factor**LEVELS)
    return [round(first * factor**lv) for lv in range(LEVELS)]


def _empty(w: int, h: int) -> Keypoints:
    return Keypoints(w, h, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))


def keypoints_of_image(img: Any, n: int = QUERY_KEYPOINTS) -> Keypoints:
    return detect(normalised_luma(img), n)


# -- the string form -------------------------------------------------------------------------------------------------
def encode(kp: Keypoints) -> str:
    fixed = np.clip(np.rint(kp.points * POSITION_SCALE), 0, 65535).astype("<u2")
    raw = _HEADER.pack(kp.width, kp.height, len(kp)) + fixed.tobytes() + kp.descriptors.tobytes()
    return PREFIX + base64.b64encode(raw).decode("ascii")


def decode(value: str) -> Keypoints:
    """Keypoints of a signal string; raises ``InvalidSignal`` saying what is wrong."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        raise InvalidSignal(f"an ORB signal starts with {PREFIX!r}, got {str(value)[:40]!r}", signal_type="orb")
    try:
        raw = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignal("an ORB signal's body is not base64", signal_type="orb") from None
    if len(raw) < _HEADER.size:
        raise InvalidSignal("an ORB signal is too short for its header", signal_type="orb")
    width, height, n = _HEADER.unpack_from(raw)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or not 0 < n <= QUERY_KEYPOINTS:
        raise InvalidSignal(f"an ORB signal declares {width}x{height} with {n} keypoints", signal_type="orb")
    if len(raw) != _HEADER.size + n * 36:
        raise InvalidSignal(f"an ORB signal of {n} keypoints is {_HEADER.size + n * 36} bytes, got {len(raw)}",
                            signal_type="orb")  # fmt: skip
    end = _HEADER.size + 4 * n
    points = np.frombuffer(raw, "<u2", 2 * n, _HEADER.size).reshape(n, 2).astype(np.float32) / POSITION_SCALE
    if (points[:, 0] > width).any() or (points[:, 1] > height).any():
        raise InvalidSignal("an ORB signal has a keypoint outside its image", signal_type="orb")
    descriptors = np.frombuffer(raw, np.uint8, 32 * n, end).reshape(n, 32)
    return Keypoints(width, height, points, descriptors)


# -- verification ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verified:
    """What geometric verification found: the evidence a match carries."""

    inliers: int
    scale: float  # bank picture size / submission picture size
    rotation: float  # degrees, counter-clockwise
    query_region: tuple[float, float, float, float]  # matched area in the submission, fractions (x0, y0, x1, y1)
    bank_region: tuple[float, float, float, float]

    def detail(self) -> dict:
        return {
            "inliers": self.inliers,
            "scale": round(self.scale, 3),
            "rotation_degrees": round(self.rotation, 1),
            "region": [round(v, 3) for v in self.query_region],
            "bank_region": [round(v, 3) for v in self.bank_region],
        }


#: RANSAC's reprojection tolerance, pixels of the normalised image
RANSAC_PIXELS = 6.0
#: transforms outside these bounds are refused as chance alignments (a rotation past 20 degrees or a 90 degree turn
#: is PDQ's job: its dihedral variants)
MIN_SCALE, MAX_SCALE, MAX_ROTATION = 0.2, 5.0, 20.0


def verify_pairs(query: Keypoints, bank: Keypoints, q_idx: np.ndarray, b_idx: np.ndarray) -> Verified | None:
    """Fit one similarity transform to candidate correspondences (query keypoint -> bank keypoint) with RANSAC."""
    if len(q_idx) < 4:
        return None
    src, dst = query.points[q_idx], bank.points[b_idx]
    cv2 = _cv2()
    transform, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS, maxIters=1000, confidence=0.995
    )
    if transform is None or mask is None:
        return None
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    rotation = float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0])))
    if not MIN_SCALE <= scale <= MAX_SCALE or abs(rotation) > MAX_ROTATION:
        return None
    inlier = mask.ravel().astype(bool)
    # count keypoints, not pairs: one corner matched many times is one piece of evidence
    n = min(len(np.unique(q_idx[inlier])), len(np.unique(b_idx[inlier])))
    if n == 0:
        return None
    return Verified(n, scale, -rotation, _region(src[inlier], query), _region(dst[inlier], bank))


def _region(points: np.ndarray, kp: Keypoints) -> tuple[float, float, float, float]:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return (float(x0 / kp.width), float(y0 / kp.height), float(x1 / kp.width), float(y1 / kp.height))


def nearest_pairs(query: Keypoints, bank: Keypoints, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """For each query keypoint, the nearest bank keypoint within ``radius`` bits (brute force: two signals)."""
    if not len(query) or not len(bank):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    q64 = query.descriptors.view(np.uint64)
    b64 = bank.descriptors.view(np.uint64)
    dist = np.bitwise_count(q64[:, None, :] ^ b64[None, :, :]).sum(axis=2, dtype=np.int32)
    best = dist.argmin(axis=1)
    ok = dist[np.arange(len(query)), best] <= radius
    return np.flatnonzero(ok), best[ok]


def compare(query: Keypoints, bank: Keypoints, radius: int | None = None) -> Verified | None:
    radius = get_settings().orb_descriptor_radius if radius is None else radius
    q_idx, b_idx = nearest_pairs(query, bank, radius)
    return verify_pairs(query, bank, q_idx, b_idx)


# -- the signal type -------------------------------------------------------------------------------------------------
class ORBSignal(SignalType):
    name = "orb"
    content_types = frozenset({ContentType.IMAGE})
    exact = False

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        img = open_image(content, draft=("L", 384))
        with image_errors():
            kp = keypoints_of_image(img, QUERY_KEYPOINTS)
        if not len(kp):
            return []
        bank = kp.head(BANK_KEYPOINTS)
        return [Signal(cls.name, encode(bank), len(bank), {"_query": kp})]

    @classmethod
    def validate(cls, value: str) -> str:
        kp = decode(value.strip() if isinstance(value, str) else value)
        return encode(kp)

    @classmethod
    def prepare(cls, value: str) -> Keypoints:
        return decode(value)

    @classmethod
    def distance_prepared(cls, a: Keypoints, b: Keypoints) -> float:
        one, other = compare(a, b), compare(b, a)
        inliers = min(one.inliers if one else 0, other.inliers if other else 0)
        return float(max(0, DISTANCE_CAP - inliers))

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        """``64 - inliers`` (at least 0) of the weaker direction: 0 for 64 or more geometrically verified keypoints."""
        return cls.distance_prepared(decode(a), decode(b))

    @classmethod
    def is_match(cls, distance: float) -> bool:
        return distance <= DISTANCE_CAP - get_settings().orb_min_inliers

    @classmethod
    def usable(cls, signal: Signal) -> bool:
        """Enough keypoints to match by (quality holds their number): flat pictures are left to PDQ."""
        return signal.quality is None or signal.quality >= MIN_KEYPOINTS

    @classmethod
    def examples(cls) -> list[str]:
        return [_example(seed) for seed in (1, 2)]

    @classmethod
    def invalid_examples(cls) -> list[str]:
        good = _example(1)
        return [
            "",
            "   ",
            "orb1:",
            "orb1:!!!!",
            "orb2:" + good[5:],
            good[:-8],
            "orb1:" + base64.b64encode(b"\0" * 6).decode(),
        ]


_EXAMPLES: dict[int, str] = {}


def _example(seed: int) -> str:
    """The signal of ``bastion.samples.generate_image(seed)`` (computed once: examples must not be kilobytes of
    literal text in the source)."""
    if seed not in _EXAMPLES:
        from bastion.samples import generate_image

        _EXAMPLES[seed] = encode(keypoints_of_image(generate_image(seed)).head(BANK_KEYPOINTS))
    return _EXAMPLES[seed]


SIGNAL_TYPE = ORBSignal
__all__ = ["ORBSignal", "SIGNAL_TYPE", "Keypoints", "Verified", "encode", "decode", "compare", "verify_pairs",
           "keypoints_of_image", "available"]  # fmt: skip
