"""``bastion demo``: Bastion's main job end to end on the embedded database, in seconds.

It banks the bundled benign sample images as stand-ins for known terrorist content, writes the altered copies
re-uploads typically are (resized, recompressed, mirrored, rotated, brightened, greyscale) plus unrelated images
into an uploads folder, scans that folder and prints what matched. Nothing here is real extremist material.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bastion.banks.service import BankService
from bastion.errors import Conflict, NotFound
from bastion.matching.matcher import open_matcher
from bastion.matching.scanner import FileResult, scan
from bastion.samples import altered_copies, encode, generate_image
from bastion.settings import get_settings
from bastion.storage.db import Database

DEMO_BANK = "demo-known-content"
SAMPLES = Path(__file__).parent / "samples"
DEMO_LABELS = {"category": "branded_publication", "entity": "Demo Organisation (benign stand-in)"}


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


def run_demo(db: Database, echo: Callable[[str], None] = print) -> list[FileResult]:
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
