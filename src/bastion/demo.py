"""``bastion demo``: Bastion's main job end to end on the embedded database, in seconds.

It seeds what ``bastion serve --demo`` seeds (:func:`seed_demo`: a demo organisation with an API key, a bank of the
bundled benign sample images standing in for known terrorist content, and the demo policy), starts the real HTTP
service in this process on a free loopback port, and submits, over HTTP with the demo key, the altered copies
re-uploads typically are (resized, recompressed, mirrored, rotated, brightened, greyscale) plus unrelated files to
``POST /v1/content``: it prints each decision (outcome, rule, matched bank entry), stops the service and says how to
keep one running. ``bastion demo --scan`` runs the older offline variant (:func:`run_scan_demo`: the uploads folder
scanned by the Matcher, no service). Nothing here is real extremist material.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bastion.banks.service import BankService
from bastion.errors import Conflict, NotFound
from bastion.matching.matcher import open_matcher
from bastion.matching.scanner import FileResult, scan
from bastion.samples import altered_copies, encode, generate_image
from bastion.settings import Settings, get_settings
from bastion.storage.db import Database

DEMO_BANK = "demo-known-content"
SAMPLES = Path(__file__).parent / "samples"
DEMO_LABELS = {"category": "branded_publication", "entity": "Demo Organisation (benign stand-in)"}
DEMO_RUN_KEY = "demo-run"  # ``bastion demo``'s own keys: demo-run-1, demo-run-2, ... (only the newest is live)


def sample_images() -> list[Path]:
    return sorted(SAMPLES.glob("known-*.jpg"))


def prepare_uploads(folder: Path, unrelated: int = 4) -> dict[str, str]:
    """Write altered copies of every sample and some unrelated images; returns file name -> what it is."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*"):
        if old.is_file():
            old.unlink()
    truth: dict[str, str] = {}
    for sample in sample_images():
        with Image.open(sample) as img:
            img.load()
            for name, altered in altered_copies(img):
                fname = f"{sample.stem}-{name}.jpg"
                (folder / fname).write_bytes(encode(altered, quality=80))
                truth[fname] = f"altered copy of {sample.name} ({name})"
    for i in range(unrelated):
        fname = f"unrelated-{i + 1}.jpg"
        (folder / fname).write_bytes(encode(generate_image(5000 + i, 640, 480)))
        truth[fname] = "unrelated image"
    (folder / "notes.txt").write_text("An ordinary text upload: the harbour ferry timetable for winter.\n")
    truth["notes.txt"] = "unrelated text"
    return truth


def seed_demo_bank(
    db: Database, *, replace: bool = False, actor: str = "bastion demo", organisation: str | None = None
) -> int:
    """Bank the bundled sample images in ``DEMO_BANK``; returns how many were newly banked.

    ``replace`` starts the bank afresh (``bastion demo``; it keeps the bank's owner); otherwise an existing bank is
    kept and samples already in it are reported by add_files as already banked, not duplicated (``bastion serve
    --demo`` on every start). ``organisation`` (a name) owns the bank: an existing bank with no owner is given to it.
    Without it the bank is created as an operator's bank (the demo's matcher matches every bank).
    """
    service = BankService(db, actor)
    owner = organisation
    if replace:
        with contextlib.suppress(NotFound):
            owner = owner or service.get_bank(DEMO_BANK).owner
            service.delete_bank(DEMO_BANK)
    with contextlib.suppress(Conflict):  # kept from an earlier start, or created concurrently
        service.create_bank(
            DEMO_BANK, description="Bundled benign sample images standing in for known content", created_by=actor
        )
    if owner is not None and service.get_bank(DEMO_BANK).owner is None:
        service.set_owner(DEMO_BANK, owner)
    report = service.add_files(
        DEMO_BANK,
        sample_images(),
        labels=DEMO_LABELS,
        source="own_review",
        added_by=actor,
        note="benign stand-in for the demo",
    )
    return len(report.added)


