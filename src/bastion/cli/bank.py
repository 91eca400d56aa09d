"""``bastion bank``: create banks, fill them from files or hash lists, switch entries off, export them.

The CLI is the operator's: it sees and changes every bank. A bank created without ``--organisation`` is an operator's
bank, which no organisation sees or matches against until it gets an owner (``bank owner``) or is shared
(``bank share``). Bank names are unique across organisations.

Every command opens the configured database (``BASTION_DATABASE_URL`` or SQLite in ``BASTION_DATA_DIR``) and
reports failures as ``error[<code>]: message`` with the error's exit code (see :mod:`bastion.cli._common`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli._common import cli_user, dumps_json, fail, get_database, handle_errors

app = typer.Typer(help="Create, fill, import and export hash banks.", no_args_is_help=True)
entry_app = typer.Typer(help="Disable, enable or delete one bank entry by id.", no_args_is_help=True)
app.add_typer(entry_app, name="entry")

FORMATS_HELP = "csv, json, jsonl, tat (Tech Against Terrorism hash list) or hma (HMA bank content JSON)"


def _service():  # noqa: ANN202 - imported lazily so `bastion --help` stays fast
    from bastion.banks.service import BankService

    return BankService(get_database())




@app.command()
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="Bank name: letters, digits, _ . - (up to 100).")],
    kind: Annotated[
        str, typer.Option("--kind", help="block (act on matches) or allow (known false positives).")
    ] = "block",
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    organisation: Annotated[
        str | None,
        typer.Option("--organisation", "--org", help="The owning organisation (default: none, an operator's bank)."),
    ] = None,
) -> None:
    """Create an empty bank."""
    service = _service()
    owner = _organisation_id(service, organisation) if organisation is not None else None
    bank = service.create_bank(name, kind=kind, description=description, created_by=cli_user(), organisation_id=owner)
    typer.echo(f"created {bank.kind} bank '{bank.name}'" + (f" owned by '{bank.owner}'" if bank.owner else ""))


def _organisation_id(service: Any, organisation: str) -> int:
    from bastion.accounts.service import AccountService

    return AccountService(service.db).get_organisation(organisation).id


def _owner(b: Any) -> str:
    return b.owner or "-"


@app.command("list")
@handle_errors
def list_banks(as_json: Annotated[bool, typer.Option("--json", help="JSON array.")] = False) -> None:
    """List banks with their entry and signal counts."""
    banks = _service().list_banks()
    if as_json:
        typer.echo(dumps_json([b.to_dict() for b in banks]))
        return
    if not banks:
        typer.echo("no banks")
        return
    header = f"{'NAME':<30} {'KIND':<6} {'STATE':<9} {'ENTRIES':>9} {'DISABLED':>9} {'SIGNALS':>9}"
    typer.echo(f"{header}  {'OWNER':<20} SHARED WITH")
    for b in banks:
        state = "enabled" if b.enabled else "disabled"
        typer.echo(
            f"{b.name:<30} {b.kind:<6} {state:<9} {b.entries:>9} {b.entries - b.enabled_entries:>9} {b.signals:>9}  "
            f"{_owner(b):<20} {', '.join(b.shared_with) or '-'}"
        )


@app.command()
@handle_errors
def show(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Entries to list.")] = 20,
) -> None:
    """Show a bank, its first entries and its imports."""
    service = _service()
    bank = service.get_bank(name)
    entries = service.list_entries(name, limit=limit)
    if as_json:
        out = bank.to_dict()
        out["entries"] = [e.to_dict() for e in entries]
        out["imports"] = service.import_runs(name)
        typer.echo(dumps_json(out))
        return
    typer.echo(f"bank '{bank.name}' ({bank.kind}, {'enabled' if bank.enabled else 'disabled'})")
    typer.echo(
        f"  owner: {bank.owner or '- (operator bank: only organisations it is shared with see it)'}; "
        f"shared with: {', '.join(bank.shared_with) or '-'}"
    )
    if bank.description:
        typer.echo(f"  {bank.description}")
    typer.echo(
        f"  {bank.entries} entries ({bank.entries - bank.enabled_entries} disabled), {bank.signals} signals; "
        f"created {bank.created_at:%Y-%m-%d %H:%M} by {bank.created_by or '-'}"
    )
    for e in entries:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(e.labels.items())) or "no labels"
        state = "" if e.enabled else " [disabled]"
        typer.echo(f"  #{e.id}{state} {e.content_type or '-'} source={e.source} [{labels}]")
        for sig in e.signals:
            value = sig.value if len(sig.value) <= 80 else sig.value[:77] + "..."
            typer.echo(f"      {sig.type:<12} {value}")
    if bank.entries > len(entries):
        typer.echo(f"  ... {bank.entries - len(entries)} more (--limit)")
    for run in service.import_runs(name)[-5:]:
        typer.echo(
            f"  import #{run['id']} {run['format']} {run['source_name'] or '-'}: {run['imported']} imported, "
            f"{run['skipped']} skipped, {run['rejected']} rejected ({run['started_at']:%Y-%m-%d %H:%M})"
        )


def _set_bank(name: str, enabled: bool) -> None:
    bank = _service().set_bank_enabled(name, enabled)
    typer.echo(f"bank '{bank.name}' {'enabled' if bank.enabled else 'disabled'}")


@app.command()
@handle_errors
def disable(name: str) -> None:
    """Stop matching against a bank (its entries are kept)."""
    _set_bank(name, False)


@app.command()
@handle_errors
def enable(name: str) -> None:
    """Match against a bank again."""
    _set_bank(name, True)


@app.command()
@handle_errors
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a bank with all its entries and signals."""
    service = _service()
    bank = service.get_bank(name)
    if not yes:
        if not sys.stdin.isatty():
            fail(f"deleting bank '{name}' needs --yes when not run interactively", code="confirmation_required")
        if not typer.confirm(f"Delete bank '{name}' and its {bank.entries} entries?"):
            fail("not deleted", code="cancelled", exit_code=1)
    service.delete_bank(name)
    typer.echo(f"deleted bank '{name}'")


