"""Human review (bastion.review): items queued by policy, leased to one reviewer at a time, decided (with banking),
second-checked by QA, and appealed to someone else. Real SQLite and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.banks.service import BankService
from bastion.content import Content
from bastion.decisions.pipeline import DecisionPipeline
from bastion.errors import Conflict, Forbidden, InvalidInput, NotFound
from bastion.intake.service import IntakeService, Payload, SubmissionMeta
from bastion.matching.live import LiveMatcher
from bastion.policy.service import PolicyService
from bastion.review import LeaseLost, Reviewer, ReviewService
from bastion.signals import compute_all
from bastion.storage.models import (
    AuditRecord,
    BankEntry,
    ContentBlob,
    Decision,
    Event,
    Organisation,
    ReviewItem,
    utcnow,
)

POLICY = """
version: 1
default:
  outcome: review
  reason: Unknown content is looked at by a person.
rules:
  - name: remove-known
    when:
      any_match: {bank: alpha-known}
    outcome: remove
    reason: Matches known content.
  - name: threat
    when:
      any_match: {labels: {category: imminent_credible_threat}}
    outcome: escalate
    reason: Threat to life.
"""


def _jpeg(seed: int, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    img = samples.generate_image(seed)
    if size:
        img = img.resize(size)
    return samples.encode(img, quality=quality)


class World:
    def __init__(self, db, settings):
        self.db, self.settings = db, settings
        accounts = AccountService(db)
        self.orgs = {}
        self.people: dict[str, Reviewer] = {}
        for org_name in ("alpha", "beta"):
            org = accounts.create_organisation(org_name)
            self.orgs[org_name] = org.id
            PolicyService(db).set_policy(org.id, POLICY.replace("alpha-known", f"{org_name}-known"))
            with db.session() as s:
                s.get(Organisation, org.id).config = {"classifiers": {"semantic": False}}
            BankService(db, organisation_id=org.id).create_bank(f"{org_name}-known")
            for email, role in (("r1", "reviewer"), ("r2", "reviewer"), ("lead", "lead")):
                u = accounts.create_user(org_name, f"{email}@{org_name}.example", role)
                self.people[f"{org_name}:{email}"] = Reviewer(u.id, org.id, role, u.email)
        self.matcher = LiveMatcher(db, settings, refresh_seconds=0)
        self.intake = IntakeService(db, settings, DecisionPipeline(db, settings, self.matcher))
        self.review = ReviewService(db, settings)

    def who(self, name: str, org: str = "alpha") -> Reviewer:
        return self.people[f"{org}:{name}"]

    def submit_image(self, data: bytes, content_id: str, org: str = "alpha", **meta) -> dict:
        self.matcher.refresh(force=True)
        return self.intake.submit(self.orgs[org], SubmissionMeta(external_id=content_id, **meta),
                                  Payload(data=data)).item

    def submit_text(self, text: str, content_id: str, org: str = "alpha", **meta) -> dict:
        return self.intake.submit(self.orgs[org], SubmissionMeta(external_id=content_id, **meta),
                                  Payload(text=text)).item


@pytest.fixture
def world(db, settings):
    w = World(db, settings)
    yield w
    w.matcher.stop_refresher()


def test_review_outcome_queues_the_item_and_keeps_its_bytes(world, db):
    item = world.submit_image(_jpeg(1), "post-1", jurisdictions=["FR"], language="fr")
    assert item["decision"]["outcome"] == "review"
    with db.session() as s:
        rows = s.scalars(select(ReviewItem)).all()
        assert [(r.content_id, r.kind, r.queue, r.status) for r in rows] == [(item["id"], "review", "review", "open")]
        assert rows[0].jurisdictions == ["FR"] and rows[0].language == "fr"
        assert s.get(ContentBlob, item["id"]) is not None  # the reviewer must be able to see it


def test_a_removal_by_hash_match_queues_nothing(world, db):
    BankService(db, organisation_id=world.orgs["alpha"]).add_entry(
        "alpha-known", compute_all(Content.from_bytes(_jpeg(5))), {"category": "propaganda"})
    item = world.submit_image(_jpeg(5, size=(400, 300), quality=70), "post-2")
    assert item["decision"]["outcome"] == "remove"
    with db.session() as s:
        assert s.scalars(select(ReviewItem)).all() == []
        assert s.get(ContentBlob, item["id"]) is None


def test_next_item_leases_best_priority_first_and_resumes_the_held_one(world, db):
    quiet = world.submit_text("first ordinary post", "t-1")
    viral = world.submit_text("second ordinary post", "t-2", reach=5_000_000)  # more reach: higher priority
    later = world.submit_text("third ordinary post", "t-3")
    r1 = world.who("r1")
    got = world.review.next_item(r1)
    assert got is not None and got.content_id == viral["id"]
    assert got.status == "leased" and got.leased_by == r1.user_id
    assert world.review.next_item(r1).id == got.id  # the held item comes back until decided or released
    assert world.review.next_item(world.who("r2")).content_id == quiet["id"]  # equal priority: oldest first
    world.review.release(r1, got.id)
    assert world.review.next_item(world.who("lead")).content_id == viral["id"]  # released: back in line
    assert world.review.next_item(r1).content_id == later["id"]
    assert world.review.next_item(AccountServiceReviewer(world, "extra")) is None


def AccountServiceReviewer(world, name):  # noqa: N802 - a small factory used like a constructor
    u = AccountService(world.db).create_user("alpha", f"{name}@alpha.example", "reviewer")
    return Reviewer(u.id, world.orgs["alpha"], "reviewer", u.email)


def test_no_two_reviewers_ever_get_the_same_item_concurrently(world, db):
    n_items, n_reviewers = 30, 6
    for i in range(n_items):
        world.submit_text(f"ordinary post number {i}", f"c-{i}")
    accounts = AccountService(db)
    reviewers = []
    for i in range(n_reviewers):
        u = accounts.create_user("alpha", f"conc{i}@alpha.example", "reviewer")
        reviewers.append(Reviewer(u.id, world.orgs["alpha"], "reviewer", u.email))
    got: dict[int, list[int]] = {r.user_id: [] for r in reviewers}
    start = threading.Barrier(n_reviewers)
    errors: list[BaseException] = []

    def work(reviewer: Reviewer) -> None:
        try:
            start.wait()
            while True:
                item = world.review.next_item(reviewer)
                if item is None:
                    return
                got[reviewer.user_id].append(item.id)
                world.review.decide(reviewer, item.id, "not_violating")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [i for ids in got.values() for i in ids]
    assert len(every) == n_items and len(set(every)) == n_items  # each item to exactly one reviewer
    with db.session() as s:
        assert s.scalars(select(ReviewItem).where(ReviewItem.status != "done")).all() == []
        assert len(s.scalars(select(Decision).where(Decision.automated.is_(False))).all()) == n_items


def test_a_decision_on_an_expired_or_taken_lease_is_refused(world, db):
    world.submit_text("an ordinary post", "t-1")
    r1, r2 = world.who("r1"), world.who("r2")
    item = world.review.next_item(r1)
    with pytest.raises(LeaseLost) as exc:
        world.review.decide(r2, item.id, "not_violating")  # never opened it
    assert exc.value.code == "lease_lost"
    with db.session() as s:
        s.execute(update(ReviewItem).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(LeaseLost):
        world.review.decide(r1, item.id, "not_violating")  # expired
    with pytest.raises(LeaseLost):
        world.review.renew(r1, item.id)
    taken = world.review.next_item(r2)
    assert taken.id == item.id and taken.leased_by == r2.user_id
    with pytest.raises(LeaseLost):
        world.review.decide(r1, item.id, "not_violating")  # another reviewer holds it now
    world.review.decide(r2, item.id, "not_violating")
    with pytest.raises(Conflict) as exc:
        world.review.decide(r2, item.id, "not_violating")
    assert exc.value.code == "already_decided"


def test_opening_an_item_another_reviewer_holds_is_a_conflict(world):
    world.submit_text("an ordinary post", "t-1")
    item = world.review.next_item(world.who("r1"))
    with pytest.raises(Conflict) as exc:
        world.review.open_item(world.who("r2"), item.id)
    assert exc.value.code == "item_leased"
    assert world.review.open_item(world.who("r1"), item.id).id == item.id


@pytest.mark.parametrize(("kwargs", "code"), [
    ({}, "category_required"),
    ({"category": "not-a-category", "policy_reference": "TOS 4"}, "category_required"),
    ({"category": "propaganda"}, "policy_reference_required"),
    ({"category": "propaganda", "policy_reference": "TOS 4", "action": "restrict"}, "restrict_in_required"),
    ({"category": "propaganda", "policy_reference": "TOS 4", "action": "delete"}, "invalid_action"),
])
def test_a_violating_decision_needs_category_and_policy(world, db, kwargs, code):
    world.submit_text("an ordinary post", "t-1")
    item = world.review.next_item(world.who("r1"))
    with pytest.raises(InvalidInput) as exc:
        world.review.decide(world.who("r1"), item.id, "violating", **kwargs)
    assert exc.value.code == code
    with db.session() as s:  # nothing written; still leased to the reviewer
        assert s.get(ReviewItem, item.id).status == "leased"
        assert s.scalars(select(Decision).where(Decision.automated.is_(False))).all() == []


def test_violating_decision_removes_banks_and_a_reupload_is_removed_automatically(world, db):
    original = _jpeg(21)
    submitted = world.submit_image(original, "post-1", uploader_id="u-9")
    r1 = world.who("r1")
    item = world.review.next_item(r1)
    out = world.review.decide(r1, item.id, "violating", category="branded_publication",
                              policy_reference="TOS 4.2 terrorist content", bank="alpha-known",
                              share_with_forum=True, note="official outlet logo")
    assert out["decision"]["outcome"] == "remove" and out["decision"]["automated"] is False
    assert out["decision"]["version"] == 2 and out["decision"]["actor"] == "user:r1@alpha.example"
    assert out["bank_entry"]["created"] is True
    with db.session() as s:
        entry = s.get(BankEntry, out["bank_entry"]["entry_id"])
        assert entry.labels["category"] == "branded_publication" and entry.labels["share_with_forum"] == "yes"
        assert entry.source == "own_review" and entry.origin == f"content:{submitted['id']}"
        types = [e.type for e in s.scalars(select(Event).order_by(Event.id))]
        assert types[-2:] == ["decision.changed", "review.completed"]
        actions = [a for (a,) in s.execute(select(AuditRecord.action).order_by(AuditRecord.seq))]
        assert "review_decided" in actions and "decision_changed" in actions and "entry_added" in actions
    again = world.submit_image(_jpeg(21, size=(600, 450), quality=75), "post-2")
    assert again["decision"]["outcome"] == "remove" and again["decision"]["rule"] == "remove-known"
    assert again["decision"]["evidence"]["matches"][0]["entry_id"] == out["bank_entry"]["entry_id"]


def test_banking_needs_a_violation_and_a_writable_bank(world, db):
    world.submit_text("an ordinary post", "t-1")
    r1 = world.who("r1")
    item = world.review.next_item(r1)
    with pytest.raises(InvalidInput) as exc:
        world.review.decide(r1, item.id, "not_violating", bank="alpha-known")
    assert exc.value.code == "bank_needs_violation"
    with pytest.raises(NotFound):
        world.review.check_bank(r1, "beta-known")  # another organisation's bank does not exist for alpha


def test_escalation_to_a_lead_and_lead_only_queue(world, db):
    world.submit_text("a worrying post", "t-1")
    r1, lead = world.who("r1"), world.who("lead")
    item = world.review.next_item(r1)
    out = world.review.decide(r1, item.id, "escalate_lead", note="not sure: could be a threat")
    assert out["decision"] is None
    assert world.review.next_item(r1) is None  # reviewers do not work escalations
    with pytest.raises(Forbidden) as exc:
        world.review.next_item(r1, queue="escalation")
    assert exc.value.code == "queue_forbidden"
    esc = world.review.next_item(lead)
    assert esc.kind == "escalation" and esc.queue == "escalation"
    done = world.review.decide(lead, esc.id, "escalate_law_enforcement", note="names a date and a place")
    assert done["decision"]["outcome"] == "escalate"


def test_threat_to_life_is_first_in_line(world, db):
    BankService(db, organisation_id=world.orgs["alpha"]).create_bank("alpha-threats")
    BankService(db, organisation_id=world.orgs["alpha"]).add_entry(
        "alpha-threats", compute_all(Content.from_bytes(_jpeg(33))), {"category": "imminent_credible_threat"})
    world.submit_text("an ordinary post", "t-1")
    threat = world.submit_image(_jpeg(33, size=(500, 375)), "post-threat")
    assert threat["decision"]["outcome"] == "escalate"
    with db.session() as s:
        row = s.scalar(select(ReviewItem).where(ReviewItem.content_id == threat["id"]))
        assert row.severity == "threat_to_life" and row.queue == "escalation"
    got = world.review.next_item(world.who("lead"))
    assert got.content_id == threat["id"]


def test_queue_routing_by_language_and_role(world, db):
    world.review.create_queue("cli", world.orgs["alpha"], "french", criteria={"languages": ["fr"]})
    world.review.create_queue("cli", world.orgs["alpha"], "leads-de", criteria={"jurisdictions": ["de"]},
                              roles=["lead"])
    fr = world.submit_text("un message ordinaire", "t-fr", language="fr-FR")
    de = world.submit_text("eine gewöhnliche Nachricht", "t-de", jurisdictions=["DE"])
    other = world.submit_text("an ordinary post", "t-en", language="en")
    with db.session() as s:
        queues = {r.content_id: r.queue for r in s.scalars(select(ReviewItem))}
    assert queues == {fr["id"]: "french", de["id"]: "leads-de", other["id"]: "review"}
    r1 = world.who("r1")
    seen = {world.review.next_item(r1).content_id, world.review.next_item(world.who("r2")).content_id}
    assert seen == {fr["id"], other["id"]}
    assert world.review.next_item(world.who("lead")).content_id == de["id"]
    summary = {q["queue"]: q for q in world.review.summary(world.who("lead"))}
    assert summary["leads-de"]["leased"] == 1 and "leads-de" not in {q["queue"] for q in world.review.summary(r1)}
    with pytest.raises(InvalidInput) as exc:
        world.review.create_queue("cli", world.orgs["alpha"], "bad", criteria={"categories": ["nonsense"]})
    assert exc.value.code == "invalid_queue_criteria"
    with pytest.raises(Conflict):
        world.review.create_queue("cli", world.orgs["alpha"], "french")


def test_qa_sends_decisions_to_a_second_reviewer_and_measures_agreement(world, db):
    world.review.set_qa_share("cli", world.orgs["alpha"], 1.0)
    for i in range(2):
        world.submit_text(f"an ordinary post {i}", f"t-{i}")
    r1, r2 = world.who("r1"), world.who("r2")
    a = world.review.next_item(r1)
    world.review.decide(r1, a.id, "violating", category="propaganda", policy_reference="TOS 4")
    b = world.review.next_item(r1)
    world.review.decide(r1, b.id, "not_violating")
    assert world.review.next_item(r1) is None  # never checks their own decisions
    first = world.review.next_item(r2)
    assert first.kind == "qa" and first.parent_id in (a.id, b.id)
    verdicts = {a.id: ("violating", "propaganda"), b.id: ("violating", "recruitment")}  # agree on a, not b
    v, cat = verdicts[first.parent_id]
    world.review.decide(r2, first.id, v, category=cat, policy_reference="TOS 4")
    second = world.review.next_item(r2)
    v, cat = verdicts[second.parent_id]
    out = world.review.decide(r2, second.id, v, category=cat, policy_reference="TOS 4")
    assert out["decision"] is None  # a QA check does not change the content's decision
    stats = world.review.agreement(world.orgs["alpha"])
    assert stats["checked"] == 2 and stats["agreed"] == 1 and stats["agreement"] == 0.5
    assert stats["per_reviewer"] == [{"key": "r1@alpha.example", "checked": 2, "agreed": 1, "agreement": 0.5}]
    assert {c["key"]: c["agreed"] for c in stats["per_category"]} == {"propaganda": 1, "not violating": 0}
    esc = world.review.next_item(world.who("lead"))  # the disagreement goes to a lead
    assert esc.kind == "escalation" and esc.content_id != a.content_id


def test_qa_share_zero_sends_nothing_and_bad_share_is_refused(world, db):
    world.submit_text("an ordinary post", "t-1")
    item = world.review.next_item(world.who("r1"))
    world.review.decide(world.who("r1"), item.id, "not_violating")
    assert world.review.next_item(world.who("r2")) is None
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(InvalidInput) as exc:
            world.review.set_qa_share("cli", world.orgs["alpha"], bad)
        assert exc.value.code == "invalid_qa_share"


def test_an_appeal_is_decided_by_someone_else_and_overturning_reinstates(world, db):
    submitted = world.submit_image(_jpeg(41), "post-1", uploader_id="u-1")
    r1, r2 = world.who("r1"), world.who("r2")
    item = world.review.next_item(r1)
    out = world.review.decide(r1, item.id, "violating", category="propaganda", policy_reference="TOS 4",
                              bank="alpha-known")
    entry_id = out["bank_entry"]["entry_id"]
    appeal = world.review.create_appeal("api", world.orgs["alpha"], submitted["id"], reason="it is a news report",
                                        appellant_id="u-1")
    assert appeal["status"] == "open"
    with pytest.raises(Conflict) as exc:
        world.review.create_appeal("api", world.orgs["alpha"], submitted["id"])
    assert exc.value.code == "appeal_exists"
    assert world.review.next_item(r1) is None  # the original reviewer never gets it
    with db.session() as s:
        appeal_item = s.scalar(select(ReviewItem.id).where(ReviewItem.kind == "appeal"))
    with pytest.raises(Forbidden) as exc:
        world.review.open_item(r1, appeal_item)
    assert exc.value.code == "own_decision"
    got = world.review.next_item(r2)
    assert got.kind == "appeal" and got.queue == "appeals"
    with pytest.raises(InvalidInput):
        world.review.decide(r2, got.id, "not_violating")  # appeals are upheld or overturned
    done = world.review.decide(r2, got.id, "overturn", note="newsworthy", disable_bank_entries=True)
    assert done["decision"]["outcome"] == "allow" and done["decision"]["version"] == 3
    assert done["appeal"]["status"] == "overturned" and done["disabled_bank_entries"] == [entry_id]
    with db.session() as s:
        assert s.get(BankEntry, entry_id).enabled is False
        changed = [e.payload for e in s.scalars(select(Event).where(Event.type == "decision.changed")
                                                .order_by(Event.id))]
        assert changed[-1]["reinstated"] is True and changed[-1]["previous_outcome"] == "remove"
    world.matcher.refresh(force=True)
    again = world.submit_image(_jpeg(41, size=(500, 375)), "post-2")
    assert again["decision"]["outcome"] == "review"  # the disabled entry no longer removes it
    history = world.review.content_history(world.orgs["alpha"], submitted["id"])
    assert [d["outcome"] for d in history["decisions"]] == ["review", "remove", "allow"]
    assert [a["status"] for a in history["appeals"]] == ["overturned"]
    listed = world.review.list_appeals(world.orgs["alpha"])
    assert [(a["id"], a["status"], a["external_id"]) for a in listed] == [(appeal["id"], "overturned", "post-1")]
    assert listed[0]["appealed"]["outcome"] == "remove" and listed[0]["appealed"]["automated"] is False
    assert listed[0]["decided_by"] == "r2@alpha.example" and listed[0]["queue_status"] == "done"
    assert world.review.list_appeals(world.orgs["alpha"], status="open") == []
    assert world.review.list_appeals(world.orgs["beta"]) == []
    assert world.review.appeal_counts(world.orgs["alpha"]) == {"open": 0, "upheld": 0, "overturned": 1}
    with pytest.raises(InvalidInput) as exc:
        world.review.list_appeals(world.orgs["alpha"], status="pending")
    assert exc.value.code == "invalid_status"


def test_only_removals_can_be_appealed(world):
    item = world.submit_text("an ordinary post", "t-1")
    with pytest.raises(Conflict) as exc:
        world.review.create_appeal("api", world.orgs["alpha"], item["id"])
    assert exc.value.code == "not_appealable"
    with pytest.raises(NotFound):
        world.review.create_appeal("api", world.orgs["beta"], item["id"])


def test_an_upheld_appeal_changes_nothing(world, db):
    submitted = world.submit_text("an ordinary post", "t-1")
    r1, r2 = world.who("r1"), world.who("r2")
    world.review.decide(r1, world.review.next_item(r1).id, "violating", category="recruitment",
                        policy_reference="TOS 4")
    world.review.create_appeal("api", world.orgs["alpha"], submitted["id"])
    got = world.review.next_item(r2)
    done = world.review.decide(r2, got.id, "uphold")
    assert done["decision"] is None and done["appeal"]["status"] == "upheld"
    history = world.review.content_history(world.orgs["alpha"], submitted["id"])
    assert [d["outcome"] for d in history["decisions"]] == ["review", "remove"]


def test_organisations_never_see_each_others_items(world):
    world.submit_text("an ordinary post", "t-1", org="alpha")
    alpha_item = world.review.next_item(world.who("r2"))
    beta = world.who("r1", "beta")
    assert world.review.next_item(beta) is None
    for call in (world.review.get_item, world.review.open_item, world.review.renew):
        with pytest.raises(NotFound):
            call(beta, alpha_item.id)
    with pytest.raises(NotFound):
        world.review.decide(beta, alpha_item.id, "not_violating")
