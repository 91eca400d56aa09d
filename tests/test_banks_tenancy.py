"""Tenant isolation of banks (issue 3 §2): owners, shares and operator banks, in BankService, the API and the CLI.

Every route's 404 for another organisation's bank is checked generically by the organisation x route matrix in
tests/test_api_auth.py; this file checks what a matrix cannot: listings, lookups, read-only shares, sharing and
unsharing, operator banks, and the audit trail. SQLite and PostgreSQL (the ``db`` fixture).
"""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bastion import audit
from bastion.accounts.service import SCOPES, AccountService
from bastion.api.app import create_app
from bastion.banks.service import BankService, visible_bank_ids
from bastion.cli.bank import app as bank_cli
from bastion.errors import Conflict, Forbidden, InvalidInput, NotFound
from bastion.matching.matcher import Matcher
from bastion.signals import Signal

MD5 = hashlib.md5(b"a banked file").hexdigest()
OTHER_MD5 = hashlib.md5(b"another banked file").hexdigest()


def _org(db, name: str) -> int:
    return AccountService(db).create_organisation(name).id


def _md5(value: str = MD5) -> list[Signal]:
    return [Signal("md5", value)]


@pytest.fixture
def orgs(db) -> dict[str, int]:
    return {name: _org(db, name) for name in ("org-a", "org-b", "org-c")}


def _scoped(db, org_id: int) -> BankService:
    return BankService(db, f"test-org-{org_id}", organisation_id=org_id)


# -- BankService ----------------------------------------------------------------------------------------------------
def test_visible_bank_ids_are_owned_and_shared_banks_enabled_or_not(db, orgs):
    ops = BankService(db)
    a_bank = ops.create_bank("a-bank", organisation_id=orgs["org-a"])
    a_off = ops.create_bank("a-off", organisation_id=orgs["org-a"])
    ops.set_bank_enabled("a-off", False)
    b_bank = ops.create_bank("b-bank", organisation_id=orgs["org-b"])
    ops.create_bank("operator-bank")
    assert ops.visible_bank_ids(orgs["org-a"]) == sorted([a_bank.id, a_off.id])
    assert ops.visible_bank_ids(orgs["org-b"]) == [b_bank.id]
    assert ops.visible_bank_ids(orgs["org-c"]) == []
    ops.share_bank("b-bank", "org-a")
    assert ops.visible_bank_ids(orgs["org-a"]) == sorted([a_bank.id, a_off.id, b_bank.id])
    assert ops.visible_bank_ids(orgs["org-c"]) == []
    with db.session() as s:  # the same, inside a caller's transaction
        assert visible_bank_ids(s, orgs["org-a"]) == sorted([a_bank.id, a_off.id, b_bank.id])
        assert visible_bank_ids(s, orgs["org-b"]) == [b_bank.id]


