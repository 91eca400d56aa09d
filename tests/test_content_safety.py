"""Hostile and broken files: every one ends in a BastionError with a specific code, never a raw exception.

Decompression bombs are refused from their headers (a test makes decoding itself fail loudly to prove it), truncated
and damaged images and videos are ``corrupt_content``, renamed files are judged by their bytes.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import av
import pytest
from PIL import Image, ImageFile

import bastion.signals as signals
from bastion.content import Content, ContentType
from bastion.errors import BastionError, CorruptContent, UnreadableFile
from bastion.samples import encode, generate_image, generate_video
from bastion.settings import reset_settings_cache
from bastion.signals import tmk
from bastion.signals.media import open_image, open_video
from bastion.signals.pdq import PDQSignal
from bastion.signals.vpdq import VPDQSignal

VIDEO_TYPES = [VPDQSignal] + ([tmk.TMKSignal] if tmk.available() else [])


@pytest.fixture(autouse=True)
def _restore_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # open_image sets Pillow's process-wide bomb limit to the configured one; put it back after each test
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def limit(monkeypatch: pytest.MonkeyPatch, name: str, value: object) -> None:
    monkeypatch.setenv(f"BASTION_{name}", str(value))
    reset_settings_cache()


def raises_code(code: str, fn, *args) -> BastionError:
    with pytest.raises(BastionError) as info:
        fn(*args)
    assert info.value.code == code, info.value
    return info.value


def png(width: int, height: int, idat: bytes, *extra_chunks: tuple[bytes, bytes]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = b"".join(chunk(k, v) for k, v in extra_chunks)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + body + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("safety") / "clip.mp4"
    generate_video(path, 3.0, 30, (160, 120), seed=4)
    return path


# -- files that cannot be read ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["empty.jpg", "empty.png", "empty.mp4"])
def test_zero_byte_files_are_empty_content(tmp_path: Path, name: str):
    (tmp_path / name).write_bytes(b"")
    raises_code("empty_content", Content.from_path, tmp_path / name)
    raises_code("empty_content", Content.from_bytes, b"")


def test_symlink_loops_are_unreadable(tmp_path: Path):
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    raises_code("symlink_loop", Content.from_path, tmp_path / "a.jpg")


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: file permissions do not stop root from reading")
def test_unreadable_permissions(tmp_path: Path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(encode(generate_image(1, 64, 48)))
    path.chmod(0)
    raises_code("permission_denied", Content.from_path, path)


def test_permission_errors_are_reported_as_such_even_when_running_as_root(
    tmp_path: Path, video: Path, monkeypatch: pytest.MonkeyPatch
):
    """Root reads any file, so the operating system's refusal is simulated where each layer opens the file."""
    import bastion.content

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "locked.png"
    path.write_bytes(encode(generate_image(1, 320, 240), "PNG"))
    content = Content.from_path(path)
    clip = Content.from_path(video)
    with monkeypatch.context() as m:
        m.setattr(bastion.content, "open", refuse, raising=False)  # Content.from_path's own read
        raises_code("permission_denied", Content.from_path, path)
    with monkeypatch.context() as m:
        m.setattr(Content, "open", refuse)
        raises_code("permission_denied", PDQSignal.compute, content)
    with monkeypatch.context() as m:
        m.setattr(av, "open", refuse)
        for signal_type in VIDEO_TYPES:
            raises_code("permission_denied", signal_type.compute, clip)


def test_a_file_that_cannot_be_opened_any_more_is_unreadable_not_a_crash(tmp_path: Path, video: Path):
    """Works as root too: the file disappears between sniffing and decoding."""
    image = tmp_path / "big.png"
    image.write_bytes(encode(generate_image(2, 320, 240), "PNG"))  # larger than the sniffed head: read lazily
    content = Content.from_path(image)
    image.unlink()
    err = raises_code("unreadable_file", PDQSignal.compute, content)
    assert isinstance(err, UnreadableFile)
    moved = tmp_path / "clip.mp4"
    moved.write_bytes(video.read_bytes())
    content = Content.from_path(moved)
    moved.unlink()
    for signal_type in VIDEO_TYPES:
        raises_code("unreadable_file", signal_type.compute, content)


# -- images --------------------------------------------------------------------------------------------------------
def test_a_png_declaring_50000_by_50000_pixels_is_refused_without_decoding(monkeypatch: pytest.MonkeyPatch):
    bomb = png(50_000, 50_000, zlib.compress(b"\0" * 64))
    assert len(bomb) < 200
    content = Content.from_bytes(bomb)
    assert content.content_type is ContentType.IMAGE

    def no_decoding(self):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    err = raises_code("content_too_large", PDQSignal.compute, content)
    assert "50000x50000" in err.message or "pixels" in err.message
    raises_code("content_too_large", open_image, content)


