"""What every ``bastion`` command shares: one way to report errors and one way to open the database.

A :class:`bastion.errors.BastionError` becomes ``error[<code>]: message`` on stderr and the error's exit code, never a
traceback, so scripts can match on the code and people get a sentence.
"""

from __future__ import annotations

import functools
import getpass
import json
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer

from bastion.errors import BastionError
from bastion.settings import get_settings
from bastion.storage.db import Database, open_database

P = ParamSpec("P")
R = TypeVar("R")


def report_error(exc: BastionError) -> None:
    """Print a Bastion error the way every command does: ``error[<code>]: message`` on stderr."""
    typer.echo(f"error[{exc.code}]: {exc.message}", err=True)


def run_cli(fn: Callable[[], R]) -> R:
    """Call ``fn``; a BastionError is printed as ``error[<code>]: message`` and exits with its exit code."""
    from sqlalchemy.exc import OperationalError

    try:
        return fn()
    except BastionError as exc:
        report_error(exc)
        raise typer.Exit(exc.exit_code) from None
    except OperationalError as exc:  # e.g. SQLite busy past its timeout while another process imports
        reason = str(exc.orig or exc).strip().splitlines()[0]
        code = "database_busy" if "locked" in reason or "busy" in reason else "database_error"
        report_error(BastionError(f"the database refused the operation: {reason}", code=code))
        raise typer.Exit(1) from None


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`run_cli` for Typer commands (keeps the signature Typer reads)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_cli(lambda: fn(*args, **kwargs))

    return wrapper


def fail(message: str, *, code: str = "invalid_input", exit_code: int = 2) -> NoReturn:
    """Stop a command with ``error[<code>]: message`` on stderr (for checks made in the CLI itself)."""
    typer.echo(f"error[{code}]: {message}", err=True)
    raise typer.Exit(exit_code)


def get_database() -> Database:
    """The configured database (BASTION_DATABASE_URL, else SQLite in BASTION_DATA_DIR), migrated to the newest."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        return open_database(get_settings())
    except (OperationalError, ArgumentError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BastionError(f"cannot open the database: {reason}", code="database_unavailable") from exc


def cli_user() -> str:
    """The operating-system user running the command (recorded as who made a change), or "" when unknown."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


def dumps_json(obj: Any) -> str:
    """One JSON line of command output (UTF-8 kept, anything else as its string)."""
    return json.dumps(obj, ensure_ascii=False, default=str)
