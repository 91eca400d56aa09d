"""URL signals: a canonical URL (``url``) and ThreatExchange's ``url_md5``.

Platforms see the same link written many ways (``HTTPS://Example.com:443/a/./b?utm_source=x#top``); hash lists
carry it bare (``example.com/a/b``). The ``url`` signal is one canonical string for all of them, so an exact lookup
finds them all. ``url_md5`` is the MD5 form ThreatExchange and GIFCT exchange, computed exactly as
python-threatexchange does, so our values equal theirs.

Canonical ``url`` form (``validate`` returns it; applying it twice changes nothing):

- **No scheme.** ``http`` and ``https`` name the same resource on today's web (sites redirect one to the other)
  and hash lists often carry no scheme at all, so the canonical form is ``host[:port]/path[?query]``, as in Google
  Safe Browsing's URL expressions and ThreatExchange's ``url_md5``. Input may have ``http://``, ``https://``,
  ``//`` or no scheme (``example.com/x``). Any other scheme (``javascript:``, ``data:``, ``file:``, ``ftp:``,
  ``mailto:``...) is refused: code ``url_scheme_unsupported``.
- **Host**: lower-cased; internationalised names to punycode with IDNA 2008 and UTS #46 mapping (non-transitional,
  the ``idna`` package); hosts IDNA 2008 refuses but IDNA 2003 accepts (emoji domains, still served by some
  registries) use the IDNA 2003 form, so such links can be banked; a trailing dot removed; IPv4 in any form
  browsers accept (``0x7f.1``, ``2130706433``, ``0177.0.0.1``) to dotted decimal; IPv6 compressed, in brackets.
  Letters, digits, ``-`` and ``_`` only, labels up to 63 and names up to 253 characters: else ``url_bad_host``.
- **Port**: 80 and 443 dropped (the defaults of http and https; as the scheme is not kept, either is dropped
  whatever the scheme, so the form stays stable when validated again); others kept. Not a number up to 65535:
  ``url_bad_port``.
- **Userinfo** (``user:pass@``) and **fragment** (``#...``) dropped: neither changes the resource fetched.
- **Path**: ``\\`` read as ``/`` (as browsers do); percent-encoding normalised (escapes of unreserved characters
  decoded, hex upper-cased, other non-URL characters and non-ASCII encoded as UTF-8, a stray ``%`` as ``%25``);
  dot segments resolved (after decoding, so ``%2e%2e`` is ``..``); empty path ``/``. Case and double slashes are
  kept: servers may treat them as different.
- **Query**: percent-encoding normalised the same way; empty parameters and the tracking parameters below removed
  (names compared case-insensitively); the rest **kept in their order** - sorting would merge a few more links,
  but order is meaningful to some servers (repeated keys build arrays) and links are normally copied verbatim.
  An empty query leaves no ``?``.
- **Hostile input**: over :data:`MAX_URL_LENGTH` characters before or after canonicalisation: ``url_too_long``;
  tabs and newlines are removed (as browsers do, so ``java\\nscript:`` cannot slip through); any other control
  character: ``url_control_characters``; no host: ``url_missing_host``.

``url_md5`` (python-threatexchange, ``UrlMD5Signal`` with ``common.normalize_url``): the whole URL lower-cased
(path and query too), parsed with :func:`urllib.parse.urlparse`, re-assembled with ``geturl()``, the first
``"<scheme>://"`` removed, then MD5 of the UTF-8 bytes. Unlike ``url`` it keeps tracking parameters, fragments,
ports, userinfo and dot segments, keeps IDN hosts in Unicode and folds the case of paths. We give two values when
they differ: the form of the URL as given (what a partner who hashed the same string has) and the form of our
canonical URL (what a partner who hashed the clean link has); ``meta["form"]`` says which.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import string
import urllib.parse

import idna

from bastion.content import Content, ContentType
from bastion.errors import ContentTooLarge, InvalidInput, InvalidSignal, UnsupportedContent
from bastion.signals._digest import DigestSignalType
from bastion.signals.base import Signal, SignalType

MAX_URL_LENGTH = 8192

#: Query parameters that only track who shared or clicked a link (never select content). Exact names...
# fmt: off
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid", "li_fat_id",
    "mc_eid", "mc_cid", "igshid", "igsh", "si", "_ga", "_gl", "_hsenc", "_hsmi", "__hssc", "__hstc", "__hsfp",
    "hsctatracking", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "vero_conv", "wickedid", "rb_clickid",
    "s_cid", "ml_subscriber", "ml_subscriber_hash", "epik", "ref_src", "ref_url", "srsltid", "pk_campaign",
    "pk_kwd", "pk_source", "pk_medium", "pk_content", "piwik_campaign", "piwik_kwd",
})
# fmt: on
#: ...and name prefixes (Google Analytics, Matomo).
TRACKING_PREFIXES = ("utm_", "mtm_")

_DEFAULT_PORTS = ("80", "443")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_HEX = frozenset(string.hexdigits)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_PORT_LIKE = re.compile(r"\d*(?:[/?#\\]|$)")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_STRIP = "".join(map(chr, range(0x21)))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _fail(code: str, message: str) -> InvalidSignal:
    return InvalidSignal(message, code=code, signal_type="url")


def canonical_url(url: str) -> str:
    """The canonical ``url`` form of ``url`` (see the module docstring); raises InvalidSignal with a code."""
    if not isinstance(url, str):
        raise _fail("invalid_url", "a URL must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise _fail("url_too_long", f"URL of {len(url)} characters is over the limit of {MAX_URL_LENGTH}")
    s = url.strip(_STRIP).strip().replace("\t", "").replace("\n", "").replace("\r", "")
    if not s:
        raise _fail("invalid_url", "the URL is empty")
    if _CONTROL.search(s):
        raise _fail("url_control_characters", f"URL contains control characters: {s!r:.100}")

    scheme = ""
    m = _SCHEME.match(s)
    if m:
        rest = s[m.end() :]
        name = m.group(1).lower()
        if name in ("http", "https"):
            scheme, s = name, rest.lstrip("/\\")
        elif rest.startswith(("/", "\\")) or not ("." in name or _PORT_LIKE.match(rest)):
            raise _fail("url_scheme_unsupported", f"only http and https URLs are supported, not {name}:")
        # else "example.com:8080/x": a host and port, no scheme
    if not scheme and s.startswith(("//", "\\\\")):
        s = s.lstrip("/\\")

    s = s.split("#", 1)[0]
    before, has_query, query = s.partition("?")
    before = before.replace("\\", "/")
    authority, slash, path = before.partition("/")
    host_port = authority.rpartition("@")[2]
    host, port = _split_port(host_port)
    host = _canonical_host(host)
    if port in _DEFAULT_PORTS:
        port = ""
    out = host + (":" + port if port else "") + _canonical_path(slash + path)
    if has_query:
        q = _canonical_query(query)
        if q:
            out += "?" + q
    if len(out) > MAX_URL_LENGTH:
        raise _fail("url_too_long", f"canonical URL of {len(out)} characters is over the limit of {MAX_URL_LENGTH}")
    return out


def _split_port(host_port: str) -> tuple[str, str]:
    if host_port.startswith("["):
        inner, bracket, after = host_port[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise _fail("url_bad_host", f"malformed IPv6 host {host_port!r:.100}")
        host, port = "[" + inner + "]", after[1:]
    else:
        host, _, port = host_port.partition(":") if ":" in host_port else (host_port, "", "")
    if port:
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise _fail("url_bad_port", f"bad port {port!r:.20}")
        port = str(int(port))
    return host, port


def _canonical_host(host: str) -> str:
    if not host:
        raise _fail("url_missing_host", "the URL has no host")
    if host.startswith("["):
        try:
            if "%" in host:
                raise ValueError("zone identifiers are local to one machine")
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            raise _fail("url_bad_host", f"bad IPv6 address {host!r:.100}") from None
    if "%" in host:
        try:
            host = urllib.parse.unquote(host, errors="strict")
        except UnicodeDecodeError:
            raise _fail("url_bad_host", f"bad percent-encoding in host {host!r:.100}") from None
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError:
            try:
                host = host.encode("idna").decode("ascii")  # IDNA 2003: emoji domains
            except UnicodeError:
                raise _fail("url_bad_host", f"bad internationalised host {host!r:.100}") from None
        if host.endswith("."):
            host = host[:-1]
    host = host.lower()
    ipv4 = _ipv4(host)
    if ipv4 is not None:
        return ipv4
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _fail("url_bad_host", f"bad host {host!r:.100}")
    return host


def _ipv4(host: str) -> str | None:
    """Dotted-decimal form of a host browsers read as IPv4 (WHATWG rules); None for a domain name."""
    parts = host.split(".")
    if not _is_number(parts[-1]):
        return None
    nums = [_number(p) for p in parts]
    if len(parts) > 4 or None in nums:
        raise _fail("url_bad_host", f"bad IPv4 address {host!r:.100}")
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise _fail("url_bad_host", f"IPv4 address out of range {host!r:.100}")
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(head))
    return str(ipaddress.IPv4Address(value))


def _is_number(part: str) -> bool:
    return part.isascii() and (part.isdigit() or (part[:2] == "0x" and all(c in _HEX for c in part[2:])))


def _number(part: str) -> int | None:
    if not part.isascii() or not part:
        return None
    try:
        if part[:2] == "0x":
            return int(part[2:], 16) if len(part) > 2 else 0
        if len(part) > 1 and part[0] == "0":
            return int(part[1:], 8)
        return int(part, 10)
    except ValueError:
        return None


def _normalise_escapes(text: str, safe: frozenset[str]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            if i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
                ch = chr(int(text[i + 1 : i + 3], 16))
                out.append(ch if ch in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
                i += 3
                continue
            out.append("%25")
        elif c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", errors="surrogatepass"))
        i += 1
    return "".join(out)


def _canonical_path(path: str) -> str:
    path = _normalise_escapes(path, _PATH_SAFE) or "/"
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def _canonical_query(query: str) -> str:
    kept = []
    for param in _normalise_escapes(query, _QUERY_SAFE).split("&"):
        name = param.partition("=")[0].lower()
        if param and name not in TRACKING_PARAMS and not name.startswith(TRACKING_PREFIXES):
            kept.append(param)
    return "&".join(kept)


def threatexchange_url_md5(url: str) -> str:
    """``url_md5`` exactly as python-threatexchange computes it (see the module docstring)."""
    lowered = url.lower()
    try:
        parsed = urllib.parse.urlparse(lowered)
        unscheme = parsed.geturl().replace(f"{parsed.scheme}://", "", 1)
    except ValueError as exc:
        raise _fail("invalid_url", f"cannot parse URL: {exc}") from None
    return hashlib.md5(unscheme.encode("utf-8", errors="surrogatepass"), usedforsecurity=False).hexdigest()


def _content_error(exc: InvalidSignal) -> InvalidInput:
    """The error for a URL submitted as content (the same code as for a URL signal)."""
    cls = {"url_scheme_unsupported": UnsupportedContent, "url_too_long": ContentTooLarge}.get(exc.code, InvalidInput)
    return cls(exc.message, code=exc.code)


def _url_of(content: Content) -> str:
    if content.url is None:
        raise UnsupportedContent("this content is not a URL", code="not_a_url")
    return content.url


class URLSignal(SignalType):
    """The canonical URL itself: readable in a bank, compared exactly."""

    name = "url"
    content_types = frozenset({ContentType.URL})

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        try:
            return [Signal(cls.name, canonical_url(_url_of(content)))]
        except InvalidSignal as exc:
            raise _content_error(exc) from None

    @classmethod
    def validate(cls, value: str) -> str:
        return canonical_url(value)

    @classmethod
    def examples(cls) -> list[str]:
        return [
            "example.com/",
            "example.com/news/2024/item?id=42&page=2",
            "xn--bcher-kva.example/b%C3%BCcher",
            "203.0.113.7:8080/",
            "[2001:db8::1]/video",
        ]

    @classmethod
    def invalid_examples(cls) -> list[str]:
        return [
            "",
            "   ",
            "javascript:alert(1)",
            "data:text/html,hello",
            "file:///etc/passwd",
            "ftp://example.com/",
            "http://",
            "http://exa mple.com/",
            "http://example.com:99999/",
            "http://ex\x00ample.com/",
            "http://1.2.3.4.5/",
            "http://[::1/",
            "http://" + "a" * MAX_URL_LENGTH + ".com/",
        ]


class URLMD5Signal(DigestSignalType):
    """MD5 of the URL as python-threatexchange normalises it: the form ThreatExchange and GIFCT exchange."""

    name = "url_md5"
    content_types = frozenset({ContentType.URL})
    hex_length = 32

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        url = _url_of(content)
        try:
            canonical = canonical_url(url)  # refuses what `url` refuses, with the same codes
        except InvalidSignal as exc:
            raise _content_error(exc) from None
        given = threatexchange_url_md5(url)
        out = [Signal(cls.name, given, meta={"form": "given"})]
        clean = threatexchange_url_md5(canonical)
        if clean != given:
            out.append(Signal(cls.name, clean, meta={"form": "canonical"}))
        return out

    @classmethod
    def examples(cls) -> list[str]:
        return ["e359430911fe80c2dd526d3cca21da30", threatexchange_url_md5("https://example.com/")]


SIGNAL_TYPES = (URLSignal, URLMD5Signal)
__all__ = ["URLSignal", "URLMD5Signal", "SIGNAL_TYPES", "canonical_url", "threatexchange_url_md5", "MAX_URL_LENGTH"]
