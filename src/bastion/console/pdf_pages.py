"""A PDF under review shown as page images, so the wellbeing blur and greyscale apply to it like to any image.

Pages are rendered on the server with PDFium (``pypdfium2``, whose wheel ships the library: nothing to install or
download) into PNGs, one per request through the same signed, expiring media URL as the item's other bytes
(:mod:`bastion.console.media`). The PDF is never handed to the reviewer's browser to render unblurred; the original
file stays downloadable behind an explicit link.

Hostile PDFs are bounded: only the first :data:`MAX_PAGES` pages are offered, a page is scaled to at most
:data:`MAX_WIDTH` pixels wide and :data:`MAX_PIXELS` in all (a page declaring absurd dimensions is scaled down, not
allocated), and a file PDFium cannot open answers a clear error instead of a broken page. PDFium is not thread-safe,
so rendering is serialised by one lock per process.
"""

from __future__ import annotations

import io
import threading

from bastion.errors import InvalidInput, NotFound

MAX_PAGES = 20
MAX_WIDTH = 1000
MAX_PIXELS = 4_000_000
_LOCK = threading.Lock()


class PdfUnreadable(InvalidInput):
    code = "pdf_unreadable"


def _open(data: bytes):  # type: ignore[no-untyped-def]
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise PdfUnreadable(f"the PDF could not be opened ({exc})") from exc


def page_count(data: bytes) -> int:
    """How many pages the document has (all of them; the console shows the first :data:`MAX_PAGES`)."""
    with _LOCK:
        doc = _open(data)
        try:
            return len(doc)
        finally:
            doc.close()


def render_page(data: bytes, number: int) -> bytes:
    """Page ``number`` (1-based) as a PNG, at most :data:`MAX_WIDTH` wide and :data:`MAX_PIXELS` in area."""
    if not 1 <= number <= MAX_PAGES:
        raise NotFound(f"only pages 1 to {MAX_PAGES} are shown", code="pdf_page_not_found")
    with _LOCK:
        doc = _open(data)
        try:
            if number > len(doc):
                raise NotFound(f"the PDF has {len(doc)} pages", code="pdf_page_not_found")
            page = doc[number - 1]
            width, height = page.get_size()  # points
            if width <= 0 or height <= 0:
                raise PdfUnreadable(f"page {number} has no area")
            scale = min(MAX_WIDTH / width, (MAX_PIXELS / (width * height)) ** 0.5, 4.0)
            image = page.render(scale=scale).to_pil()
        except PdfUnreadable:
            raise
        except NotFound:
            raise
        except Exception as exc:  # noqa: BLE001 - PDFium's failures on a hostile page are errors, not crashes
            raise PdfUnreadable(f"page {number} could not be rendered ({type(exc).__name__})") from exc
        finally:
            doc.close()
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", optimize=False)
    return out.getvalue()
