"""``bastion audit``: check the audit log's hash chain and read its records."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bastion.cli._common import get_database, handle_errors
from bastion.errors import BastionError

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
@handle_errors
def verify_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Recompute the chain; exit 1 with error[audit_chain_broken] naming the first broken record.

    Keep the printed head (seq and hash) somewhere else: a later head must extend it.
    """
    from bastion.audit import verify

    report = verify(get_database())
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    if not report.ok:
        raise BastionError(
            f"record {report.broken_seq}: {report.reason}: {report.message}",
            code="audit_chain_broken",
            seq=report.broken_seq,
            reason=report.reason,
        )
    if not as_json:
        typer.echo(f"audit log intact: {report.records} records")
        typer.echo(f"head: seq {report.head_seq} hash {report.head_hash}")


@app.command("list")
@handle_errors
def list_cmd(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the last N records.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The most recent records, oldest first."""
    from bastion.audit import list_records

    for r in list_records(get_database(), limit):
        if as_json:
            typer.echo(json.dumps(r, ensure_ascii=False))
        else:
            details = json.dumps(r["details"], ensure_ascii=False, sort_keys=True)
            typer.echo(f"{r['seq']}\t{r['at']}\t{r['actor']}\t{r['action']}\t{r['target']}\t{details}")
