"""Fetch a submitted remote URL without letting the submitter reach inside our network (SSRF protection).

A platform may let its users submit a URL instead of bytes; fetching it naively would let anyone make Bastion
request ``http://169.254.169.254/`` (cloud metadata credentials), ``http://localhost:5432`` or an intranet host.
So every hop, the first URL and each redirect alike, is vetted before any packet leaves:

1. Scheme: http or https only. Port: from an allow-list (80, 443, 8080, 8443 by default). No ``user:pass@``.
2. Host: an IP literal is read the way ``inet_aton`` (and so browsers and curl) read it, so ``2130706433``,
   ``0177.0.0.1`` and ``0x7f.1`` are all 127.0.0.1; otherwise the name is resolved here (``getaddrinfo`` or an
   injected resolver) and EVERY address it resolves to must pass :func:`check_address`: globally routable only,
   never loopback, private, link-local (incl. metadata 169.254.169.254), CGNAT, multicast, reserved, unspecified,
   IPv6 ULA, nor an IPv6 form that embeds one of these (IPv4-mapped, 6to4, Teredo, NAT64).
3. DNS rebinding: the name could resolve to a public address for the check and a private one for the connect.
   So we never let httpx resolve it: the request URL is rewritten to the vetted IP, the original ``Host`` header
   is sent, and for https the TLS ``server_hostname`` (SNI and certificate check) is the original name via
   httpcore's ``sni_hostname`` request extension. The certificate is still verified against the name.
4. Redirects are followed by hand (``follow_redirects=False``), each Location re-vetted from step 1.
5. Limits: a Content-Length over ``max_bytes`` is refused before reading; the body is streamed and refused the
   moment it passes ``max_bytes``; one deadline covers the whole fetch (all hops, connect and read), enforced
   both as httpx's per-operation timeout (the time left) and between body chunks (against trickling servers).
   We ask for ``Accept-Encoding: identity`` and read raw bytes; a server that compresses anyway is refused
   (``url_fetch_failed``) rather than decompressed, so no decompression bomb can get past ``max_bytes``.
   Proxies and .netrc from the environment are ignored (``trust_env=False``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
import idna

from bastion.errors import (
    ContentTooLarge,
    InvalidInput,
    UrlFetchFailed,
    UrlFetchTimeout,
    UrlForbiddenAddress,
    UrlPortForbidden,
    UrlSchemeUnsupported,
    UrlTooManyRedirects,
)

DEFAULT_PORTS = frozenset({80, 443, 8080, 8443})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]


@dataclass(frozen=True)
class FetchedContent:
    url_final: str  # the URL whose response is returned (after redirects), with the original host name
    status: int
    content_type_header: str | None
    data: bytes


def check_address(ip: str | IPAddress, allow_private: bool = False) -> IPAddress:
    """Return ``ip`` as an address object if Bastion may connect to it; raise UrlForbiddenAddress if not.

    ``allow_private`` (tests, or an operator fetching from their own intranet) permits loopback, private and
    link-local addresses, but never the unspecified address or multicast.
    """
    addr = ip if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) else _parse_ip(str(ip))
    if addr.is_unspecified or addr.is_multicast:
        raise UrlForbiddenAddress(f"address {addr} cannot be fetched from", address=str(addr))
    if allow_private:
        return addr
    for candidate in (addr, *_embedded_ipv4(addr)):
        if (
            not candidate.is_global
            or candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_reserved
            or candidate.is_multicast
            or candidate.is_unspecified
            or getattr(candidate, "is_site_local", False)
        ):
            raise UrlForbiddenAddress(
                f"address {addr} is not a public internet address", address=str(addr), reason="not_global"
            )
    return addr


def _parse_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise UrlForbiddenAddress(f"{text!r} is not an IP address", address=text) from None


def _embedded_ipv4(addr: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 one (which a dual-stack host may end up connecting to)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    out = [a for a in (addr.ipv4_mapped, addr.sixtofour) if a is not None]
    if addr.teredo is not None:
        out.extend(addr.teredo)
    if addr in _NAT64:
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


def _literal_ip(host: str) -> IPAddress | None:
    """``host`` as an IP if it is one, read with inet_aton's rules for IPv4 (decimal, octal, hex, short forms)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    trimmed = bare[:-1] if bare.endswith(".") else bare
    if trimmed and _NUMERIC_HOST.fullmatch(trimmed) and any(c.isdigit() for c in trimmed):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(trimmed))
        except OSError:
            # looks numeric but is not a valid address (e.g. 256.1.1.1): never let a resolver guess at it
            raise UrlForbiddenAddress(f"host {host!r} is not a valid address", host=host) from None
    return None


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


@dataclass(frozen=True)
class _Target:
    url: str  # as given (original host name), used for Location resolution and the result
    scheme: str
    host: str  # ASCII host name (or the IP's text), without brackets
    port: int
    ip: IPAddress
    target: str  # path and query to request


