"""``bastion org``, ``bastion key`` and ``bastion user``: create organisations and manage their API keys and users
from the shell.

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
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="submit, review, curate, policy, admin, metrics or authority (repeatable)."),
    ],
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


user_app = typer.Typer(
    help="Users: people in an organisation with a role (reviewer, lead, admin) who sign in to the console.",
    no_args_is_help=True,
)


@user_app.command("create")
@handle_errors
def user_create(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    email: Annotated[str, typer.Argument(help="The person's email address.")],
    role: Annotated[str, typer.Option("--role", help="reviewer, lead, admin or authority.")] = "reviewer",
) -> None:
    """Add a user to an organisation."""
    user = _service().create_user(org, email, role)
    typer.echo(f"created user {user.id} {user.email} ({user.role})")


@user_app.command("list")
@handle_errors
def user_list(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List an organisation's users."""
    for u in _service().list_users(org):
        typer.echo(json.dumps(u.to_dict()) if as_json else f"{u.id}\t{u.email}\t{u.role}")


@user_app.command("role")
@handle_errors
def user_role(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    user_id: Annotated[int, typer.Argument(help="User id (from `bastion user list`).")],
    role: Annotated[str, typer.Argument(help="reviewer, lead, admin or authority.")],
) -> None:
    """Change a user's role (the organisation's last admin cannot be demoted)."""
    user = _service().set_role(org, user_id, role)
    typer.echo(f"user {user.id} {user.email} is now {user.role}")


@user_app.command("delete")
@handle_errors
def user_delete(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    user_id: Annotated[int, typer.Argument(help="User id (from `bastion user list`).")],
) -> None:
    """Remove a user from an organisation (the audit log keeps the record)."""
    user = _service().delete_user(org, user_id)
    typer.echo(f"deleted user {user.id} {user.email}")


@user_app.command("password")
@handle_errors
def user_password(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    org: Annotated[str, typer.Option("--org", help="Organisation name or id.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (first line).")
    ] = False,
) -> None:
    """Set a user's console password (at least 12 characters) and sign out their sessions.

    The password is read from a prompt (typed twice, not echoed) or with --password-stdin from standard input,
    never from the command line, where other users of the machine and the shell history would see it.
    """
    import sys

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    service = _service()
    user = service.find_user(org, email)
    service.set_password(org, user.id, password)
    typer.echo(f"password set for user {user.id} {user.email}; their console sessions were signed out")


@user_app.command("disable")
@handle_errors
def user_disable(
    org: Annotated[str, typer.Argument(help="Organisation name or id.")],
    user_id: Annotated[int, typer.Argument(help="User id (from `bastion user list`).")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the user again instead.")] = False,
) -> None:
    """Disable a user (no sign-in; their sessions end at once), or with --enable let them sign in again."""
    user = _service().set_disabled(org, user_id, not enable)
    typer.echo(f"user {user.id} {user.email} is now {'enabled' if enable else 'disabled'}")
