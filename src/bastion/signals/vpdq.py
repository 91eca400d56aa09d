"""vPDQ: Meta's video hash, one PDQ hash per second of video, in the form ThreatExchange and HMA exchange.

Value (exactly what python-threatexchange's ``vpdq_to_json`` writes, so hashes round-trip with HMA): a JSON list of
``"<pdq hex>,<quality>,<timestamp>"`` strings, one per hashed frame, the timestamp in seconds written with Python's
``format(t, ".3")`` (three significant digits: ``"0.0"``, ``"12.0"``, ``"1.23e+03"``). Parsing accepts any float
spelling and upper-case hex; :meth:`VPDQSignal.validate` returns that canonical form.

Matching (vPDQ's brute-force semantics): drop repeated frame hashes (first one kept) and frames below the quality
threshold, then count the query frames within ``vpdq_frame_threshold`` bits of *any* frame of the other video and
vice versa. :func:`match_percent` returns both percentages; two videos match when either reaches
``vpdq_match_percent`` (80), as in python-threatexchange's ``compare_hash`` - a clip cut from a known video and a
known video inside a longer upload both match. ``distance`` is ``100 - max(query %, bank %)`` (symmetric).

Hashing: frames are chosen like Meta's hasher (frame number ``n`` is hashed when ``n % int(seconds_per_hash * fps)
== 0``; timestamp ``n / fps``), but the frame number comes from the packet timestamps, so we can avoid decoding
frames nobody needs: packets before a keyframe that precedes the next wanted frame are never decoded, and
non-reference frames (most B-frames) are skipped by the decoder (``skip_frame``). Wanted frames are decoded in full,
so their hashes do not change (a test compares with a plain full decode); the luminance plane is reduced to PDQ's
64x64 grid directly (see :mod:`bastion.signals.pdq`). For variable-frame-rate video the frame numbers come from
timestamps rather than a decode counter, so the chosen frames can differ slightly from Meta's hasher. An MP4 that
ends before the frames its index lists is ``corrupt_content``. The ``vpdq`` package (optional ``video`` extra) is
only the reference in tests and benchmarks.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from bastion.content import Content, ContentType
from bastion.errors import CorruptContent, InvalidSignal
from bastion.settings import get_settings
from bastion.signals.base import Signal, SignalType
from bastion.signals.media import check_complete, check_video_time, open_video
from bastion.signals.pdq import downsample64, hash_grid, image_luma

if TYPE_CHECKING:
    import av

_HEX = frozenset(string.hexdigits)
# 8-bit planar/semi-planar YUV: the first plane is the luminance
_YUV8 = frozenset({
    "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p", "yuv411p",
    "yuv410p", "nv12", "nv21", "nv16", "yuva420p",
})  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """One hashed frame: its PDQ hash (64 hex), PDQ quality (0-100) and time in seconds."""

    pdq: str
    quality: int
    timestamp: float

    def __str__(self) -> str:
        return f"{self.pdq},{self.quality},{self.timestamp:.3}"


# -- the exchange format -----------------------------------------------------------------------------------------
def parse(value: str) -> list[Frame]:
    """Frames of a vPDQ value (raises ``InvalidSignal`` saying what is wrong)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSignal("a vPDQ hash is a JSON list of 'hash,quality,timestamp' strings, got nothing")
    try:
        items = json.loads(value)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidSignal(f"a vPDQ hash must be JSON: {exc}", signal_type="vpdq") from None
    if not isinstance(items, list):
        raise InvalidSignal("a vPDQ hash is a JSON list of 'hash,quality,timestamp' strings", signal_type="vpdq")
    if not items:
        raise InvalidSignal("a vPDQ hash needs at least one frame", signal_type="vpdq")
    return [_parse_frame(i, item) for i, item in enumerate(items)]


