"""Webhooks: signed JSON events, written to an outbox in the same transaction as what they report, delivered at
least once with exponential back-off (see docs/webhooks.md).

- :func:`emit` (in the caller's transaction) and :class:`WebhookService` (registration): :mod:`.service`;
- :func:`deliver_due` (one pass of the sender): :mod:`.delivery`;
- :func:`verify_signature` (for receivers and tests): :mod:`.signing`.
"""

from bastion.webhooks.delivery import deliver_due
from bastion.webhooks.service import EVENT_TYPES, DeliveryInfo, WebhookInfo, WebhookService, emit
from bastion.webhooks.signing import compute_signature, verify_signature

__all__ = [
    "EVENT_TYPES",
    "DeliveryInfo",
    "WebhookInfo",
    "WebhookService",
    "compute_signature",
    "deliver_due",
    "emit",
    "verify_signature",
]
