"""Loopback stand-ins for ThreatExchange's Graph API and Tech Against Terrorism's hash-list API, answering with the
recorded responses in tests/data (shaped as python-threatexchange 1.2.17 reads them). Real HTTP, never the network.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DATA = Path(__file__).parent / "data"
TE_TOKEN = "1000000000000000|recorded-test-token-aaaaaaaa"
TE_GROUP = "1000000000000001"
TAT_USER, TAT_PASSWORD = "bastion-test", "recorded-password"


def fixture(name: str, base: str = "", token: str = "") -> Any:
    text = (DATA / name).read_text().replace("{base}", base).replace("{token}", token)
    return json.loads(text)


@dataclass
class Recorded:
    """Requests the server saw: (method, path, query, form, headers)."""

    requests: list[dict[str, Any]] = field(default_factory=list)


def _handler(kind: str, recorded: Recorded) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _request(self, method: str) -> tuple[str, dict[str, str], dict[str, str]]:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            form: dict[str, str] = {}
            if method == "POST":
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            recorded.requests.append(
                {
                    "method": method,
                    "path": parts.path,
                    "query": query,
                    "form": form,
                    "authorization": self.headers.get("Authorization"),
                }
            )
            return parts.path, query, form

        def do_GET(self) -> None:  # noqa: N802
            path, query, _ = self._request("GET")
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if kind == "te":
                if query.get("access_token") != TE_TOKEN:
                    return self._send(
                        400,
                        {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}},
                    )
                if path == f"/{TE_GROUP}/threat_updates/":
                    if query.get("after"):
                        return self._send(200, fixture("threatexchange_threat_updates_2.json", base, TE_TOKEN))
                    if query.get("start_time"):
                        return self._send(200, {"data": [], "paging": {}})
                    return self._send(200, fixture("threatexchange_threat_updates_1.json", base, TE_TOKEN))
                if path == "/3000000000000001/":
                    return self._send(200, fixture("threatexchange_indicator_descriptors.json"))
                return self._send(404, {"error": {"message": "unknown path", "type": "GraphMethodException"}})
            if self.headers.get("Authorization") != "Bearer recorded-test-jwt":
                return self._send(401, {"detail": "Authentication credentials were not provided."})
            if path == "/api/hash-list/v2/all":
                if query.get("offset") == "2":
                    return self._send(200, fixture("tat_hash_list_2.json", base))
                if query.get("after"):
                    return self._send(200, fixture("tat_hash_list_empty.json", base))
                return self._send(200, fixture("tat_hash_list_1.json", base))
            return self._send(404, {"detail": "Not found."})

        def do_POST(self) -> None:  # noqa: N802
            path, query, form = self._request("POST")
            if kind == "te":
                if query.get("access_token") != TE_TOKEN:
                    return self._send(400, {"error": {"type": "OAuthException", "code": 190}})
                return self._send(200, fixture("threatexchange_reaction.json"))
            if path == "/token-auth/tcap/":
                if form.get("username") == TAT_USER and form.get("password") == TAT_PASSWORD:
                    return self._send(200, fixture("tat_token.json"))
                return self._send(400, {"non_field_errors": ["Unable to log in with provided credentials."]})
            return self._send(404, {"detail": "Not found."})

    return Handler


@contextmanager
def serve(kind: str) -> Iterator[tuple[str, Recorded]]:
    """(base URL, recorded requests) of a stand-in for ``kind`` ("te" or "tat") on 127.0.0.1."""
    recorded = Recorded()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kind, recorded))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    finally:
        server.shutdown()
        server.server_close()
