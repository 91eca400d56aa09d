"""The forum end to end, on loopback: a hub and two platforms, each a real uvicorn server with its own database
(hub and platform A on SQLite files, platform B on the ``db`` fixture: SQLite, then PostgreSQL) and its own
worker thread syncing the forum. A's reviewer confirms two benign generated images and shares them; B removes
re-encoded, resized copies through its own policy with the forum as evidence, within 5 s of A's contribution; B's appeal
overturns one removal, its false-positive feedback reaches the hub and A, and lowers that hash's consensus.
The incident protocol: hashes tagged with an active incident make a member rescan its recent uploads and decide
them again through its policy (a new decision version and its decision.changed event)."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.banks.service import BankService
from bastion.content import Content
from bastion.decisions.pipeline import DecisionPipeline
from bastion.exchanges.base import ExchangedSignal
from bastion.forum.member import join, share_bank
from bastion.forum.sync import sync_exchange
from bastion.intake.service import IntakeService, Payload, SubmissionMeta
from bastion.jobs.worker import start_worker_threads
from bastion.matching.live import LiveMatcher
from bastion.policy.service import PolicyService
from bastion.review import Reviewer, ReviewService
from bastion.settings import get_settings, reset_settings_cache
from bastion.signals import compute_all
from bastion.storage.models import (
    BankEntry,
    Decision,
    Event,
    ExchangeItem,
    ForumContribution,
    Organisation,
    PreservedContent,
)
from forum_helpers import LiveHub, Served, sqlite_database

POLICY = """
version: 1
default:
  outcome: review
  reason: Unknown content is looked at by a person.
