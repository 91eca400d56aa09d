"""``bastion orders``: authorities (create, accept, signing keys), signed order files, an organisation's order mode,
the orders themselves and the clock's sweep; escalations. See docs/authorities.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli._common import get_database, handle_errors

app = typer.Typer(help="Authorities' removal orders and referrals; threat-to-life escalations.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="JSON output.")]


@app.command("authority-create")
@handle_errors
def authority_create(
    name: Annotated[str, typer.Argument(help="The authority's organisation name (e.g. CTIRU, PHAROS, Europol).")],
    kind: Annotated[str, typer.Option(help="competent_authority, referral_unit or law_enforcement.")],
    member_state: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 code, or EU for a Union body.")],
    email: Annotated[str | None, typer.Option(help="Contact address (escalation e-mail goes here).")] = None,
    public_key: Annotated[str | None, typer.Option(help="Ed25519 public key (base64) for signed files.")] = None,
    fallback: Annotated[bool, typer.Option(help="The escalation contact when the jurisdiction is unclear.")] = False,
) -> None:
    """Create an authority (its own organisation: give it keys with `bastion key create NAME --scope authority`)."""
    from bastion.compliance.authorities import AuthorityService

    info = AuthorityService(get_database()).create(
        name, kind, member_state, contact_email=email, public_key=public_key, fallback=fallback
    )
    typer.echo(json.dumps(info.to_dict()))


@app.command("authorities")
@handle_errors
def authorities() -> None:
    """List the authorities (one JSON line each)."""
    from bastion.compliance.authorities import AuthorityService

    svc = AuthorityService(get_database())
    for a in svc.list():
        typer.echo(
            json.dumps(
                {**a.to_dict(), "platforms": svc.platforms(a.organisation_id) if a.kind != "law_enforcement" else []}
            )
        )


@app.command("accept")
@handle_errors
def accept(
    authority: Annotated[str, typer.Argument(help="The authority's name.")],
    platform: Annotated[str, typer.Argument(help="The platform organisation that accepts its orders.")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Stop accepting them.")] = False,
) -> None:
    """Let AUTHORITY send orders and referrals to PLATFORM (or, --revoke, no longer)."""
    from bastion.compliance.authorities import AuthorityService

    svc = AuthorityService(get_database())
    (svc.revoke_acceptance if revoke else svc.accept)(authority, platform)
    typer.echo(f"{platform} {'no longer accepts' if revoke else 'accepts'} orders from {authority}")


@app.command("keygen")
@handle_errors
def keygen(
    authority: Annotated[str | None, typer.Option(help="Register the public half for this authority.")] = None,
) -> None:
    """Make an Ed25519 key pair for signed order files; prints both halves (keep the private one secret)."""
    from bastion.compliance.authorities import AuthorityService, new_signing_key

    private, public = new_signing_key()
    if authority:
        AuthorityService(get_database()).set_public_key(authority, public)
    typer.echo(json.dumps({"private_key": private, "public_key": public, "registered_for": authority}))


@app.command("sign")
@handle_errors
def sign(
    order_file: Annotated[Path, typer.Argument(help="The order as JSON (docs/authorities.md).")],
    authority: Annotated[str, typer.Option(help="The authority's name.")],
    private_key: Annotated[str, typer.Option(envvar="BASTION_ORDER_SIGNING_KEY", help="Base64 private key.")],
) -> None:
    """Sign an order file (the authority's side of a file drop): prints the envelope to drop or import."""
    from bastion.compliance.authorities import sign_envelope
    from bastion.errors import InvalidInput

    try:
        order = json.loads(order_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {order_file}: {exc}", code="invalid_order_file") from None
    typer.echo(json.dumps(sign_envelope(private_key, authority, order), indent=2))


@app.command("import")
@handle_errors
def import_(file: Annotated[Path, typer.Argument(help="A signed order file.")]) -> None:
    """Receive a signed order file (as the watched drop directory does)."""
    from bastion.compliance.orders import import_file
    from bastion.settings import get_settings

    order = import_file(get_database(), get_settings(), file)
    typer.echo(
        json.dumps(
            {
                "id": order["id"],
                "status": order["status"],
                "deadline_at": order["deadline_at"],
                "confirmed_at": order["confirmed_at"],
            }
        )
    )


@app.command("mode")
@handle_errors
def mode(
    org: Annotated[str, typer.Argument(help="Platform organisation name or id.")],
    value: Annotated[str, typer.Argument(help="auto (execute binding orders at once) or review.")],
) -> None:
    """Set how binding removal orders to ORG are handled."""
    from bastion.compliance.orders import set_mode

    typer.echo(set_mode(get_database(), org, value, actor="cli"))


@app.command("list")
@handle_errors
def list_(
    org: Annotated[str, typer.Argument(help="An authority's or a platform's organisation name or id.")],
    status: Annotated[str | None, typer.Option(help="Only orders in this status.")] = None,
) -> None:
    """The orders an authority sent or a platform received (one JSON line each; open clocks first)."""
    from bastion.accounts.service import AccountService
    from bastion.compliance.orders import OrderService
    from bastion.settings import get_settings

    db = get_database()
    org_id = AccountService(db).get_organisation(org).id
    for order in OrderService(db, get_settings()).list(org_id, status=status):
        typer.echo(json.dumps(order))


@app.command("sweep")
@handle_errors
def sweep() -> None:
    """One pass of what the workers do every few seconds: alerts, confirmations, dropped files, escalation e-mail."""
    from bastion.compliance.escalation import EscalationService
    from bastion.compliance.orders import OrderService, watch_drop_dir
    from bastion.settings import get_settings

    db, settings = get_database(), get_settings()
    done = OrderService(db, settings).sweep()
    done["files"] = watch_drop_dir(db, settings)
    done["escalation_emails"] = EscalationService(db, settings).deliver_due()
    typer.echo(json.dumps(done))
