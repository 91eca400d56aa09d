"""PDF text extraction: PDFs written here byte by byte (benign text), including damaged, encrypted and hostile ones."""

from __future__ import annotations

import io
import warnings
import zlib

import pytest
from pypdf import PdfWriter

from bastion import signals
from bastion.content import Content, ContentType
from bastion.errors import ContentTooLarge, CorruptContent, UnsupportedContent
from bastion.samples import sample_texts
from bastion.settings import reset_settings_cache
from bastion.signals import pdf as pdf_module
from bastion.signals.pdf import extract_pdf_text
from bastion.signals.text import TextMinHashSignal, TextSignal

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def make_pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1; object 1 is the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes, compress: bool = False) -> bytes:
    head = b"<< /Length %d /Filter /FlateDecode >>" % len(data := zlib.compress(data)) if compress else None
    head = head or b"<< /Length %d >>" % len(data)
    return head + b"\nstream\n" + data + b"\nendstream"


def show_text(text: str) -> bytes:
    escaped = text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    return b"BT /F1 11 Tf 50 750 Td (" + escaped + b") Tj ET"


def text_pdf(pages: list[str | bytes | None], compress: bool = False) -> bytes:
    """One page per item: a str is shown as text, bytes are a raw content stream, None is a page with no content."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", FONT]
    kids = []
    for page in pages:
        number = len(objects) + 1
        kids.append(number)
        resources = b"/Resources << /Font << /F1 3 0 R >> >>"
        if page is None:
            objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] %s >>" % resources)
            continue
        content = show_text(page) if isinstance(page, str) else page
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] %s /Contents %d 0 R >>" % (resources, number + 1)
        )
        objects.append(stream(content, compress))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    return make_pdf(objects)


def encrypted(pdf: bytes, user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def extract(data: bytes) -> str:
    content = Content.from_bytes(data)
    assert content.content_type is ContentType.PDF
    return extract_pdf_text(content)


def error_of(data: bytes) -> Exception:
    with pytest.raises(Exception) as err:
        extract(data)
    return err.value


# -- text ----------------------------------------------------------------------------------------------------------
def test_text_of_each_page() -> None:
    text = extract(text_pdf(["The ferry leaves at seven.", "Second (page) \\ here", None], compress=True))
    assert text.split("\n") == ["The ferry leaves at seven.", "Second (page) \\ here", ""]


def test_pdf_gets_text_signals_like_the_same_text() -> None:
    paragraph = sample_texts()[0]
    content = Content.from_bytes(text_pdf([paragraph]))
    types = {s.type for s in signals.compute_all(content)}
    assert types - {"text_embedding"} == {"md5", "sha256", "text", "text_minhash"}  # + the classifiers' embedding
    as_text = Content.from_text(paragraph)
    assert TextSignal.compute(content) == TextSignal.compute(as_text)
    assert TextMinHashSignal.compute(content) == TextMinHashSignal.compute(as_text)


def test_pdf_without_text_gets_file_hashes_only() -> None:
    content = Content.from_bytes(text_pdf([None, b"0 0 m 100 100 l S"]))
    assert content.text.strip() == ""
    assert {s.type for s in signals.compute_all(content)} == {"md5", "sha256"}


def test_text_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_MAX_TEXT_BYTES", "100")
    reset_settings_cache()
    assert extract(text_pdf(["short text"])) == "short text"
    err = error_of(text_pdf(["x" * 60, "y" * 60]))
    assert isinstance(err, ContentTooLarge) and err.code == "text_too_large"


# -- encryption ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_empty_password_pdfs_are_opened(algorithm: str) -> None:
    assert extract(encrypted(text_pdf(["Locked against printing only"]), "", algorithm)) == (
        "Locked against printing only"
    )


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_password_protected_pdfs_are_refused(algorithm: str) -> None:
    err = error_of(encrypted(text_pdf(["Secret"]), "a password", algorithm))
    assert isinstance(err, UnsupportedContent) and err.code == "pdf_encrypted"
    with pytest.raises(UnsupportedContent):
        signals.compute_all(Content.from_bytes(encrypted(text_pdf(["Secret"]), "a password", algorithm)))


# -- damaged files -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_pdfs_are_corrupt(keep: float) -> None:
    pdf = text_pdf(["The ferry leaves at seven."])
    err = error_of(pdf[: int(len(pdf) * keep)])
    assert isinstance(err, CorruptContent) and err.code == "corrupt_pdf"


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\n", b"%PDF-1.4\n" + b"\x00garbage\xff" * 200, b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"],
)
def test_garbage_is_corrupt(data: bytes) -> None:
    err = error_of(data)
    assert isinstance(err, CorruptContent) and err.code == "corrupt_pdf"


def test_recoverable_damage_still_reads() -> None:
    pdf = text_pdf(["Still readable"])
    broken_xref = pdf.replace(b"startxref\n", b"startxref\n1").replace(b"0000000015 00000 n", b"0000000099 00000 n")
    assert extract(broken_xref) == "Still readable"


def test_pypdf_warnings_do_not_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest runs with warnings as errors; a warning from pypdf must be logged, not raised."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadWarning

    original = PdfReader.__init__

    def warning_init(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        warnings.warn("damaged cross-reference table", PdfReadWarning, stacklevel=2)
        original(self, *args, **kwargs)

    monkeypatch.setattr(PdfReader, "__init__", warning_init)
    assert extract(text_pdf(["Warned but fine"])) == "Warned but fine"


# -- hostile files -------------------------------------------------------------------------------------------------
def test_page_tree_cycle_is_refused() -> None:
    pdf = make_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] >>",
        ]
    )
    err = error_of(pdf)
    assert isinstance(err, CorruptContent) and err.code == "pdf_page_tree_cycle"


def test_page_tree_bomb_is_refused_without_expanding_it() -> None:
    """Ten levels of ten references to one node: 10**10 pages if expanded (pypdf alone walks 100,000 first)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(10):
        objects.append(b"<< /Type /Pages /Kids [%s] /Count 10 >>" % b" ".join([b"%d 0 R" % (level + 3)] * 10))
    objects.append(b"<< /Type /Page /MediaBox [0 0 10 10] >>")
    err = error_of(make_pdf(objects))
    assert isinstance(err, CorruptContent) and err.code == "pdf_page_tree_cycle"


