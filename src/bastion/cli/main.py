"""The ``bastion`` command: hash files, scan folders against banks, manage banks, run the demo."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from bastion import __version__
from bastion.cli._common import fail, get_database, handle_errors
from bastion.cli.accounts import key_app, org_app, user_app
from bastion.cli.audit import app as audit_app
from bastion.cli.bank import app as bank_app
from bastion.cli.exchange import app as exchange_app
from bastion.cli.forum import app as forum_app
from bastion.cli.orders import app as orders_app
from bastion.cli.policy import app as policy_app
from bastion.cli.report import app as report_app
from bastion.cli.report import preservation_app
from bastion.cli.review import app as review_app
from bastion.cli.webhooks import app as webhook_app

app = typer.Typer(
    name="bastion",
    help="Bastion: find, review and remove terrorist and violent extremist content by hash matching.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(bank_app, name="bank")
app.add_typer(org_app, name="org")
app.add_typer(key_app, name="key")
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(webhook_app, name="webhook")
app.add_typer(policy_app, name="policy")
app.add_typer(review_app, name="review")
app.add_typer(orders_app, name="orders")  # authorities' orders and referrals, escalations (issue 6)
app.add_typer(report_app, name="report")  # transparency reports, statements of reasons (issue 6)
app.add_typer(preservation_app, name="preservation")  # preserved removed content (issue 6)
app.add_typer(forum_app, name="forum")
app.add_typer(exchange_app, name="exchange")  # ThreatExchange, TAT, files, JSONL/STIX datasets (issue 5)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Bastion: find, review and remove terrorist and violent extremist content by hash matching."""


class LogFormat(str, Enum):
    json = "json"
    text = "text"


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@app.command()
@handle_errors
def version() -> None:
    """Print Bastion's version."""
    typer.echo(__version__)


@app.command("hash")
@handle_errors
def hash_cmd(
    files: Annotated[list[Path] | None, typer.Argument(help="Files to hash (type sniffed from the bytes).")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="Hash this text (repeatable).")] = None,
    url: Annotated[list[str] | None, typer.Option("--url", help="Hash this URL (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Compute every applicable signal (md5, sha256, pdq, vpdq, text, url...) without matching."""
    from bastion import signals as signal_registry
    from bastion.content import Content
    from bastion.errors import BastionError
    from bastion.matching.scanner import FileResult, hash_file

    if not (files or text or url):
        fail("nothing to hash: give FILES, --text or --url", code="no_input")
    results: list[FileResult] = [hash_file(str(f)) for f in files or []]
    for label, make in (("text", Content.from_text), ("url", Content.from_url)):
        for value in (text if label == "text" else url) or []:
            r = FileResult(path=f"<{label}>")
            try:
                content = make(value)
                r.content_type = content.content_type.value
                r.signals = signal_registry.compute_all(content)
            except BastionError as exc:
                r.error = {"code": exc.code, "message": exc.message}
            results.append(r)
    for r in results:
        if as_json:
            typer.echo(_dumps(r.to_dict(with_matches=False)))
            continue
        if r.error:
            typer.echo(f"{r.path}: error[{r.error['code']}]: {r.error['message']}")
            continue
        typer.echo(f"{r.path} ({r.content_type})")
        for s in r.signals:
            quality = f"  quality={s.quality}" if s.quality is not None else ""
            value = s.value if len(s.value) <= 100 else s.value[:97] + "..."
            typer.echo(f"  {s.type:<13} {value}{quality}")


@app.command()
@handle_errors
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to scan (recursively).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line per file.")] = False,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=64, help="Hashing processes.")] = 1,
    bank: Annotated[list[str] | None, typer.Option("--bank", "-b", help="Only report matches in this bank.")] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal only).")
    ] = None,
) -> None:
    """Hash every file under PATHS and match it against every enabled bank.

    Exit status 0 when the scan completed, whether or not files matched or could not be read.
    """
    from bastion.banks.service import BankService
    from bastion.matching.matcher import open_matcher
    from bastion.matching.scanner import iter_files, scan_files

    db = get_database()
    if bank:
        service = BankService(db)
        for name in bank:
            service.get_bank(name)  # NotFound with a code, before any work
    matcher = open_matcher(db)
    files = list(iter_files(paths))
    show_progress = progress if progress is not None else (sys.stderr.isatty() and sys.stdout.isatty())
    results = scan_files(files, matcher, workers=workers, banks=set(bank) if bank else None)
    if show_progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("scan", total=len(files))
            for r in results:
                typer.echo(_dumps(r.to_dict()) if as_json else _human(r))
                bar.advance(task)
    else:
        for r in results:
            typer.echo(_dumps(r.to_dict()) if as_json else _human(r))


def _human(r: object) -> str:
    from bastion.matching.scanner import FileResult

    assert isinstance(r, FileResult)
    if r.error:
        return f"{r.path}: error[{r.error['code']}]: {r.error['message']}"
    m = r.match
    if m is None or not (m.matches or m.suppressed):
        return f"{r.path}: {r.content_type}, no match"
    if not m.matches:
        allow = ", ".join(f"{a.bank}#{a.entry_id}" for a in m.allowed_by)
        return f"{r.path}: {r.content_type}, {len(m.suppressed)} match(es) suppressed by allow-list {allow}"
    parts = []
    for x in m.matches:
        labels = ",".join(f"{k}={v}" for k, v in sorted(x.labels.items()))
        extra = f" {x.detail['transform']}" if "transform" in x.detail else ""
        parts.append(f"{x.bank}#{x.entry_id} via {x.signal_type} (distance {x.distance:g}{extra}) [{labels}]")
    return f"{r.path}: {r.content_type}, MATCH " + "; ".join(parts)


