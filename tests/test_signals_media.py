"""PDQ, vPDQ and TMK signals: agreement with Meta's reference implementations and matching behaviour.

References: ``pdqhash`` on the full decoded image (PDQ), the ``vpdq`` package's hasher (vPDQ, optional extra),
``tmkpy`` (TMK, optional). Media are generated (bastion.samples): nothing real, nothing downloaded.
"""

from __future__ import annotations

import io
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageDraw, ImageOps

from bastion.content import Content
from bastion.samples import encode, generate_image, generate_video
from bastion.signals import tmk
from bastion.signals.base import Signal
from bastion.signals.pdq import DIHEDRAL_NAMES, PDQSignal, hamming
from bastion.signals.vpdq import Frame, VPDQSignal, _hash_frame, hash_video, match_percent, parse, serialize

TRANSPOSES = {
    "rotate90": Image.Transpose.ROTATE_90, "rotate180": Image.Transpose.ROTATE_180,
    "rotate270": Image.Transpose.ROTATE_270, "flip_top_bottom": Image.Transpose.FLIP_TOP_BOTTOM,
    "flip_left_right": Image.Transpose.FLIP_LEFT_RIGHT, "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}  # fmt: skip


def reference_pdq(img: Image.Image) -> tuple[str, int]:
    """Meta's PDQ (pdqhash) on the full-resolution RGB image."""
    bits, quality = pdqhash.compute(np.asarray(img.convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def pdq(data: bytes):
    (signal,) = PDQSignal.compute(Content.from_bytes(data))
    return signal


def sharpen(img: Image.Image, seed: int) -> Image.Image:
    """Hard edges, thin lines and text: the content where a reduced decode could drift most from the full one."""
    rng = np.random.default_rng(seed)
    img = img.copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    for _ in range(25):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.rectangle(
            [x, y, x + int(rng.integers(3, w // 4)), y + int(rng.integers(3, h // 4))],
            outline=colour,
            width=int(rng.integers(1, 4)),
        )
        draw.text((int(rng.integers(0, w)), int(rng.integers(0, h))), "ferry timetable 0630", fill=colour)
    return img


# -- PDQ ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_pdq_is_within_10_bits_of_the_reference_on_quality_80_images(seed: int):
    base = generate_image(seed, 640, 480)
    images = {
        (1024, 768): sharpen(base.resize((1024, 768), Image.Resampling.BICUBIC), seed),
        (640, 480): base,
        (333, 517): base.crop((100, 0, 433, 480)).resize((333, 517)),
    }
    checked = 0
    for size, img in images.items():
        for fmt, options in (("JPEG", {"quality": 80 + seed}), ("JPEG", {"quality": 95}), ("PNG", {})):
            data = encode(img, fmt, **options)
            want, want_quality = reference_pdq(Image.open(io.BytesIO(data)))
            got = pdq(data)
            assert abs(got.quality - want_quality) <= 5, (size, fmt)
            if want_quality >= 80:
                checked += 1
                assert hamming(got.value, want) <= 10, (size, fmt, options)
    assert checked >= 6


def test_pdq_of_large_and_tiny_images_stays_close_to_the_reference():
    big = generate_image(20, 640, 480).resize((3000, 2000), Image.Resampling.BICUBIC)
    tiny = generate_image(21, 80, 60)
    for img in (big, tiny):
        for data in (encode(img, "JPEG", quality=90), encode(img, "WEBP", quality=90)):
            want, quality = reference_pdq(Image.open(io.BytesIO(data)))
            assert quality >= 80
            assert hamming(pdq(data).value, want) <= 10


@pytest.mark.parametrize("seed", [3, 4])
def test_dihedral_variants_are_named_after_the_transform_that_produces_them(seed: int):
    img = sharpen(generate_image(seed, 480, 360), seed)
    signal = pdq(encode(img, "PNG"))
    variants = signal.meta["_variants"]
    assert list(variants) == list(DIHEDRAL_NAMES) and variants["original"] == signal.value
    for name, transpose in TRANSPOSES.items():
        moved = pdq(encode(img.transpose(transpose), "PNG")).value
        distances = {n: hamming(moved, h) for n, h in variants.items()}
        assert min(distances, key=distances.get) == name
        assert distances[name] <= 20 < min(d for n, d in distances.items() if n != name)
        # and so a rotated or mirrored upload matches the original through one of its variants
        assert PDQSignal.is_match(min(distances.values()))
        assert not PDQSignal.is_match(hamming(moved, signal.value))
    assert "_variants" not in signal.to_dict()


def test_image_modes_hash_like_the_reference_on_the_equivalent_rgb_image():
    img = generate_image(5, 480, 360)
    grey = img.convert("L")
    rgba = img.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(img.size))
    cases = {
        "L": (encode(grey, "PNG"), grey),
        "RGBA": (encode(rgba, "PNG"), img),  # alpha is dropped, like the reference
        "LA": (encode(rgba.convert("LA"), "PNG"), grey),
        "P": (encode(img.quantize(256), "PNG"), img.quantize(256)),
        "I;16": (encode(Image.fromarray(np.asarray(grey, np.uint16) * 257), "PNG"), grey),
        "CMYK": (encode(img.convert("CMYK"), "JPEG", quality=95), None),
        "BMP": (encode(img, "BMP"), img),
        "TIFF": (encode(img, "TIFF"), img),
        "WEBP": (encode(img, "WEBP", quality=95), None),
        "grey JPEG": (encode(grey, "JPEG", quality=95), None),
    }
    for name, (data, equivalent) in cases.items():
        equivalent = equivalent if equivalent is not None else Image.open(io.BytesIO(data))
        want, quality = reference_pdq(equivalent)
        assert quality >= 80, name
        got = pdq(data)
        assert hamming(got.value, want) <= 10, name


def test_animated_images_hash_their_first_frame():
    first, second = generate_image(6, 320, 240), generate_image(7, 320, 240)
    buf = io.BytesIO()
    first.save(buf, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    got = pdq(buf.getvalue()).value
    assert hamming(got, reference_pdq(first.quantize(256))[0]) <= 10
    assert hamming(got, reference_pdq(second)[0]) > 31


def test_exif_orientation_is_not_applied_but_the_upright_image_still_matches():
    upright = generate_image(8, 480, 360)
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(stored, "JPEG", quality=92, exif=exif)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == upright.size
    got = pdq(data)
    assert hamming(got.value, reference_pdq(Image.open(io.BytesIO(data)))[0]) <= 10  # the stored pixels
    upright_hash = pdq(encode(upright, "JPEG", quality=92)).value
    assert hamming(got.value, upright_hash) > 31
    assert hamming(got.meta["_variants"]["rotate90"], upright_hash) <= 31


def test_low_quality_hashes_are_computed_but_not_usable(monkeypatch: pytest.MonkeyPatch):
    flat = Image.new("RGB", (300, 200), (120, 120, 120))
    ImageDraw.Draw(flat).rectangle([140, 90, 160, 110], fill=(124, 124, 124))
    low = pdq(encode(flat, "PNG"))
    assert len(low.value) == 64 and low.quality < 50
    assert not PDQSignal.usable(low)
    good = pdq(encode(generate_image(9), "PNG"))
    assert good.quality >= 80 and PDQSignal.usable(good)
    monkeypatch.setenv("BASTION_PDQ_MIN_QUALITY", "100")
    from bastion.settings import reset_settings_cache

    reset_settings_cache()
    assert PDQSignal.usable(good) == (good.quality == 100)


def test_pdq_validate_distance_and_threshold(monkeypatch: pytest.MonkeyPatch):
    h = PDQSignal.examples()[0]
    assert PDQSignal.validate(f"  {h.upper()}\n") == h
    flipped = f"{int(h, 16) ^ ((1 << 31) - 1):064x}"  # 31 bits apart
    assert PDQSignal.distance(h, flipped) == 31 and PDQSignal.is_match(31) and not PDQSignal.is_match(32)
    monkeypatch.setenv("BASTION_PDQ_MATCH_THRESHOLD", "10")
    from bastion.settings import reset_settings_cache

    reset_settings_cache()
    assert PDQSignal.is_match(10) and not PDQSignal.is_match(11)


# -- vPDQ: the exchange format and the comparison -----------------------------------------------------------------
H = [f"{(0x1234567 * (i + 1)) ** 5 % (1 << 256):064x}" for i in range(12)]


def flip(h: str, bits: int) -> str:
    return f"{int(h, 16) ^ ((1 << bits) - 1):064x}"


def test_vpdq_value_is_python_threatexchanges_serialisation():
    frames = [Frame(H[0], 100, 0.0), Frame(H[1], 87, 1.0), Frame(H[2], 5, 12.345), Frame(H[3], 50, 1234.5)]
    value = serialize(frames)
    assert value == f'["{H[0]},100,0.0", "{H[1]},87,1.0", "{H[2]},5,12.3", "{H[3]},50,1.23e+03"]'
    assert parse(value) == [Frame(H[0], 100, 0.0), Frame(H[1], 87, 1.0), Frame(H[2], 5, 12.3), Frame(H[3], 50, 1230.0)]
    loose = f'[" {H[0].upper()} ,100, 0 ", "{H[1]},87,1.000"]'
    assert VPDQSignal.validate(loose) == f'["{H[0]},100,0.0", "{H[1]},87,1.0"]'


def test_match_percent_dedupes_filters_quality_and_counts_both_ways():
    bank = [Frame(h, 100, float(i)) for i, h in enumerate(H[:10])]
    clip = [Frame(flip(H[2], 31), 90, 0.0), Frame(flip(H[3], 20), 90, 1.0)]
    assert match_percent(clip, bank, 31) == (100.0, 20.0)
    assert match_percent(bank, clip, 31) == (20.0, 100.0)
    assert match_percent([Frame(flip(H[2], 32), 90, 0.0)], bank, 31) == (0.0, 0.0)
    # repeated frames count once (a still image held for minutes must not dominate)
    held = [Frame(H[0], 100, float(t)) for t in range(8)] + [Frame(H[11], 100, 8.0)]
    assert match_percent(held, bank, 31) == (50.0, 10.0)
    # frames below the quality threshold are ignored on both sides; nothing left gives 0
    assert match_percent([Frame(H[0], 10, 0.0), Frame(H[11], 100, 1.0)], bank, 31) == (0.0, 0.0)
    assert match_percent([Frame(H[0], 10, 0.0)], bank, 31) == (0.0, 0.0)
    assert match_percent([Frame(H[0], 10, 0.0)], bank, 31, min_quality=0) == (100.0, 10.0)


def test_vpdq_distance_is_symmetric_and_matches_at_80_percent():
    bank = serialize([Frame(h, 100, float(i)) for i, h in enumerate(H[:5])])
    four_of_five = serialize([Frame(h, 100, float(i)) for i, h in enumerate(H[:4] + [H[11]])])
    three_of_five = serialize([Frame(h, 100, float(i)) for i, h in enumerate(H[:3] + H[10:12])])
    assert VPDQSignal.distance(bank, four_of_five) == VPDQSignal.distance(four_of_five, bank) == 20.0
    assert VPDQSignal.is_match(20.0) and not VPDQSignal.is_match(VPDQSignal.distance(bank, three_of_five))
    assert not VPDQSignal.usable(Signal("vpdq", serialize([Frame(H[0], 20, 0.0), Frame(H[1], 49, 1.0)])))
    assert VPDQSignal.usable(Signal("vpdq", serialize([Frame(H[0], 20, 0.0), Frame(H[1], 50, 1.0)])))


# -- vPDQ on real (generated) videos ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {"a": d / "a.mp4", "b": d / "b.mp4", "short": d / "short.mp4", "mpeg4": d / "a-mpeg4.mp4"}
    generate_video(out["a"], 4.0, 30, (320, 240), seed=1)
    generate_video(out["b"], 4.0, 30, (320, 240), seed=2)
    generate_video(out["short"], 0.5, 30, (320, 240), seed=3)
    generate_video(out["mpeg4"], 4.0, 25, (320, 240), seed=1, codec="mpeg4")
    out["reencoded"] = d / "a-small.mp4"
    reencode(out["a"], out["reencoded"], (256, 192), 150_000)
    return out


def reencode(src: Path, dst: Path, size: tuple[int, int], bit_rate: int) -> None:
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = inp.streams.video[0]
        enc = out.add_stream(codec, rate=stream.average_rate)
        enc.width, enc.height, enc.pix_fmt, enc.bit_rate = size[0], size[1], "yuv420p", bit_rate
        for i, frame in enumerate(inp.decode(stream)):
            small = frame.reformat(width=size[0], height=size[1])
            small.pts, small.time_base = i, Fraction(1, int(stream.average_rate))
            out.mux(enc.encode(small))
        out.mux(enc.encode(None))


def vpdq_frames(path: Path) -> list[Frame]:
    (signal,) = VPDQSignal.compute(Content.from_path(path))
    return parse(signal.value)


@pytest.mark.parametrize("name", ["a", "mpeg4"])
def test_vpdq_frames_agree_with_the_vpdq_package(videos: dict[str, Path], name: str):
    vpdq = pytest.importorskip("vpdq")
    reference = [Frame(f.hex, f.quality, f.timestamp) for f in vpdq.computeHash(str(videos[name]), thread_count=1)]
    ours = vpdq_frames(videos[name])
    assert [f.timestamp for f in ours] == [float(f"{f.timestamp:.3}") for f in reference]
    good = [(a, b) for a, b in zip(ours, reference, strict=True) if b.quality >= 80]
    assert len(good) >= len(reference) // 2
    assert all(hamming(a.pdq, b.pdq) <= 10 for a, b in good)
    assert min(match_percent(ours, reference)) >= 80 and min(match_percent(reference, ours)) >= 80


@pytest.mark.parametrize(("name", "seconds_per_hash"), [("a", 1.0), ("a", 0.5), ("mpeg4", 1.0)])
def test_skipping_frames_does_not_change_the_hashed_frames(videos, name: str, seconds_per_hash: float):
    """Frames we hash after skipping keyframe gaps and non-reference frames equal those of a plain full decode."""
    ours = hash_video(Content.from_path(videos[name]), seconds_per_hash)
    plain = []
    with av.open(str(videos[name])) as container:
        stream = container.streams.video[0]
        step = int(seconds_per_hash * float(stream.average_rate))
        for n, frame in enumerate(container.decode(stream)):
            if n % step == 0:
                plain.append(_hash_frame(frame, n, stream.average_rate))
    assert ours == plain


def test_a_reencoded_copy_matches_and_an_unrelated_video_does_not(videos: dict[str, Path]):
    a, small, b = (VPDQSignal.compute(Content.from_path(videos[k]))[0].value for k in ("a", "reencoded", "b"))
    assert len(parse(small)) == len(parse(a)) == 4
    assert VPDQSignal.is_match(VPDQSignal.distance(a, small))
    assert not VPDQSignal.is_match(VPDQSignal.distance(a, b))
    assert max(match_percent(parse(a), parse(b))) < 50


def test_a_video_shorter_than_a_second_gets_one_frame_hash(videos: dict[str, Path], monkeypatch):
    (frame,) = vpdq_frames(videos["short"])
    assert frame.timestamp == 0.0 and frame.quality >= 50
    monkeypatch.setenv("BASTION_VPDQ_SECONDS_PER_HASH", "2")
    from bastion.settings import reset_settings_cache

    reset_settings_cache()
    assert [f.timestamp for f in vpdq_frames(videos["a"])] == [0.0, 2.0]


# -- TMK ---------------------------------------------------------------------------------------------------------
needs_tmk = pytest.mark.skipif(not tmk.available(), reason="tmkpy is not installed (pip install tmkpy)")


@needs_tmk
def test_tmk_file_layout_is_the_one_tmk_writes(tmp_path: Path):
    import tmkpy

    vectors = tmkpy.TMKFeatureVectors(
        tmkpy.TMKFramewiseAlgorithm_PDQ_FLOAT,
        15,
        tmkpy.TMKFeatureVectors.makePoullotPeriods(),
        tmkpy.TMKFeatureVectors.makePoullotFourierCoefficients(),
        256,
    )
    rng = np.random.default_rng(0)
    for i in range(40):
        vectors.ingestFrameFeature(rng.normal(size=256).tolist(), i)
    vectors.finishFrameFeatureIngest()
    vectors.writeToOutputFile(str(tmp_path / "x.tmk"), "bastion-test")
    raw = (tmp_path / "x.tmk").read_bytes()
    signature = tmk.TMKSignature.from_bytes(raw)
    assert signature.to_bytes() == raw and signature.frame_count == 40
    again = tmk.decode(tmk.encode(signature))
    assert again.to_bytes() == raw
    assert tmk.scores(again, signature) == pytest.approx((1.0, 1.0), abs=1e-5)


@needs_tmk
def test_tmk_matches_reencoded_copies_and_separates_unrelated_videos(videos: dict[str, Path]):
    a, small, b = (tmk.TMKSignal.compute(Content.from_path(videos[k]))[0].value for k in ("a", "reencoded", "b"))
    assert tmk.TMKSignal.is_match(tmk.TMKSignal.distance(a, small))
    assert not tmk.TMKSignal.is_match(tmk.TMKSignal.distance(a, b))


@needs_tmk
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the reference TMK hasher needs the ffmpeg binary")
def test_tmk_agrees_with_the_reference_hasher(videos: dict[str, Path]):
    import tmkpy

    reference = tmkpy.hashVideo(str(videos["a"]), shutil.which("ffmpeg"))
    ours = tmk.hash_video(Content.from_path(videos["a"]))
    level1 = tmkpy.TMKFeatureVectors.computeLevel1Score(reference, ours.to_tmkpy())
    level2 = tmkpy.TMKFeatureVectors.computeLevel2Score(reference, ours.to_tmkpy())
    assert level1 >= 0.99 and level2 >= 0.99
    assert abs(reference.getFrameFeatureCount() - ours.frame_count) <= 3