def _parse_frame(i: int, item: object) -> Frame:
    def bad(why: str) -> InvalidSignal:
        return InvalidSignal(f"vPDQ frame {i} ({str(item)[:100]!r}): {why}", signal_type="vpdq")

    if not isinstance(item, str):
        raise bad("expected a 'hash,quality,timestamp' string")
    parts = item.split(",")
    if len(parts) != 3:
        raise bad("expected 3 comma-separated fields")
    pdq, quality_s, time_s = (p.strip() for p in parts)
    pdq = pdq.lower()
    if len(pdq) != 64 or not set(pdq) <= _HEX:
        raise bad("the PDQ hash must be 64 hexadecimal characters")
    try:
        quality = int(quality_s)
        timestamp = float(time_s)
    except ValueError:
        raise bad("quality must be an integer and timestamp a number") from None
    if not 0 <= quality <= 100:
        raise bad("quality must be between 0 and 100")
    if not math.isfinite(timestamp) or timestamp < 0:
        raise bad("the timestamp must be a non-negative number of seconds")
    return Frame(pdq, quality, timestamp)


def serialize(frames: Iterable[Frame]) -> str:
    """The canonical value: python-threatexchange's ``vpdq_to_json`` output, byte for byte."""
    return json.dumps([str(f) for f in frames])


# -- comparison --------------------------------------------------------------------------------------------------
def _prepare(frames: Sequence[Frame], min_quality: int) -> np.ndarray:
    """Deduplicated (first kept), quality-filtered hashes as an (n, 4) uint64 array."""
    seen: set[str] = set()
    kept = []
    for f in frames:
        if f.pdq not in seen:
            seen.add(f.pdq)
            if f.quality >= min_quality:
                kept.append(f.pdq)
    if not kept:
        return np.zeros((0, 4), np.uint64)
    return np.frombuffer(bytes.fromhex("".join(kept)), dtype=">u8").astype(np.uint64).reshape(-1, 4)


