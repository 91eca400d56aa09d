"""``bastion forum``: run a forum hub (serve, members, incidents) and join one as a platform (join, share, sync).

Hub commands act on the hub's own database (``--database-url``, else ``BASTION_FORUM_DATABASE_URL``, else
``forum.sqlite3`` in the data directory); member commands on the platform's (``BASTION_DATABASE_URL``).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bastion.cli._common import get_database, handle_errors

app = typer.Typer(help="The industry forum: a hub of shared hashes, and joining one.", no_args_is_help=True)
member_app = typer.Typer(help="Hub side: member organisations, their keys and roles.", no_args_is_help=True)
incident_app = typer.Typer(help="Hub side: incidents (their hashes go out first).", no_args_is_help=True)
app.add_typer(member_app, name="member")
app.add_typer(incident_app, name="incident")

HubUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="The hub's database (default: BASTION_FORUM_DATABASE_URL or forum.sqlite3)."),
]
Org = Annotated[str, typer.Option("--organisation", "--org", help="Organisation name (default: the admin one).")]
Forum = Annotated[str, typer.Option("--forum", help="The joined forum's name.")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON output.")]


def _hub_db(url: str | None):  # type: ignore[no-untyped-def]
    from bastion.errors import BastionError
    from bastion.settings import get_settings
    from bastion.storage.db import open_database

    settings = get_settings()
    if not url:
        url = settings.forum_database_url
    if not url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{settings.data_dir / 'forum.sqlite3'}"
    try:
        return open_database(settings, url=url)
    except Exception as exc:  # noqa: BLE001 - any driver error: one clear message
        raise BastionError(f"cannot open the hub's database: {exc}", code="database_unavailable") from exc


def _org(org: str | None) -> str:
    from bastion.settings import get_settings

    return org or get_settings().admin_organisation


@app.command("serve")
@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8100,
    database_url: HubUrl = None,
) -> None:
    """Serve a forum hub's API (its own app and database, separate from the platform API)."""
    import uvicorn

    from bastion.forum.api import create_hub_app

    uvicorn.run(create_hub_app(_hub_db(database_url)), host=host, port=port)


@member_app.command("add")
@handle_errors
def member_add(
    name: Annotated[str, typer.Argument(help="The member organisation's name in the forum.")],
    lead: Annotated[bool, typer.Option("--lead", help="A forum lead (may activate incidents).")] = False,
    database_url: HubUrl = None,
) -> None:
    """Add a member and print its API key (shown once: only its hash is stored)."""
    from bastion.forum.hub import HubService

    info, key = HubService(_hub_db(database_url)).add_member(name, "lead" if lead else "member")
    typer.echo(f"member {info['name']} ({info['role']}) added. Its API key, shown once and never again:\n    {key}")


@member_app.command("list")
@handle_errors
def member_list(database_url: HubUrl = None, as_json: AsJson = False) -> None:
    """Members, roles, public keys and last batch numbers."""
    from bastion.forum.hub import HubService

    for m in HubService(_hub_db(database_url)).list_members():
        typer.echo(
            json.dumps(m)
            if as_json
            else f"{m['name']:<30} {m['role']:<7} batch {m['last_batch']:<6} key {m['public_key'] or '-'}"
        )


@member_app.command("key-register")
@handle_errors
def member_key_register(
    name: Annotated[str, typer.Argument(help="Member name.")],
    public_key: Annotated[str, typer.Option("--public-key", help="Ed25519 public key, 32 bytes base64.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace a registered key (members that pinned the old key refuse the new one until they accept it).",
        ),
    ] = False,
    database_url: HubUrl = None,
) -> None:
    """Register (or, with --replace, replace) a member's public key."""
    from bastion.forum.hub import HubService

    m = HubService(_hub_db(database_url)).register_key(name, public_key, replace=replace)
    typer.echo(f"member {m['name']}: public key {m['public_key']}")


@member_app.command("role")
@handle_errors
def member_role(
    name: Annotated[str, typer.Argument(help="Member name.")],
    role: Annotated[str, typer.Argument(help="member or lead.")],
    database_url: HubUrl = None,
) -> None:
    """Make a member a forum lead, or a plain member again."""
    from bastion.forum.hub import HubService

    m = HubService(_hub_db(database_url)).set_role(name, role)
    typer.echo(f"member {m['name']} is now {m['role']}")


