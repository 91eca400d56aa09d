"""The bytes of content under review, served only through signed, expiring URLs.

A media URL names a review item and carries an expiry and an HMAC-SHA256 signature over ``item id, content id,
user id, expiry`` made with a key derived from the instance secret (``BASTION_SECRET_KEY``, or the generated key
file: :mod:`bastion.webhooks.crypto`). The URL works only for the signed-in user it was made for, only until it
expires (:data:`URL_SECONDS`), and only for a user of the item's organisation; anything else is 403
``media_url_invalid`` (another organisation's item: 404, nothing about it shown). The bytes come from the
``content_blobs`` table, never from a path a user controls.

A PDF's pages are also served as PNG images (``/media/{item}/pdf/{page}``, the same signature), rendered on the
server by :mod:`bastion.console.pdf_pages`, so they are blurred like any image until revealed.

The response's ``Content-Type`` is the media type sniffed at intake. Images (except SVG), video, audio and PDF are
served inline; anything else as an attachment, and types a browser would run or render as a page (HTML, SVG, XML,
JavaScript) as ``text/plain`` attachments. Every answer has ``X-Content-Type-Options: nosniff`` and a sandboxing
CSP of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from bastion.api.deps import get_app_settings, get_db
from bastion.console.deps import PREFIX, ConsoleUser
from bastion.errors import Forbidden, NotFound
from bastion.settings import Settings
from bastion.storage.models import ContentBlob, ContentItem, ReviewItem

URL_SECONDS = 15 * 60  # a page is renewed every minute; a stale tab's URLs stop working after this
INLINE_PREFIXES = ("video/", "audio/")
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "application/pdf"})
# What a browser might execute or render as a document if served under its own type: never.
ACTIVE_MARKERS = ("html", "svg", "xml", "javascript", "ecmascript", "xhtml")
MEDIA_CSP = "default-src 'none'; sandbox"


class MediaUrlInvalid(Forbidden):
    code = "media_url_invalid"


def _key(settings: Settings) -> bytes:
    from bastion.webhooks.crypto import _key_material  # the one place the instance secret is read

    return hashlib.sha256(b"bastion-console-media\x00" + _key_material(settings).encode("utf-8")).digest()


def signature(settings: Settings, item_id: int, content_id: int, user_id: int, expires: int) -> str:
    msg = f"media:{item_id}:{content_id}:{user_id}:{expires}".encode()
    return hmac.new(_key(settings), msg, hashlib.sha256).hexdigest()


def media_url(
    settings: Settings,
    item_id: int,
    content_id: int,
    user_id: int,
    *,
    now: float | None = None,
    seconds: int = URL_SECONDS,
) -> str:
    """The signed URL of a review item's content for one user."""
    expires = int((now if now is not None else time.time()) + seconds)
    sig = signature(settings, item_id, content_id, user_id, expires)
    return f"{PREFIX}/media/{item_id}?exp={expires}&sig={sig}"


def verify(
    settings: Settings, item_id: int, content_id: int, user_id: int, expires: int, sig: str, now: float | None = None
) -> None:
    """MediaUrlInvalid unless ``sig`` is this user's unexpired signature for this item and content."""
    expected = signature(settings, item_id, content_id, user_id, expires)
    if not sig or not hmac.compare_digest(expected.encode(), sig.encode()):
        raise MediaUrlInvalid("this media link is not valid for you; reload the item page")
    if expires < (now if now is not None else time.time()):
        raise MediaUrlInvalid("this media link has expired; reload the item page")


def response_headers(media_type: str | None, content_id: int) -> tuple[str, dict[str, str]]:
    """The Content-Type and headers the bytes are served with (see the module docstring)."""
    mime = (media_type or "").split(";")[0].strip().lower() or "application/octet-stream"
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": MEDIA_CSP,
        "Cache-Control": "private, no-store",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if any(marker in mime for marker in ACTIVE_MARKERS):
        mime = "text/plain; charset=utf-8"
        headers["Content-Disposition"] = f'attachment; filename="content-{content_id}.txt"'
    elif mime in INLINE_TYPES or mime.startswith(INLINE_PREFIXES):
        headers["Content-Disposition"] = "inline"
    else:
        if mime == "text/plain":
            mime = "text/plain; charset=utf-8"
        headers["Content-Disposition"] = f'attachment; filename="content-{content_id}.bin"'
    return mime, headers


