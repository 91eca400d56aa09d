"""Prometheus metrics of webhook delivery.

Two kinds, because deliveries may be sent by a worker process other than the one serving ``/metrics``:

- read from the database at scrape time, so they are right whichever process delivers:
  ``bastion_webhook_deliveries{status}`` (pending, delivered, failed: failed means given up),
  ``bastion_webhook_deliveries_retrying`` (pending after at least one failed attempt) and
  ``bastion_webhook_oldest_pending_seconds`` (age of the oldest event not yet delivered to an enabled webhook:
  the alert to set);
- counted by the process that sends: ``bastion_webhook_delivery_attempts_total{outcome}`` (delivered, retry,
  gave_up, lease_lost) and ``bastion_webhook_delivery_duration_seconds{ok}``.

:func:`register` adds both to an app's registry (``bastion.api.ops`` calls it).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bastion.storage.db import Database
from bastion.storage.models import Event, Webhook, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

OUTCOMES = ("delivered", "retry", "gave_up", "lease_lost")

ATTEMPTS = Counter(
    "bastion_webhook_delivery_attempts",
    "Webhook delivery attempts made by this process, by outcome (delivered, retry, gave_up, lease_lost).",
    ["outcome"],
    registry=None,
)
DURATION = Histogram(
    "bastion_webhook_delivery_duration_seconds",
    "Time of webhook delivery requests made by this process (ok: a 2xx answer).",
    ["ok"],
    registry=None,
)
for _o in OUTCOMES:
    ATTEMPTS.labels(_o)


def count(outcome: str) -> None:
    ATTEMPTS.labels(outcome).inc()


def observe(ok: bool, seconds: float) -> None:
    DURATION.labels("true" if ok else "false").observe(seconds)


class WebhookDeliveryCollector(Collector):
    """Delivery state computed from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Any:
        by_status = GaugeMetricFamily(
            "bastion_webhook_deliveries", "Webhook deliveries by status (failed: given up).", labels=["status"]
        )
        retrying = GaugeMetricFamily(
            "bastion_webhook_deliveries_retrying", "Pending webhook deliveries that have failed at least once."
        )
        oldest = GaugeMetricFamily(
            "bastion_webhook_oldest_pending_seconds",
            "Age of the oldest event with a pending delivery to an enabled webhook (0: none).",
        )
        try:
            with self.db.session() as s:
                counts = dict(
                    s.execute(select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)).all()
                )
                n_retrying = s.scalar(
                    select(func.count()).where(WebhookDelivery.status == "pending", WebhookDelivery.attempts > 0)
                )
                first = s.scalar(
                    select(func.min(Event.created_at))
                    .join(WebhookDelivery, WebhookDelivery.event_id == Event.id)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(WebhookDelivery.status == "pending", Webhook.enabled)
                )
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot read webhook deliveries: %s", type(exc).__name__)
            return
        for status in ("pending", "delivered", "failed"):
            by_status.add_metric([status], counts.get(status, 0))
        retrying.add_metric([], n_retrying or 0)
        if first is not None:
            oldest.add_metric([], max(0.0, (utcnow() - first).total_seconds()))
        else:
            oldest.add_metric([], 0)
        yield by_status
        yield retrying
        yield oldest


def register(registry: CollectorRegistry, db: Database) -> None:
    """Add the webhook metrics to ``registry`` (the process counters are shared by every registry)."""
    registry.register(ATTEMPTS)
    registry.register(DURATION)
    registry.register(WebhookDeliveryCollector(db))
