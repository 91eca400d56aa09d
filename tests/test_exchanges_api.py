"""ThreatExchange's /threat_updates and Tech Against Terrorism's hash list, against recorded responses served on
loopback (tests/exchange_servers.py); then into banks: a one-shot fetch through the bank importer and a registered
exchange synced by cursor (credentials encrypted at rest), on SQLite and PostgreSQL; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bastion.accounts.service import AccountService
from bastion.banks.service import BankService
from bastion.cli.main import app
from bastion.errors import BastionError, InvalidInput
from bastion.exchanges import service
from bastion.exchanges.base import Exchange, Feedback
from bastion.exchanges.tat import TATHashListAPI
from bastion.exchanges.threatexchange import ThreatExchangeAPI
from bastion.settings import get_settings
from bastion.signals.pdq import PDQSignal
from bastion.storage.db import Database
from bastion.storage.models import OrganisationExchange
from exchange_servers import TAT_PASSWORD, TAT_USER, TE_GROUP, TE_TOKEN, serve

PDQ = PDQSignal.examples()
runner = CliRunner()


def run(*args: str, code: int = 0, env: dict[str, str] | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.exit_code, result.output)
    return result


def test_threatexchange_threat_updates_by_cursor() -> None:
    with serve("te") as (base, seen):
        te = ThreatExchangeAPI("te", TE_TOKEN, TE_GROUP, base_url=base)
        assert isinstance(te, Exchange) and not te.can_push
        first = te.fetch(None, 3)
        assert first.more
        assert [(s.signal_type, s.source_id, s.retracted) for s in first.signals] == [
            ("pdq", "3000000000000001", False),
            ("md5", "3000000000000002", False),
        ]
        pdq = first.signals[0]
        assert pdq.value == PDQ[0]
        assert pdq.labels == {
            "te_indicator_type": "HASH_PDQ",
            "source": "other",
            "te_status": "MALICIOUS",
            "te_tags": "bastion_test,benign_sample",
            "te_owner_app_ids": "1111111111111111,2222222222222222",
            "te_descriptor_ids": "4000000000000001,4000000000000002",
        }
        assert first.signals[1].labels["te_status"] == "NON_MALICIOUS"  # kept, not dropped
        assert [r["code"] for r in te.rejected] == ["unsupported_signal_type"]  # the DEBUG_STRING indicator
        assert TE_TOKEN not in first.next_cursor and "recorded-test-token" not in first.next_cursor
        assert seen.requests[0]["query"]["access_token"] == TE_TOKEN
        assert seen.requests[0]["query"]["fields"].startswith("indicator,type,last_updated,should_delete")
        second = te.fetch(first.next_cursor, 3)
        assert seen.requests[1]["query"]["access_token"] == TE_TOKEN  # put back on the stored paging URL
        assert [(s.value, s.retracted) for s in second.signals] == [(PDQ[1], False), (PDQ[0], True)]
        assert second.signals[0].labels["te_tags"] == "bastion_test"  # the {"data": [{"text"}]} tag shape
        assert not second.more and json.loads(second.next_cursor) == {"start_time": 1764100300}
        caught_up = te.fetch(second.next_cursor, 3)
        assert caught_up.signals == [] and seen.requests[-1]["query"]["start_time"] == "1764100300"
        assert te.send_feedback([Feedback("3000000000000001", "false_positive")]) == 1
        posts = [r for r in seen.requests if r["method"] == "POST"]
        assert [(p["path"], p["form"]) for p in posts] == [
            ("/4000000000000001/", {"reactions": "NOT_HELPFUL"}),
            ("/4000000000000002/", {"reactions": "NOT_HELPFUL"}),
        ]
        bad = ThreatExchangeAPI("te", "1000000000000000|wrong-token-aaaaaaaaaaaa", TE_GROUP, base_url=base)
        with pytest.raises(BastionError) as err:
            bad.fetch(None)
        assert err.value.code == "exchange_unauthorised"
    with pytest.raises(InvalidInput) as err:
        ThreatExchangeAPI("te", TE_TOKEN, "not-a-group")
    assert err.value.code == "invalid_privacy_group"
    with pytest.raises(InvalidInput) as err:
        te.fetch("{not a cursor")
    assert err.value.code == "invalid_cursor"


def test_tat_hash_list_by_checkpoint() -> None:
    with serve("tat") as (base, seen):
        tat = TATHashListAPI("tat", TAT_USER, TAT_PASSWORD, base_url=base)
        first = tat.fetch(None)
        assert seen.requests[0]["path"] == "/token-auth/tcap/"
        assert seen.requests[0]["form"]["username"] == TAT_USER
        assert seen.requests[1]["authorization"] == "Bearer recorded-test-jwt"
        assert first.more
        assert [(s.signal_type, s.source_id) for s in first.signals] == [("pdq", "tat:101"), ("md5", "tat:102")]
        assert first.signals[0].labels == {
            "tat_ideology": "islamist",
            "tat_file_type": "jpg",
            "tat_id": "101",
            "tat_updated_on": "1764100000.0",
            "tat_created_on": "2026-11-25T20:00:00Z",
            "ideology": "violent_islamist",
            "source": "tech_against_terrorism",
        }
        assert first.signals[1].labels["ideology"] == "violent_far_right"
        second = tat.fetch(first.next_cursor)
        assert [(s.source_id, s.retracted) for s in second.signals] == [("tat:101", True)]
        assert not second.more and json.loads(second.next_cursor) == {"after": "1764100200,101"}
        assert tat.fetch(second.next_cursor).signals == []
        assert seen.requests[-1]["query"]["after"] == "1764100200,101"
        with pytest.raises(BastionError) as err:
            TATHashListAPI("tat", TAT_USER, "wrong", base_url=base).fetch(None)
        assert err.value.code == "exchange_unauthorised"
        with pytest.raises(InvalidInput) as err:
            tat.push([])
        assert err.value.code == "exchange_read_only"


def test_unreachable_exchange_is_a_clear_error() -> None:
    with pytest.raises(BastionError) as err:
        TATHashListAPI("tat", TAT_USER, TAT_PASSWORD, base_url="http://127.0.0.1:9/", timeout=2).fetch(None)
    assert err.value.code == "exchange_unavailable"


def test_fetch_into_a_bank_through_the_importer(db: Database) -> None:
    BankService(db).create_bank("tat-list", "block", "", "test")
    with serve("tat") as (base, _):
        result = service.fetch_into_bank(db, TATHashListAPI("tat", TAT_USER, TAT_PASSWORD, base_url=base), "tat-list")
    assert (result.pages, result.imported) == (2, 2)  # the deleted record on page 2 is skipped, not imported
    got = {e.origin: (e.labels, e.source) for e in BankService(db).iter_export("tat-list")}
    assert got["tat:tat:101"][0]["tat_ideology"] == "islamist"
    assert got["tat:tat:101"][0]["ideology"] == "violent_islamist"
    assert got["tat:tat:101"][1] == "tech_against_terrorism"
    assert json.loads(result.cursor) == {"after": "1764100200,101"}
    with pytest.raises(BastionError) as err:
        service.fetch_into_bank(db, TATHashListAPI("tat", TAT_USER, TAT_PASSWORD), "no-such-bank")
    assert err.value.code == "not_found"


def test_registered_exchange_syncs_by_cursor_with_encrypted_credentials(db: Database) -> None:
    AccountService(db).create_organisation("platform-a")
    settings = get_settings()
    with serve("te") as (base, _):
        row = service.add_exchange(
            db,
            settings,
            "platform-a",
            "threatexchange",
            "te",
            "te-hashes",
            secrets={"access_token": TE_TOKEN},
            options={"privacy_group": TE_GROUP},
            url=base,
        )
        with db.session() as s:
            stored = s.get(OrganisationExchange, row["id"])
            assert TE_TOKEN not in stored.secrets_encrypted and "recorded-test-token" not in stored.secrets_encrypted
        first = service.sync_registered(db, settings, "platform-a", "te", page_size=3, max_pages=1)
        assert (first["pages"], first["stored"]) == (1, 2)
        bank = {e.origin: e for e in BankService(db).iter_export("te-hashes", include_disabled=True)}
        assert bank["te:3000000000000001"].labels["te_tags"] == "bastion_test,benign_sample"
        assert bank["te:3000000000000001"].enabled
        second = service.sync_registered(db, settings, "platform-a", "te", page_size=3)  # resumes at page 2
        assert (second["pages"], second["stored"], second["disabled"]) == (1, 1, 1)
        bank = {e.origin: e for e in BankService(db).iter_export("te-hashes", include_disabled=True)}
        assert not bank["te:3000000000000001"].enabled  # the retraction on page 2 disabled it
        assert len(bank) == 3
        again = service.sync_registered(db, settings, "platform-a", "te")
        assert again["stored"] == 0
        assert len(list(BankService(db).iter_export("te-hashes", include_disabled=True))) == 3
    with pytest.raises(BastionError) as err:
        service.add_exchange(
            db,
            settings,
            "platform-a",
            "threatexchange",
            "te",
            "te-hashes",
            secrets={"access_token": TE_TOKEN},
            options={"privacy_group": TE_GROUP},
        )
    assert err.value.code == "exchange_exists"
    for kwargs, code in (
        ({"kind": "gifct"}, "unknown_exchange_kind"),
        ({"kind": "tat", "secrets": {"username": "u"}}, "missing_credentials"),
        ({"kind": "tat", "name": "Bad Name", "secrets": {"username": "u", "password": "p"}}, "invalid_name"),
        (
            {"kind": "threatexchange", "secrets": {"access_token": "x"}, "options": {"privacy_group": "abc"}},
            "invalid_privacy_group",
        ),
    ):
        args = {"name": "other", "secrets": {}, "options": {}, **kwargs}
        with pytest.raises(BastionError) as err:
            service.add_exchange(db, settings, "platform-a", args.pop("kind"), args.pop("name"), "x-bank", **args)
        assert err.value.code == code
    with db.session() as s:  # refused registrations stored nothing
        assert s.scalars(select(OrganisationExchange.name)).all() == ["te"]


def test_cli_fetch_export_import_round_trip(db: Database, tmp_path: Path) -> None:
    run("bank", "create", "from-tat")
    with serve("tat") as (base, _):
        out = run(
            "exchange",
            "fetch",
            "tat",
            "--bank",
            "from-tat",
            "--url",
            base,
            "--json",
            env={"PYTX_TAT_CREDENTIALS": f"{TAT_USER}:{TAT_PASSWORD}"},
        ).stdout
    assert json.loads(out)["imported"] == 2
    run("exchange", "fetch", "tat", "--bank", "from-tat", code=2, env={"PYTX_TAT_CREDENTIALS": ""})
    for fmt in ("jsonl", "stix"):
        path = tmp_path / f"dataset.{fmt}"
        run("exchange", "export", "--bank", "from-tat", "--format", fmt, "--output", str(path))
        run("bank", "create", f"copy-{fmt}")
        out = run("exchange", "import", str(path), "--bank", f"copy-{fmt}", "--format", fmt, "--json").stdout
        assert json.loads(out)["imported"] == 2
        original = sorted((e.signals, e.labels) for e in BankService(db).iter_export("from-tat"))
        copy = sorted((e.signals, e.labels) for e in BankService(db).iter_export(f"copy-{fmt}"))
        assert copy == original  # hashes and every label (tat_ideology included) survive the round trip
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"signal_type": "pdq", "value": PDQ[0]}) + "\n{broken\n")
    run("bank", "create", "untouched")
    result = run("exchange", "import", str(bad), "--bank", "untouched", code=2)
    assert "error[malformed_jsonl]" in result.output and "line 2" in result.output
    assert list(BankService(db).iter_export("untouched")) == []  # nothing half-written
    te_csv = Path(__file__).parent / "data" / "threatexchange_dataset.csv"
    run("bank", "create", "te-file")
    out = run("exchange", "import", str(te_csv), "--bank", "te-file", "--format", "te-csv", "--json").stdout
    assert json.loads(out)["imported"] == 3
    run("exchange", "export", "--bank", "te-file", "--format", "xml", code=2)


def test_cli_registers_and_syncs_a_file_exchange(db: Database, tmp_path: Path) -> None:
    AccountService(db).create_organisation("platform-b")
    listing = tmp_path / "tat.json"
    listing.write_text(
        json.dumps(
            [
                {"id": 7, "hash_digest": PDQ[1], "algorithm": "PDQ", "ideology": "far-right", "deleted": False},
                {"id": 8, "hash_digest": PDQ[2], "algorithm": "PDQ", "ideology": "islamist", "deleted": False},
            ]
        )
    )
    row = json.loads(
        run(
            "exchange",
            "add",
            "platform-b",
            "tat-file",
            "--kind",
            "file",
            "--file",
            str(listing),
            "--format",
            "tat",
            "--bank",
            "tat-b",
        ).stdout
    )
    assert row["options"]["format"] == "tat" and row["bank"] == "tat-b"
    first = json.loads(run("exchange", "sync", "platform-b", "tat-file").stdout)
    assert (first["stored"], first["cursor"]) == (2, "2")
    assert json.loads(run("exchange", "sync", "platform-b", "tat-file").stdout)["stored"] == 0  # by cursor: nothing new
    labels = sorted(e.labels["tat_ideology"] for e in BankService(db).iter_export("tat-b"))
    assert labels == ["far-right", "islamist"]
    assert "exchange_not_found" in run("exchange", "sync", "platform-b", "nope", code=3).output
    run(
        "exchange",
        "add",
        "platform-b",
        "te",
        "--kind",
        "threatexchange",
        "--bank",
        "x",
        code=2,
        env={"TX_ACCESS_TOKEN": ""},
    )
