"""The ``url`` and ``url_md5`` signal types: canonical form, hostile input, ThreatExchange-compatible MD5."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion import signals
from bastion.content import Content, ContentType
from bastion.errors import ContentTooLarge, InvalidInput, InvalidSignal, UnsupportedContent
from bastion.signals.url import (
    MAX_URL_LENGTH,
    TRACKING_PARAMS,
    URLMD5Signal,
    URLSignal,
    canonical_url,
    threatexchange_url_md5,
)


def md5(s: str) -> str:
    return hashlib.md5(s.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    ("given_url", "canonical"),
    [
        # scheme: http, https, none and protocol-relative all give the same form
        ("http://example.com/x", "example.com/x"),
        ("https://example.com/x", "example.com/x"),
        ("example.com/x", "example.com/x"),
        ("//example.com/x", "example.com/x"),
        ("HTTPS://EXAMPLE.COM/x", "example.com/x"),
        ("http:example.com/x", "example.com/x"),
        # host: case, trailing dot, userinfo, default ports, IDN
        ("https://User:Secret@WWW.Example.COM.:443/", "www.example.com/"),
        ("http://example.com:80/", "example.com/"),
        ("http://example.com:8080/", "example.com:8080/"),
        ("http://example.com:0080/", "example.com/"),
        ("example.com:", "example.com/"),
        ("localhost:8080/x", "localhost:8080/x"),
        ("https://Bücher.example/", "xn--bcher-kva.example/"),
        ("https://faß.de/", "xn--fa-hia.de/"),  # IDNA 2008, not the transitional fass.de
        ("http://ａｂｃ。com/", "abc.com/"),  # UTS 46 maps fullwidth letters and the ideographic full stop
        ("http://i❤.ws/", "xn--i-7iq.ws/"),  # refused by IDNA 2008, kept through IDNA 2003
        ("http://ex%41mple.com/", "example.com/"),
        ("http://sub_domain.example.com/", "sub_domain.example.com/"),
        # IP literals, in every form browsers accept
        ("http://127.0.0.1/", "127.0.0.1/"),
        ("http://0x7f.1/", "127.0.0.1/"),
        ("http://2130706433/", "127.0.0.1/"),
        ("http://0177.0.0.1/", "127.0.0.1/"),
        ("http://[2001:DB8:0:0::1]:443/v", "[2001:db8::1]/v"),
        ("http://[::ffff:127.0.0.1]:8443/", "[::ffff:7f00:1]:8443/"),
        # path: empty, dot segments, percent-encoding, non-ASCII, backslashes, case kept
        ("http://example.com", "example.com/"),
        ("http://example.com/a/./b/../c", "example.com/a/c"),
        ("http://example.com/a/b/..", "example.com/a/"),
        ("http://example.com/../../x", "example.com/x"),
        ("http://example.com/%2e%2E/%2E/x", "example.com/x"),
        ("http://example.com/%7euser/%41%2f%3a", "example.com/~user/A%2F%3A"),
        ("http://example.com/a%2fb", "example.com/a%2Fb"),
        ("http://example.com/é ö", "example.com/%C3%A9%20%C3%B6"),
        ("http://example.com/%c3%a9", "example.com/%C3%A9"),
        ("http://example.com/100%", "example.com/100%25"),
        ("http://example.com/%zz", "example.com/%25zz"),
        ("http:\\\\example.com\\a\\b", "example.com/a/b"),
        ("http://example.com/Path//To/", "example.com/Path//To/"),
        # query: tracking removed, order kept, empty parts dropped; fragment dropped
        ("http://example.com/?b=2&a=1", "example.com/?b=2&a=1"),
        ("http://example.com/?utm_source=x&id=7&UTM_Medium=y&fbclid=z&gclid=q", "example.com/?id=7"),
        ("http://example.com/?utm_source=x", "example.com/"),
        ("http://example.com/?", "example.com/"),
        ("http://example.com/?a=1&&b=2&", "example.com/?a=1&b=2"),
        ("http://example.com/?q=%e2%9c%93&x=%41", "example.com/?q=%E2%9C%93&x=A"),
        ("https://www.youtube.com/watch?v=abc&si=XYZ&t=10", "www.youtube.com/watch?v=abc&t=10"),
        ("http://example.com/a#section?x=1", "example.com/a"),
        # whitespace: stripped at the ends, tabs and newlines removed inside (as browsers do)
        ("  http://example.com/a\n ", "example.com/a"),
        ("http://exam\tple.com/a\r\nb", "example.com/ab"),
    ],
)
def test_canonical_form(given_url: str, canonical: str) -> None:
    assert canonical_url(given_url) == canonical
    assert URLSignal.validate(given_url) == canonical
    assert canonical_url(canonical) == canonical


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ("javascript:alert(1)", "url_scheme_unsupported"),
        ("JavaScript:alert(1)", "url_scheme_unsupported"),
        ("java\nscript:alert(1)", "url_scheme_unsupported"),
        ("data:text/html,<b>hi</b>", "url_scheme_unsupported"),
        ("file:///etc/passwd", "url_scheme_unsupported"),
        ("ftp://example.com/file", "url_scheme_unsupported"),
        ("mailto:someone@example.com", "url_scheme_unsupported"),
        ("http://", "url_missing_host"),
        ("http:///", "url_missing_host"),
        ("/just/a/path", "url_missing_host"),
        ("http://user@/", "url_missing_host"),
        ("http://exa mple.com/", "url_bad_host"),
        ("http://exa<mple.com/", "url_bad_host"),
        ("http://example..com/", "url_bad_host"),
        ("http://" + "a" * 64 + ".com/", "url_bad_host"),
        ("http://1.2.3.4.5/", "url_bad_host"),
        ("http://256.1.1.1/", "url_bad_host"),
        ("http://1.2.3.0x100/", "url_bad_host"),
        ("http://example.09/", "url_bad_host"),
        ("http://[::1/", "url_bad_host"),
        ("http://[::g]/", "url_bad_host"),
        ("http://[fe80::1%25eth0]/", "url_bad_host"),
        ("http://example.com:99999/", "url_bad_port"),
        ("http://example.com:8o/", "url_bad_port"),
        ("http://ex\x00ample.com/", "url_control_characters"),
        ("http://example.com/\x7f", "url_control_characters"),
        ("http://example.com/a\x85b", "url_control_characters"),
        ("http://example.com/" + "a" * MAX_URL_LENGTH, "url_too_long"),
        ("http://example.com/" + "é" * (MAX_URL_LENGTH // 4), "url_too_long"),  # short input, long canonical form
        ("", "invalid_url"),
        ("   ", "invalid_url"),
    ],
)
def test_bad_urls_are_refused_with_a_code(bad: str, code: str) -> None:
    with pytest.raises(InvalidSignal) as err:
        canonical_url(bad)
    assert err.value.code == code
    with pytest.raises(InvalidSignal):
        signals.validate("url", bad)


@pytest.mark.parametrize(
    ("bad", "error", "code"),
    [
        ("javascript:alert(1)", UnsupportedContent, "url_scheme_unsupported"),
        ("data:text/plain,hello", UnsupportedContent, "url_scheme_unsupported"),
        ("http://example.com/" + "a" * MAX_URL_LENGTH, ContentTooLarge, "url_too_long"),
        ("http://exa mple.com/", InvalidInput, "url_bad_host"),
    ],
)
def test_bad_url_content_errors(bad: str, error: type[Exception], code: str) -> None:
    content = Content.from_url(bad)
    for signal_type in (URLSignal, URLMD5Signal):
        with pytest.raises(error) as err:
            signal_type.compute(content)
        assert err.value.code == code
        assert not isinstance(err.value, InvalidSignal)  # content errors, not signal-format errors


def test_tracking_parameters_are_all_removed() -> None:
    query = "&".join(f"{name}=1" for name in sorted(TRACKING_PARAMS))
    assert canonical_url(f"http://example.com/p?keep=1&{query}&utm_anything=2&mtm_kwd=3") == "example.com/p?keep=1"
    # names that merely contain a tracking name are kept
    kept = "example.com/?utmost=1&basis=2&fbclid_x=3"
    assert canonical_url("http://" + kept) == kept


_host = st.sampled_from(["example.com", "EXAMPLE.org.", "bücher.example", "127.0.0.1", "[::1]", "a_b.example"])
_piece = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="#"), max_size=30)


@given(
    scheme=st.sampled_from(["http://", "https://", "//", ""]),
    host=_host,
    port=st.sampled_from(["", ":80", ":443", ":8080"]),
    path=_piece,
    query=_piece,
)
def test_canonical_form_is_stable(scheme: str, host: str, port: str, path: str, query: str) -> None:
    url = f"{scheme}{host}{port}/{path}?{query}"
    canonical = canonical_url(url)
    assert canonical_url(canonical) == canonical
    assert canonical.isascii() and canonical.isprintable() and " " not in canonical
    assert canonical_url("https://" + canonical) == canonical


def test_url_signal_from_content() -> None:
    content = Content.from_url("  HTTPS://www.Example.com:443/news/../video?id=3&utm_campaign=z#t=10  ")
    assert content.content_type is ContentType.URL
    assert URLSignal.compute(content) == [signals.Signal("url", "www.example.com/video?id=3")]
    by_type = {}
    for s in signals.compute_all(content):
        by_type.setdefault(s.type, []).append(s.value)
    assert set(by_type) == {"url", "url_md5"}
    assert by_type["url"] == ["www.example.com/video?id=3"]


def test_url_types_are_registered_and_exact() -> None:
    assert signals.get("url") is URLSignal
    assert signals.get("url_md5") is URLMD5Signal
    assert {t.name for t in signals.types_for(ContentType.URL)} >= {"url", "url_md5"}
    assert URLSignal.exact and URLMD5Signal.exact
    a, b = URLSignal.examples()[:2]
    assert URLSignal.distance(a, a) == 0 and URLSignal.distance(a, b) == URLSignal.distance(b, a) == 1
    assert URLSignal.is_match(0) and not URLSignal.is_match(1)


def test_url_does_not_apply_to_files() -> None:
    with pytest.raises(UnsupportedContent) as err:
        URLSignal.compute(Content.from_text("http://example.com/ is a link in a text"))
    assert err.value.code == "not_a_url"


# -- url_md5: python-threatexchange's form ------------------------------------------------------------------------
def test_url_md5_matches_threatexchange_test_vector() -> None:
    # The vector from python-threatexchange's own tests: the scheme is not part of the hashed string.
    assert threatexchange_url_md5("www.facebook.com/?user=123") == "e359430911fe80c2dd526d3cca21da30"
    assert threatexchange_url_md5("https://www.facebook.com/?user=123") == "e359430911fe80c2dd526d3cca21da30"


@pytest.mark.parametrize(
    ("given_url", "hashed"),
    [
        # lower-cased whole, first "<scheme>://" removed, nothing else touched
        ("https://Example.com/Path?Q=1", "example.com/path?q=1"),
        ("HTTP://Example.com:80/a/./b?utm_source=x#frag", "example.com:80/a/./b?utm_source=x#frag"),
        ("https://user@Bücher.example/", "user@bücher.example/"),
        ("example.com/x", "example.com/x"),
        ("ftp://example.com/f", "example.com/f"),
        ("http://example.com/?", "example.com/"),  # geturl() drops an empty query
        ("http://example.com/#", "example.com/"),  # and an empty fragment
    ],
)
def test_url_md5_known_values(given_url: str, hashed: str) -> None:
    assert threatexchange_url_md5(given_url) == md5(hashed)


def test_url_md5_signal_gives_the_given_and_the_canonical_form() -> None:
    content = Content.from_url("https://WWW.Example.com/a/?utm_source=feed&id=1#top")
    out = URLMD5Signal.compute(content)
    assert [(s.value, s.meta["form"]) for s in out] == [
        (md5("www.example.com/a/?utm_source=feed&id=1#top"), "given"),
        (md5("www.example.com/a/?id=1"), "canonical"),
    ]
    # a URL already in canonical shape gives one value
    clean = URLMD5Signal.compute(Content.from_url("https://example.com/a"))
    assert [s.value for s in clean] == [md5("example.com/a")]


def test_url_md5_validate() -> None:
    assert URLMD5Signal.validate("  E359430911FE80C2DD526D3CCA21DA30 ") == "e359430911fe80c2dd526d3cca21da30"
    for bad in URLMD5Signal.invalid_examples():
        with pytest.raises(InvalidSignal):
            URLMD5Signal.validate(bad)