@app.command()
@handle_errors
def share(
    name: str,
    organisation: Annotated[str, typer.Option("--with", help="The organisation to share the bank with (read only).")],
) -> None:
    """Let another organisation see and match against a bank (it cannot change it)."""
    bank = _service().share_bank(name, organisation)
    typer.echo(f"bank '{bank.name}' shared with {', '.join(bank.shared_with)}")


@app.command()
@handle_errors
def unshare(
    name: str,
    organisation: Annotated[str, typer.Option("--with", help="The organisation to stop sharing the bank with.")],
) -> None:
    """Stop sharing a bank with an organisation."""
    bank = _service().unshare_bank(name, organisation)
    typer.echo(f"bank '{bank.name}' no longer shared with '{organisation}'")


@app.command()
@handle_errors
def owner(
    name: str,
    organisation: Annotated[str | None, typer.Argument(help="The new owning organisation.")] = None,
    operator: Annotated[bool, typer.Option("--operator", help="Make it an operator's bank again (no owner).")] = False,
) -> None:
    """Give a bank to an organisation (it then sees, matches and changes it), or back to the operator."""
    if (organisation is None) == (not operator):
        fail("give either ORGANISATION or --operator", code="invalid_arguments", exit_code=2)
    bank = _service().set_owner(name, None if operator else organisation)
    typer.echo(f"bank '{bank.name}' now owned by " + (f"'{bank.owner}'" if bank.owner else "the operator"))


