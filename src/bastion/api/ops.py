"""Operations endpoints and middleware: liveness, readiness, Prometheus metrics, request ids.

``install_ops(app)`` adds, to an app built by :func:`bastion.api.app.create_app`:

- ``GET /healthz``: the process is alive (no authentication, no database).
- ``GET /readyz``: the process can serve (no authentication): 200 when the database answers ``SELECT 1`` and its
  migrations are at head, 503 otherwise, with a JSON body naming each check. It also reports the match index
  of the app's shared matcher (``app.state.live_matcher``), once loaded, and how far it lags the bank change
  feed. A matcher not yet loaded does not fail readiness: the bank and account routes work without one, and the
  matcher is loaded lazily by the parts of
  the API that match (a load can take minutes on a big bank), so failing readiness for it would keep a healthy
  instance out of rotation. A loaded matcher's lag is reported, not judged: how much lag is too much is the
  operator's alert rule, fed by the numbers here.
- ``GET /metrics``: Prometheus text format, for a key with the ``metrics`` or ``admin`` scope. Each app has its own
  :class:`~prometheus_client.CollectorRegistry`, so several apps in one process (tests) never share counters.
- A middleware that gives every response an ``X-Request-ID`` (the caller's, when it sends a sane one) and sets the
  request id context variable that :mod:`bastion.logging` puts on every log line, and counts requests by route
  template and status with their latency.
"""

from __future__ import annotations

import logging
import re
import uuid
from functools import cache
from time import perf_counter
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion import __version__
from bastion.api.deps import require_scope
from bastion.errors import BastionError
from bastion.logging import request_id_var
from bastion.storage.db import MIGRATIONS_DIR, Database
from bastion.storage.models import Bank, BankChange, BankSignal
from bastion.webhooks import metrics as webhook_metrics

log = logging.getLogger(__name__)

OPS_PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@cache
def _migration_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


class _BankSignalsCollector(Collector):
    """``bastion_bank_signals{bank}`` computed from the database at scrape time (always current, no bookkeeping)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Any:
        signals = GaugeMetricFamily("bastion_bank_signals", "Signals stored in each bank.", labels=["bank"])
        up = GaugeMetricFamily("bastion_database_up", "1 when the last scrape could read the database.")
        try:
            with self.db.session() as s:
                rows = s.execute(
                    select(Bank.name, func.count(BankSignal.id))
                    .outerjoin(BankSignal, BankSignal.bank_id == Bank.id)
                    .group_by(Bank.name)
                    .order_by(Bank.name)
                ).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot count bank signals: %s", type(exc).__name__)
            up.add_metric([], 0)
        else:
            for name, count in rows:
                signals.add_metric([name], count)
            up.add_metric([], 1)
        yield signals
        yield up


class Metrics:
    """One app's registry and the instruments the middleware and error handler update."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bastion_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "bastion_auth_failures", "API key authentication failures by error code.", ["code"], registry=self.registry
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(_BankSignalsCollector(db))
        webhook_metrics.register(self.registry, db)  # webhook delivery counters and outbox state


class OpsMiddleware:
    """Request id in and out, request counts and latency (pure ASGI, so the context variable reaches handlers)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        start = perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(perf_counter() - start)
            request_id_var.reset(token)


def _readiness(app: FastAPI) -> tuple[bool, dict[str, Any]]:
    db: Database = app.state.db
    checks: dict[str, Any] = {}
    maxima: tuple[int, int] | None = None
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
            current = frozenset(MigrationContext.configure(conn).get_current_heads())
            heads = _migration_heads()
            checks["migrations"] = {"ok": current == heads, "current": sorted(current), "head": sorted(heads)}
            if current == heads:
                max_id = conn.execute(select(func.max(BankSignal.id))).scalar() or 0
                max_seq = conn.execute(select(func.max(BankChange.seq))).scalar() or 0
                maxima = (int(max_id), int(max_seq))
    except SQLAlchemyError as exc:
        checks.setdefault("database", {"ok": False, "error": type(exc).__name__})
        checks.setdefault("migrations", {"ok": False, "error": "not checked: database unreachable"})
    live = getattr(app.state, "live_matcher", None)
    matcher = live.matcher if live is not None and live.loaded else None
    if matcher is None:
        checks["index"] = {"ok": True, "loaded": False, "note": "no matcher loaded yet; readiness does not need one"}
    else:
        index: dict[str, Any] = {
            "ok": True,
            "loaded": True,
            "last_signal_id": matcher.last_signal_id,
            "last_change_seq": matcher.last_change_seq,
        }
        if maxima is not None:
            index["signals_behind"] = max(0, maxima[0] - matcher.last_signal_id)
            index["changes_behind"] = max(0, maxima[1] - matcher.last_change_seq)
        checks["index"] = index
    return all(c["ok"] for c in checks.values()), checks


def install_ops(app: FastAPI) -> None:
    """Add /healthz, /readyz, /metrics, the request-id and metrics middleware, and the auth-failure counter."""
    metrics = Metrics(app.state.db)
    app.state.metrics = metrics
    app.add_middleware(OpsMiddleware, metrics=metrics)

    bastion_handler = app.exception_handlers.get(BastionError)
    if bastion_handler is not None:

        async def counting_handler(request: Request, exc: Exception) -> Response:
            if isinstance(exc, BastionError) and exc.http_status == 401:
                metrics.auth_failures.labels(exc.code).inc()
            return await bastion_handler(request, exc)

        app.exception_handlers[BastionError] = counting_handler

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive (no authentication, no database)."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        """Ready to serve: database reachable and migrated (no authentication)."""
        ready, checks = _readiness(request.app)
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", dependencies=[Depends(require_scope("metrics", "admin"))])
    def prometheus_metrics() -> Response:
        """Prometheus text format (a key with the ``metrics`` or ``admin`` scope)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
