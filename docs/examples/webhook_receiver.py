"""A Bastion webhook receiver (Python standard library only): verifies signatures, refuses replays, deduplicates.

Run it with the secret Bastion showed when the webhook was created::

    WEBHOOK_SECRET=whsec_... python webhook_receiver.py 8080

Put it behind an https reverse proxy: Bastion only delivers to https:// URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 300  # refuse deliveries signed longer ago (or further ahead) than this: replays
MAX_BODY_BYTES = 1024 * 1024


def verify(secret: str, timestamp: str, signature_header: str, body: bytes, now: float | None = None) -> bool:
    """True when one ``v1=`` value of the Bastion-Signature header is HMAC-SHA256(secret, timestamp + "." + body)
    and the timestamp is within the tolerance of our clock."""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    values = [part.strip()[3:] for part in signature_header.split(",") if part.strip().startswith("v1=")]
    return any(hmac.compare_digest(value, expected) for value in values)  # constant-time comparison


class Receiver:
    """Checks and records events. Keep ``seen`` in your database (a unique key on the event id) in production:
    Bastion delivers at least once, so the same event can arrive again (after a timeout, a restart...)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: set[str] = set()
        self.events: list[dict] = []
        self.lock = threading.Lock()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        """The HTTP status to answer: 2xx tells Bastion the event was received (anything else: it retries)."""
        h = {k.lower(): v for k, v in headers.items()}
        if not verify(self.secret, h.get("bastion-timestamp", ""), h.get("bastion-signature", ""), body):
            return 400  # not from Bastion, altered, or too old
        event = json.loads(body)
        with self.lock:
            if event["id"] in self.seen:
                return 200  # a redelivery of an event already processed: acknowledge it again, do nothing
            self.seen.add(event["id"])
            self.events.append(event)
        print(f"{event['type']} {event['id']}: {json.dumps(event['data'])}", flush=True)
        return 200


def make_server(receiver: Receiver, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.send_response(413)
                self.end_headers()
                return
            status = receiver.handle(dict(self.headers.items()), self.rfile.read(length))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            pass

    return ThreadingHTTPServer((host, port), Handler)


if __name__ == "__main__":
    server = make_server(Receiver(os.environ["WEBHOOK_SECRET"]), port=int(sys.argv[1]) if len(sys.argv) > 1 else 8080)
    print(f"listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()
