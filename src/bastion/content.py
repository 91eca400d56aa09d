"""What a piece of content is, decided from its bytes, never its name.

A :class:`Content` is the unit that flows through Bastion: a file (by path or bytes), a text or a URL. Signal types
ask it for what they need (``data``, ``text``, ``path``) and it reads lazily, once, within the size limits of
:mod:`bastion.settings`.
"""

from __future__ import annotations

import enum
import errno
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import filetype

from bastion.errors import ContentTooLarge, EmptyContent, InvalidInput, UnreadableFile, UnsupportedContent
from bastion.settings import Settings, get_settings

SNIFF_BYTES = 8192


class ContentType(str, enum.Enum):
    """The kinds of content Bastion hashes. Values are storage keys: never rename them."""

    IMAGE = "image"
    VIDEO = "video"
    PDF = "pdf"
    TEXT = "text"
    URL = "url"
    OTHER = "other"  # any other file: still gets md5/sha256


_IMAGE_MIMES = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"}
_VIDEO_MIMES = {
    "video/mp4",
    "video/x-matroska",
    "video/webm",
    "video/quicktime",
    "video/x-msvideo",
    "video/x-flv",
    "video/mpeg",
    "video/3gpp",
    "video/x-m4v",
}


def sniff(head: bytes) -> tuple[ContentType, str | None]:
    """Content type and MIME type from the first bytes of a file."""
    if not head:
        return ContentType.OTHER, None
    if head.startswith(b"%PDF-"):
        return ContentType.PDF, "application/pdf"
    kind = filetype.guess(head)
    if kind is not None:
        if kind.mime in _IMAGE_MIMES:
            return ContentType.IMAGE, kind.mime
        if kind.mime in _VIDEO_MIMES:
            return ContentType.VIDEO, kind.mime
        if kind.mime == "application/pdf":
            return ContentType.PDF, kind.mime
        return ContentType.OTHER, kind.mime
    if _looks_like_text(head):
        return ContentType.TEXT, "text/plain"
    return ContentType.OTHER, None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is still text.
        if exc.start < len(head) - 4:
            return False
    return True


@dataclass
class Content:
    """One piece of content: a file by path or bytes, a text, or a URL."""

    content_type: ContentType
    mime: str | None = None
    path: Path | None = None
    size: int | None = None
    url: str | None = None
    _data: bytes | None = field(default=None, repr=False)
    _text: str | None = field(default=None, repr=False)
    settings: Settings = field(default_factory=get_settings, repr=False)

    # -- constructors -------------------------------------------------------------------------------------------
    @classmethod
    def from_path(cls, path: str | os.PathLike[str], settings: Settings | None = None) -> Content:
        settings = settings or get_settings()
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnreadableFile(f"{p}: symbolic link loop", code="symlink_loop") from exc
            if exc.errno == errno.ENOENT:
                raise UnreadableFile(f"{p}: no such file", code="file_not_found") from exc
            raise UnreadableFile(f"{p}: {exc.strerror}") from exc
        if not p.is_file():
            raise UnreadableFile(f"{p}: not a regular file", code="not_a_file")
        if st.st_size == 0:
            raise EmptyContent(f"{p}: the file is empty")
        if st.st_size > settings.max_file_bytes:
            raise ContentTooLarge(
                f"{p}: {st.st_size} bytes is over the limit of {settings.max_file_bytes}", size=st.st_size
            )
        try:
            with open(p, "rb") as fh:
                head = fh.read(SNIFF_BYTES)
        except PermissionError as exc:
            raise UnreadableFile(f"{p}: permission denied", code="permission_denied") from exc
        except OSError as exc:
            raise UnreadableFile(f"{p}: {exc.strerror or exc}") from exc
        ctype, mime = sniff(head)
        data = head if st.st_size <= SNIFF_BYTES else None
        return cls(ctype, mime, path=p, size=st.st_size, _data=data, settings=settings)

    @classmethod
    def from_bytes(cls, data: bytes, settings: Settings | None = None) -> Content:
        settings = settings or get_settings()
        if not data:
            raise EmptyContent("the content is empty")
        if len(data) > settings.max_file_bytes:
            raise ContentTooLarge(f"{len(data)} bytes is over the limit of {settings.max_file_bytes}")
        ctype, mime = sniff(data[:SNIFF_BYTES])
        return cls(ctype, mime, size=len(data), _data=data, settings=settings)

    @classmethod
    def from_text(cls, text: str, settings: Settings | None = None) -> Content:
        settings = settings or get_settings()
        if not text.strip():
            raise EmptyContent("the text is empty")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(
                f"the text is not valid Unicode ({exc.reason} at {exc.start})", code="invalid_text"
            ) from exc
        if len(data) > settings.max_text_bytes:
            raise ContentTooLarge(f"{len(data)} bytes of text is over the limit of {settings.max_text_bytes}")
        return cls(ContentType.TEXT, "text/plain", size=len(data), _data=data, _text=text, settings=settings)

    @classmethod
    def from_url(cls, url: str, settings: Settings | None = None) -> Content:
        if not url or not url.strip():
            raise EmptyContent("the URL is empty")
        return cls(ContentType.URL, None, url=url.strip(), settings=settings or get_settings())

    # -- accessors ----------------------------------------------------------------------------------------------
    @property
    def data(self) -> bytes:
        """All the bytes (read once). Not available for URLs."""
        if self._data is None:
            if self.path is None:
                raise UnsupportedContent("this content has no bytes", code="no_bytes")
            try:
                self._data = self.path.read_bytes()
            except OSError as exc:
                raise UnreadableFile(f"{self.path}: {exc.strerror or exc}") from exc
        return self._data

    def open(self) -> io.BufferedIOBase:
        """A binary stream over the content (the file itself when there is one, so big videos are not copied)."""
        if self.path is not None and self._data is None:
            return open(self.path, "rb")  # noqa: SIM115 - the caller closes it
        return io.BytesIO(self.data)

    @property
    def text(self) -> str:
        """The content as text: decoded text files, extracted PDF text."""
        if self._text is None:
            if self.content_type is ContentType.TEXT:
                self._text = self.data.decode("utf-8", errors="replace")
            elif self.content_type is ContentType.PDF:
                from bastion.signals.pdf import extract_pdf_text

                self._text = extract_pdf_text(self)
            else:
                raise UnsupportedContent(f"{self.content_type.value} content has no text", code="no_text")
        return self._text