def test_too_many_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_module, "MAX_PDF_PAGES", 5)
    assert extract(text_pdf(["p"] * 5)) == "\n".join(["p"] * 5)
    err = error_of(text_pdf(["p"] * 6))
    assert isinstance(err, ContentTooLarge) and err.code == "pdf_too_many_pages"


def test_decompression_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * 100_000_000, 9)  # 100 MB of page content in ~100 KB
    pdf = make_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(bomb), bomb),
        ]
    )
    err = error_of(pdf)
    assert isinstance(err, ContentTooLarge) and err.code == "pdf_stream_too_large"


def test_oversized_page_content_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_module, "MAX_PAGE_CONTENT_BYTES", 10_000)
    drawing = show_text("hidden in a drawing") + b"\n" + b"0 0 m 100 100 l S\n" * 1000
    assert extract(text_pdf(["before", drawing, "after"], compress=True)) == "before\n\nafter"


def test_deeply_nested_objects_are_bounded() -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    pdf = make_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /X %s /Font << /F1 5 0 R >> >> "
            b"/Contents 4 0 R >>" % deep,
            stream(show_text("deep")),
            FONT,
        ]
    )
    try:
        extract(pdf)  # pypdf drops the unreadable page: any text at all is fine
    except CorruptContent as err:
        assert err.code == "corrupt_pdf"


class _SlowClock:
    """A clock that jumps an hour ahead after its first ``calm`` readings."""

    def __init__(self, calm: int) -> None:
        self.readings = 0
        self.calm = calm

    def monotonic(self) -> float:
        self.readings += 1
        return 0.0 if self.readings <= self.calm else 3600.0


@pytest.mark.parametrize("calm", [1, 2])  # over budget between pages / while parsing a page
def test_time_budget(monkeypatch: pytest.MonkeyPatch, calm: int) -> None:
    clock = _SlowClock(calm)
    monkeypatch.setattr(pdf_module, "time", clock)
    err = error_of(text_pdf([show_text("line") * 2000], compress=True))
    assert isinstance(err, ContentTooLarge) and err.code == "pdf_too_complex"
    assert clock.readings == calm + 1
