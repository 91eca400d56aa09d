"""TMK+PDQF: Meta's temporal-match-kernel video hash, for videos re-encoded, resized or cut at other points.

How Meta's hasher works (ThreatExchange tmk/cpp, wrapped by the ``tmkpy`` package): it pipes the video through
the ``ffmpeg`` command-line tool (``-s 64:64 -pix_fmt rgb24 -r 15``), computes PDQF (PDQ's 16x16 float DCT
output, 256 floats) for every 64x64 frame of that 15 fps stream, and folds the frame features into a fixed-size
signature: for 4 periods x 32 Fourier coefficients, cosine and sine sums of the features, plus their plain
average. That is 65 792 floats, whatever the length of the video.

We do the same without a subprocess: PyAV decodes (with the checks of :mod:`bastion.signals.media`), FFmpeg's own
``fps=15`` and ``scale=64:64`` filters resample, ``pdqhash`` computes PDQF, and ``tmkpy`` does the TMK arithmetic
(``ingestFrameFeature``) and the level-2 score. So only the ``tmkpy`` extension is needed, not the ``ffmpeg``
binary; tests compare against ``tmkpy.hashVideo`` with the binary when it is installed (scores above 0.99).

Value: the standard base64 of the ``.tmk`` file TMK's tools write (header ``TMK1 FVEC PDQF``, then periods,
Fourier coefficients, average, cosine and sine features, little-endian): ~263 KB raw, ~351 KB as text - the size
is inherent to TMK. Comparison follows TMK's two levels: level 1 is the cosine of the average features, level 2
the temporal-kernel score (0..1); both must reach :data:`MATCH_SCORE` (0.7, TMK's documented default), and
``distance`` is ``1 - min(level1, level2)`` (level 2 is only computed when level 1 passes).

``available()`` is False (and the type is not registered) when ``tmkpy`` cannot be imported.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

import numpy as np
import pdqhash

from bastion.content import Content, ContentType
from bastion.errors import CorruptContent, InvalidSignal, UnsupportedContent
from bastion.signals.base import Signal, SignalType
from bastion.signals.media import check_complete, check_video_time, open_video

try:
    import tmkpy
except ImportError:  # optional: pip install tmkpy (needs swig to build)
    tmkpy = None

#: TMK's default level-1 and level-2 thresholds (tmk/cpp README: "0.7 is a good threshold")
MATCH_SCORE = 0.7
FPS = 15
SIDE = 64
_HEADER = struct.Struct("<4s4s4s5i")
_MAX_PERIODS, _MAX_COEFFICIENTS, _DIMENSION = 64, 1024, 256


def available() -> bool:
    return tmkpy is not None


@dataclass(frozen=True)
class TMKSignature:
    """A parsed ``.tmk`` feature-vector file."""

    fps: int
    frame_count: int
    periods: np.ndarray  # int32 (P,)
    coefficients: np.ndarray  # float32 (m,)
    average: np.ndarray  # float32 (d,)
    cos: np.ndarray  # float32 (P, m, d)
    sin: np.ndarray  # float32 (P, m, d)

    def to_bytes(self) -> bytes:
        p, m = len(self.periods), len(self.coefficients)
        header = _HEADER.pack(b"TMK1", b"FVEC", b"PDQF", self.fps, p, m, len(self.average), self.frame_count)
        arrays = (self.periods.astype("<i4"), self.coefficients, self.average, self.cos, self.sin)
        return header + b"".join(
            np.ascontiguousarray(a, dtype="<i4" if a.dtype.kind == "i" else "<f4").tobytes() for a in arrays
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> TMKSignature:
        def bad(why: str) -> InvalidSignal:
            return InvalidSignal(f"not a TMK+PDQF signature: {why}", signal_type="tmk")

        if len(raw) < _HEADER.size:
            raise bad("too short")
        project, filetype, algorithm, fps, p, m, d, count = _HEADER.unpack_from(raw)
        if (project, filetype, algorithm) != (b"TMK1", b"FVEC", b"PDQF"):
            raise bad(f"the header says {project!r} {filetype!r} {algorithm!r}, expected TMK1 FVEC PDQF")
        if not (
            0 < fps <= 1000 and 0 < p <= _MAX_PERIODS and 0 < m <= _MAX_COEFFICIENTS and d == _DIMENSION and count >= 0
        ):
            raise bad(f"implausible sizes (fps {fps}, periods {p}, coefficients {m}, dimension {d}, frames {count})")
        expected = _HEADER.size + 4 * (p + m + d + 2 * p * m * d)
        if len(raw) != expected:
            raise bad(f"{len(raw)} bytes, expected {expected} for its sizes")
        floats = np.frombuffer(raw, "<f4", offset=_HEADER.size + 4 * p)
        if not np.isfinite(floats).all():
            raise bad("it holds NaN or infinite values")
        periods = np.frombuffer(raw, "<i4", count=p, offset=_HEADER.size)
        if (periods <= 0).any():
            raise bad("periods must be positive")
        cos_end = m + d + p * m * d
        return cls(
            fps,
            count,
            periods.astype(np.int32),
            floats[:m],
            floats[m : m + d],
            floats[m + d : cos_end].reshape(p, m, d),
            floats[cos_end:].reshape(p, m, d),
        )

    def to_tmkpy(self):
        return tmkpy.createTMKFeatureVectors(
            self.fps,
            self.frame_count,
            self.periods.tolist(),
            self.coefficients.tolist(),
            self.average.tolist(),
            self.cos.tolist(),
            self.sin.tolist(),
        )


def hash_video(content: Content) -> TMKSignature:
    """TMK+PDQF signature of a video (see the module docstring)."""
    import av

    if tmkpy is None:
        raise UnsupportedContent("TMK needs the tmkpy package", code="tmk_unavailable")
    tmk = tmkpy.TMKFeatureVectors
    vectors = tmk(
        tmkpy.TMKFramewiseAlgorithm_PDQ_FLOAT,
        FPS,
        tmk.makePoullotPeriods(),
        tmk.makePoullotFourierCoefficients(),
        _DIMENSION,
    )
    count = 0
    limit = content.settings.max_video_seconds
    with open_video(content) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        graph = av.filter.Graph()
        chain = [
            graph.add_buffer(template=stream),
            graph.add("fps", str(FPS)),
            graph.add("scale", f"{SIDE}:{SIDE}:flags=bicubic"),
            graph.add("format", "rgb24"),
            graph.add("buffersink"),
        ]
        for a, b in zip(chain, chain[1:], strict=False):
            a.link_to(b)
        graph.configure()

        def drain() -> None:
            nonlocal count
            while True:
                try:
                    frame = chain[-1].pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                features, _ = pdqhash.compute_float(frame.to_ndarray())
                vectors.ingestFrameFeature(features[::-1].tolist(), count)  # pdqhash lists them reversed
                count += 1

        packets = 0
        for packet in container.demux(stream):
            packets += packet.size > 0
            for frame in packet.decode():
                if frame.time is not None and frame.time > limit:
                    check_video_time(frame.time, content)
                chain[0].push(frame)
                drain()
        chain[0].push(None)
        drain()
        check_complete(stream, packets)
    if not count:
        raise CorruptContent("the video has no decodable frames")
    vectors.finishFrameFeatureIngest()
    return TMKSignature(
        FPS,
        count,
        np.array(vectors.getPeriods(), np.int32),
        np.array(vectors.getFourierCoefficients(), np.float32),
        np.array(vectors.getPureAverageFeature(), np.float32),
        np.array(vectors.getCosFeatures(), np.float32),
        np.array(vectors.getSinFeatures(), np.float32),
    )


def decode(value: str) -> TMKSignature:
    if not isinstance(value, str) or not value.strip():
        raise InvalidSignal("a TMK signature is the base64 of a .tmk file, got nothing", signal_type="tmk")
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignal(
            "a TMK signature is the base64 of a .tmk file: not valid base64", signal_type="tmk"
        ) from None
    return TMKSignature.from_bytes(raw)


def encode(signature: TMKSignature) -> str:
    return base64.b64encode(signature.to_bytes()).decode("ascii")


def scores(a: TMKSignature, b: TMKSignature, *, level2: bool = True) -> tuple[float, float | None]:
    """TMK's level-1 (cosine of the average features) and level-2 (temporal kernel) scores."""
    norm = float(np.linalg.norm(a.average) * np.linalg.norm(b.average))
    level1 = float(a.average @ b.average) / norm if norm else 0.0
    if not level2:
        return level1, None
    if not (np.array_equal(a.periods, b.periods) and np.array_equal(a.coefficients, b.coefficients) and a.fps == b.fps):
        return level1, 0.0  # incompatible parameters: TMK cannot compare them
    return level1, float(tmkpy.TMKFeatureVectors.computeLevel2Score(a.to_tmkpy(), b.to_tmkpy()))