def _signed_content(
    request: Request, item_id: int, user_id: int, organisation_id: int, exp: int, sig: str
) -> tuple[ContentItem, bytes]:
    """The review item's content row and bytes, once the URL's signature checks out for this user (see the module
    docstring for the errors)."""
    db, settings = get_db(request), get_app_settings(request)
    with db.session() as s:
        row = s.get(ReviewItem, item_id)
        if row is None or row.organisation_id != organisation_id:
            raise NotFound(f"no review item {item_id}", code="review_item_not_found")
        verify(settings, item_id, row.content_id, user_id, exp, sig)
        item = s.get(ContentItem, row.content_id)
        blob = s.get(ContentBlob, row.content_id)
        if item is None or blob is None or item.organisation_id != organisation_id:
            raise NotFound("this item's content is no longer kept", code="media_not_kept")
        s.expunge(item)
        return item, bytes(blob.data)


def add_media_routes(router: APIRouter) -> None:
    @router.get("/media/{item_id}", name="console_media")
    def media(
        request: Request,
        item_id: int,
        user: ConsoleUser,
        exp: Annotated[int, Query()] = 0,
        sig: Annotated[str, Query(max_length=128)] = "",
    ) -> Response:
        """The bytes of a review item's content (signed URL for the signed-in user; see the module docstring)."""
        item, data = _signed_content(request, item_id, user.user_id, user.organisation_id, exp, sig)
        media_type, headers = response_headers(item.media_type, item.id)
        return _ranged(request, data, media_type, headers)

    @router.get("/media/{item_id}/pdf/{page}", name="console_media_pdf_page")
    def pdf_page(
        request: Request,
        item_id: int,
        page: int,
        user: ConsoleUser,
        exp: Annotated[int, Query()] = 0,
        sig: Annotated[str, Query(max_length=128)] = "",
    ) -> Response:
        """One page of a PDF item as a PNG (rendered on the server; see bastion.console.pdf_pages)."""
        from bastion.console.pdf_pages import render_page

        item, data = _signed_content(request, item_id, user.user_id, user.organisation_id, exp, sig)
        if item.content_type != "pdf":
            raise NotFound("this item is not a PDF", code="pdf_page_not_found")
        _, headers = response_headers("image/png", item_id)
        return Response(render_page(data, page), media_type="image/png", headers=headers)


def pdf_page_urls(url: str, pages: int) -> list[str]:
    """The signed URLs of a PDF item's first ``pages`` page images, from the item's signed media URL (the same
    signature covers them: same item, content, user and expiry)."""
    path, _, query = url.partition("?")
    return [f"{path}/pdf/{n}?{query}" for n in range(1, pages + 1)]


def _ranged(request: Request, data: bytes, media_type: str, headers: dict[str, str]) -> Response:
    """Answer a single ``Range: bytes=a-b`` (video players seek with it); anything else gets the whole body."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    spec = request.headers.get("range", "")
    if spec.startswith("bytes=") and "," not in spec:
        start_s, _, end_s = spec[6:].partition("-")
        try:
            if start_s:
                start = int(start_s)
                end = min(int(end_s), len(data) - 1) if end_s else len(data) - 1
            else:
                start, end = max(0, len(data) - int(end_s)), len(data) - 1
        except ValueError:
            start, end = 0, -1
        if 0 <= start <= end < len(data):
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)
        if start_s or end_s:
            return Response(b"", status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
    return Response(data, media_type=media_type, headers=headers)


__all__ = ["MediaUrlInvalid", "add_media_routes", "media_url", "response_headers", "signature", "verify"]