@app.command()
@handle_errors
def demo(
    scan_only: Annotated[
        bool, typer.Option("--scan", help="Only scan the altered copies with the Matcher (no service, no policy).")
    ] = False,
) -> None:
    """Seed the demo (as serve --demo), serve the API on a free local port, submit altered copies of benign samples
    and unrelated files over HTTP, print each decision, stop. Exits 1 unless every altered copy was removed and
    nothing unrelated was."""
    from bastion.demo import run_demo, run_scan_demo

    db = get_database()
    if scan_only:
        run_scan_demo(db, echo=typer.echo)
        return
    run = run_demo(db, echo=typer.echo)
    if run.removed(True) != run.count(True) or run.removed(False):
        raise typer.Exit(1)


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="Log line format.")] = LogFormat.json,
    demo: Annotated[
        bool, typer.Option("--demo", help="Also seed a demo organisation, its key and a bank of benign samples.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, max=64, help="In-process worker threads (default BASTION_WORKER_THREADS)."),
    ] = None,
) -> None:
    """Serve the HTTP API and the review console (uvicorn). On an empty database, first creates an admin key and an
    admin console user and prints their secrets once."""
    import uvicorn

    from bastion.accounts.bootstrap import DEMO_ORGANISATION, DEMO_SCOPES, ensure_admin, ensure_admin_user
    from bastion.api.app import create_app
    from bastion.logging import configure_logging
    from bastion.settings import get_settings

    configure_logging(log_format.value)
    db = get_database()  # runs the migrations
    settings = get_settings()
    secret = ensure_admin(db)
    if secret:
        _announce_secret(f"organisation {settings.admin_organisation!r} (every scope)", secret)
    admin_user = ensure_admin_user(db)
    if admin_user:
        shown_host = "localhost" if host in ("0.0.0.0", "::", "") else host
        typer.echo(
            f"Review console: http://{shown_host}:{port}/console/\n"
            f"    sign in as {admin_user[0]} with the one-time password:\n    {admin_user[1]}\n"
            "This password is shown once and never again: sign in and change it "
            f"(bastion user password {admin_user[0]} --org {settings.admin_organisation}).",
            err=True,
        )
    if demo:
        from bastion.demo import seed_demo

        demo_secret = seed_demo(db, "bastion serve --demo", echo=lambda line: typer.echo(line, err=True))
        if demo_secret:
            _announce_secret(f"organisation {DEMO_ORGANISATION!r} ({', '.join(DEMO_SCOPES)})", demo_secret)
    api = create_app(db, settings)
    threads = settings.worker_threads if workers is None else workers
    stop = None
    if threads:
        from bastion.jobs.worker import start_worker_threads

        api.state.live_matcher.start_refresher()
        stop, _ = start_worker_threads(db, settings, api.state.live_matcher, threads, api.state.pipeline_metrics)
        typer.echo(f"{threads} in-process worker thread(s) started.", err=True)
    try:
        # log_config=None: uvicorn's own loggers propagate to the root handler configured above.
        uvicorn.run(api, host=host, port=port, log_config=None)
    finally:
        if stop is not None:
            stop.set()
        api.state.live_matcher.stop_refresher()


@app.command()
@handle_errors
def worker(
    threads: Annotated[int, typer.Option("--threads", min=1, max=64, help="Worker threads in this process.")] = 1,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="Log line format.")] = LogFormat.json,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Run workers only (no HTTP API): decide queued submissions and deliver webhooks until SIGTERM or Ctrl-C.

    Run as many as you need, on as many machines, against one PostgreSQL database (BASTION_DATABASE_URL).
    """
    import signal
    import threading

    from bastion.jobs.worker import start_worker_threads
    from bastion.logging import configure_logging
    from bastion.matching.live import LiveMatcher
    from bastion.settings import get_settings

    configure_logging(log_format.value)
    db = get_database()
    settings = get_settings()
    matcher = LiveMatcher(db, settings)
    matcher.refresh(force=True)  # load the index before taking work
    matcher.start_refresher()
    metrics = None
    if metrics_port:
        from prometheus_client import REGISTRY, start_http_server

        from bastion.decisions.metrics import PipelineMetrics

        metrics = PipelineMetrics(REGISTRY)
        start_http_server(metrics_port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    stop, pool = start_worker_threads(db, settings, matcher, threads, metrics)
    typer.echo(f"bastion worker: {threads} thread(s) running; SIGTERM or Ctrl-C stops after the current job.", err=True)
    while not done.wait(1.0):
        pass
    stop.set()
    for t in pool:
        t.join(timeout=60)
    matcher.stop_refresher()


def _announce_secret(whom: str, secret: str) -> None:
    typer.echo(
        f"API key for {whom}:\n    {secret}\n"
        "This secret is shown once and never again (only its hash is stored): store it now.",
        err=True,
    )


@app.command("settings")
@handle_errors
def settings_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show every BASTION_* setting, its current value and what it does."""
    from bastion.settings import Settings, get_settings

    current = get_settings()
    rows = []
    for name, info in Settings.model_fields.items():
        rows.append(
            {
                "env": f"BASTION_{name.upper()}",
                "value": str(getattr(current, name)),
                "description": info.description or "",
            }
        )
    if as_json:
        typer.echo(_dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['env']} = {row['value']}\n    {row['description']}")


def main() -> None:  # pragma: no cover - console entry point
    app()
