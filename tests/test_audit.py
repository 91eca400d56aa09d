"""The audit log: written with every bank and key change, in the same transaction, and tamper-evident.

Tampering is simulated with SQL straight at the database. On PostgreSQL the append-only trigger is disabled first
(as a superuser attacker could); a separate test checks the trigger itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from bastion import audit
from bastion.accounts.service import AccountService
from bastion.banks.service import BankService
from bastion.cli.main import app
from bastion.signals import Signal
from bastion.storage.models import AuditRecord

MD5S = [hashlib.md5(str(i).encode()).hexdigest() for i in range(10)]
runner = CliRunner()


def _records(db) -> list[AuditRecord]:
    with db.session() as s:
        return list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


@contextmanager
def _attacker(db):
    """A raw connection that can rewrite audit_log (PostgreSQL: with the append-only trigger disabled)."""
    pg = db.engine.dialect.name == "postgresql"
    with db.engine.begin() as conn:
        if pg:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        yield conn
        if pg:
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def _five_records(db) -> None:
    with db.session() as s:
        for i in range(5):
            audit.append(s, "tester", "entry_added", f"entry:{i}", {"i": i, "note": "naïve ✓"}, organisation_id=7)
    assert audit.verify(db).ok


def test_bank_changes_are_recorded(db, tmp_path):
    svc = BankService(db, actor="api-key:3")
    svc.create_bank("known")
    entry = svc.add_entry("known", [Signal("md5", MD5S[0])])
    svc.set_entry_enabled(entry.id, False)
    svc.set_entry_enabled(entry.id, False)  # no change, no record
    svc.set_entry_enabled(entry.id, True)
    svc.set_bank_enabled("known", False)
    path = tmp_path / "list.csv"
    path.write_text("signal_type,signal,labels\n" + "".join(f"md5,{m},\n" for m in MD5S[1:4]) + "md5,bad,\n")
    svc.import_file("known", path, "csv")
    svc.export("known", "csv", io.StringIO())
    svc.delete_entry(entry.id)
    svc.delete_bank("known")

    rows = _records(db)
    assert [r.action for r in rows] == [
        "bank_created",
        "entry_added",
        "entry_disabled",
        "entry_enabled",
        "bank_disabled",
        "bank_imported",
        "bank_exported",
        "entry_deleted",
        "bank_deleted",
    ]
    assert {r.actor for r in rows} == {"api-key:3"}
    assert rows[0].target == "bank:known" and rows[1].target == f"entry:{entry.id}"
    imported = rows[5].details
    assert (imported["imported"], imported["rejected"], imported["format"]) == (3, 1, "csv")
    assert rows[6].details["signals"] == 4  # the first entry, re-enabled, and three imported
    assert rows[-1].details["entries"] == 3
    assert [r.seq for r in rows] == list(range(1, 10))
    assert rows[0].prev_hash == audit.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    report = audit.verify(db)
    assert report.ok and report.records == 9 and report.head_hash == rows[-1].hash


def test_key_changes_are_recorded(db):
    accounts = AccountService(db)
    org = accounts.create_organisation("Example Platform")
    key, plaintext = accounts.create_api_key(org.id, "ci", ["curate"])
    accounts.revoke_key(key.id)
    accounts.revoke_key(key.id)  # already revoked: no second record
    rows = _records(db)
    assert [(r.action, r.target, r.actor, r.organisation_id) for r in rows] == [
        ("organisation_created", f"organisation:{org.id}", "cli", org.id),
        ("api_key_created", f"api-key:{key.id}", "cli", org.id),
        ("api_key_revoked", f"api-key:{key.id}", "cli", org.id),
    ]
    assert rows[1].details["scopes"] == ["curate"]
    assert plaintext.split("_", 2)[2] not in json.dumps([r.details for r in rows])  # the secret is never logged
    assert audit.verify(db).ok


def test_a_rolled_back_change_leaves_no_record(db):
    svc = BankService(db)
    svc.create_bank("known")
    svc.add_entry("known", [Signal("md5", MD5S[0])])
    with pytest.raises(Exception, match="already in bank"):
        svc.add_entry("known", [Signal("md5", MD5S[0])])
    with pytest.raises(RuntimeError), db.session() as s:
        audit.append(s, "cli", "bank_created", "bank:ghost", {})
        raise RuntimeError("the change failed")
    assert [r.action for r in _records(db)] == ["bank_created", "entry_added"]
    assert audit.verify(db).ok


def test_altered_record_is_detected(db):
    _five_records(db)
    with _attacker(db) as conn:
        conn.execute(text("UPDATE audit_log SET details = :d WHERE seq = 3"), {"d": json.dumps({"i": 99})})
    report = audit.verify(db)
    assert (report.ok, report.broken_seq, report.reason) == (False, 3, "hash_mismatch")


def test_removed_middle_record_is_detected(db):
    _five_records(db)
    with _attacker(db) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    report = audit.verify(db)
    assert (report.broken_seq, report.reason) == (4, "seq_gap")


def test_removed_last_record_is_detected(db):
    _five_records(db)
    with _attacker(db) as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    report = audit.verify(db)
    assert (report.broken_seq, report.reason, report.records) == (5, "head_mismatch", 4)


def test_swapped_records_are_detected(db):
    _five_records(db)
    cols = ["at", "actor", "organisation_id", "action", "target", "details", "prev_hash", "hash"]
    with _attacker(db) as conn:
        a, b = (conn.execute(text(f"SELECT {', '.join(cols)} FROM audit_log WHERE seq = {n}")).one() for n in (2, 3))
        for seq, row in ((2, b), (3, a)):
            sets = ", ".join(f"{c} = :{c}" for c in cols)
            params = dict(zip(cols, row, strict=True))
            params["details"] = (
                json.dumps(params["details"]) if isinstance(params["details"], dict) else params["details"]
            )
            conn.execute(text(f"UPDATE audit_log SET {sets} WHERE seq = :seq"), {**params, "seq": seq})
    report = audit.verify(db)
    assert (report.broken_seq, report.reason) == (2, "prev_mismatch")


def test_forged_record_inserted_in_the_middle_is_detected(db):
    _five_records(db)
    rows = _records(db)
    forged_at = rows[2].at
    forged_hash = audit.compute_hash(3, forged_at, "tester", 7, "entry_deleted", "entry:42", {}, rows[1].hash)
    with _attacker(db) as conn:  # make room at seq 3, then insert a record that chains to seq 2 correctly
        conn.execute(text("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3"))
        conn.execute(text("UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100"))
        conn.execute(
            text(
                "INSERT INTO audit_log (seq, at, actor, organisation_id, action, target, details, prev_hash, hash) "
                "VALUES (3, :at, 'tester', 7, 'entry_deleted', 'entry:42', :d, :p, :h)"
            ),
            {"at": forged_at, "d": "{}", "p": rows[1].hash, "h": forged_hash},
        )
    report = audit.verify(db)
    assert (report.broken_seq, report.reason) == (4, "prev_mismatch")


def test_postgres_trigger_rejects_update_and_delete(db):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no append-only trigger; only the chain protects the log there")
    _five_records(db)
    for sql in ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", "DELETE FROM audit_log WHERE seq = 5"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql))
    assert audit.verify(db).ok


def test_concurrent_appends_keep_the_chain(db):
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                with db.session() as s:
                    audit.append(s, name, "entry_added", f"entry:{i}", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = audit.verify(db)
    assert report.ok and report.records == 30
    assert [r.seq for r in _records(db)] == list(range(1, 31))


def test_cli_verify_and_list(db):
    BankService(db).create_bank("known")
    BankService(db).set_bank_enabled("known", False)
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "audit log intact: 2 records" in ok.output
    listed = runner.invoke(app, ["audit", "list", "--json", "--limit", "1"])
    assert listed.exit_code == 0
    (line,) = listed.output.strip().splitlines()
    assert json.loads(line)["action"] == "bank_disabled"
    assert "bank_created" in runner.invoke(app, ["audit", "list"]).output
    with _attacker(db) as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1"))
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "error[audit_chain_broken]" in broken.output and "record 1: hash_mismatch" in broken.output
