"""``bastion org`` and ``bastion key``: create organisations and manage their API keys from the shell.

A new key's plaintext is printed once, here; Bastion keeps only its hash.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from bastion.cli._common import get_database, handle_errors

org_app = typer.Typer(help="Organisations (a platform is one).", no_args_is_help=True)
key_app = typer.Typer(help="API keys: created with scopes, shown once, revocable, expiring.", no_args_is_help=True)


def _service():  # type: ignore[no-untyped-def]
    from bastion.accounts.service import AccountService

    return AccountService(get_database())


@org_app.command("create")
@handle_errors
def org_create(name: Annotated[str, typer.Argument(help="Unique organisation name.")]) -> None:
    """Create an organisation."""
    org = _service().create_organisation(name)
    typer.echo(f"created organisation {org.name} (id {org.id})")


@org_app.command("list")
@handle_errors
def org_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List organisations."""
    orgs = _service().list_organisations()
    for o in orgs:
        typer.echo(json.dumps(o.to_dict()) if as_json else f"{o.id}\t{o.name}")


@key_app.command("create")
@handle_errors
def key_create(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    scope: Annotated[list[str], typer.Option("--scope", help="submit, review, curate, policy or admin (repeatable).")],
    expires_days: Annotated[int | None, typer.Option("--expires-days", min=1, help="Expire after D days.")] = None,
) -> None:
    """Create an API key and print it (this is the only time it is shown)."""
    expires = timedelta(days=expires_days) if expires_days else None
    info, plaintext = _service().create_api_key(org, name, scope, expires)
    typer.echo(plaintext)
    typer.echo(
        f"key {info.id} ({info.prefix}) scopes={','.join(info.scopes)}"
        + (f" expires {info.expires_at.isoformat()}" if info.expires_at else "")
        + " - store it now: it cannot be shown again",
        err=True,
    )


@key_app.command("list")
@handle_errors
def key_list(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List an organisation's keys (prefixes only, never secrets)."""
    for k in _service().list_keys(org):
        if as_json:
            typer.echo(json.dumps(k.to_dict()))
            continue
        state = "revoked" if k.revoked_at else ("expires " + k.expires_at.isoformat() if k.expires_at else "active")
        typer.echo(f"{k.id}\t{k.prefix}\t{k.name}\t{','.join(k.scopes)}\t{state}")


@key_app.command("revoke")
@handle_errors
def key_revoke(key_id: Annotated[int, typer.Argument(help="Key id (from `bastion key list`).")]) -> None:
    """Revoke a key: it stops working at once."""
    info = _service().revoke_key(key_id)
    typer.echo(f"revoked key {info.id} ({info.prefix})")