rules:
  - name: remove-known
    when:
      any:
        - any_match: {bank: ORG-known}
        - any_match: {bank: forum-ORG}
    outcome: remove
    reason: Matches known content (our own, or the forum's).
"""


def jpeg(seed: int, size: tuple[int, int] | None = None, quality: int = 90) -> bytes:
    img = samples.generate_image(seed)
    if size:
        img = img.resize(size)
    return samples.encode(img, quality=quality)


class Platform:
    """One platform: its organisation, people, policy and banks; its API on loopback; one worker thread."""

    def __init__(self, db, settings, name: str, hub_url: str, hub_key: str) -> None:
        self.db, self.name = db, name
        accounts = AccountService(db)
        org = accounts.create_organisation(name)
        self.org_id = org.id
        self.key = accounts.create_api_key(org.id, "api", ["submit", "review"])[1]
        PolicyService(db).set_policy(org.id, POLICY.replace("ORG", name))
        with db.session() as s:
            s.get(Organisation, org.id).config = {"classifiers": {"semantic": False}}
        BankService(db, organisation_id=org.id).create_bank(f"{name}-known")
        self.people = {}
        for who in ("r1", "r2"):
            u = accounts.create_user(name, f"{who}@{name}.example", "reviewer")
            self.people[who] = Reviewer(u.id, org.id, "reviewer", u.email)
        join(db, settings, name, hub_url, hub_key)
        self.review = ReviewService(db, settings)
        self.app = create_app(db, settings)
        self.served = Served(self.app)
        self.app.state.live_matcher.start_refresher()
        self.stop_workers, self.threads = start_worker_threads(db, settings, self.app.state.live_matcher, 1)

    def submit(self, data: bytes, content_id: str) -> dict:
        r = httpx.post(
            f"{self.served.url}/v1/content",
            files={"file": ("upload.jpg", data, "image/jpeg")},
            data={"content_id": content_id},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return r.json()["content"]

    def confirm(self, who: str = "r1") -> dict:
        reviewer = self.people[who]
        item = self.review.next_item(reviewer)
        assert item is not None
        return self.review.decide(
            reviewer,
            item.id,
            "violating",
            category="propaganda",
            policy_reference="TOS 4.2 terrorism",
            bank=f"{self.name}-known",
            share_with_forum=True,
        )

    def stop(self) -> None:
        self.stop_workers.set()
        for t in self.threads:
            t.join(timeout=30)
        self.app.state.live_matcher.stop_refresher()
        self.served.stop()


def poll(check, seconds: float, step: float = 0.05):  # type: ignore[no-untyped-def]
    """``check()``'s first truthy result within ``seconds`` (an upper bound, generous), else None."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


@pytest.fixture
def fast_sync(monkeypatch):
    monkeypatch.setenv("BASTION_FORUM_SYNC_SECONDS", "0.2")
    monkeypatch.setenv("BASTION_INDEX_REFRESH_SECONDS", "0.2")
    reset_settings_cache()
    return get_settings()


@pytest.mark.slow
def test_a_hash_confirmed_at_a_is_removed_at_b_and_b_false_positive_reaches_a(db, tmp_path, fast_sync):
    settings = fast_sync
    hub = LiveHub(sqlite_database(tmp_path / "hub.sqlite3"))
    a = b = None
    try:
        a_key, b_key = hub.add("alpha"), hub.add("beta")
        a = Platform(sqlite_database(tmp_path / "a.sqlite3"), settings, "alpha", hub.url, a_key)
        b = Platform(db, settings, "beta", hub.url, b_key)
        share_bank(a.db, "alpha", "alpha-known")  # marked entries only: what reviewers chose to share

        # A: two uploads, each confirmed by a reviewer and shared.
        assert a.submit(jpeg(11), "a-1")["decision"]["outcome"] == "review"
        assert a.submit(jpeg(12), "a-2")["decision"]["outcome"] == "review"
        assert a.confirm()["bank_entry"]["created"] and a.confirm()["bank_entry"]["created"]
        x_pdq_value = next(s.value for s in compute_all(Content.from_bytes(jpeg(11))) if s.type == "pdq")

        def contributed() -> bool:  # A's worker pushed it: the hub holds A's signed contribution
            with hub.db.session() as s:
                return s.scalar(select(ForumContribution.id).where(ForumContribution.value == x_pdq_value)) is not None

        assert poll(contributed, 20.0), "A's worker did not push its confirmed hash"
        contributed_at = time.monotonic()

        # B: a re-encoded, resized copy is matchable within 5 s of the contribution (B's worker pulls it).
        copy_x = jpeg(11, size=(400, 300), quality=70)
        copy_signals = compute_all(Content.from_bytes(copy_x))
        b_banks = BankService(b.db).visible_bank_ids(b.org_id)
        matched = poll(lambda: b.app.state.live_matcher.match(copy_signals, bank_ids=b_banks).matches, 5.0)
        elapsed = time.monotonic() - contributed_at
        assert matched, "A's contribution did not become matchable at B within 5 s"
        assert elapsed < 5.0
        got = b.submit(copy_x, "b-1")
        decision = got["decision"]
        assert decision["outcome"] == "remove" and decision["rule"] == "remove-known"
        forum_matches = [m for m in decision["evidence"]["matches"] if m["bank"] == "forum-beta"]
        assert forum_matches and all(m["labels"]["forum_contributor"] == "alpha" for m in forum_matches)
        assert {m["labels"]["category"] for m in forum_matches} == {"propaganda"}

        # B: a copy of the other image is removed too; its uploader appeals and B's review overturns it.
        copy_y = b.submit(jpeg(12, size=(420, 315), quality=75), "b-2")
        assert copy_y["decision"]["outcome"] == "remove"
        b.review.create_appeal("api", b.org_id, copy_y["id"], reason="this is my own holiday picture")
        appeal = b.review.next_item(b.people["r1"])
        assert appeal is not None and appeal.kind == "appeal"
        b.review.decide(b.people["r1"], appeal.id, "overturn")

        # The false positive reaches the hub (B's worker sends it) and lowers that hash's consensus ...
        with a.db.session() as s:
            y_pdq = s.scalar(
                select(ExchangeItem.source_id)
                .where(ExchangeItem.direction == "out", ExchangeItem.signal_type == "pdq")
                .order_by(ExchangeItem.id.desc())
                .limit(1)
            )
            x_pdq = s.scalar(
                select(ExchangeItem.source_id)
                .where(ExchangeItem.direction == "out", ExchangeItem.signal_type == "pdq")
                .order_by(ExchangeItem.id)
                .limit(1)
            )

        def hub_consensus(source_id: str) -> dict:
            return hub.service.get_contribution(int(source_id))["consensus"]

        assert poll(lambda: hub_consensus(y_pdq)["status"] == "disputed", 20.0)
        assert hub_consensus(y_pdq)["score"] == -2 and hub_consensus(y_pdq)["counts"] == {"false_positive": 1}
        # The other hash: B's automatic removal of its copy was reported as "seen".
        assert poll(lambda: hub_consensus(x_pdq)["counts"] == {"seen": 1}, 20.0)
        assert hub_consensus(x_pdq)["status"] == "unconfirmed" and hub_consensus(x_pdq)["score"] == 1

        # ... and is visible to A, whose sync pulled the consensus change onto its copy of its own contribution.
        def a_sees() -> str | None:
            with a.db.session() as s:
                return s.scalar(
                    select(BankEntry.labels["forum_consensus"].as_string())
                    .join(ExchangeItem, ExchangeItem.bank_entry_id == BankEntry.id)
                    .where(ExchangeItem.direction == "in", ExchangeItem.source_id == y_pdq)
                )

        assert poll(lambda: a_sees() == "disputed", 20.0)
        with hub.db.session() as s:
            assert s.scalar(select(ForumContribution.consensus).where(ForumContribution.id == int(y_pdq))) == "disputed"
    finally:
        for p in (b, a):
            if p is not None:
                p.stop()
        hub.stop()


def test_an_incident_rescans_recent_uploads_and_decides_them_again(db, settings, tmp_path):
    hub = LiveHub(sqlite_database(tmp_path / "hub.sqlite3"))
    try:
        lead = hub.member("lead", "lead")
        org = AccountService(db).create_organisation("beta")
        PolicyService(db).set_policy(org.id, POLICY.replace("ORG", "beta").replace("outcome: review", "outcome: allow"))
        with db.session() as s:
            s.get(Organisation, org.id).config = {"classifiers": {"semantic": False}}
        BankService(db, organisation_id=org.id).create_bank("beta-known")
        joined = join(db, settings, "beta", hub.url, hub.add("beta"))
        matcher = LiveMatcher(db, settings, refresh_seconds=0)
        pipeline = DecisionPipeline(db, settings, matcher)
        intake = IntakeService(db, settings, pipeline)
        # Uploaded before the forum knew the video's frames: allowed.
        early = intake.submit(org.id, SubmissionMeta(external_id="early"), Payload(data=jpeg(21, (500, 400), 80))).item
        other = intake.submit(org.id, SubmissionMeta(external_id="other"), Payload(data=jpeg(22))).item
        assert early["decision"]["outcome"] == other["decision"]["outcome"] == "allow"
        lead.activate_incident("attack-1", "a livestreamed attack", window_hours=6)
        pdq = next(s for s in compute_all(Content.from_bytes(jpeg(21))) if s.type == "pdq")
        lead.push([ExchangedSignal("pdq", pdq.value, {"category": "livestreamed_attack"}, incident="attack-1")])
        report = sync_exchange(db, settings, joined["id"], pipeline=pipeline)
        assert report.error is None and report.stored == 1
        assert [(d["content_id"], d["previous"], d["outcome"], d["incident"]) for d in report.decisions] == [
            (early["id"], "allow", "remove", "attack-1")
        ]
        with db.session() as s:
            versions = s.execute(
                select(Decision.version, Decision.outcome, Decision.actor)
                .where(Decision.content_id == early["id"])
                .order_by(Decision.version)
            ).all()
            assert versions == [(1, "allow", "policy"), (2, "remove", "forum:forum")]
            latest = s.scalars(select(Decision).where(Decision.content_id == early["id"], Decision.version == 2)).one()
            assert latest.evidence["rescan"]["incident"] == "attack-1"
            assert latest.evidence["matches"][0]["labels"]["forum_incident"] == "attack-1"
            changed = s.scalars(select(Event).where(Event.type == "decision.changed")).all()
            assert [e.payload["content"]["id"] for e in changed] == [early["id"]]
            # The new removal is preserved in its own transaction, like any automated removal (TCO Art. 6).
            assert s.scalar(select(PreservedContent.content_id).where(PreservedContent.decision_id == latest.id)) == (
                early["id"]
            )
            assert (
                s.scalar(
                    select(Decision.version)
                    .where(Decision.content_id == other["id"])
                    .order_by(Decision.version.desc())
                    .limit(1)
                )
                == 1
            )
        again = sync_exchange(db, settings, joined["id"], pipeline=pipeline)
        assert again.decisions == []  # nothing new: nothing decided twice
        matcher.stop_refresher()
    finally:
        hub.stop()
