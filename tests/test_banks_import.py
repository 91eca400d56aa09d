"""Bank import and export: every format round-trips, bad rows are reported by line, a killed import changes nothing.

All on SQLite and PostgreSQL (the ``db`` fixture).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bastion.banks import formats
from bastion.banks.service import BankService
from bastion.errors import ImportFailed, UnreadableFile
from bastion.signals import Signal
from bastion.storage.models import BankEntry, BankSignal, ImportRun

MD5_A = "d41d8cd98f00b204e9800998ecf8427e"
MD5_B = "9e107d9d372bb6826bd81d3542a419d6"
MD5_C = "e4d909c290d0fb1ca068ffaddf22cbd0"
SHA = "a" * 64


def pdq(i: int) -> str:
    return f"{i:064x}"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def snapshot(svc: BankService, bank: str, fmt: str = "jsonl") -> list[dict]:
    """A bank's content without entry ids: what must survive a round trip."""
    out = io.StringIO()
    svc.export(bank, fmt, out, include_disabled=True)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    for r in rows:
        r.pop("entry")
    return sorted(rows, key=lambda r: (r["signal_type"], r["signal"]))


def test_csv_import_reports_bad_rows_by_line_and_imports_the_rest(db, tmp_path):
    svc = BankService(db)
    svc.create_bank("known")
    path = write(
        tmp_path / "list.csv",
        f"""
        signal_type,signal,labels
        md5,{MD5_A.upper()},category=recruitment;entity=Daesh
        md5,not-a-hash,
        sha1,{MD5_B},
        pdq,{pdq(1)},"{{""category"": ""glorification"", ""tat_id"": 7}}"
        md5,{MD5_B},category=cats
        md5,,
        md5,{MD5_C},a,b

        sha256,{SHA},ideology=far-right
    """,
    )
    result = svc.import_file("known", path, "csv", added_by="alice")
    assert (result.imported, result.rejected, result.skipped, result.signals) == (3, 5, 0, 3)
    assert [(e.line, e.code) for e in result.errors] == [
        (3, "invalid_signal"),
        (4, "unknown_signal_type"),
        (6, "unknown_label_value"),
        (7, "missing_field"),
        (8, "too_many_fields"),
    ]
    assert all(e.message.startswith(f"line {e.line}:") for e in result.errors)
    entries = {e.signals[0].value: e for e in svc.list_entries("known")}
    assert entries[MD5_A].labels == {"category": "recruitment", "entity": "Islamic State of Iraq and the Levant"}
    assert entries[pdq(1)].labels == {"category": "glorification", "tat_id": "7"}
    assert entries[SHA].labels == {"ideology": "violent_far_right"}
    assert {e.source for e in entries.values()} == {"other"} and {e.added_by for e in entries.values()} == {"alice"}
    with db.session() as s:
        run = s.scalars(select(ImportRun)).one()
    assert (run.format, run.source_name, run.imported, run.rejected, run.skipped) == ("csv", "list.csv", 3, 5, 0)
    assert run.errors[0] == {"line": 3, "code": "invalid_signal", "message": result.errors[0].message}
    assert run.finished_at is not None


def test_reimport_skips_what_the_bank_holds(db, tmp_path):
    svc = BankService(db)
    svc.create_bank("known")
    rows = "".join(f"pdq,{pdq(i)},\n" for i in range(50))
    path = write(tmp_path / "a.csv", "signal_type,signal,labels\n" + rows + f"pdq,{pdq(3)},\n")  # a repeat
    first = svc.import_file("known", path, "csv")
    assert (first.imported, first.skipped) == (50, 1)
    again = svc.import_file("known", path, "csv")
    assert (again.imported, again.skipped, again.rejected) == (0, 51, 0)
    more = write(tmp_path / "b.csv", f"signal_type,signal,labels\npdq,{pdq(7)},\npdq,{pdq(99)},\npdq,{pdq(99)},\n")
    third = svc.import_file("known", more, "csv")
    assert (third.imported, third.skipped) == (1, 2)
    kept = svc.import_file("known", more, "csv", skip_existing=False)
    assert kept.imported == 3
    assert svc.get_bank("known").signals == 54


