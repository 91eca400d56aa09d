"""``bastion policy``: check a rules file, set it for an organisation, show versions and history, backtest a draft.

The format is documented in docs/policy.md; ``bastion policy default`` prints the built-in policy to start from.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli._common import get_database, handle_errors

app = typer.Typer(help="Per-organisation rules: validate, set, show, history, backtest.", no_args_is_help=True)

FileArg = Annotated[Path, typer.Argument(help="Rules file (YAML); '-' reads standard input.")]
OrgOpt = Annotated[str, typer.Option("--organisation", "--org", "-o", help="Organisation name or id.")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def _read(path: Path) -> str:
    from bastion.errors import UnreadableFile

    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path}: not UTF-8 text", code="unreadable_file") from None
    except OSError as exc:
        raise UnreadableFile(f"{path}: {exc.strerror or exc}", code="unreadable_file") from None


def _org_id(ref: str) -> int:
    from bastion.accounts.service import AccountService

    return AccountService(get_database()).get_organisation(ref).id


def _report_invalid(path: Path, exc: Any) -> None:
    typer.echo(f"error[{exc.code}]: {path}: {len(exc.details.get('problems', []))} problem(s)", err=True)
    for p in exc.details.get("problems", []):
        where = f"{path}:{p['line']}" if p.get("line") else str(path)
        rule = f" (rule '{p['rule']}')" if p.get("rule") else ""
        typer.echo(f"  {where}: {p['path'] or '<file>'}{rule}: {p['message']}", err=True)


def _compile_or_exit(path: Path, source: str) -> Any:
    from bastion.errors import InvalidPolicy
    from bastion.policy.engine import compile_policy

    try:
        return compile_policy(source)
    except InvalidPolicy as exc:
        _report_invalid(path, exc)
        raise typer.Exit(exc.exit_code) from None


@app.command()
@handle_errors
def validate(
    file: FileArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary (or the problems) as JSON.")] = False,
) -> None:
    """Check a rules file; print every problem with its line (exit status 2 when there is any)."""
    from bastion.errors import InvalidPolicy
    from bastion.policy.engine import compile_policy

    source = _read(file)
    if as_json:
        try:
            policy = compile_policy(source)
        except InvalidPolicy as exc:
            typer.echo(_dumps({"valid": False, "problems": exc.details.get("problems", [])}))
            raise typer.Exit(exc.exit_code) from None
        typer.echo(_dumps({"valid": True, **policy.summary()}))
        return
    policy = _compile_or_exit(file, source)
    s = policy.summary()
    typer.echo(f"{file}: valid: {s['rules']} rule(s), {s['shadow_rules']} shadow rule(s), default {s['default']}")


@app.command("set")
@handle_errors
def set_cmd(
    file: FileArg,
    organisation: OrgOpt,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why this change (kept in the history).")] = "",
) -> None:
    """Check a rules file and make it the organisation's policy in force (a new version)."""
    from bastion.policy.service import PolicyService

    source = _read(file)
    _compile_or_exit(file, source)
    info = PolicyService(get_database(), _actor()).set_policy(_org_id(organisation), source, comment)
    if info.changed:
        typer.echo(f"policy version {info.version} is now in force")
    else:
        typer.echo(f"unchanged: version {info.version} already has this text")


@app.command()
@handle_errors
def show(
    organisation: OrgOpt,
    version: Annotated[int | None, typer.Option("--version", "-v", min=1, help="This version (default: in force).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the rules in force (or VERSION) verbatim; the built-in default when none was ever set."""
    from bastion.policy.engine import default_source
    from bastion.policy.service import PolicyService

    svc = PolicyService(get_database())
    org_id = _org_id(organisation)
    info = svc.get(org_id, version) if version is not None else svc.current_info(org_id)
    if as_json:
        typer.echo(_dumps(info.to_dict() if info else {"version": None, "builtin": True, "source": default_source()}))
        return
    if info is None:
        typer.echo("# no policy set: the built-in default is in force", err=True)
        typer.echo(default_source(), nl=False)
        return
    typer.echo(f"# version {info.version}, set by {info.created_by} at {info.created_at.isoformat()}", err=True)
    typer.echo(info.source or "", nl=False)


@app.command()
@handle_errors
def history(
    organisation: OrgOpt,
    diff: Annotated[bool, typer.Option("--diff", help="Show each version's changes against the one before.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version.")] = False,
) -> None:
    """Every version of the organisation's policy, newest first: who set it, when, why."""
    from bastion.policy.service import PolicyService

    versions = PolicyService(get_database()).history(_org_id(organisation), diff=diff)
    if not versions:
        typer.echo("no policy set: the built-in default is in force")
        return
    for v in versions:
        if as_json:
            typer.echo(_dumps(v.to_dict()))
            continue
        typer.echo(f"version {v.version}  {v.created_at.isoformat()}  {v.created_by}  {v.comment}")
        if diff and v.diff:
            typer.echo(v.diff.rstrip("\n"))


@app.command()
@handle_errors
def backtest(
    file: FileArg,
    organisation: OrgOpt,
    since: Annotated[str, typer.Option("--since", help="Window: e.g. 12h, 7d, 2w.")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="List at most this many changed submissions.")] = 100,
) -> None:
    """What FILE would have decided about the organisation's submissions of the window, against what was decided."""
    from bastion.policy.backtest import backtest as run_backtest
    from bastion.policy.backtest import parse_duration

    source = _read(file)
    _compile_or_exit(file, source)
    parse_duration(since)
    report = run_backtest(get_database(), _org_id(organisation), source, since, max_items=limit)
    if as_json:
        typer.echo(_dumps(report.to_dict()))
        return
    typer.echo(
        f"{report.considered} decided submission(s) since {report.window_start} ({report.skipped} without a "
        f"decision skipped); {report.changed} would change, {report.outcome_changed} with another outcome"
    )
    typer.echo(f"{'OUTCOME':<10} {'BEFORE':>8} {'AFTER':>8}")
    for outcome in report.before:
        typer.echo(f"{outcome:<10} {report.before[outcome]:>8} {report.after.get(outcome, 0):>8}")
    for item in report.items:
        typer.echo(
            f"  {item.content_id} ({item.external_id}): {item.old_outcome} [{item.old_rule or '-'}]"
            f" -> {item.new_outcome} [{item.new_rule or '(default)'}]"
        )
    if report.truncated:
        typer.echo(f"  ... more changes not listed (--limit {limit})")


@app.command()
@handle_errors
def default() -> None:
    """Print the built-in policy (a starting point for your own)."""
    from bastion.policy.engine import default_source

    typer.echo(default_source(), nl=False)
