"""``bastion webhook``: manage an organisation's webhooks and run a delivery pass from the shell.

A new (or rotated) signing secret is printed once, here; Bastion keeps it encrypted (see docs/webhooks.md).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bastion.cli._common import get_database, handle_errors

app = typer.Typer(help="Webhooks: signed event deliveries to a platform's URLs.", no_args_is_help=True)

Org = Annotated[str, typer.Argument(help="Organisation name or id.")]
WebhookId = Annotated[int, typer.Argument(help="Webhook id (from `bastion webhook list`).")]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def _context(org: str):  # type: ignore[no-untyped-def]
    from bastion.accounts.service import AccountService
    from bastion.webhooks import WebhookService

    db = get_database()
    return db, AccountService(db).get_organisation(org).id, WebhookService(db, "cli")


def _show_secret(secret: str) -> None:
    typer.echo(secret)
    typer.echo("signing secret: shown once, never again (it is stored encrypted) - store it now", err=True)


@app.command("create")
@handle_errors
def create(
    org: Org,
    url: Annotated[str, typer.Argument(help="https:// URL that receives the events.")],
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Event type to send (repeatable; default: all).")
    ] = None,
) -> None:
    """Register a webhook and print its signing secret (the only time it is shown)."""
    _, org_id, svc = _context(org)
    info, secret = svc.create(org_id, url, event or [])
    _show_secret(secret)
    typer.echo(f"webhook {info.id} -> {info.url} events={','.join(info.events) or 'all'}", err=True)


@app.command("list")
@handle_errors
def list_cmd(org: Org, as_json: AsJson = False) -> None:
    """List an organisation's webhooks (never their secrets)."""
    _, org_id, svc = _context(org)
    for w in svc.list(org_id):
        if as_json:
            typer.echo(json.dumps(w.to_dict()))
        else:
            state = "enabled" if w.enabled else "disabled"
            typer.echo(f"{w.id}\t{w.url}\t{','.join(w.events) or 'all'}\t{state}")


@app.command("delete")
@handle_errors
def delete(org: Org, webhook_id: WebhookId) -> None:
    """Delete a webhook and its deliveries."""
    _, org_id, svc = _context(org)
    svc.delete(org_id, webhook_id)
    typer.echo(f"deleted webhook {webhook_id}")


@app.command("disable")
@handle_errors
def disable(org: Org, webhook_id: WebhookId) -> None:
    """Stop sending to a webhook (its pending deliveries wait until it is enabled)."""
    _, org_id, svc = _context(org)
    svc.disable(org_id, webhook_id)
    typer.echo(f"disabled webhook {webhook_id}")


@app.command("enable")
@handle_errors
def enable(org: Org, webhook_id: WebhookId) -> None:
    """Resume sending to a webhook."""
    _, org_id, svc = _context(org)
    svc.enable(org_id, webhook_id)
    typer.echo(f"enabled webhook {webhook_id}")


@app.command("rotate-secret")
@handle_errors
def rotate_secret(
    org: Org,
    webhook_id: WebhookId,
    keep_previous_seconds: Annotated[
        int, typer.Option("--keep-previous-seconds", min=0, max=604800, help="Also sign with the old secret this long.")
    ] = 0,
) -> None:
    """Give a webhook a new signing secret and print it (the only time it is shown)."""
    _, org_id, svc = _context(org)
    _, secret = svc.rotate_secret(org_id, webhook_id, keep_previous_seconds)
    _show_secret(secret)


@app.command("deliveries")
@handle_errors
def deliveries(
    org: Org,
    webhook_id: WebhookId,
    status: Annotated[str | None, typer.Option("--status", help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    as_json: AsJson = False,
) -> None:
    """A webhook's deliveries, newest first."""
    _, org_id, svc = _context(org)
    for d in svc.list_deliveries(org_id, webhook_id, status=status, limit=limit):
        if as_json:
            typer.echo(json.dumps(d.to_dict()))
        else:
            last = f"HTTP {d.last_status}" if d.last_status else (d.last_error or "-")
            typer.echo(f"{d.id}\t{d.event_type}\t{d.event_id}\t{d.status}\tattempts={d.attempts}\t{last}")


@app.command("redeliver")
@handle_errors
def redeliver(org: Org, delivery_id: Annotated[int, typer.Argument(help="Delivery id.")]) -> None:
    """Send a failed (or delivered) delivery again, with the same event id."""
    _, org_id, svc = _context(org)
    svc.redeliver(org_id, delivery_id)
    typer.echo(f"delivery {delivery_id} queued again")


@app.command("deliver")
@handle_errors
def deliver(limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most this many.")] = 100) -> None:
    """Run one delivery pass now: send the due deliveries (the worker loop does this continuously)."""
    from bastion.settings import get_settings
    from bastion.webhooks import deliver_due

    attempted = deliver_due(get_database(), get_settings(), limit=limit)
    typer.echo(f"{attempted} deliveries attempted")


@app.command("prune")
@handle_errors
def prune_cmd(
    days: Annotated[float, typer.Option("--days", min=0, help="Keep this many days of finished deliveries.")] = 30,
) -> None:
    """Delete delivered and given-up deliveries older than DAYS, and events left without deliveries (run from cron)."""
    from datetime import timedelta

    from bastion.webhooks.service import prune

    deliveries, events = prune(get_database(), timedelta(days=days))
    typer.echo(f"deleted {deliveries} deliveries and {events} events")
