"""Remote URL fetching: SSRF refusals (addresses, schemes, ports, redirects) and size/time limits.

Only 127.0.0.1 is ever connected to: a local http.server in a thread. Every refusal of another address happens
before any connection (the resolver is injected, so no DNS query leaves the machine either).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bastion.errors import BastionError, ContentTooLarge, UrlFetchFailed, UrlForbiddenAddress
from bastion.intake import fetch
from bastion.intake.fetch import check_address, fetch_url

BODY = b"benign test body\n" * 10


class _Handler(BaseHTTPRequestHandler):
    seen_hosts: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen_hosts.append(self.headers.get("Host", ""))
        path, _, query = self.path.partition("?")
        if path == "/ok":
            self._send(200, BODY, {"Content-Type": "text/plain"})
        elif path == "/stream":  # no Content-Length: only the streaming limit can stop it
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"x" * 1024)
        elif path == "/declared":
            self._send(200, b"small", {"Content-Length": "999999999"})
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, BODY)
        elif path == "/gzip":
            self._send(200, b"\x1f\x8b", {"Content-Encoding": "gzip"})
        elif path.startswith("/chain/"):  # /chain/N redirects N times, then lands on /ok
            n = int(path.rsplit("/", 1)[1])
            self._send(302, headers={"Location": f"/chain/{n - 1}" if n > 0 else "/ok"})
        elif path == "/to":
            self._send(302, headers={"Location": query})
        elif path == "/loop":
            self._send(301, headers={"Location": "/loop"})
        else:
            self._send(404, b"nope")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _local(server: tuple[str, int], path: str, **kw: object) -> fetch.FetchedContent:
    host, port = server
    kw.setdefault("max_bytes", 10_000)
    kw.setdefault("timeout", 5.0)
    return fetch_url(f"http://{host}:{port}{path}", allow_private=True, allowed_ports={port}, **kw)


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolver must not be asked about {host}")


# --- the local server, allowed explicitly ---------------------------------------------------------------------


def test_fetch_ok(server):
    got = _local(server, "/ok")
    assert (got.status, got.data, got.content_type_header) == (200, BODY, "text/plain")
    assert got.url_final == f"http://127.0.0.1:{server[1]}/ok"


def test_non_2xx_status_is_returned_not_raised(server):
    got = _local(server, "/missing")
    assert (got.status, got.data) == (404, b"nope")


def test_size_limit_stops_a_stream_midway(server):
    with pytest.raises(ContentTooLarge) as exc:
        _local(server, "/stream", max_bytes=10_000)
    assert exc.value.code == "content_too_large"
    assert len(_local(server, "/stream", max_bytes=64 * 1024).data) == 64 * 1024  # exactly at the limit is fine


def test_declared_content_length_over_limit_is_refused_before_reading(server):
    with pytest.raises(ContentTooLarge):
        _local(server, "/declared", max_bytes=1000)


def test_slow_server_times_out_with_a_code(server):
    with pytest.raises(UrlFetchFailed) as exc:
        _local(server, "/slow", timeout=0.3)
    assert exc.value.code == "url_fetch_timeout"


def test_compressed_reply_is_refused_not_decompressed(server):
    with pytest.raises(UrlFetchFailed) as exc:
        _local(server, "/gzip")
    assert exc.value.code == "url_fetch_failed"


def test_redirect_chain_is_followed(server):
    got = _local(server, "/chain/3")
    assert got.data == BODY and got.url_final.endswith("/ok")


def test_redirect_limit(server):
    assert _local(server, "/chain/4", max_redirects=5).data == BODY  # 5 redirects: allowed
    with pytest.raises(UrlFetchFailed) as exc:
        _local(server, "/chain/5", max_redirects=5)
    assert exc.value.code == "url_too_many_redirects"
    with pytest.raises(UrlFetchFailed, match="redirects"):
        _local(server, "/loop")


def test_connects_to_the_vetted_ip_and_sends_the_original_host(server):
    """DNS rebinding defence: the name is resolved once per hop and httpx is handed the IP, not the name."""
    _, port = server
    calls: list[str] = []

    def resolver(host: str, p: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    _Handler.seen_hosts.clear()
    got = fetch_url(
        f"http://files.example:{port}/chain/1", max_bytes=10_000, timeout=5, resolver=resolver,
        allow_private=True, allowed_ports={port},
    )  # fmt: skip
    assert got.data == BODY and got.url_final == f"http://files.example:{port}/ok"
    assert calls == ["files.example"] * 3
    assert _Handler.seen_hosts == [f"files.example:{port}"] * 3


def test_connection_refused_is_a_coded_error(server):
    with pytest.raises(UrlFetchFailed) as exc:
        fetch_url("http://127.0.0.1:9/", max_bytes=10, timeout=2, allow_private=True, allowed_ports={9})
    assert exc.value.code == "url_fetch_failed"


# --- refusals by default ----------------------------------------------------------------------------------------


def test_loopback_refused_by_default(server):
    host, port = server
    for url in (f"http://{host}:{port}/ok", f"http://localhost:{port}/ok"):
        with pytest.raises(UrlForbiddenAddress) as exc:
            fetch_url(url, max_bytes=10_000, timeout=5, allowed_ports={port})
        assert exc.value.code == "url_forbidden_address"


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.1"], ["172.16.5.4"], ["192.168.1.1"], ["127.0.0.1"], ["169.254.169.254"], ["100.64.0.1"],
        ["0.0.0.0"], ["224.0.0.1"], ["240.0.0.1"], ["255.255.255.255"], ["::1"], ["::"], ["fe80::1"], ["fc00::1"],
        ["fd00:ec2::254"], ["ff02::1"], ["::ffff:127.0.0.1"], ["::ffff:169.254.169.254"], ["2002:7f00:1::"],
        ["64:ff9b::a00:1"], ["93.184.216.34", "10.0.0.1"], ["2606:4700::1111", "::1"],
    ],
)  # fmt: skip
def test_resolved_addresses_refused(addresses):
    def resolver(host: str, port: int) -> list[str]:
        return addresses

    with pytest.raises(UrlForbiddenAddress):
        fetch_url("http://public.example/", max_bytes=10, timeout=1, resolver=resolver)


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1", "127.0.0.1.", "0", "017700000001",
     "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:0:0:1]", "169.254.169.254", "0xa9.0xfe.0xa9.0xfe",
     "256.1.1.1"],
)  # fmt: skip
def test_numeric_host_tricks_refused_without_resolving(host):
    with pytest.raises(UrlForbiddenAddress):
        fetch_url(f"http://{host}/", max_bytes=10, timeout=1, resolver=_no_dns)


@pytest.mark.parametrize("url", ["ftp://files.example/x", "file:///etc/passwd", "gopher://x/", "data:,hi", "//x/"])
def test_non_http_schemes_refused(url):
    with pytest.raises(BastionError) as exc:
        fetch_url(url, max_bytes=10, timeout=1, resolver=_no_dns)
    assert exc.value.code == "url_scheme_unsupported"


@pytest.mark.parametrize("url", ["http://files.example:22/", "http://files.example:6379/", "https://files.example:0/"])
def test_ports_outside_the_allow_list_refused(url):
    with pytest.raises(BastionError) as exc:
        fetch_url(url, max_bytes=10, timeout=1, resolver=_no_dns)
    assert exc.value.code == "url_port_forbidden"


def test_userinfo_refused():
    with pytest.raises(BastionError) as exc:
        fetch_url("http://user:pw@files.example/", max_bytes=10, timeout=1, resolver=_no_dns)
    assert exc.value.code == "url_userinfo_forbidden"


def test_check_address_policy():
    for public in ("93.184.216.34", "1.1.1.1", "2606:4700::1111"):
        assert str(check_address(public)) == public
    for private in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1"):
        with pytest.raises(UrlForbiddenAddress):
            check_address(private)
        assert check_address(private, allow_private=True)
    for never in ("0.0.0.0", "::", "224.0.0.1"):
        with pytest.raises(UrlForbiddenAddress):
            check_address(never, allow_private=True)


# --- every redirect hop is re-vetted ----------------------------------------------------------------------------


@pytest.fixture
def only_test_server_allowed(monkeypatch):
    """The default policy, except that the test server's own 127.0.0.1 is allowed (for the first hop)."""
    real = fetch.check_address

    def policy(ip, allow_private=False):
        if str(ip) == "127.0.0.1":
            return real(ip, allow_private=True)
        return real(ip, allow_private=False)

    monkeypatch.setattr(fetch, "check_address", policy)


