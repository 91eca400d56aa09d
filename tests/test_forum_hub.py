"""The forum hub (bastion.forum.hub / api): members and keys, signed contributions, feedback and consensus,
retraction, incidents first in the feed, and every bad input refused with its code and nothing stored. The hub's
API is called over its real ASGI app; members use ForumExchange, the same client platforms use. SQLite and
PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from bastion.audit.log import verify as verify_audit
from bastion.errors import BastionError
from bastion.exchanges.base import Exchange, ExchangedSignal, Feedback
from bastion.forum import signing
from bastion.forum.api import ROUTE_ACCESS, create_hub_app
from bastion.forum.exchange import ForumExchange
from bastion.forum.hub import HubService, consensus_of, parse_cursor
from bastion.storage.models import ForumChange, ForumContribution, ForumFeedback, ForumMember

PDQ_A = "f" * 32 + "0" * 32
PDQ_B = "0f" * 32
MD5_A = "d41d8cd98f00b204e9800998ecf8427e"


def h(i: int) -> str:
    """A PDQ-shaped hash (64 hex characters) from a number."""
    return f"{i:064x}"


class Hub:
    def __init__(self, db):
        self.db = db
        self.app = create_hub_app(db)
        self.service = HubService(db)
        self.keys: dict[str, str] = {}

    def member(self, name: str, role: str = "member", *, register: bool = True) -> ForumExchange:
        _, key = self.service.add_member(name, role)
        self.keys[name] = key
        client = TestClient(self.app, headers={"Authorization": f"Bearer {key}"})
        ex = ForumExchange("forum", "http://testserver", key, signing.new_private_key(), client=client)
        if register:
            ex.register_public_key()
        return ex

    def raw(self, name: str) -> TestClient:
        return TestClient(self.app, headers={"Authorization": f"Bearer {self.keys[name]}"})

    def count(self, model) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(model))


@pytest.fixture
def hub(db):
    return Hub(db)


def sig(value=PDQ_A, stype="pdq", **labels) -> ExchangedSignal:
    return ExchangedSignal(stype, value, labels or {"category": "propaganda"})


def signed_items(ex: ForumExchange, batch: int, values, incident=None):
    labels = {"category": "propaganda"}
    payloads = [
        signing.contribution_payload(ex.member, batch, i, stype, value, labels, incident)
        for i, (stype, value) in enumerate(values)
    ]
    signature = signing.sign_contributions(ex.signing_key, ex.member, batch, payloads)
    return [
        {"signal_type": stype, "value": value, "labels": labels, "incident": incident, "signature": signature}
        for stype, value in values
    ]


def test_a_member_key_is_shown_once_and_stored_hashed(hub):
    info, key = hub.service.add_member("alpha")
    assert key.startswith("bfm_") and info["name"] == "alpha"
    with hub.db.session() as s:
        row = s.scalars(select(ForumMember)).one()
        assert key.split("_", 2)[2] not in row.key_hash and len(row.key_hash) == 64
    assert hub.service.authenticate(key).name == "alpha"
    r = TestClient(hub.app).get("/forum/v1/me", headers={"Authorization": f"Bearer {key}x"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(BastionError) as e:
        hub.service.add_member("alpha")
    assert e.value.code == "member_exists"


def test_every_hub_route_is_declared_and_enforced(hub):
    alpha = hub.member("alpha")
    routes = {f"{m} {r.path}" for r in hub.app.routes if r.path.startswith("/forum/") for m in r.methods - {"HEAD"}}
    assert routes == set(ROUTE_ACCESS)
    anonymous = TestClient(hub.app)
    for route, access in ROUTE_ACCESS.items():
        method, path = route.split(" ")
        path = path.replace("{contribution_id}", "1").replace("{name}", "x")
        r = anonymous.request(method, path, json={})
        if access == "public":
            assert r.status_code == 200
            continue
        assert r.status_code == 401, route
        if access == "lead":
            r = hub.raw("alpha").request(method, path, json={"name": "x"})
            assert (r.status_code, r.json()["error"]["code"]) == (403, "lead_only"), route
    assert alpha.member == "alpha"


def test_a_signed_contribution_reaches_the_feed_and_verifies(hub):
    alpha, beta = hub.member("alpha"), hub.member("beta")
    assert isinstance(alpha, Exchange)
    result = alpha.push([sig(PDQ_A, category="livestream"), sig(MD5_A, "md5")])
    assert result.accepted == 2 and len(alpha.last_ids) == 2
    page = beta.fetch(None)
    assert [(s.signal_type, s.value, s.contributor) for s in page.signals] == [
        ("pdq", PDQ_A, "alpha"),
        ("md5", MD5_A, "alpha"),
    ]
    assert page.signals[0].labels == {"category": "livestreamed_attack"}  # canonical before signing
    assert page.signals[0].extra["consensus"] == "unconfirmed" and beta.rejected == []
    assert beta.pinned_keys["alpha"] == signing.public_key_text(alpha.signing_key)
    assert beta.fetch(page.next_cursor).signals == []
    # The same hash again: accepted, the same id, nothing new in the feed.
    again = alpha.push([sig(PDQ_A, category="livestream")])
    assert alpha.last_ids == [alpha.last_ids[0]] and again.accepted == 1
    assert beta.fetch(page.next_cursor).signals == []
    assert verify_audit(hub.db).ok


def test_a_row_altered_on_the_hub_is_rejected_by_the_member(hub):
    alpha, beta = hub.member("alpha"), hub.member("beta")
    alpha.push([sig(PDQ_A), sig(PDQ_B)])
    with hub.db.session() as s:  # the hub (or whoever holds its database) relabels one contribution
        s.execute(
            update(ForumContribution).where(ForumContribution.value == PDQ_B).values(labels={"category": "other"})
        )
    page = beta.fetch(None)
    assert [s.value for s in page.signals] == [PDQ_A]
    assert [r["code"] for r in beta.rejected] == ["invalid_signature"]
    # A key the hub swapped after the member pinned it is refused too (a forged row signed with the new key).
    mallory = signing.new_private_key()
    HubService(hub.db).register_key("alpha", signing.public_key_text(mallory), replace=True)
    payload = signing.contribution_payload("alpha", 99, 0, "md5", MD5_A, {}, None)
    with hub.db.session() as s:
        member_id = s.scalar(select(ForumMember.id).where(ForumMember.name == "alpha"))
        c = ForumContribution(
            member_id=member_id,
            signal_type="md5",
            value=MD5_A,
            lookup_key=MD5_A,
            labels={},
            batch=99,
            batch_index=0,
            batch_size=1,
            signature=signing.sign_contributions(mallory, "alpha", 99, [payload]),
            proof="",  # a batch of one: the leaf is the root
            consensus="unconfirmed",
            feedback_counts={},
        )
        s.add(c)
        s.flush()
        s.add(ForumChange(contribution_id=c.id, kind="new", priority=False))
    page = beta.fetch(page.next_cursor)
    assert page.signals == [] and [r["code"] for r in beta.rejected] == ["invalid_signature"]


@pytest.mark.parametrize("limit", [1000, 3])  # the page holds the batch whole, or only part of it
def test_a_batch_checked_whole_or_row_by_row_refuses_only_the_altered_row(hub, limit):
    alpha, beta = hub.member("alpha"), hub.member("beta")
    values = [h(i) for i in range(7)]
    alpha.push([sig(v) for v in values])
    with hub.db.session() as s:
        s.execute(
            update(ForumContribution).where(ForumContribution.value == values[4]).values(labels={"category": "other"})
        )
    got, rejected, cursor = [], [], None
    while True:
        page = beta.fetch(cursor, limit=limit)
        got += [s.value for s in page.signals]
        rejected += beta.rejected
        cursor = page.next_cursor
        if not page.more:
            break
    assert got == values[:4] + values[5:]
    assert [r["code"] for r in rejected] == ["invalid_signature"]


def test_invalid_signature_replay_reorder_and_malformed_hash_store_nothing(hub):
    alpha = hub.member("alpha")
    raw = hub.raw("alpha")
    items = signed_items(alpha, 1, [("pdq", PDQ_A)])
    forged = [dict(items[0], labels={"category": "other"})]  # labels changed after signing
    r = raw.post("/forum/v1/contributions", json={"batch": 1, "items": forged})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_signature")
    assert hub.count(ForumContribution) == 0
    with hub.db.session() as s:
        assert s.scalar(select(ForumMember.last_batch)) == 0  # the refused batch did not use its number
    # Reordered: batch 2 before batch 1.
    r = raw.post("/forum/v1/contributions", json={"batch": 2, "items": signed_items(alpha, 2, [("pdq", PDQ_B)])})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "batch_out_of_order")
    assert r.json()["error"]["details"]["expected"] == 1
    assert raw.post("/forum/v1/contributions", json={"batch": 1, "items": items}).status_code == 201
    # Replayed: batch 1 again.
    r = raw.post("/forum/v1/contributions", json={"batch": 1, "items": items})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "batch_replayed")
    # A signature moved to another batch number does not verify.
    r = raw.post("/forum/v1/contributions", json={"batch": 2, "items": signed_items(alpha, 3, [("pdq", PDQ_B)])})
    assert r.json()["error"]["code"] == "invalid_signature"
    # Malformed hash, signed correctly: refused by the signal registry, with the item's index.
    bad = signed_items(alpha, 2, [("pdq", PDQ_B), ("pdq", "zz"), ("md5", MD5_A)])
    r = raw.post("/forum/v1/contributions", json={"batch": 2, "items": bad})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_signal")
    assert r.json()["error"]["details"]["index"] == 1
    unknown = signed_items(alpha, 2, [("nohash", "x")])
    assert (
        raw.post("/forum/v1/contributions", json={"batch": 2, "items": unknown}).json()["error"]["code"]
        == "unknown_signal_type"
    )
    assert hub.count(ForumContribution) == 1 and hub.count(ForumChange) == 1  # only batch 1
    # Unregistered key: nothing can be signed yet.
    late = hub.member("late", register=False)
    r = hub.raw("late").post("/forum/v1/contributions", json={"batch": 1, "items": items})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "public_key_not_registered")
    assert late.me()["public_key"] is None


def test_bad_labels_and_inactive_incident_are_refused(hub):
    alpha = hub.member("alpha")
    labels = {"category": "not-a-category"}
    payload = signing.contribution_payload("alpha", 1, 0, "pdq", PDQ_A, labels, None)
    item = {
        "signal_type": "pdq",
        "value": PDQ_A,
        "labels": labels,
        "signature": signing.sign_contributions(alpha.signing_key, "alpha", 1, [payload]),
    }
    r = hub.raw("alpha").post("/forum/v1/contributions", json={"batch": 1, "items": [item]})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "unknown_label_value")
    labels = {"category": "livestream"}  # valid, but not the canonical spelling that members verify
    payload = signing.contribution_payload("alpha", 1, 0, "pdq", PDQ_A, labels, None)
    item = {
        "signal_type": "pdq",
        "value": PDQ_A,
        "labels": labels,
        "signature": signing.sign_contributions(alpha.signing_key, "alpha", 1, [payload]),
    }
    r = hub.raw("alpha").post("/forum/v1/contributions", json={"batch": 1, "items": [item]})
    assert r.json()["error"]["code"] == "labels_not_canonical"
    with pytest.raises(BastionError) as e:
        alpha.push([ExchangedSignal("pdq", PDQ_A, {}, incident="nothing-active")])
    assert e.value.code == "incident_not_active" and e.value.http_status == 400
    assert hub.count(ForumContribution) == 0


def test_retraction_only_by_the_contributor(hub):
    alpha, beta = hub.member("alpha"), hub.member("beta")
    alpha.push([sig(PDQ_A)])
    cid = alpha.last_ids[0]
    with pytest.raises(BastionError) as e:
        beta.retract([cid])
    assert (e.value.code, e.value.http_status) == ("not_contributor", 403)
    with pytest.raises(BastionError) as e:
        beta.retract(["424242"])
    assert e.value.code == "contribution_not_found"
    cursor = beta.fetch(None).next_cursor
    assert hub.count(ForumChange) == 1
    assert alpha.retract([cid]) == 1
    page = beta.fetch(cursor)
    assert [(s.source_id, s.retracted, s.extra["change"]) for s in page.signals] == [(cid, True, "retracted")]
    assert beta.rejected == []
    with hub.db.session() as s:  # a retraction the hub made up (no valid signature) is refused by members
        s.execute(update(ForumContribution).values(retraction={"batch": 1, "index": 0, "signature": "AAAA"}))
    assert beta.fetch(None).signals == [] and {r["code"] for r in beta.rejected} == {"invalid_signature"}


def test_feedback_moves_consensus_and_the_feed_reports_it(hub):
    alpha, beta, gamma, delta = (hub.member(n) for n in ("alpha", "beta", "gamma", "delta"))
    alpha.push([sig(PDQ_A), sig(PDQ_B)])
    a_id, b_id = alpha.last_ids
    cursor = gamma.fetch(None).next_cursor
    beta.send_feedback([Feedback(a_id, "agree"), Feedback(b_id, "seen")])
    gamma.send_feedback([Feedback(a_id, "seen")])
    assert hub.service.get_contribution(int(a_id))["consensus"]["status"] == "confirmed"
    page = delta.fetch(cursor)
    latest = {s.source_id: s.extra for s in page.signals}
    assert latest[a_id]["consensus"] == "confirmed" and latest[a_id]["score"] == 2
    delta.send_feedback([Feedback(b_id, "false_positive", note="a cooking video")])
    got = hub.service.get_contribution(int(b_id))["consensus"]
    assert got["status"] == "disputed" and got["score"] == -1 and got["counts"] == {"seen": 1, "false_positive": 1}
    beta.send_feedback([Feedback(b_id, "false_positive")])  # beta changes its mind: its vote is replaced
    got = hub.service.get_contribution(int(b_id))["consensus"]
    assert got["status"] == "likely_false_positive" and got["counts"] == {"false_positive": 2}
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).select_from(ForumFeedback)) == 4
    with pytest.raises(BastionError) as e:
        alpha.send_feedback([Feedback(a_id, "agree")])
    assert e.value.code == "own_contribution"
    with pytest.raises(BastionError) as e:
        beta.send_feedback([Feedback(a_id, "meh")])  # type: ignore[arg-type]
    assert e.value.code == "invalid_feedback_kind"


def test_consensus_rule():
    assert consensus_of({}) == ("unconfirmed", 0)
    assert consensus_of({"agree": 1}) == ("unconfirmed", 1)
    assert consensus_of({"agree": 1, "seen": 1}) == ("confirmed", 2)
    assert consensus_of({"agree": 3, "disagree_label": 1}) == ("disputed", 2)
    assert consensus_of({"agree": 2, "false_positive": 2}) == ("disputed", -2)
    assert consensus_of({"agree": 1, "false_positive": 2}) == ("likely_false_positive", -3)


def test_incident_changes_come_first_and_only_leads_activate(hub):
    alpha, lead, beta = hub.member("alpha"), hub.member("lead", "lead"), hub.member("beta")
    with pytest.raises(BastionError) as e:
        alpha.activate_incident("attack-1")
    assert e.value.code == "lead_only"
    alpha.push([sig(h(i)) for i in range(1, 6)])
    first = beta.fetch(None, limit=2)
    assert len(first.signals) == 2 and first.more
    lead.activate_incident("attack-1", "a livestreamed attack", window_hours=12)
    assert hub.service.list_incidents()[0]["window_hours"] == 12
    alpha.push([ExchangedSignal("pdq", h(77), {"category": "livestreamed_attack"}, incident="attack-1")])
    page = beta.fetch(first.next_cursor, limit=2)
    assert [(s.value, s.incident, s.extra["priority"]) for s in page.signals] == [
        (h(77), "attack-1", True),
        (h(3), None, False),
    ]
    rest = beta.fetch(page.next_cursor, limit=10)
    assert [s.value for s in rest.signals] == [h(4), h(5)]  # the incident hash is not served twice
    assert not rest.more and beta.fetch(rest.next_cursor).signals == []
    lead.deactivate_incident("attack-1")
    with pytest.raises(BastionError) as e:
        alpha.push([ExchangedSignal("pdq", h(78), {}, incident="attack-1")])
    assert e.value.code == "incident_not_active"


def test_cursor_and_limit_are_checked(hub):
    hub.member("alpha")
    raw = hub.raw("alpha")
    assert raw.get("/forum/v1/signals", params={"after": "abc"}).json()["error"]["code"] == "invalid_cursor"
    assert raw.get("/forum/v1/signals", params={"limit": 0}).json()["error"]["code"] == "invalid_request"
    assert parse_cursor("12.40") == (12, 40) and parse_cursor(None) == (0, 0)


def test_public_keys_are_registered_once_by_the_member(hub):
    alpha = hub.member("alpha")
    raw = hub.raw("alpha")
    other = signing.public_key_text(signing.new_private_key())
    r = raw.put("/forum/v1/me/public-key", json={"public_key": other})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "public_key_registered")
    r = raw.put("/forum/v1/me/public-key", json={"public_key": "bm90IGEga2V5"})
    assert r.json()["error"]["code"] == "invalid_public_key"
    assert alpha.me()["public_key"] == signing.public_key_text(alpha.signing_key)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 64, 101])
def test_one_signature_per_batch_every_row_checkable_on_its_own(count):
    key, other = signing.new_private_key(), signing.new_private_key()
    public = signing.public_key_text(key)
    payloads = [
        signing.contribution_payload("alpha", 7, i, "md5", f"{i:032x}", {"category": "propaganda"}, None)
        for i in range(count)
    ]
    signature = signing.sign_contributions(key, "alpha", 7, payloads)
    _, proofs = signing.merkle_tree([signing.leaf_hash(p) for p in payloads])
    checker = signing.BatchVerifier()
    for i in reversed(range(count)):  # any order, any subset: each row carries what it needs
        checker.verify(public, payloads[i], count, proofs[i], signature)

    def refused(payload, size, proof, sig, key_text=public):
        with pytest.raises(signing.InvalidSignatureError):
            signing.BatchVerifier().verify(key_text, payload, size, proof, sig)

    last = payloads[-1]
    refused({**last, "value": "f" * 32}, count, proofs[-1], signature)  # an altered field
    refused({**last, "labels": {"category": "other"}}, count, proofs[-1], signature)
    refused({**last, "batch": 8}, count, proofs[-1], signature)  # moved to another batch
    refused(last, count + 1, proofs[-1], signature)  # a batch claimed bigger than signed
    refused(
        last, count, proofs[-1], signing.sign_contributions(other, "alpha", 7, payloads), signing.public_key_text(key)
    )
    if count > 1:
        refused(payloads[0], count, proofs[1], signature)  # another row's proof
        refused({**payloads[0], "index": 1}, count, proofs[0], signature)  # moved to another position
        refused(last, count, proofs[-1] + "AAAA", signature)  # a proof too long, or not a proof
        refused(last, count, "", signature)  # too short
