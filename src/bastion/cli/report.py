"""``bastion report`` and ``bastion preservation``: the compliance officer's commands (docs/compliance.md).

- ``bastion report transparency ORG --from 2025-01-01 --to 2026-01-01 [--format json|csv|html] [--out FILE]
  [--publish]``: the TCO Art. 7 report and the DSA figures, computed now (``--publish`` stores it as the period's
  next version and prints its id and SHA-256);
- ``bastion report statements ORG [--from --to] --out DIR``: every statement of reasons as the DSA Transparency
  Database's batch bodies, ``statements-0001.json``... of at most 100 each, validated before they are written;
- ``bastion report validate FILE``: check a batch body against the Transparency Database's rules;
- ``bastion preservation list|read|extend|purge``: preserved content (the operator's own access, audited as
  ``cli:<user>``).
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli._common import fail, get_database, handle_errors

app = typer.Typer(help="Compliance reports: transparency, statements of reasons.", no_args_is_help=True)
preservation_app = typer.Typer(help="Preserved removed content (TCO Art. 6).", no_args_is_help=True)

Org = Annotated[str, typer.Argument(help="Organisation name or id.")]


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} is a date or time in ISO 8601 (e.g. 2025-01-01)", code="invalid_period")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _org_id(org: str) -> int:
    from bastion.accounts.service import AccountService

    return AccountService(get_database()).get_organisation(org).id


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def _write(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)


@app.command("transparency")
@handle_errors
def transparency_report(
    org: Org,
    since: Annotated[str, typer.Option("--from", help="Start of the period (inclusive), ISO 8601.")],
    until: Annotated[str, typer.Option("--to", help="End of the period (exclusive), ISO 8601.")],
    fmt: Annotated[str, typer.Option("--format", help="json, csv (the DSA figures) or html (with charts).")] = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of standard output.")] = None,
    publish: Annotated[bool, typer.Option("--publish", help="Store it as the next published version.")] = False,
) -> None:
    """The TCO Art. 7 transparency report and the DSA figures for terrorist content."""
    from bastion.compliance import transparency

    if fmt not in ("json", "csv", "html"):
        fail("--format is json, csv or html", code="invalid_format")
    db = get_database()
    org_id = _org_id(org)
    start, end = _when(since, "--from"), _when(until, "--to")
    assert start is not None and end is not None
    if publish:
        report = transparency.publish(db, _actor(), org_id, start, end)
        typer.echo(f"published version {report['version']} (id {report['id']}, sha256 {report['sha256']})", err=True)
        document = transparency.get_published(db, org_id, report["id"])["document"]
    else:
        document = transparency.compute(db, org_id, start, end)
    if fmt == "csv":
        _write(transparency.to_csv(document), out)
    elif fmt == "html":
        from bastion.console.transparency_html import standalone

        _write(standalone(document), out)
    else:
        _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n", out)


@app.command("statements")
@handle_errors
def export_statements(
    org: Org,
    out: Annotated[Path, typer.Option("--out", help="Directory for statements-0001.json ...")],
    since: Annotated[str | None, typer.Option("--from", help="Restrictions decided from (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="... and before (ISO 8601).")] = None,
) -> None:
    """Every statement of reasons as Transparency Database batch bodies (at most 100 per file)."""
    from bastion.compliance import statements
    from bastion.compliance.sweep import handle_restrictions
    from bastion.settings import get_settings

    db = get_database()
    org_id = _org_id(org)
    start, end = _when(since, "--from"), _when(until, "--to")
    while handle_restrictions(db, get_settings(), organisation_id=org_id, limit=1000):
        pass  # restrictions the workers have not swept yet get their statements first
    out.mkdir(parents=True, exist_ok=True)
    after, n, total = 0, 0, 0
    while True:
        with db.session() as s:
            rows = statements.query(s, org_id, start, end, after_id=after)
        if not rows:
            break
        body = [r.statement for r in rows]
        statements.check(body)
        n += 1
        (out / f"statements-{n:04d}.json").write_text(json.dumps({"statements": body}, ensure_ascii=False, indent=1))
        total += len(body)
        after = rows[-1].id
    typer.echo(f"{total} statement(s) in {n} batch file(s) in {out}")


@app.command("validate")
@handle_errors
def validate_file(path: Annotated[Path, typer.Argument(help='A batch body: {"statements": [...]}.')]) -> None:
    """Check a batch body against the DSA Transparency Database's rules; every problem is printed."""
    from bastion.compliance import statements

    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read {path} as JSON: {exc}", code="invalid_json")
    problems = statements.validate(body.get("statements") if isinstance(body, dict) else None)
    if problems:
        for where, fields in problems.items():
            for field, messages in fields.items():
                for m in messages:
                    typer.echo(f"{where}.{field}: {m}", err=True)
        fail(f"{sum(len(f) for f in problems.values())} field(s) break the rules", code="invalid_statements")
    typer.echo(f"valid: {len(body['statements'])} statement(s)")


# -- preservation -----------------------------------------------------------------------------------------------------
def _preservation():  # type: ignore[no-untyped-def]
    from bastion.compliance.preservation import Accessor, PreservationService
    from bastion.settings import get_settings

    return PreservationService(get_database(), get_settings()), Accessor(_actor(), None, frozenset({"preservation"}))


@preservation_app.command("list")
@handle_errors
def preservation_list(
    content_id: Annotated[int | None, typer.Option("--content", help="One content id.")] = None,
) -> None:
    """Preserved items, newest first (one JSON object a line)."""
    service, who = _preservation()
    for row in service.list(who, content_id=content_id):
        typer.echo(json.dumps(row))


@preservation_app.command("read")
@handle_errors
def preservation_read(
    preservation_id: Annotated[int, typer.Argument(help="The preservation id.")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why (audited): the request this answers.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the package's JSON here.")] = None,
) -> None:
    """Decrypt one package."""
    service, who = _preservation()
    _write(json.dumps(service.read(who, preservation_id, purpose=purpose), indent=1) + "\n", out)


@preservation_app.command("extend")
@handle_errors
def preservation_extend(
    preservation_id: Annotated[int, typer.Argument(help="The preservation id.")],
    until: Annotated[str, typer.Option("--until", help="New expiry, ISO 8601.")],
    requested_by: Annotated[str, typer.Option("--requested-by", help="The authority or court that asked.")],
    reference: Annotated[str, typer.Option("--reference", help="Its reference.")],
) -> None:
    """Keep one item longer at an authority's or court's request."""
    service, who = _preservation()
    end = _when(until, "--until")
    assert end is not None
    typer.echo(
        json.dumps(service.extend(who, preservation_id, until=end, requested_by=requested_by, reference=reference))
    )


@preservation_app.command("purge")
@handle_errors
def preservation_purge() -> None:
    """Purge every package past its expiry now (the workers do it on their own)."""
    service, _ = _preservation()
    typer.echo(f"purged {service.purge_due()}")