@app.command()
@handle_errors
def add(
    bank: str,
    files: Annotated[list[Path], typer.Argument(help="Files to hash and bank.")],
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value (repeatable).")] = None,
    source: Annotated[
        str,
        typer.Option("--source", help="own_review, forum, authority_order, tech_against_terrorism, gifct or other."),
    ] = "own_review",
    note: Annotated[str, typer.Option("--note")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Hash files and add each as one entry (with every usable signal) to BANK."""
    from bastion.banks.taxonomy import parse_label_args

    labels = parse_label_args(label or [])
    report = _service().add_files(bank, files, labels, source=source, note=note, added_by=cli_user())
    if as_json:
        typer.echo(dumps_json({k: [o.__dict__ for o in v] for k, v in report.__dict__.items()}))
    else:
        for o in report.added:
            typer.echo(f"added {o.path} as entry #{o.entry_id} ({', '.join(o.signals)})")
        for o in report.already_banked:
            typer.echo(f"already banked: {o.path} (entry #{o.entry_id})")
        for o in report.failed:
            err = o.error or {}
            typer.echo(f"{o.path}: error[{err.get('code')}]: {err.get('message')}", err=True)
    if report.failed and not report.added and not report.already_banked:
        raise typer.Exit(2)


@app.command("import")
@handle_errors
def import_cmd(
    bank: str,
    file: Annotated[Path, typer.Argument(help="The hash-list file.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "csv",
    source: Annotated[str | None, typer.Option("--source", help="Provenance of rows without their own.")] = None,
    note: Annotated[str, typer.Option("--note")] = "",
    keep_duplicates: Annotated[
        bool, typer.Option("--keep-duplicates", help="Import rows the bank already holds.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import a hash list into BANK in one transaction; bad rows are reported with their line and skipped."""
    result = _service().import_file(
        bank, file, fmt.lower(), source=source, note=note, added_by=cli_user(), skip_existing=not keep_duplicates
    )
    if as_json:
        typer.echo(dumps_json(result.to_dict()))
        return
    typer.echo(
        f"imported {result.imported} entries ({result.signals} signals) into '{bank}'; "
        f"skipped {result.skipped} already present or withdrawn; rejected {result.rejected} rows"
    )
    for err in result.errors[:20]:
        typer.echo(f"  error[{err.code}]: {err.message}", err=True)
    if result.rejected > 20:
        typer.echo(f"  ... {result.rejected - 20} more rejected rows (bastion bank show {bank} --json)", err=True)


@app.command()
@handle_errors
def export(
    bank: str,
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMATS_HELP)] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    include_disabled: Annotated[bool, typer.Option("--include-disabled")] = False,
) -> None:
    """Export BANK's signals and labels (enabled entries only unless --include-disabled)."""
    service = _service()
    service.get_bank(bank)
    if output is None:
        service.export(bank, fmt.lower(), sys.stdout, include_disabled=include_disabled)
        sys.stdout.flush()
        return
    target = output.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            count = service.export(bank, fmt.lower(), fh, include_disabled=include_disabled)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    typer.echo(f"wrote {count} signals to {output}", err=True)


def _set_entry(entry_id: int, enabled: bool) -> None:
    entry = _service().set_entry_enabled(entry_id, enabled)
    typer.echo(f"entry #{entry.id} in '{entry.bank}' {'enabled' if entry.enabled else 'disabled'}")


@entry_app.command("disable")
@handle_errors
def entry_disable(entry_id: int) -> None:
    """Stop matching one entry (kept, can be enabled again)."""
    _set_entry(entry_id, False)


@entry_app.command("enable")
@handle_errors
def entry_enable(entry_id: int) -> None:
    """Match one entry again."""
    _set_entry(entry_id, True)


@entry_app.command("delete")
@handle_errors
def entry_delete(entry_id: int) -> None:
    """Delete one entry and its signals."""
    _service().delete_entry(entry_id)
    typer.echo(f"deleted entry #{entry_id}")


@app.command()
@handle_errors
def entities(
    search: Annotated[str, typer.Argument(help="Part of a name or alias (any case or accents).")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    lists: Annotated[bool, typer.Option("--lists", help="Show the bundled lists and their sources.")] = False,
) -> None:
    """Designated organisations from the bundled UN, UK and EU lists (the ``entity`` label resolves through them)."""
    from bastion.banks import entities as ents

    if lists:
        found_lists = ents.entity_lists()
        if as_json:
            typer.echo(dumps_json([x.to_dict() for x in found_lists]))
            return
        for x in found_lists:
            typer.echo(
                f"{x.id}: {x.title}\n  {x.count} organisations; {x.source}\n  version: {x.version}\n"
                f"  retrieval: {x.retrieval}"
            )
        return
    found = ents.search(search)
    if as_json:
        typer.echo(dumps_json([e.to_dict() for e in found]))
        return
    for e in found:
        aka = "; ".join([*e.aliases[:4], *e.aliases_fr[:2]])
        typer.echo(f"{e.name}  [{', '.join(e.lists)}]" + (f"\n    aka {aka}" if aka else ""))
    typer.echo(f"{len(found)} organisation(s)", err=True)


@app.command()
@handle_errors
def taxonomy(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The label values Bastion checks: category, ideology and source."""
    from bastion.banks.taxonomy import describe

    table = describe()
    if as_json:
        typer.echo(dumps_json(table))
        return
    for key, values in table.items():
        typer.echo(f"{key}:")
        for value, title in values.items():
            typer.echo(f"  {value:<30} {title}")
    typer.echo("entity: any name; listed organisations resolve to their canonical name (bastion bank entities)")