def run_scan_demo(db: Database, echo: Callable[[str], None] = print) -> list[FileResult]:
    """``bastion demo --scan``: bank the samples afresh and scan the uploads folder with the Matcher (no service)."""
    settings = get_settings()
    added = seed_demo_bank(db, replace=True)
    echo(f"Bank '{DEMO_BANK}': {added} sample images banked (from {SAMPLES}).")
    uploads = settings.data_dir / "demo-uploads"
    truth = prepare_uploads(uploads)
    echo(f"Uploads folder {uploads}: {len(truth)} files (altered copies of the samples, unrelated files).\n")
    matcher = open_matcher(db, settings)
    results = list(scan([uploads], matcher))
    matched_altered = unrelated_matched = 0
    for r in results:
        name = Path(r.path).name
        what = truth.get(name, "?")
        if r.error:
            echo(f"  ERROR    {name:<28} {r.error['code']}: {r.error['message']}")
            continue
        if r.match and r.match.matches:
            best = r.match.matches[0]
            how = f"{best.signal_type} distance {best.distance:g}"
            if "transform" in best.detail:
                how += f", {best.detail['transform']}"
            echo(f"  MATCH    {name:<28} -> entry #{best.entry_id} ({how})   [{what}]")
            matched_altered += what.startswith("altered")
            unrelated_matched += not what.startswith("altered")
        else:
            echo(f"  no match {name:<28}   [{what}]")
    n_altered = sum(v.startswith("altered") for v in truth.values())
    echo(
        f"\n{matched_altered} of {n_altered} altered copies matched; "
        f"{unrelated_matched} of {len(truth) - n_altered} unrelated files matched."
    )
    return results


def seed_demo_policy(db: Database, actor: str = "bastion serve --demo") -> int | None:
    """Give the demo organisation the demo rules (policy/demo.yaml) unless it already has a policy; returns the
    version set, or None when there was one already."""
    from bastion.accounts.bootstrap import DEMO_ORGANISATION
    from bastion.accounts.service import AccountService
    from bastion.policy.engine import demo_source
    from bastion.policy.service import PolicyService

    org = AccountService(db).get_organisation(DEMO_ORGANISATION)
    policies = PolicyService(db, actor)
    if policies.current_info(org.id) is not None:
        return None
    return policies.set_policy(org.id, demo_source(), comment="demo policy (bastion serve --demo)").version


def seed_demo(
    db: Database, actor: str = "bastion serve --demo", echo: Callable[[str], None] | None = None
) -> str | None:
    """What ``bastion serve --demo`` and ``bastion demo`` seed, idempotently: the demo organisation with one key (all
    scopes but admin), the demo bank (owned by it) and the demo policy. Returns the key's plaintext when this call
    created the organisation (shown once: only its hash is stored), else None. ``echo`` hears what was added."""
    from bastion.accounts.bootstrap import DEMO_ORGANISATION, DEMO_SCOPES, ensure_organisation_key

    secret = ensure_organisation_key(db, DEMO_ORGANISATION, DEMO_SCOPES, "demo")
    added = seed_demo_bank(db, actor=actor, organisation=DEMO_ORGANISATION)
    version = seed_demo_policy(db, actor=actor)
    if echo is not None:
        echo(f"Demo bank '{DEMO_BANK}': {added} sample images newly banked.")
        if version is not None:
            echo(f"Demo policy: version {version} set for organisation {DEMO_ORGANISATION!r}.")
    return secret


def demo_run_key(db: Database, actor: str = "bastion demo") -> tuple[str, str]:
    """A live key for the demo organisation, for this run: ``(name, plaintext)``.

    The organisation's first key comes from :func:`seed_demo`; once it exists its secret cannot be recovered, so a
    later run creates ``demo-run-<n>`` (same scopes) and revokes the earlier ``demo-run-*`` keys, so that one such
    key at most is live. The ``demo`` key of ``bastion serve --demo`` is never touched.
    """
    from bastion.accounts.bootstrap import DEMO_ORGANISATION, DEMO_SCOPES
    from bastion.accounts.service import AccountService

    secret = seed_demo(db, actor)
    if secret is not None:
        return "demo", secret
    accounts = AccountService(db, actor)
    earlier = [k for k in accounts.list_keys(DEMO_ORGANISATION) if k.name.startswith(f"{DEMO_RUN_KEY}-")]
    numbers = [int(k.name.rsplit("-", 1)[1]) for k in earlier if k.name.rsplit("-", 1)[1].isdigit()]
    name = f"{DEMO_RUN_KEY}-{max(numbers, default=0) + 1}"
    _, secret = accounts.create_api_key(DEMO_ORGANISATION, name, list(DEMO_SCOPES))
    for key in earlier:
        if key.revoked_at is None:
            accounts.revoke_key(key.id)
    return name, secret


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1", start_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread on a free port of ``host``; yields its base URL. On exit
    the server is asked to stop (``should_exit``) and its thread joined, so nothing is left running."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="bastion-demo-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo's HTTP service did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@dataclass
