"""``bastion review``: an organisation's review queues, its QA share and the QA agreement, from the shell.

Reviewers work in the browser console (/console); this is for the people who set it up.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bastion.cli._common import get_database, handle_errors

app = typer.Typer(help="Human review: queues, quality assurance.", no_args_is_help=True)

Org = Annotated[str, typer.Argument(help="Organisation name or id.")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON output.")]


def _context(org: str):  # type: ignore[no-untyped-def]
    from bastion.accounts.service import AccountService
    from bastion.review import ReviewService
    from bastion.settings import get_settings

    db = get_database()
    return AccountService(db).get_organisation(org).id, ReviewService(db, get_settings())


@app.command("queues")
@handle_errors
def queues(org: Org, as_json: AsJson = False) -> None:
    """List the organisation's queues: its own (in routing order) and the built-in ones."""
    org_id, svc = _context(org)
    for q in svc.list_queues(org_id):
        if as_json:
            typer.echo(json.dumps(q))
            continue
        crit = "; ".join(f"{k}={','.join(v)}" for k, v in q["criteria"].items()) or "-"
        roles = ",".join(q["roles"]) or "all roles"
        sla = f"sla={q['sla_minutes']}m" if q["sla_minutes"] else "no sla"
        typer.echo(f"{q['name']:<20} {'built-in' if q['built_in'] else crit:<40} {roles:<16} {sla}")


@app.command("queue-create")
@handle_errors
def queue_create(
    org: Org,
    name: Annotated[str, typer.Argument(help="Queue name (lower-case letters, digits, _ - .).")],
    outcome: Annotated[list[str] | None, typer.Option("--outcome", help="review or escalate (repeatable).")] = None,
    jurisdiction: Annotated[list[str] | None, typer.Option("--jurisdiction", help="ISO 3166-1 code.")] = None,
    language: Annotated[list[str] | None, typer.Option("--language", help="Language tag, e.g. fr.")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Taxonomy category.")] = None,
    role: Annotated[list[str] | None, typer.Option("--role", help="Role that may work it (default: all).")] = None,
    sla_minutes: Annotated[int | None, typer.Option("--sla-minutes", help="Items older than this breach.")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
) -> None:
    """Add a queue; items whose policy rule names no queue land in the first queue whose criteria all hold."""
    org_id, svc = _context(org)
    criteria = {k: v for k, v in (("outcomes", outcome), ("jurisdictions", jurisdiction), ("languages", language),
                                  ("categories", category)) if v}
    q = svc.create_queue("cli", org_id, name, criteria=criteria, roles=role or [], sla_minutes=sla_minutes,
                         description=description)
    typer.echo(json.dumps(q))


@app.command("queue-delete")
@handle_errors
def queue_delete(org: Org, name: Annotated[str, typer.Argument(help="Queue name.")]) -> None:
    """Delete a queue definition (items already in it stay there, open to every role)."""
    org_id, svc = _context(org)
    svc.delete_queue("cli", org_id, name)
    typer.echo(f"queue {name} deleted", err=True)


@app.command("qa-share")
@handle_errors
def qa_share(org: Org, share: Annotated[float, typer.Argument(help="0..1: share second-checked.")]) -> None:
    """Set the share of reviewers' decisions that a second reviewer checks blind."""
    org_id, svc = _context(org)
    typer.echo(f"qa share: {svc.set_qa_share('cli', org_id, share)}")


@app.command("agreement")
@handle_errors
def agreement(org: Org, as_json: AsJson = False) -> None:
    """QA agreement: per first reviewer and per category."""
    org_id, svc = _context(org)
    stats = svc.agreement(org_id)
    if as_json:
        typer.echo(json.dumps(stats))
        return
    rate = f"{stats['agreement']:.0%}" if stats["agreement"] is not None else "n/a (nothing checked yet)"
    typer.echo(f"checked {stats['checked']}, agreed {stats['agreed']}, agreement {rate}")
    for title, rows in (("reviewer", stats["per_reviewer"]), ("category", stats["per_category"])):
        for r in rows:
            typer.echo(f"  {title:<9} {r['key']:<32} {r['agreed']}/{r['checked']}  {r['agreement']:.0%}")