def test_pillow_bomb_warnings_and_errors_become_content_too_large(monkeypatch: pytest.MonkeyPatch):
    limit(monkeypatch, "MAX_IMAGE_PIXELS", 10_000)
    for size in [(150, 100), (400, 300)]:  # Pillow warns above the limit and raises above twice it
        raises_code("content_too_large", PDQSignal.compute, Content.from_bytes(encode(generate_image(3, *size))))
    assert PDQSignal.compute(Content.from_bytes(encode(generate_image(3, 100, 100))))[0].quality > 0


def test_a_text_chunk_that_inflates_too_far_is_content_too_large():
    pixels = zlib.compress(b"".join(b"\0" + bytes(range(48)) * 2 for _ in range(32)))  # 32x32 RGB
    bomb = png(32, 32, pixels, (b"zTXt", b"comment\0\0" + zlib.compress(b"a" * 30_000_000)))
    raises_code("content_too_large", PDQSignal.compute, Content.from_bytes(bomb))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
@pytest.mark.parametrize("keep", [0.2, 0.6, 0.95])
def test_truncated_images_are_corrupt_content(fmt: str, keep: float):
    data = encode(generate_image(4, 200, 150), fmt)
    content = Content.from_bytes(data[: int(len(data) * keep)])
    assert content.content_type is ContentType.IMAGE
    assert isinstance(raises_code("corrupt_content", PDQSignal.compute, content), CorruptContent)
    computed, errors = signals.compute_each(content)
    # The digests still come; every image signal (PDQ, and orb where OpenCV is installed) reports the corruption.
    assert {s.type for s in computed} >= {"md5", "sha256"} and not {"pdq", "orb"} & {s.type for s in computed}
    assert errors and {e.code for e in errors} == {"corrupt_content"}


def test_image_magic_followed_by_garbage_is_corrupt_content():
    raises_code("corrupt_content", PDQSignal.compute, Content.from_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000)))
    raises_code("corrupt_content", PDQSignal.compute, Content.from_bytes(b"\xff\xd8\xff\xe0" + os.urandom(4000)))


def test_a_text_file_named_jpg_is_text(tmp_path: Path):
    path = tmp_path / "holiday.jpg"
    path.write_text("Ferries to the northern islands run twice a day until March.\n")
    content = Content.from_path(path)
    assert content.content_type is ContentType.TEXT
    assert "pdq" not in {t.name for t in signals.types_for(content.content_type)}
    raises_code("not_an_image", open_image, content)
    raises_code("not_an_image", PDQSignal.compute, content)
    raises_code("not_a_video", VPDQSignal.compute, content)


# -- videos --------------------------------------------------------------------------------------------------------
def faststart_copy(src: Path, dst: Path) -> None:
    """The same video with its index (moov) before the data, so a truncated copy still opens."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)


@pytest.mark.parametrize("layout", ["index-at-end", "faststart"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.97])
def test_truncated_mp4s_are_corrupt_content(tmp_path: Path, video: Path, layout: str, keep: float):
    src = video
    if layout == "faststart":
        src = tmp_path / "faststart.mp4"
        faststart_copy(video, src)
    data = src.read_bytes()
    content = Content.from_bytes(data[: int(len(data) * keep)])
    assert content.content_type is ContentType.VIDEO
    for signal_type in VIDEO_TYPES:
        raises_code("corrupt_content", signal_type.compute, content)


def test_an_mp4_with_a_damaged_stream_is_corrupt_content(video: Path):
    data = bytearray(video.read_bytes())
    start = len(data) // 5
    data[start : start + len(data) // 2] = os.urandom(len(data) // 2)
    for signal_type in VIDEO_TYPES:
        raises_code("corrupt_content", signal_type.compute, Content.from_bytes(bytes(data)))


def test_videos_over_the_time_or_pixel_limits_are_refused(monkeypatch: pytest.MonkeyPatch, video: Path):
    limit(monkeypatch, "MAX_VIDEO_SECONDS", 2)
    for signal_type in VIDEO_TYPES:
        raises_code("content_too_large", signal_type.compute, Content.from_path(video))
    limit(monkeypatch, "MAX_VIDEO_SECONDS", 3600)
    limit(monkeypatch, "MAX_IMAGE_PIXELS", 160 * 120 - 1)
    raises_code("content_too_large", VPDQSignal.compute, Content.from_path(video))


def test_a_file_without_a_video_stream_is_not_a_video(tmp_path: Path):
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = 8000
        for i in range(8):
            frame.pts = i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    content = Content.from_path(path)
    assert content.content_type is ContentType.VIDEO  # the container says MP4
    with pytest.raises(BastionError) as info, open_video(content):
        pass
    assert info.value.code == "not_a_video"
    raises_code("not_a_video", VPDQSignal.compute, content)
