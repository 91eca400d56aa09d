"""Text out of PDFs, so the text signals (``text``, ``text_minhash``) cover manifestos and magazines shared as PDF.

Not a signal type: :attr:`bastion.content.Content.text` calls :func:`extract_pdf_text` for PDF content, and the PDF
file itself is hashed by md5/sha256 like any file. A PDF with no extractable text (a scan) gives empty text, hence
no text signals.

PDFs are hostile input, so extraction (pypdf, non-strict) is bounded:

- Encrypted PDFs are opened with the empty password (most "protected" PDFs only restrict printing or copying);
  other passwords are not guessed: ``UnsupportedContent`` code ``pdf_encrypted``.
- Page tree: walked by us before pypdf flattens it, so a tree that shares or repeats nodes (a cycle, or one page
  listed 10**10 times through a shared subtree) is refused at once (``CorruptContent`` ``pdf_page_tree_cycle``)
  and more than :data:`MAX_PDF_PAGES` pages is refused (``ContentTooLarge`` ``pdf_too_many_pages``).
- Decompression: pypdf stops any one stream at 75 MB (``ContentTooLarge`` ``pdf_stream_too_large``).
- Work: pypdf parses content streams at well under 1 MB/s, so a page whose decoded content is over
  :data:`MAX_PAGE_CONTENT_BYTES` is taken for a drawing (maps and diagrams have such pages, running text never
  does) and its text is skipped (logged) rather than parsed; and the whole extraction has a budget of
  :data:`MAX_PDF_SECONDS`, checked between content stream operators: over it, ``ContentTooLarge`` code
  ``pdf_too_complex`` (this limit depends on the machine's speed; the text, when extracted, does not).
- Extracted text over ``settings.max_text_bytes``: ``ContentTooLarge`` code ``text_too_large``.
- Anything else pypdf cannot read (truncated files, broken cross-references, objects nested too deeply):
  ``CorruptContent`` code ``corrupt_pdf``.

pypdf reports recoverable damage with :mod:`warnings` and :mod:`logging`; the warnings are caught and logged here
so they never surface as exceptions (pytest turns warnings into errors).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

from bastion.content import Content
from bastion.errors import BastionError, ContentTooLarge, CorruptContent, UnsupportedContent

log = logging.getLogger(__name__)

MAX_PDF_PAGES = 2000
MAX_PAGE_CONTENT_BYTES = 4 * 1024 * 1024
MAX_PDF_SECONDS = 60.0
_CHECK_EVERY = 512  # operators between two looks at the clock


class _OverBudget(Exception):
    pass


def extract_pdf_text(content: Content) -> str:
    """All the text of a PDF, one line per page at least ("" for a page without text); errors as in the module
    docstring."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with content.open() as fh:
                return _extract(fh, content.settings.max_text_bytes)
        except BastionError:
            raise
        except _OverBudget:
            raise ContentTooLarge(
                f"PDF text extraction took over {MAX_PDF_SECONDS:.0f} s", code="pdf_too_complex"
            ) from None
        except MemoryError:
            raise ContentTooLarge("PDF needs too much memory to read", code="pdf_too_complex") from None
        except RecursionError:
            raise CorruptContent("PDF objects are nested too deeply", code="corrupt_pdf") from None
        except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on damaged files; all mean "unreadable"
            raise _error_for(exc) from None
        finally:
            for w in caught:
                log.info("pypdf: %s", w.message)


def _error_for(exc: Exception) -> BastionError:
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    if isinstance(exc, FileNotDecryptedError):
        return UnsupportedContent("the PDF is encrypted with a password", code="pdf_encrypted")
    if isinstance(exc, LimitReachedError):
        return ContentTooLarge(f"PDF over a safety limit: {exc}", code="pdf_stream_too_large")
    return CorruptContent(f"unreadable PDF: {type(exc).__name__}: {exc}"[:300], code="corrupt_pdf")


def _extract(fh: Any, max_text_bytes: int) -> str:
    from pypdf import PasswordType, PdfReader

    deadline = time.monotonic() + MAX_PDF_SECONDS
    reader = PdfReader(fh, strict=False)
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise UnsupportedContent("the PDF is encrypted with a password", code="pdf_encrypted")
    _check_page_tree(reader)
    calls = 0

    def visitor(*_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise _OverBudget

    parts: list[str] = []
    size = 0
    for number, page in enumerate(reader.pages, 1):
        if time.monotonic() > deadline:
            raise _OverBudget
        contents = page.get_contents()
        text = ""
        if contents is not None and len(contents.get_data()) > MAX_PAGE_CONTENT_BYTES:
            log.info("PDF page %d: content over %d bytes, text not extracted", number, MAX_PAGE_CONTENT_BYTES)
        elif contents is not None:
            text = page.extract_text(visitor_operand_before=visitor) or ""
        size += len(text.encode("utf-8", errors="surrogatepass")) + 1
        if size > max_text_bytes:
            raise ContentTooLarge(f"PDF text is over the limit of {max_text_bytes} bytes", code="text_too_large")
        parts.append(text)
    return "\n".join(parts)


def _check_page_tree(reader: Any) -> None:
    """Refuse page trees with repeated nodes or over MAX_PDF_PAGES pages, without expanding them."""
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    try:
        root = reader.trailer["/Root"].get_object()["/Pages"]
    except (KeyError, TypeError, AttributeError):
        return  # no page tree to walk: pypdf decides (usually "corrupt")
    stack = [root]
    seen: set[tuple[int, int]] = set()
    pages = 0
    while stack:
        node = stack.pop()
        if isinstance(node, IndirectObject):
            ref = (node.idnum, node.generation)
            if ref in seen:
                raise CorruptContent("the PDF page tree repeats a node", code="pdf_page_tree_cycle")
            seen.add(ref)
        node = node.get_object() if node is not None else None
        if not isinstance(node, DictionaryObject):
            continue
        kids = node.get("/Kids")
        kids = kids.get_object() if kids is not None else None
        if isinstance(kids, ArrayObject) and (node.get("/Type") == "/Pages" or kids):
            stack.extend(reversed(kids))
        else:
            pages += 1
            if pages > MAX_PDF_PAGES:
                raise ContentTooLarge(f"PDF has over {MAX_PDF_PAGES} pages", code="pdf_too_many_pages")


__all__ = ["extract_pdf_text", "MAX_PDF_PAGES", "MAX_PAGE_CONTENT_BYTES", "MAX_PDF_SECONDS"]