class TMKSignal(SignalType):
    name = "tmk"
    content_types = frozenset({ContentType.VIDEO})
    exact = False

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        signature = hash_video(content)
        return [Signal(cls.name, encode(signature), None, {"frames": signature.frame_count})]

    @classmethod
    def validate(cls, value: str) -> str:
        return encode(decode(value))

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        return cls.distance_prepared(decode(a), decode(b))

    @classmethod
    def prepare(cls, value: str) -> TMKSignature:
        return decode(value)

    @classmethod
    def distance_prepared(cls, sa: TMKSignature, sb: TMKSignature) -> float:
        level1, _ = scores(sa, sb, level2=False)
        if level1 < MATCH_SCORE:
            return round(max(0.0, 1.0 - level1), 6)
        _, level2 = scores(sa, sb)
        return round(max(0.0, 1.0 - min(level1, level2)), 6)

    @classmethod
    def is_match(cls, distance: float) -> bool:
        return distance <= 1.0 - MATCH_SCORE + 1e-9

    @classmethod
    def examples(cls) -> list[str]:
        rng = np.random.default_rng(7)  # a synthetic but well-formed signature (TMK's sizes: 4 x 32 x 256)
        p, m, d = 4, 32, _DIMENSION
        signature = TMKSignature(
            FPS,
            150,
            np.array([2731, 4391, 9767, 14653], np.int32),
            rng.random(m, np.float32),
            rng.normal(size=d).astype(np.float32),
            rng.normal(size=(p, m, d)).astype(np.float32),
            rng.normal(size=(p, m, d)).astype(np.float32),
        )
        return [encode(signature)]

    @classmethod
    def invalid_examples(cls) -> list[str]:
        good = base64.b64decode(cls.examples()[0])
        return [
            "",
            "   ",
            "not base64!",
            base64.b64encode(good[:100]).decode(),
            base64.b64encode(b"TMK2" + good[4:]).decode(),
            base64.b64encode(good + b"\0\0\0\0").decode(),
        ]


SIGNAL_TYPE = TMKSignal
__all__ = ["TMKSignal", "SIGNAL_TYPE", "TMKSignature", "available", "hash_video", "scores", "encode", "decode"]