class DemoRun:
    """What ``bastion demo`` did: each upload's decision as the service answered it."""

    base_url: str
    key_name: str
    truth: dict[str, str]  # file name -> what it is
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> the content's "decision"
    content_ids: dict[str, int] = field(default_factory=dict)  # file name -> the service's content id

    def removed(self, altered: bool) -> int:
        return sum(
            (d or {}).get("outcome") == "remove"
            for name, d in self.decisions.items()
            if self.truth[name].startswith("altered") == altered
        )

    def count(self, altered: bool) -> int:
        return sum(v.startswith("altered") == altered for v in self.truth.values())


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (what a reader pastes), else absolute."""
    path = path.absolute()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _describe(decision: dict[str, Any] | None) -> tuple[str, str, str]:
    if not decision:
        return "PENDING", "-", "not decided yet"
    matches = (decision.get("evidence") or {}).get("matches") or []
    if matches:
        m = matches[0]
        how = f"{m.get('bank')} #{m.get('entry_id')}, {m.get('signal_type')} distance {m.get('distance'):g}"
        if m.get("transform"):
            how += f" ({m['transform']})"
    else:
        how = "no match"
    return str(decision.get("outcome", "?")).upper(), decision.get("rule") or "default", how


def run_demo(
    db: Database, echo: Callable[[str], None] = print, settings: Settings | None = None
) -> DemoRun:
    """Seed the demo, serve the API on a free loopback port, submit every demo upload over HTTP, print the
    decisions. Raises when the service refuses an upload (the demo is then broken, not the reader's setup)."""
    import httpx

    from bastion.accounts.bootstrap import DEMO_ORGANISATION, ensure_admin
    from bastion.api.app import create_app

    settings = settings or get_settings()
    admin = ensure_admin(db)  # as ``bastion serve`` would on this empty database: the operator's key, shown once
    if admin:
        echo(f"API key for organisation {settings.admin_organisation!r} (every scope), shown once, store it:\n"
             f"    {admin}")
    key_name, secret = demo_run_key(db)
    bank = BankService(db).get_bank(DEMO_BANK)
    echo(f"Organisation {DEMO_ORGANISATION!r} (API key '{key_name}'): bank '{DEMO_BANK}' holds {bank.entries} benign "
         "sample images standing in\nfor known terrorist content; its policy removes close matches "
         "(rule remove-demo-bank-match).")
    uploads = settings.data_dir / "demo-uploads"
    truth = prepare_uploads(uploads)
    app = create_app(db, settings)
    with serving(app) as base_url:
        run = DemoRun(base_url=base_url, key_name=key_name, truth=truth)
        echo(f"Service running at {base_url} (in this process): POST /v1/content for each of the {len(truth)} files "
             f"in {_shown_path(uploads)}/\n")
        stamp = time.strftime("%Y%m%d%H%M%S")
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
            for name in sorted(truth):
                r = client.post(
                    "/v1/content",
                    data={"content_id": f"demo-{stamp}-{name}", "uploader_id": "demo-uploader"},
                    files={"file": (name, (uploads / name).read_bytes())},
                )
                if r.status_code not in (200, 201, 202):
                    raise RuntimeError(f"the service refused {name}: HTTP {r.status_code} {r.text}")
                content = r.json()["content"]
                run.content_ids[name] = content["id"]
                run.decisions[name] = content.get("decision") or {}
                outcome, rule, how = _describe(content.get("decision"))
                echo(f"  {outcome:<7} {name:<26} {rule:<24} {how}")
    n_altered, n_other = run.count(True), run.count(False)
    echo(f"\n{run.removed(True)} of {n_altered} altered copies removed; "
         f"{run.removed(False)} of {n_other} unrelated files removed. (Service stopped.)")
    validity = (
        f"key '{key_name}' is shown once, only its hash is stored: keep it" if key_name == "demo"
        else f"key '{key_name}' is valid until the next bastion demo"
    )
    example = next((n for n in sorted(truth) if "rotate" in n), next(iter(sorted(truth))))
    echo(
        f"\nKeep the service running and try it yourself ({validity}):\n"
        "  ./dev bastion serve --demo\n"
        f'  curl -H "Authorization: Bearer {secret}" -F content_id=my-1 '
        f"-F file=@{_shown_path(uploads / example)} http://127.0.0.1:8000/v1/content"
    )
    return run
