"""Opening untrusted images and videos safely, for every signal type that needs pixels.

Uploads are hostile until proven otherwise: a 100-byte PNG can declare 50 000 x 50 000 pixels, a JPEG can stop
half-way, an "MP4" can be a renamed text file. Everything here checks declared sizes and durations *before*
decoding and turns every decoder failure into a :class:`bastion.errors.BastionError` with a stable code:

* ``content_too_large``: more pixels than ``settings.max_image_pixels`` (Pillow's decompression-bomb warnings
  and errors included), or a video longer than ``settings.max_video_seconds``;
* ``corrupt_content``: truncated or damaged files, undecodable streams;
* ``not_an_image`` / ``not_a_video`` (``unsupported_content``): the bytes are something else;
* ``unreadable_file``: the file cannot be opened any more.

Pillow's own limit (``PIL.Image.MAX_IMAGE_PIXELS``) is set to Bastion's so the two agree; Pillow warns above it
and refuses above twice it, and we refuse both.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from PIL import Image

from bastion.content import Content, ContentType
from bastion.errors import BastionError, ContentTooLarge, CorruptContent, UnreadableFile, UnsupportedContent

if TYPE_CHECKING:
    import av.container
    import av.video.stream

#: ``image.info`` key holding the size the file declares (drafted JPEGs decode smaller)
SOURCE_SIZE = "bastion_source_size"


# -- images ----------------------------------------------------------------------------------------------------------
@contextmanager
def image_errors(what: str = "image") -> Iterator[None]:
    """Map anything Pillow raises (or warns) while decoding into a Bastion error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except BastionError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ContentTooLarge(f"the {what} has too many pixels: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        raise CorruptContent(f"the {what} looks like an image but cannot be read", code="corrupt_content") from exc
    except MemoryError as exc:
        raise ContentTooLarge(f"the {what} is too large to decode") from exc
    except ValueError as exc:
        if "too large" in str(exc).lower():  # PNG text/ICC chunks that inflate past Pillow's limits
            raise ContentTooLarge(f"the {what} holds a chunk that decompresses too large: {exc}") from exc
        raise CorruptContent(f"the {what} is damaged: {exc}") from exc
    except PermissionError as exc:
        raise UnreadableFile(f"the {what} cannot be read: permission denied", code="permission_denied") from exc
    except (OSError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:
        # Pillow's plugins report damaged data with all of these (OSError: "image file is truncated", SyntaxError:
        # "broken PNG file", struct.error on short headers...).
        raise CorruptContent(f"the {what} is truncated or damaged: {exc}") from exc


def check_pixels(width: int, height: int, content: Content, what: str = "image") -> None:
    limit = content.settings.max_image_pixels
    if width <= 0 or height <= 0:
        raise CorruptContent(f"the {what} declares an empty size {width}x{height}")
    if width * height > limit:
        raise ContentTooLarge(
            f"the {what} declares {width}x{height} = {width * height} pixels, over the limit of {limit}",
            pixels=width * height,
        )


def open_image(content: Content, *, draft: tuple[str, int] | None = None) -> Image.Image:
    """Decode the first frame of an image, refusing bombs and damaged files.

    ``draft=(mode, min_side)`` lets a JPEG decode directly at a smaller scale (1/2, 1/4 or 1/8, done in the DCT
    domain by libjpeg) as long as both sides stay at least ``min_side`` pixels, and in ``mode`` ("L" skips the
    colour planes). The size the file declares is kept in ``image.info[SOURCE_SIZE]``. The returned image is fully
    loaded and no longer needs the file.
    """
    if content.content_type is not ContentType.IMAGE:
        raise UnsupportedContent(
            f"expected an image, got {content.content_type.value} content ({content.mime or 'unknown type'})",
            code="not_an_image",
        )
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; make its limit ours (an atomic assignment:
    # concurrent callers with the same settings write the same value). We also check explicitly below.
    Image.MAX_IMAGE_PIXELS = content.settings.max_image_pixels
    try:
        fh = content.open()
    except PermissionError as exc:
        raise UnreadableFile(f"{content.path}: permission denied", code="permission_denied") from exc
    except OSError as exc:
        raise UnreadableFile(f"{content.path}: {exc.strerror or exc}") from exc
    with fh, image_errors():
        img = Image.open(fh)
        width, height = img.size
        check_pixels(width, height, content)
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated GIF/WebP/APNG: the first frame only
        if draft is not None and img.format == "JPEG":
            mode, min_side = draft
            scale = 1
            while scale < 8 and min(width, height) // (scale * 2) >= min_side:
                scale *= 2
            if scale > 1:  # Pillow picks the largest libjpeg scale whose result is at least this size
                img.draft(mode, (width // scale, height // scale))
        img.load()
        img.info[SOURCE_SIZE] = (width, height)
        return img


# -- videos ----------------------------------------------------------------------------------------------------------
@contextmanager
def open_video(content: Content) -> Iterator[av.container.InputContainer]:
    """Open a video with PyAV; the body of the ``with`` block runs with decoder errors mapped to Bastion errors.

    Checks before any frame is decoded: there is a video stream, its frames are within ``max_image_pixels`` and
    the declared duration is within ``max_video_seconds`` (decoders must still stop at that limit when a container
    does not declare its duration: :func:`check_video_time`).
    """
    import av

    if content.content_type is not ContentType.VIDEO:
        raise UnsupportedContent(
            f"expected a video, got {content.content_type.value} content ({content.mime or 'unknown type'})",
            code="not_a_video",
        )
    try:
        source = str(content.path) if content.path is not None and content._data is None else content.open()
        container = av.open(source, "r")
    except PermissionError as exc:  # PyAV's own errors for files subclass these OSErrors too
        raise UnreadableFile("the video cannot be read: permission denied", code="permission_denied") from exc
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise UnreadableFile(f"the video cannot be read: {exc.strerror or exc}") from exc
    except av.FFmpegError as exc:
        raise CorruptContent(f"the video cannot be opened: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise UnreadableFile(f"the video cannot be read: {exc.strerror or exc}") from exc
    try:
        with container:
            if not container.streams.video:
                raise UnsupportedContent("the file has no video stream", code="not_a_video")
            stream = container.streams.video[0]
            check_pixels(stream.codec_context.width, stream.codec_context.height, content, "video")
            seconds = video_seconds(container)
            if seconds is not None:
                check_video_time(seconds, content)
            yield container
    except BastionError:
        raise
    except av.FFmpegError as exc:
        raise CorruptContent(f"the video stream cannot be decoded: {exc.strerror or exc}") from exc
    except MemoryError as exc:
        raise ContentTooLarge("the video is too large to decode") from exc
    except (ValueError, OverflowError, ZeroDivisionError) as exc:  # nonsense timestamps, rates or sizes
        raise CorruptContent(f"the video is damaged: {exc}") from exc


def video_seconds(container: av.container.InputContainer) -> float | None:
    """The duration the container (or its first video stream) declares, if any."""
    stream = container.streams.video[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def check_complete(stream: av.video.stream.VideoStream, packets: int) -> None:
    """Refuse a video whose container declares more frames than it holds (a truncated "fast start" MP4 opens
    fine and simply ends early). ``packets``: the video packets demuxed."""
    declared = stream.frames  # MP4/MOV sample tables say how many frames there are; 0 when unknown
    if declared and packets < declared - max(2, declared // 100):
        raise CorruptContent(f"the video is truncated: {packets} of its {declared} frames are present")


def check_video_time(seconds: float, content: Content) -> None:
    limit = content.settings.max_video_seconds
    if seconds > limit:
        raise ContentTooLarge(f"the video lasts {seconds:.0f} s, over the limit of {limit:.0f} s", seconds=seconds)