def test_duplicates_across_batches_are_skipped(db, tmp_path, monkeypatch):
    from bastion.banks import importer

    monkeypatch.setattr(importer, "BATCH", 10)
    svc = BankService(db)
    svc.create_bank("known")
    lines = [f"pdq,{pdq(i % 25)}," for i in range(60)]
    path = write(tmp_path / "a.csv", "signal_type,signal,labels\n" + "\n".join(lines) + "\n")
    result = svc.import_file("known", path, "csv")
    assert (result.imported, result.skipped, result.signals) == (25, 35, 25)
    again = svc.import_file("known", path, "csv")  # the bank is not empty now: looked up batch by batch
    assert (again.imported, again.skipped) == (0, 60)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(BankEntry)) == 25
        assert s.scalar(select(func.count()).select_from(BankSignal)) == 25


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_every_format_round_trips(db, fmt, tmp_path):
    svc = BankService(db)
    svc.create_bank("src")
    svc.add_entry(
        "src",
        [Signal("md5", MD5_A), Signal("sha256", SHA), Signal("pdq", pdq(5))],
        {"entity": "ISIS", "category": "branded_publication", "ideology": "islamist"},
        source="forum",
        note="multi-signal entry",
        content_type="image",
    )
    svc.add_entry(
        "src",
        [Signal("md5", MD5_B)],
        {"entity": "Lone attacker, with a comma; and = signs", "x": 'quote " tab\t'},
        source="gifct",
    )
    disabled = svc.add_entry("src", [Signal("pdq", pdq(6))], {"category": "glorification"})
    svc.set_entry_enabled(disabled.id, False)
    out = tmp_path / f"export.{fmt}"
    with open(out, "w", encoding="utf-8", newline="") as fh:
        assert svc.export("src", fmt, fh) == 4  # enabled entries only
    svc.create_bank("copy")
    result = svc.import_file("copy", out, fmt)
    assert (result.rejected, result.skipped) == (0, 0)
    assert result.imported == (2 if fmt != "tat" else 4)  # TAT has one hash per record
    expected = [r for r in snapshot(svc, "src") if r["signal"] != pdq(6)]
    if fmt == "tat":  # TAT records carry no source or note of ours
        for r in expected:
            r["source"], r["note"] = "tech_against_terrorism", ""
    assert snapshot(svc, "copy") == expected
    if fmt in ("csv", "json", "jsonl", "hma"):  # entries stay whole
        assert sorted(len(e.signals) for e in svc.list_entries("copy")) == [1, 3]
    again = io.StringIO()
    svc.export("copy", fmt, again)
    assert again.getvalue().count(MD5_A) == 1


def test_include_disabled_exports_disabled_entries(db):
    svc = BankService(db)
    svc.create_bank("b")
    e = svc.add_entry("b", [Signal("md5", MD5_A)])
    svc.set_entry_enabled(e.id, False)
    out = io.StringIO()
    assert svc.export("b", "hma", out) == 0
    out = io.StringIO()
    assert svc.export("b", "hma", out, include_disabled=True) == 1
    assert json.loads(out.getvalue())[0]["disable_until_ts"] == 0


def test_tat_hash_list_is_mapped_and_kept_raw(db, tmp_path):
    svc = BankService(db)
    svc.create_bank("tat")
    doc = {
        "count": 5,
        "next": None,
        "previous": None,
        "checkpoint": "1724856487.709035,10594",
        "results": [
            {
                "id": 2819,
                "hash_digest": MD5_A.upper(),
                "algorithm": "MD5",
                "ideology": "islamist",
                "file_type": "mp4",
                "deleted": False,
                "updated_on": 1704901040.222779,
                "created_on": "2025-03-03 23:05:22,587",
            },
            {
                "id": 2820,
                "hash_digest": pdq(9),
                "algorithm": "PDQ",
                "ideology": "far-right",
                "file_type": "gif",
                "deleted": False,
                "group": "Atomwaffen Division",
            },
            {"id": 2821, "hash_digest": MD5_B, "algorithm": "MD5", "ideology": "islamist", "deleted": True},
            {"id": 2822, "hash_digest": "ab" * 64, "algorithm": "SHA512", "ideology": "islamist"},
            {"id": 2823, "hash_digest": "", "algorithm": "MD5"},
        ],
    }
    path = tmp_path / "tat.json"
    path.write_text(json.dumps(doc))
    result = svc.import_file("tat", path, "tat")
    assert (result.imported, result.skipped, result.rejected) == (2, 1, 2)
    assert [(e.line, e.code) for e in result.errors] == [(4, "unknown_signal_type"), (5, "missing_field")]
    by_value = {e.signals[0].value: e for e in svc.list_entries("tat")}
    video = by_value[MD5_A]
    assert video.content_type == "video" and video.source == "tech_against_terrorism" and video.origin == "tat:2819"
    assert video.labels["ideology"] == "violent_islamist"
    assert (video.labels["tat_ideology"], video.labels["tat_file_type"], video.labels["tat_id"]) == (
        "islamist",
        "mp4",
        "2819",
    )
    gif = by_value[pdq(9)]
    assert gif.labels["entity"] == "Atomwaffen Division" and gif.labels["ideology"] == "violent_far_right"
    assert gif.content_type == "image"
    # A v1 file is a bare array of the same records.
    path.write_text(json.dumps(doc["results"][:2]))
    assert svc.import_file("tat", path, "tat").skipped == 2


