"""``bastion exchange``: hashes from ThreatExchange, Tech Against Terrorism and exchange files into banks, and a bank
out as JSON Lines, STIX 2.1 or ThreatExchange CSV (docs/exchanges.md).

Credentials come from flags or the environment variables python-threatexchange uses (``TX_ACCESS_TOKEN`` for
ThreatExchange, ``PYTX_TAT_CREDENTIALS`` as ``user:password`` for Tech Against Terrorism); a registered exchange
(``exchange add``) keeps them encrypted in the database.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli._common import cli_user, dumps_json, fail, get_database, handle_errors

app = typer.Typer(
    help="ThreatExchange, Tech Against Terrorism and exchange files into banks; banks out as "
    "JSON Lines, STIX 2.1 or ThreatExchange CSV.",
    no_args_is_help=True,
)

KIND_HELP = "threatexchange (Graph API), tat (Tech Against Terrorism hash list API) or file"
FILE_FORMAT_HELP = "te-csv, te-signals (ThreatExchange), tat, hma, jsonl or stix"




def _credentials(kind: str, token: str | None, tat_credentials: str | None) -> dict[str, str]:
    if kind == "threatexchange":
        if not token:
            fail("ThreatExchange needs an access token: --token or TX_ACCESS_TOKEN", code="missing_credentials")
        return {"access_token": token}
    if kind == "tat":
        user, sep, password = (tat_credentials or "").partition(":")
        if not sep or not user or not password:
            fail(
                "Tech Against Terrorism needs user:password: --tat-credentials or PYTX_TAT_CREDENTIALS",
                code="missing_credentials",
            )
        return {"username": user, "password": password}
    return {}


def _options(
    kind: str, privacy_group: str | None, file: Path | None, fmt: str | None, default_type: str | None
) -> dict[str, str]:
    if kind == "threatexchange":
        return {"privacy_group": privacy_group or ""}
    if kind == "file":
        out = {"path": str(file.resolve()) if file else "", "format": (fmt or "").lower()}
        if default_type:
            out["default_type"] = default_type
        return out
    return {}


def _organisation_id(organisation: str | None) -> int | None:
    if organisation is None:
        return None
    from bastion.exchanges.service import _organisation

    return _organisation(get_database(), organisation).id


Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="TX_ACCESS_TOKEN", show_envvar=True, help="ThreatExchange access token (app id|secret)."
    ),
]
TatCredentials = Annotated[
    str | None,
    typer.Option(
        "--tat-credentials",
        envvar="PYTX_TAT_CREDENTIALS",
        show_envvar=True,
        help="Tech Against Terrorism user:password.",
    ),
]
PrivacyGroup = Annotated[str | None, typer.Option("--privacy-group", help="ThreatExchange privacy group id.")]
Url = Annotated[str, typer.Option("--url", help="API base URL (default: the exchange's public one).")]
FileArg = Annotated[Path | None, typer.Option("--file", help="The file (kind file).")]
FileFormat = Annotated[str | None, typer.Option("--format", "-f", help=FILE_FORMAT_HELP)]
DefaultType = Annotated[str | None, typer.Option("--signal-type", help="te-signals: the type of bare lines.")]
Organisation = Annotated[
    str | None, typer.Option("--organisation", "--org", help="Act as this organisation (its own banks only).")
]


@app.command()
@handle_errors
def fetch(
    kind: Annotated[str, typer.Argument(help=KIND_HELP)],
    bank: Annotated[str, typer.Option("--bank", help="The bank the hashes go into.")],
    token: Token = None,
    tat_credentials: TatCredentials = None,
    privacy_group: PrivacyGroup = None,
    url: Url = "",
    file: FileArg = None,
    fmt: FileFormat = None,
    default_type: DefaultType = None,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Resume from this cursor (printed last time).")] = None,
    organisation: Organisation = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Fetch an exchange's hashes (all pages from --cursor) into BANK through the bank importer."""
    from bastion.exchanges import service
    from bastion.settings import get_settings

    kind = kind.lower()
    if kind not in service.KINDS:
        fail(f"unknown exchange kind {kind!r}; known: {', '.join(service.KINDS)}", code="unknown_exchange_kind")
    secrets = _credentials(kind, token, tat_credentials)
    options = _options(kind, privacy_group, file, fmt, default_type)
    client = service.open_client(get_settings(), kind, kind, url, secrets, options)
    result = service.fetch_into_bank(
        get_database(), client, bank, cursor=cursor, actor=cli_user(), organisation_id=_organisation_id(organisation)
    )
    if as_json:
        typer.echo(dumps_json(result.to_dict()))
        return
    typer.echo(
        f"imported {result.imported} hashes into '{bank}' from {result.pages} pages; skipped "
        f"{result.skipped}; rejected {len(result.rejected)}"
    )
    for err in result.rejected[:20]:
        typer.echo(f"  error[{err.get('code')}]: {err.get('message')}", err=True)
    typer.echo(f"cursor: {result.cursor}")