def match_percent(
    query_frames: Sequence[Frame],
    bank_frames: Sequence[Frame],
    threshold: int | None = None,
    *,
    min_quality: int | None = None,
) -> tuple[float, float]:
    """(percent of query frames matching some bank frame, percent of bank frames matching some query frame).

    Frames are deduplicated and those below ``min_quality`` (default ``settings.pdq_min_quality``) dropped first;
    two frames match within ``threshold`` bits (default ``settings.vpdq_frame_threshold``). An empty side gives 0.
    """
    settings = get_settings()
    threshold = settings.vpdq_frame_threshold if threshold is None else threshold
    min_quality = settings.pdq_min_quality if min_quality is None else min_quality
    q = _prepare(query_frames, min_quality)
    b = _prepare(bank_frames, min_quality)
    if not len(q) or not len(b):
        return 0.0, 0.0
    q_hit = np.zeros(len(q), bool)
    b_hit = np.zeros(len(b), bool)
    step = max(1, (1 << 20) // len(b))  # ~32 MB of XORs at a time
    for start in range(0, len(q), step):
        near = np.bitwise_count(q[start : start + step, None, :] ^ b[None, :, :]).sum(axis=2) <= threshold
        q_hit[start : start + step] = near.any(axis=1)
        b_hit |= near.any(axis=0)
    return float(q_hit.sum() * 100 / len(q)), float(b_hit.sum() * 100 / len(b))


# -- hashing -----------------------------------------------------------------------------------------------------
def hash_video(content: Content, seconds_per_hash: float | None = None) -> list[Frame]:
    """vPDQ frames of a video (see the module docstring for which frames and how)."""

    seconds_per_hash = seconds_per_hash or content.settings.vpdq_seconds_per_hash
    frames: list[Frame] = []
    with open_video(content) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        codec.thread_count = 1  # one core per video; run videos in parallel instead
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        if not rate or rate <= 0 or stream.time_base is None:
            raise CorruptContent("the video declares no frame rate or time base")
        fps = Fraction(rate)
        step = max(1, int(seconds_per_hash * float(fps)))
        to_index = Fraction(stream.time_base) * fps  # frame number = round((pts - start) * to_index)
        num, den = 2 * to_index.numerator, 2 * to_index.denominator
        start = stream.start_time or 0
        limit = content.settings.max_video_seconds
        max_index = int(limit * fps)

        def index(pts: int | None) -> int | None:
            return None if pts is None else ((pts - start) * num + den // 2) // den

        target = 0  # number of the next frame to hash
        last = -1  # number of the last frame out of the decoder
        decoding = True  # False: holding packets back until we know the next wanted frame needs them
        pending: list[tuple[av.Packet, int | None]] = []
        skip = ""

        def send(packet: av.Packet | None, i: int | None) -> None:
            nonlocal target, last, decoding, skip
            # any frame but the wanted one: let the decoder drop it if no other frame refers to it
            want = "NONREF" if i is not None and i != target else "DEFAULT"
            if want is not skip:
                codec.skip_frame = skip = want
            for frame in codec.decode(packet):
                n = index(frame.pts)
                last = n = last + 1 if n is None or n <= last else n
                if n >= target:
                    frames.append(_hash_frame(frame, n, fps))
                    target = (n // step + 1) * step
                    decoding = False

        packets = 0
        for packet in container.demux(stream):
            if not packet.size:
                continue
            packets += 1
            i = index(packet.pts)
            if i is not None and i > max_index:
                check_video_time(float(i / fps), content)
            if decoding:
                send(packet, i)
                continue
            if packet.is_keyframe and i is not None and 0 <= i <= target:
                pending.clear()  # decoding can restart here: nothing before a keyframe is needed
            pending.append((packet, i))
            if i is None or i >= target or len(pending) > 2 * step + 64:  # the last: nonsense timestamps
                decoding = True
                batch, pending = pending, []
                for p, j in batch:
                    send(p, j)
        send(None, None)
        check_complete(stream, packets)
    if not frames:
        raise CorruptContent("the video has no decodable frames")
    return frames


def _hash_frame(frame: av.VideoFrame, number: int, fps: Fraction) -> Frame:
    fmt = frame.format.name
    if fmt in _YUV8:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
        grid = downsample64(y)
        if not (fmt.startswith("yuvj") or frame.color_range == 2):  # limited range 16-235, as FFmpeg's RGB would
            grid = (grid - 16.0) * (255.0 / 219.0)
    else:
        grid = downsample64(image_luma(frame.to_image()))
    pdq, quality, _ = hash_grid(grid, dihedral=False)
    return Frame(pdq, quality, float(number / fps))


class VPDQSignal(SignalType):
    name = "vpdq"
    content_types = frozenset({ContentType.VIDEO})
    exact = False

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        frames = hash_video(content)
        usable = sum(f.quality >= content.settings.pdq_min_quality for f in frames)
        return [Signal(cls.name, serialize(frames), None, {"frames": len(frames), "usable_frames": usable})]

    @classmethod
    def validate(cls, value: str) -> str:
        return serialize(parse(value))

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        query_pct, bank_pct = match_percent(parse(a), parse(b))
        return 100.0 - max(query_pct, bank_pct)

    @classmethod
    def is_match(cls, distance: float) -> bool:
        return distance <= 100.0 - get_settings().vpdq_match_percent + 1e-9

    @classmethod
    def usable(cls, signal: Signal) -> bool:
        min_quality = get_settings().pdq_min_quality
        return any(f.quality >= min_quality for f in parse(signal.value))

    @classmethod
    def examples(cls) -> list[str]:
        return [
            # python-threatexchange's own example shape: PDQ example hashes one second apart
            serialize([
                Frame("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22", 100, 0.0),
                Frame("e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064", 100, 1.0),
                Frame("6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d", 100, 2.0),
            ]),
            serialize([Frame("e6720d8c71e186632c9cd9d18d2f32e647c3fdb9f10c05631ff3fd4240d4266a", 87, 0.0)]),
        ]  # fmt: skip

    @classmethod
    def invalid_examples(cls) -> list[str]:
        h = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
        return [
            "", "   ", "[]", "{}", "not json", '["' + h + '"]', '["' + h + ',100"]', '["' + h[:-1] + ',100,0.0"]',
            '["' + h + ',101,0.0"]', '["' + h + ',100,-1"]', '["' + h + ',high,0.0"]', '["' + h + ',100,nan"]', "[1]",
        ]  # fmt: skip


SIGNAL_TYPE = VPDQSignal
__all__ = ["VPDQSignal", "SIGNAL_TYPE", "Frame", "parse", "serialize", "match_percent", "hash_video"]