def test_hma_bank_content_json(db, tmp_path):
    svc = BankService(db)
    svc.create_bank("hma")
    doc = [
        {
            "id": 1234,
            "disable_until_ts": 1,
            "original_media_uri": None,
            "bank": {"name": "TEST_BANK", "matching_enabled_ratio": 1.0},
            "signals": {"pdq": pdq(11), "video_md5": MD5_C},
            "metadata": {"content_id": "c-1", "json": {"k": "v"}},
            "note": "from HMA",
        },
        {"id": 1235, "disable_until_ts": 0, "signals": {"pdq": pdq(12)}},
        {"pdq": pdq(13)},  # the body of POST /c/bank/<name>/signal
        {"id": 1236, "signals": {}},
        {"signals": {"pdq": "short"}},
    ]
    path = tmp_path / "hma.json"
    path.write_text(json.dumps(doc))
    result = svc.import_file("hma", path, "hma")
    assert (result.imported, result.rejected) == (3, 2)
    assert [(e.line, e.code) for e in result.errors] == [(4, "no_signals"), (5, "invalid_signal")]
    entries = {e.labels.get("hma_id"): e for e in svc.list_entries("hma")}
    first = entries["1234"]
    assert {(s.type, s.value) for s in first.signals} == {("pdq", pdq(11)), ("md5", MD5_C)}
    assert first.note == "from HMA" and first.labels["hma_bank"] == "TEST_BANK"
    assert first.labels["hma_content_id"] == "c-1" and json.loads(first.labels["hma_json"]) == {"k": "v"}
    assert entries["1235"].enabled is False
    assert entries[None].signals[0].value == pdq(13)


@pytest.mark.parametrize(
    ("fmt", "content", "code"),
    [
        ("csv", "hash,labels\nabc,\n", "bad_header"),
        ("csv", "", "empty_file"),
        ("csv", "signal_type,signal,extra\n", "bad_header"),
        ("json", '[{"signal_type": "md5", "signal": "' + MD5_A + '"}, {"signal', "malformed_json"),
        ("tat", "hello", "malformed_json"),
        ("hma", "", "empty_file"),
        ("xml", "<x/>", "unknown_format"),
    ],
)
def test_unreadable_files_fail_whole_and_change_nothing(db, tmp_path, fmt, content, code):
    svc = BankService(db)
    svc.create_bank("known")
    svc.add_entry("known", [Signal("md5", MD5_B)])
    path = tmp_path / "bad"
    path.write_text(content)
    with pytest.raises(ImportFailed) as exc:
        svc.import_file("known", path, fmt)
    assert exc.value.code == code
    assert svc.get_bank("known").entries == 1
    assert svc.import_runs("known") == []


def test_non_utf8_and_missing_files(db, tmp_path):
    svc = BankService(db)
    svc.create_bank("known")
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"signal_type,signal,labels\nmd5," + MD5_A.encode() + b",entity=caf\xe9\n")
    with pytest.raises(ImportFailed) as exc:
        svc.import_file("known", path, "csv")
    assert exc.value.code == "not_utf8"
    with pytest.raises(UnreadableFile) as exc:
        svc.import_file("known", tmp_path / "nope.csv", "csv")
    assert exc.value.code == "file_not_found"


def test_jsonl_reports_lines_and_progress_is_reported(db, tmp_path, monkeypatch):
    from bastion.banks import importer

    monkeypatch.setattr(importer, "BATCH", 2)
    svc = BankService(db)
    svc.create_bank("known")
    lines = [
        json.dumps({"signal_type": "pdq", "signal": pdq(i), "labels": {"category": "recruitment"}}) for i in range(5)
    ]
    lines.insert(2, "{broken")
    lines.insert(4, "[1, 2]")
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(lines) + "\n")
    seen: list[int] = []
    result = svc.import_file("known", path, "jsonl", progress=lambda r: seen.append(r.imported + r.rejected))
    assert (result.imported, result.rejected) == (5, 2)
    assert [(e.line, e.code) for e in result.errors] == [(3, "malformed_json"), (5, "not_an_object")]
    assert seen == sorted(seen) and len(seen) >= 3


KILL_SCRIPT = """
import sys
from bastion.banks.service import BankService
from bastion.storage.db import open_database

svc = BankService(open_database(url=sys.argv[1]))

def progress(result):
    if result.imported >= 4000:
        print("mid-import", flush=True)
        sys.stdin.read()  # wait here, transaction open, until killed

svc.import_file("known", sys.argv[2], "csv", progress=progress)
print("finished", flush=True)
"""


def test_an_import_killed_half_way_leaves_the_bank_unchanged(db, tmp_path, monkeypatch):
    svc = BankService(db)
    svc.create_bank("known")
    before = svc.add_entry("known", [Signal("md5", MD5_A)], {"category": "recruitment"})
    path = tmp_path / "big.csv"
    path.write_text("signal_type,signal,labels\n" + "".join(f"pdq,{pdq(i + 1)},\n" for i in range(20_000)))
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    url = db.engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "mid-import", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
        proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while True:  # PostgreSQL notices the dead client and rolls back; the bank must look as before
        try:
            info = svc.get_bank("known")
            break
        except Exception:  # pragma: no cover - only while the server cleans up
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert (info.entries, info.signals) == (1, 1)
    assert [e.id for e in svc.list_entries("known")] == [before.id]
    assert svc.import_runs("known") == []
    # The database is still usable: the same import now completes.
    result = svc.import_file("known", path, "csv")
    assert result.imported == 20_000
    assert svc.get_bank("known").signals == 20_001