@pytest.mark.parametrize(
    ("location", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "url_forbidden_address"),
        ("http://[::1]/", "url_forbidden_address"),
        ("http://2852039166/", "url_forbidden_address"),  # 169.254.169.254 as one number
        ("http://metadata.example/", "url_forbidden_address"),
        ("ftp://files.example/", "url_scheme_unsupported"),
        ("http://files.example:25/", "url_port_forbidden"),
    ],
)
def test_redirect_hops_are_rechecked(server, only_test_server_allowed, location, code):
    host, port = server

    def resolver(name: str, p: int) -> list[str]:
        assert name == "metadata.example", name
        return ["169.254.169.254"]

    first_hop = fetch_url(f"http://{host}:{port}/ok", max_bytes=10_000, timeout=5, allowed_ports={port})
    assert first_hop.data == BODY  # the fixture lets the test server through with the default policy
    with pytest.raises(BastionError) as exc:
        fetch_url(
            f"http://{host}:{port}/to?{location}", max_bytes=10_000, timeout=5, resolver=resolver,
            allowed_ports={port, 80},
        )  # fmt: skip
    assert exc.value.code == code


# --- https: connect to the IP, but SNI and the certificate check use the name -------------------------------------


def _self_signed(tmp_path, name: str):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_sends_sni_and_verifies_the_certificate_against_the_name(tmp_path):
    import ssl

    cert_path, key_path = _self_signed(tmp_path, "secure.example")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    kw = dict(max_bytes=10_000, timeout=5, resolver=lambda h, p: ["127.0.0.1"], allow_private=True)
    try:
        got = fetch_url(f"https://secure.example:{port}/ok", allowed_ports={port}, verify=client_ctx, **kw)
        assert got.data == BODY and sni == ["secure.example"]
        with pytest.raises(UrlFetchFailed) as exc:  # same IP, another name: the certificate does not match it
            fetch_url(f"https://other.example:{port}/ok", allowed_ports={port}, verify=client_ctx, **kw)
        assert exc.value.code == "url_fetch_failed" and sni[-1] == "other.example"
    finally:
        httpd.shutdown()
        httpd.server_close()