def _vet(url: str, *, resolver: Resolver, allow_private: bool, allowed_ports: frozenset[int]) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"malformed URL: {exc}", code="url_invalid") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlSchemeUnsupported(f"only http and https URLs can be fetched, not {scheme or 'none'!r}", url=url)
    if "@" in parts.netloc:
        raise InvalidInput("URLs with a user name or password are refused", code="url_userinfo_forbidden")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise InvalidInput("the URL has no host", code="url_invalid")
    port = port if port is not None else (443 if scheme == "https" else 80)
    if port not in allowed_ports:
        raise UrlPortForbidden(f"port {port} is not allowed", port=port, allowed=sorted(allowed_ports))
    literal = _literal_ip(raw_host)
    if literal is not None:
        host = str(literal)
        ip = check_address(literal, allow_private)
    else:
        try:
            host = idna.encode(raw_host.rstrip("."), uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidInput(f"invalid host name: {exc}", code="url_invalid") from None
        try:
            addresses = [_parse_ip(a.split("%", 1)[0]) for a in resolver(host, port)]
        except (OSError, UnicodeError) as exc:
            raise UrlFetchFailed(f"cannot resolve {host}: {exc}", host=host) from None
        if not addresses:
            raise UrlFetchFailed(f"{host} resolves to no address", host=host)
        for a in addresses:  # every one must pass: a resolver may hand any of them out to the connect
            check_address(a, allow_private)
        ip = addresses[0]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(url=url, scheme=scheme, host=host, port=port, ip=ip, target=target)


def fetch_url(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    max_redirects: int = 5,
    resolver: Resolver | None = None,
    allow_private: bool = False,
    allowed_ports: Iterable[int] = DEFAULT_PORTS,
    verify: ssl.SSLContext | bool = True,
) -> FetchedContent:
    """GET ``url`` safely (see the module docstring) and return the final response's status, type and body.

    Any status is returned (the caller decides what a 404 means) except redirects, which are followed up to
    ``max_redirects`` times. Raises coded errors: url_scheme_unsupported, url_port_forbidden,
    url_forbidden_address, url_too_many_redirects, url_fetch_timeout, url_fetch_failed, content_too_large.
    ``verify`` is httpx's: the system trust store by default, or an SSLContext (tests use their own CA).
    """
    resolve = resolver or _system_resolver
    ports = frozenset(allowed_ports)
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout, verify=verify) as client:
        current = url
        for _ in range(max_redirects + 1):
            tgt = _vet(current, resolver=resolve, allow_private=allow_private, allowed_ports=ports)
            result = _get(client, tgt, max_bytes=max_bytes, deadline=deadline)
            if isinstance(result, FetchedContent):
                return result
            current = urljoin(tgt.url, result)
        raise UrlTooManyRedirects(f"more than {max_redirects} redirects", url=url, max_redirects=max_redirects)


def _get(client: httpx.Client, tgt: _Target, *, max_bytes: int, deadline: float) -> FetchedContent | str:
    """One request to the vetted IP; returns the content, or the Location of a redirect."""
    ip_host = f"[{tgt.ip}]" if tgt.ip.version == 6 else str(tgt.ip)
    default_port = 443 if tgt.scheme == "https" else 80
    host_header = tgt.host if tgt.port == default_port else f"{tgt.host}:{tgt.port}"
    if ":" in tgt.host and not tgt.host.startswith("["):
        host_header = f"[{tgt.host}]" if tgt.port == default_port else f"[{tgt.host}]:{tgt.port}"
    try:
        request = client.build_request(
            "GET",
            f"{tgt.scheme}://{ip_host}:{tgt.port}{tgt.target}",
            headers={"Host": host_header, "Accept-Encoding": "identity", "User-Agent": "Bastion-fetch"},
            extensions={"sni_hostname": tgt.host} if tgt.scheme == "https" else {},
            timeout=_remaining(deadline),
        )
        response = client.send(request, stream=True)
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                return response.headers["location"]
            return _read(response, tgt, max_bytes=max_bytes, deadline=deadline)
        finally:
            response.close()
    except httpx.TimeoutException:
        raise UrlFetchTimeout(f"fetching {tgt.url} took too long", url=tgt.url) from None
    except httpx.HTTPError as exc:
        raise UrlFetchFailed(f"fetching {tgt.url} failed: {exc}", url=tgt.url) from None


def _read(response: httpx.Response, tgt: _Target, *, max_bytes: int, deadline: float) -> FetchedContent:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UrlFetchFailed(f"the server sent {encoding!r}-encoded content though identity was asked", url=tgt.url)
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise ContentTooLarge(f"{tgt.url} declares {int(declared)} bytes, over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > max_bytes:
            raise ContentTooLarge(f"{tgt.url} sent more than the limit of {max_bytes} bytes", max_bytes=max_bytes)
        chunks.append(chunk)
        _remaining(deadline)
    return FetchedContent(
        url_final=tgt.url,
        status=response.status_code,
        content_type_header=response.headers.get("content-type"),
        data=b"".join(chunks),
    )


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpx.ReadTimeout("total time limit reached")
    return left