@app.command("export")
@handle_errors
def export_cmd(
    bank: Annotated[str, typer.Option("--bank", help="The bank to export.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, stix (STIX 2.1 bundle) or te-csv")] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    include_disabled: Annotated[
        bool, typer.Option("--include-disabled", help="Also disabled entries (as retracted/revoked).")
    ] = False,
) -> None:
    """Write BANK's hashes with their labels as an exchange dataset."""
    from bastion.exchanges import service

    fmt = fmt.lower()
    if fmt not in service.EXPORT_FORMATS:
        fail(f"unknown export format {fmt!r}; known: {', '.join(service.EXPORT_FORMATS)}", code="unknown_format")
    db = get_database()
    service.BankService(db).get_bank(bank)
    signals = service.bank_signals(db, bank, include_disabled=include_disabled)
    if output is None:
        service.write_signals(fmt, signals, sys.stdout)
        sys.stdout.flush()
        return
    target = output.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            count = service.write_signals(fmt, signals, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    typer.echo(f"wrote {count} signals to {output}", err=True)


@app.command("import")
@handle_errors
def import_cmd(
    file: Annotated[Path, typer.Argument(help="The dataset file.")],
    bank: Annotated[str, typer.Option("--bank", help="The bank the hashes go into.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FILE_FORMAT_HELP)] = "jsonl",
    default_type: DefaultType = None,
    organisation: Organisation = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import an exchange dataset file into BANK: the whole file is checked first; a bad row stores nothing."""
    from bastion.exchanges import service

    signals = service.read_file(fmt.lower(), file, default_type=default_type)
    result = service.import_signals(
        get_database(),
        bank,
        signals,
        kind=fmt.lower(),
        actor=cli_user(),
        organisation_id=_organisation_id(organisation),
        source_name=file.name,
    )
    if as_json:
        typer.echo(dumps_json(result.to_dict()))
        return
    typer.echo(
        f"imported {result.imported} hashes into '{bank}'; skipped {result.skipped} already present or "
        f"retracted; rejected {result.rejected}"
    )
    for err in result.errors[:20]:
        typer.echo(f"  error[{err.code}]: {err.message}", err=True)


@app.command()
@handle_errors
def add(
    organisation: Annotated[str, typer.Argument(help="The organisation.")],
    name: Annotated[str, typer.Argument(help="The organisation's name for the exchange.")],
    kind: Annotated[str, typer.Option("--kind", help=KIND_HELP)],
    bank: Annotated[str, typer.Option("--bank", help="The bank its hashes go into (created if missing).")],
    token: Token = None,
    tat_credentials: TatCredentials = None,
    privacy_group: PrivacyGroup = None,
    url: Url = "",
    file: FileArg = None,
    fmt: FileFormat = None,
    default_type: DefaultType = None,
) -> None:
    """Register an exchange for an organisation (credentials encrypted at rest); `exchange sync` pulls it."""
    from bastion.exchanges import service
    from bastion.settings import get_settings

    kind = kind.lower()
    if kind not in service.KINDS:
        fail(f"unknown exchange kind {kind!r}; known: {', '.join(service.KINDS)}", code="unknown_exchange_kind")
    row = service.add_exchange(
        get_database(),
        get_settings(),
        organisation,
        kind,
        name,
        bank,
        secrets=_credentials(kind, token, tat_credentials),
        options=_options(kind, privacy_group, file, fmt, default_type),
        url=url,
        actor=cli_user(),
    )
    typer.echo(dumps_json(row))


@app.command()
@handle_errors
def sync(
    organisation: Annotated[str, typer.Argument(help="The organisation.")],
    name: Annotated[str, typer.Argument(help="The exchange's name.")],
) -> None:
    """Pull a registered exchange from its stored cursor into its bank (resumable; retractions disable entries)."""
    from bastion.exchanges import service
    from bastion.settings import get_settings

    typer.echo(dumps_json(service.sync_registered(get_database(), get_settings(), organisation, name)))
