"""Helpers for the forum tests: a hub served by uvicorn on loopback, over its own SQLite database."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from bastion.forum.api import create_hub_app
from bastion.forum.exchange import ForumExchange
from bastion.forum.hub import HubService
from bastion.storage.db import Database, make_engine, migrate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlite_database(path: Path) -> Database:
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return Database(engine)


class Served:
    """An ASGI app on http://127.0.0.1:<free port> in a thread (stop() to end it)."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, name=f"served-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class LiveHub:
    """A hub on loopback with its own database; ``member(name)`` adds a member and returns (key, client)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.service = HubService(db)
        self.served = Served(create_hub_app(db))
        self.url = self.served.url

    def add(self, name: str, role: str = "member") -> str:
        return self.service.add_member(name, role)[1]

    def member(self, name: str, role: str = "member") -> ForumExchange:
        from bastion.forum import signing

        ex = ForumExchange("forum", self.url, self.add(name, role), signing.new_private_key())
        ex.register_public_key()
        return ex

    def stop(self) -> None:
        self.served.stop()
        self.db.engine.dispose()