@incident_app.command("activate")
@handle_errors
def incident_activate(
    name: Annotated[str, typer.Argument(help="Incident name, e.g. attack-2026-11-26.")],
    description: Annotated[str, typer.Option("--description")] = "",
    window_hours: Annotated[
        int, typer.Option("--window-hours", min=1, max=720, help="How far back members rescan their uploads.")
    ] = 24,
    database_url: HubUrl = None,
) -> None:
    """Activate an incident as the hub's operator (forum leads use the API)."""
    from bastion.forum.hub import HubService

    i = HubService(_hub_db(database_url)).activate_incident(None, name, description, window_hours)
    typer.echo(f"incident {i['name']} active (rescan window {i['window_hours']} h)")


@incident_app.command("deactivate")
@handle_errors
def incident_deactivate(
    name: Annotated[str, typer.Argument(help="Incident name.")], database_url: HubUrl = None
) -> None:
    """End an incident."""
    from bastion.forum.hub import HubService

    HubService(_hub_db(database_url)).deactivate_incident(None, name)
    typer.echo(f"incident {name} ended")


@app.command("join")
@handle_errors
def join(
    url: Annotated[str, typer.Argument(help="The hub's base URL, e.g. https://forum.example.org.")],
    key: Annotated[str, typer.Option("--key", help="The member API key the forum's operator gave you.")],
    organisation: Annotated[str | None, typer.Option("--organisation", "--org")] = None,
    bank: Annotated[
        str | None, typer.Option("--bank", help="Bank the forum's hashes land in (default forum-<organisation>).")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Your name for this forum.")] = "forum",
) -> None:
    """Join a hub as an exchange of the organisation: a signing key is made and registered with the hub."""
    from bastion.forum.member import join as do_join
    from bastion.settings import get_settings

    ex = do_join(get_database(), get_settings(), _org(organisation), url, key, name=name, bank=bank)
    typer.echo(
        f"joined {ex['url']} as member {ex['member']}; its hashes land in bank {ex['bank']}. "
        f"Share a bank with: bastion forum share BANK --org {_org(organisation)}"
    )


@app.command("share")
@handle_errors
def share(
    bank: Annotated[str, typer.Argument(help="One of the organisation's banks.")],
    organisation: Annotated[str | None, typer.Option("--organisation", "--org")] = None,
    forum: Forum = "forum",
    share_all: Annotated[
        bool, typer.Option("--all", help="Every entry, not only those reviewers marked share-with-forum.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop sharing the bank.")] = False,
) -> None:
    """Share a bank's confirmed hashes with a joined forum (the per-bank sharing setting)."""
    from bastion.forum.member import share_bank, unshare_bank

    if stop:
        unshare_bank(get_database(), _org(organisation), bank, forum=forum)
        typer.echo(f"bank {bank} no longer shared with {forum}")
        return
    got = share_bank(get_database(), _org(organisation), bank, forum=forum, mode="all" if share_all else "marked")
    typer.echo(f"bank {got['bank']} shared with {got['forum']} ({got['mode']})")


@app.command("sync")
@handle_errors
def sync(
    organisation: Annotated[str | None, typer.Option("--organisation", "--org")] = None,
    forum: Forum = "forum",
    no_rescan: Annotated[bool, typer.Option("--no-rescan", help="Do not rescan uploads for incidents.")] = False,
) -> None:
    """One sync pass now: pull, rescan for incidents, push, retract, feedback. Prints the report as JSON."""
    from bastion.decisions.pipeline import DecisionPipeline
    from bastion.forum.member import get_exchange
    from bastion.forum.sync import sync_exchange
    from bastion.matching.live import LiveMatcher
    from bastion.settings import get_settings

    db, settings = get_database(), get_settings()
    row = get_exchange(db, _org(organisation), forum)
    pipeline = None if no_rescan else DecisionPipeline(db, settings, LiveMatcher(db, settings, refresh_seconds=0))
    report = sync_exchange(db, settings, row.id, pipeline=pipeline)
    typer.echo(json.dumps(report.to_dict(), default=str))
    if report.error:
        raise typer.Exit(6)


@app.command("status")
@handle_errors
def status(
    organisation: Annotated[str | None, typer.Option("--organisation", "--org")] = None, as_json: AsJson = False
) -> None:
    """The organisation's joined exchanges: URL, member name, bank, cursor, last sync and error."""
    from bastion.forum.member import list_exchanges

    for ex in list_exchanges(get_database(), _org(organisation) if organisation else None):
        typer.echo(
            json.dumps(ex)
            if as_json
            else f"{ex['name']:<12} {ex['url']:<40} member {ex['member']:<16} bank {ex['bank']:<20} "
            f"cursor {ex['cursor'] or '-':<10} last {ex['last_sync_at'] or 'never'} {ex['last_error']}"
        )