def test_a_bank_of_another_organisation_is_not_found_like_a_missing_one(db, orgs):
    ops = BankService(db)
    ops.create_bank("a-bank", organisation_id=orgs["org-a"])
    entry = ops.add_entry("a-bank", _md5())
    b = _scoped(db, orgs["org-b"])
    with pytest.raises(NotFound) as missing:
        b.get_bank("no-such-bank")
    calls = [
        lambda: b.get_bank("a-bank"),
        lambda: b.list_entries("a-bank"),
        lambda: b.import_runs("a-bank"),
        lambda: list(b.iter_export("a-bank")),
        lambda: b.set_bank_enabled("a-bank", False),
        lambda: b.delete_bank("a-bank"),
        lambda: b.add_entry("a-bank", _md5(OTHER_MD5)),
        lambda: b.share_bank("a-bank", "org-b"),
        lambda: b.unshare_bank("a-bank", "org-c"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as exc:
            call()
        assert exc.value.code == missing.value.code == "not_found"
        assert exc.value.message == "no bank named 'a-bank'"
    for call in (
        lambda: b.get_entry(entry.id),
        lambda: b.set_entry_enabled(entry.id, False),
        lambda: b.delete_entry(entry.id),
    ):
        with pytest.raises(NotFound) as exc:
            call()
        assert exc.value.message == f"no bank entry {entry.id}"
    assert [x.name for x in b.list_banks()] == []
    # nothing changed
    assert ops.get_bank("a-bank").enabled and ops.get_entry(entry.id).enabled
    assert ops.get_bank("a-bank").entries == 1


def test_a_shared_bank_is_readable_but_read_only(db, orgs):
    a = _scoped(db, orgs["org-a"])
    a.create_bank("a-bank")
    entry = a.add_entry("a-bank", _md5())
    assert a.share_bank("a-bank", "org-b").shared_with == ["org-b"]
    b = _scoped(db, orgs["org-b"])
    info = b.get_bank("a-bank")
    assert (info.access, info.owner, info.shared_with) == ("shared", "org-a", [])  # a sharee sees no other sharees
    assert [e.id for e in b.list_entries("a-bank")] == [entry.id]
    assert b.get_entry(entry.id).signals[0].value == MD5
    assert [e.signals for e in b.iter_export("a-bank")] == [[("md5", MD5)]]
    writes = [
        lambda: b.get_bank("a-bank", writable=True),
        lambda: b.set_bank_enabled("a-bank", False),
        lambda: b.delete_bank("a-bank"),
        lambda: b.add_entry("a-bank", _md5(OTHER_MD5)),
        lambda: b.import_rows("a-bank", [], fmt="csv"),
        lambda: b.set_entry_enabled(entry.id, False),
        lambda: b.delete_entry(entry.id),
        lambda: b.share_bank("a-bank", "org-c"),
        lambda: b.unshare_bank("a-bank", "org-b"),
    ]
    for call in writes:
        with pytest.raises(Forbidden) as exc:
            call()
        assert exc.value.code == "bank_read_only" and exc.value.http_status == 403
    assert a.get_bank("a-bank").entries == 1 and a.get_entry(entry.id).enabled
    assert [(x.name, x.access) for x in b.list_banks()] == [("a-bank", "shared")]
    assert [(x.name, x.access, x.shared_with) for x in a.list_banks()] == [("a-bank", "owner", ["org-b"])]
    assert _scoped(db, orgs["org-c"]).list_banks() == []


def test_owner_changes_its_own_bank_and_entries(db, orgs):
    a = _scoped(db, orgs["org-a"])
    info = a.create_bank("a-bank", kind="allow")
    assert (info.organisation_id, info.owner, info.access) == (orgs["org-a"], "org-a", "owner")
    entry = a.add_entry("a-bank", _md5())
    assert a.set_entry_enabled(entry.id, False).enabled is False
    assert a.set_bank_enabled("a-bank", False).enabled is False
    a.delete_entry(entry.id)
    a.delete_bank("a-bank")
    assert BankService(db).list_banks() == []


def test_sharing_rules(db, orgs):
    a = _scoped(db, orgs["org-a"])
    a.create_bank("a-bank")
    with pytest.raises(InvalidInput) as exc:
        a.share_bank("a-bank", "org-a")
    assert exc.value.code == "share_with_owner"
    with pytest.raises(NotFound) as exc:
        a.share_bank("a-bank", "no-such-org")
    assert exc.value.code == "organisation_not_found"
    with pytest.raises(NotFound) as exc:
        a.unshare_bank("a-bank", "org-b")
    assert exc.value.code == "not_shared"
    a.share_bank("a-bank", "org-b")
    assert a.share_bank("a-bank", "org-b").shared_with == ["org-b"]  # idempotent
    assert a.share_bank("a-bank", orgs["org-c"]).shared_with == ["org-b", "org-c"]  # by id too
    assert a.unshare_bank("a-bank", "org-b").shared_with == ["org-c"]
    with pytest.raises(NotFound):
        _scoped(db, orgs["org-b"]).get_bank("a-bank")
    a.delete_bank("a-bank")  # shares go with the bank
    with db.session() as s:
        from sqlalchemy import func, select

        from bastion.storage.models import BankShare

        assert s.scalar(select(func.count()).select_from(BankShare)) == 0


def test_names_are_unique_across_organisations_and_organisations_create_only_their_own(db, orgs):
    _scoped(db, orgs["org-a"]).create_bank("shared-name")
    b = _scoped(db, orgs["org-b"])
    with pytest.raises(Conflict) as exc:
        b.create_bank("shared-name")
    assert exc.value.code == "bank_exists"
    with pytest.raises(Forbidden):
        b.create_bank("for-a", organisation_id=orgs["org-a"])
    with pytest.raises(Forbidden):
        b.set_owner("shared-name", "org-b")
    with pytest.raises(NotFound):
        BankService(db).create_bank("orphan", organisation_id=999_999)
    assert [x.name for x in BankService(db).list_banks()] == ["shared-name"]


def test_set_owner_moves_a_bank_and_drops_the_new_owners_share(db, orgs):
    ops = BankService(db)
    ops.create_bank("ops-bank")
    assert ops.visible_bank_ids(orgs["org-a"]) == []
    ops.share_bank("ops-bank", "org-a")
    info = ops.set_owner("ops-bank", "org-a")
    assert (info.owner, info.shared_with, info.access) == ("org-a", [], "operator")
    assert _scoped(db, orgs["org-a"]).get_bank("ops-bank").access == "owner"
    assert ops.set_owner("ops-bank", None).owner is None
    assert ops.visible_bank_ids(orgs["org-a"]) == []


def test_tenancy_changes_are_audited_under_the_owner(db, orgs):
    ops = BankService(db, "operator")
    ops.create_bank("ops-bank")
    ops.set_owner("ops-bank", "org-a")
    a = _scoped(db, orgs["org-a"])
    a.share_bank("ops-bank", "org-b")
    a.unshare_bank("ops-bank", "org-b")
    a.add_entry("ops-bank", _md5())
    records = [r for r in audit.list_records(db, limit=None) if r["target"] in ("bank:ops-bank",)]
    got = [(r["action"], r["actor"], r["organisation_id"], r["details"].get("organisation")) for r in records]
    assert got == [
        ("bank_created", "operator", None, None),
        ("bank_owner_changed", "operator", orgs["org-a"], "org-a"),
        ("bank_shared", f"test-org-{orgs['org-a']}", orgs["org-a"], "org-b"),
        ("bank_unshared", f"test-org-{orgs['org-a']}", orgs["org-a"], "org-b"),
    ]
    assert audit.verify(db).ok


def test_matcher_matches_only_visible_banks_and_others_allow_lists_do_not_suppress(db, orgs):
    ops = BankService(db)
    ops.create_bank("a-block", organisation_id=orgs["org-a"])
    ops.add_entry("a-block", _md5())
    ops.create_bank("b-allow", kind="allow", organisation_id=orgs["org-b"])
    ops.add_entry("b-allow", _md5())  # org-b's false positive must not hide org-a's match
    ops.create_bank("operator-block")
    ops.add_entry("operator-block", _md5())
    matcher = Matcher(db)
    matcher.refresh()
    a_result = matcher.match(_md5(), bank_ids=ops.visible_bank_ids(orgs["org-a"]))
    assert [m.bank for m in a_result.matches] == ["a-block"] and not a_result.allowed_by
    b_result = matcher.match(_md5(), bank_ids=ops.visible_bank_ids(orgs["org-b"]))
    assert b_result.matches == [] and [m.bank for m in b_result.allowed_by] == ["b-allow"]
    assert matcher.match(_md5(), bank_ids=ops.visible_bank_ids(orgs["org-c"])).matches == []


# -- API ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def api(db, settings):
    accounts = AccountService(db)
    keys = {}
    for org in ("org-a", "org-b"):
        accounts.create_organisation(org)
        keys[org] = {"Authorization": f"Bearer {accounts.create_api_key(org, 'all', list(SCOPES))[1]}"}
    with TestClient(create_app(db, settings)) as client:
        yield client, keys["org-a"], keys["org-b"]


def _lookup(client, headers, md5: str = MD5) -> dict:
    r = client.get("/m/lookup", params={"signal_type": "md5", "signal": md5}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def _raw(client, headers, md5: str = MD5) -> list:
    r = client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": md5}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["matches"]


def _error(r) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_api_lists_and_lookups_see_only_the_callers_banks_until_shared(api):
    client, a, b = api
    assert client.post("/c/banks", json={"name": "A-BANK"}, headers=a).status_code == 201
    entry = client.post("/c/bank/A-BANK/signal", json={"md5": MD5}, headers=a).json()["id"]
    assert [x["name"] for x in client.get("/c/banks", headers=a).json()] == ["A-BANK"]
    mine = client.get("/v1/banks", headers=a).json()["banks"]
    assert [(x["name"], x["access"], x["owner"], x["shared_with"]) for x in mine] == [("A-BANK", "owner", "org-a", [])]
    assert _lookup(client, a) == {"A-BANK": [{"bank_content_id": entry, "distance": "0"}]}
    assert _raw(client, a) == [entry]

    # org-b sees nothing of it: not in its lists, no match, 404 by name
    assert client.get("/c/banks", headers=b).json() == []
    assert client.get("/v1/banks", headers=b).json()["banks"] == []
    assert _lookup(client, b) == {} and _raw(client, b) == []
    assert (
        client.get("/m/lookup", params={"signal_type": "md5", "signal": MD5, "banks": "A-BANK"}, headers=b).json() == {}
    )
    assert _error(client.get("/c/bank/A-BANK", headers=b)) == (404, "not_found")

    # shared: org-b reads it and matches it, but cannot change it
    r = client.post("/v1/banks/A-BANK/shares", json={"organisation": "org-b"}, headers=a)
    assert r.status_code == 201 and r.json()["bank"]["shared_with"] == ["org-b"]
    assert _lookup(client, b) == {"A-BANK": [{"bank_content_id": entry, "distance": "0"}]}
    assert _raw(client, b) == [entry]
    assert client.get("/c/bank/A-BANK", headers=b).json() == {"name": "A-BANK", "matching_enabled_ratio": 1.0}
    assert [x["name"] for x in client.get("/c/banks", headers=b).json()] == ["A-BANK"]
    [listed] = client.get("/v1/banks", headers=b).json()["banks"]
    assert (listed["access"], listed["owner"], listed["shared_with"]) == ("shared", "org-a", [])
    for method, url, kwargs in [
        ("PUT", "/c/bank/A-BANK", {"json": {"enabled": False}}),
        ("DELETE", "/c/bank/A-BANK", {}),
        ("POST", "/c/bank/A-BANK/signal", {"json": {"md5": OTHER_MD5}}),
        ("POST", "/c/bank/A-BANK/content", {"files": {"photo": ("x.jpg", b"not read", "image/jpeg")}}),
        ("POST", "/v1/banks/A-BANK/shares", {"json": {"organisation": "org-b"}}),
        ("DELETE", "/v1/banks/A-BANK/shares/org-b", {}),
    ]:
        assert _error(client.request(method, url, headers=b, **kwargs)) == (403, "bank_read_only"), (method, url)
    assert client.get("/c/bank/A-BANK", headers=a).json()["matching_enabled_ratio"] == 1.0  # unchanged
    assert _raw(client, a, OTHER_MD5) == []

    # unshared: gone again
    r = client.delete("/v1/banks/A-BANK/shares/org-b", headers=a)
    assert r.status_code == 200 and r.json()["bank"]["shared_with"] == []
    assert _lookup(client, b) == {} and client.get("/c/banks", headers=b).json() == []
    assert _error(client.get("/c/bank/A-BANK", headers=b)) == (404, "not_found")
    assert _error(client.delete("/v1/banks/A-BANK/shares/org-b", headers=a)) == (404, "not_shared")
    assert _lookup(client, a) == {"A-BANK": [{"bank_content_id": entry, "distance": "0"}]}


def test_api_bank_names_are_global_and_share_errors(api):
    client, a, b = api
    client.post("/c/banks", json={"name": "TAKEN"}, headers=a)
    assert _error(client.post("/c/banks", json={"name": "TAKEN"}, headers=b)) == (409, "bank_exists")
    assert _error(client.post("/v1/banks/TAKEN/shares", json={"organisation": "org-a"}, headers=a)) == (
        400,
        "share_with_owner",
    )
    assert _error(client.post("/v1/banks/TAKEN/shares", json={"organisation": "nobody"}, headers=a)) == (
        404,
        "organisation_not_found",
    )
    assert _error(client.post("/v1/banks/TAKEN/shares", json={}, headers=a)) == (422, "invalid_request")


def test_operator_bank_matches_for_nobody_until_owned_or_shared(api, db):
    client, a, b = api
    ops = BankService(db)
    ops.create_bank("OPS")
    entry = ops.add_entry("OPS", _md5()).id
    assert _lookup(client, a) == {} and _lookup(client, b) == {}
    assert _error(client.get("/c/bank/OPS", headers=a)) == (404, "not_found")
    runner = CliRunner()
    result = runner.invoke(bank_cli, ["share", "OPS", "--with", "org-b"])
    assert result.exit_code == 0, result.output
    assert _lookup(client, a) == {} and _raw(client, b) == [entry]
    assert _error(client.delete("/c/bank/OPS", headers=b)) == (403, "bank_read_only")
    result = runner.invoke(bank_cli, ["owner", "OPS", "org-a"])
    assert result.exit_code == 0 and "now owned by 'org-a'" in result.output
    assert _raw(client, a) == [entry] and _raw(client, b) == [entry]  # still shared with org-b
    assert client.put("/c/bank/OPS", json={"enabled": False}, headers=a).status_code == 200
    assert _raw(client, a) == [] and _raw(client, b) == []


# -- CLI ------------------------------------------------------------------------------------------------------------
def _cli(*args: str, code: int = 0):
    result = CliRunner().invoke(bank_cli, list(args))
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def test_cli_owner_share_unshare_and_listing(db, orgs):
    assert "owned by 'org-a'" in _cli("create", "owned", "--organisation", "org-a").stdout
    _cli("create", "ops")
    _cli("share", "owned", "--with", "org-b")
    _cli("share", "owned", "--with", "org-c")
    listed = {b["name"]: b for b in json.loads(_cli("list", "--json").stdout)}
    assert (listed["owned"]["owner"], listed["owned"]["shared_with"]) == ("org-a", ["org-b", "org-c"])
    assert (listed["ops"]["owner"], listed["ops"]["shared_with"]) == (None, [])
    table = _cli("list").stdout.splitlines()
    assert "OWNER" in table[0] and "SHARED WITH" in table[0]
    ops_line = next(line for line in table if line.startswith("ops"))
    assert ops_line.split()[-2:] == ["-", "-"]
    owned_line = next(line for line in table if line.startswith("owned"))
    assert owned_line.rstrip().endswith("org-a                org-b, org-c")
    assert "owner: org-a; shared with: org-b, org-c" in _cli("show", "owned").stdout
    assert "operator bank" in _cli("show", "ops").stdout
    assert "no longer shared with 'org-b'" in _cli("unshare", "owned", "--with", "org-b").stdout
    assert json.loads(_cli("show", "owned", "--json").stdout)["shared_with"] == ["org-c"]
    assert "now owned by 'org-b'" in _cli("owner", "ops", "org-b").stdout
    assert "now owned by the operator" in _cli("owner", "ops", "--operator").stdout
    assert "error[invalid_arguments]" in _cli("owner", "ops", code=2).stderr
    assert "error[invalid_arguments]" in _cli("owner", "ops", "org-a", "--operator", code=2).stderr
    assert "error[not_found]" in _cli("create", "x", "--organisation", "nobody", code=3).stderr
    assert "error[organisation_not_found]" in _cli("share", "owned", "--with", "nobody", code=3).stderr
    assert "error[not_shared]" in _cli("unshare", "owned", "--with", "org-b", code=3).stderr
    # the operator still changes any bank
    _cli("disable", "owned")
    _cli("delete", "owned", "--yes")
    assert [b["name"] for b in json.loads(_cli("list", "--json").stdout)] == ["ops"]


# -- demo -----------------------------------------------------------------------------------------------------------
def test_demo_bank_belongs_to_the_demo_organisation_idempotently(db):
    from bastion.accounts.bootstrap import DEMO_ORGANISATION
    from bastion.demo import DEMO_BANK, seed_demo_bank

    demo_id = _org(db, DEMO_ORGANISATION)
    assert seed_demo_bank(db) == 6  # without an organisation: an operator's bank (bastion demo)
    assert BankService(db).get_bank(DEMO_BANK).owner is None
    assert seed_demo_bank(db, organisation=DEMO_ORGANISATION) == 0  # the existing bank gets its owner
    info = BankService(db).get_bank(DEMO_BANK)
    assert (info.owner, info.entries) == (DEMO_ORGANISATION, 6)
    assert seed_demo_bank(db, organisation=DEMO_ORGANISATION) == 0
    assert seed_demo_bank(db, replace=True) == 6  # bastion demo starts it afresh but keeps the owner
    assert BankService(db).visible_bank_ids(demo_id) == [BankService(db).get_bank(DEMO_BANK).id]


def test_serve_demo_key_matches_the_demo_bank(db, settings, monkeypatch):
    import re

    import uvicorn

    from bastion import samples
    from bastion.cli.main import app as cli
    from bastion.demo import DEMO_BANK, sample_images

    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: None)
    monkeypatch.setattr("bastion.logging.configure_logging", lambda fmt: None)
    result = CliRunner().invoke(cli, ["serve", "--demo"])
    assert result.exit_code == 0, result.output
    keys = re.findall(r"bst_[A-Za-z0-9]{8}_[A-Za-z0-9_-]+", result.stderr)
    by_org = {AccountService(db).authenticate(k).organisation_name: k for k in keys}
    assert BankService(db).get_bank(DEMO_BANK).owner == "demo"
    data = samples.encode(samples.generate_image(1))  # unrelated: no match anywhere
    with TestClient(create_app(db, settings)) as client:
        for org, expected in (("demo", [DEMO_BANK]), ("admin", [])):
            headers = {"Authorization": f"Bearer {by_org[org]}"}
            photo = sample_images()[0].read_bytes()
            r = client.post("/m/lookup", files={"photo": ("k.jpg", photo, "image/jpeg")}, headers=headers)
            assert r.status_code == 200, r.text
            assert sorted(r.json()["md5"]) == expected, org
            r = client.post("/m/lookup", files={"photo": ("u.jpg", data, "image/jpeg")}, headers=headers)
            assert r.json()["md5"] == {}
