"""A platform as a forum member (bastion.forum.member / sync): joining (secrets encrypted, key registered), pulling
the feed by cursor into the forum's bank (resumable, idempotent, retractions disabled, rows that fail the member's
own signature check not stored), pushing shared banks (marked or all) and retracting disabled entries. The hub runs
on loopback under uvicorn with its own SQLite database; the platform's database is the ``db`` fixture."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select, update

from bastion.accounts.service import AccountService
from bastion.banks.service import BankService
from bastion.errors import BastionError, NotFound
from bastion.exchanges.base import ExchangedSignal
from bastion.forum.member import get_exchange, join, share_bank
from bastion.forum.sync import store_page, sync_exchange
from bastion.matching.live import LiveMatcher
from bastion.signals.base import Signal
from bastion.storage.models import (
    BankEntry,
    ExchangeItem,
    ForumContribution,
    ForumMember,
    OrganisationExchange,
)
from forum_helpers import LiveHub, sqlite_database

PDQS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1, 8)]  # far apart: each matches itself


@pytest.fixture
def hub(tmp_path):
    h = LiveHub(sqlite_database(tmp_path / "hub.sqlite3"))
    yield h
    h.stop()


@pytest.fixture
def platform(db, settings, hub):
    """Organisation "alpha" on the platform, joined to the hub as member "alpha"."""
    org = AccountService(db).create_organisation("alpha")
    BankService(db, organisation_id=org.id).create_bank("alpha-known")
    joined = join(db, settings, "alpha", hub.url, hub.add("alpha"))
    return org.id, joined


def entries(db, bank="forum-alpha"):
    with db.session() as s:
        return s.execute(
            select(BankEntry.enabled, BankEntry.labels)
            .join_from(BankEntry, BankEntry.bank)
            .where(BankEntry.bank.has(name=bank))
            .order_by(BankEntry.id)
        ).all()


def test_join_encrypts_secrets_registers_the_key_and_makes_the_bank(db, settings, hub, platform):
    org_id, joined = platform
    assert joined["member"] == "alpha" and joined["bank"] == "forum-alpha"
    with db.session() as s:
        row = s.scalars(select(OrganisationExchange)).one()
        assert "bfm_" not in row.secrets_encrypted and "PRIVATE" not in row.secrets_encrypted
        assert row.public_key
    with hub.db.session() as s:
        assert s.scalar(select(ForumMember.public_key).where(ForumMember.name == "alpha")) == row.public_key
    with pytest.raises(BastionError) as e:
        join(db, settings, "alpha", hub.url, "bfm_whatever")
    assert e.value.code == "exchange_exists"
    with pytest.raises(BastionError) as e:  # a bad key: nothing stored
        join(db, settings, "alpha", hub.url, "bfm_aaaaaaaaaaaa_" + "x" * 40, name="other")
    assert e.value.code == "invalid_api_key"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(OrganisationExchange)) == 1


def test_sync_pulls_into_the_forum_bank_idempotently_and_matches(db, settings, hub, platform):
    org_id, joined = platform
    beta = hub.member("beta")
    beta.push([ExchangedSignal("pdq", p, {"category": "propaganda", "tat_ideology": "x"}) for p in PDQS[:3]])
    ex_id = joined["id"]
    report = sync_exchange(db, settings, ex_id)
    assert (report.stored, report.error, report.rejected) == (3, None, [])
    got = entries(db)
    assert [e.enabled for e in got] == [True] * 3
    assert got[0].labels == {
        "category": "propaganda",
        "tat_ideology": "x",
        "forum": "forum",
        "forum_contributor": "beta",
        "forum_consensus": "unconfirmed",
    }
    again = sync_exchange(db, settings, ex_id)
    assert again.stored == 0 and len(entries(db)) == 3
    matcher = LiveMatcher(db, settings, refresh_seconds=0)
    result = matcher.match([Signal("pdq", PDQS[1])], bank_ids=BankService(db).visible_bank_ids(org_id))
    assert [m.bank for m in result.matches] == ["forum-alpha"]
    beta.retract([beta.last_ids[1]])
    report = sync_exchange(db, settings, ex_id)
    assert [e.enabled for e in entries(db)] == [True, False, True]
    matcher.refresh(force=True)
    assert matcher.match([Signal("pdq", PDQS[1])], bank_ids=BankService(db).visible_bank_ids(org_id)).matches == []
    assert get_exchange(db, "alpha").cursor == report.cursor


def test_a_crash_between_pages_resumes_without_duplicates(db, settings, hub, platform):
    _, joined = platform
    beta = hub.member("beta")
    beta.push([ExchangedSignal("pdq", p, {}) for p in PDQS])
    ex_id = joined["id"]
    first = sync_exchange(db, settings, ex_id, page_size=3, max_pages=1)  # then "crash"
    assert first.stored == 3 and len(entries(db)) == 3
    # A page fetched from a cursor that is no longer the stored one (another worker went first) stores nothing.
    from bastion.forum.member import open_exchange

    client = open_exchange(settings, get_exchange(db, "alpha"))
    stale = client.fetch(None, 3)
    assert store_page(db, ex_id, None, stale, {}, []) is None
    assert len(entries(db)) == 3
    rest = sync_exchange(db, settings, ex_id, page_size=3)
    assert rest.stored == 4 and rest.pages == 2  # 3 + 1: the second page says caught up
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ExchangeItem)) == 7
    client.close()


def test_rows_altered_on_the_hub_are_not_stored(db, settings, hub, platform):
    _, joined = platform
    beta = hub.member("beta")
    beta.push([ExchangedSignal("pdq", p, {"category": "propaganda"}) for p in PDQS[:2]])
    with hub.db.session() as s:
        s.execute(
            update(ForumContribution).where(ForumContribution.value == PDQS[0]).values(value=PDQS[5])
        )  # the hub swaps the hash of a signed contribution
    report = sync_exchange(db, settings, joined["id"])
    assert report.stored == 1 and [r["code"] for r in report.rejected] == ["invalid_signature"]
    with db.session() as s:
        assert set(s.scalars(select(ExchangeItem.source_id))) == {beta.last_ids[1]}


def test_push_shares_marked_entries_then_all_and_retracts_disabled_ones(db, settings, hub, platform):
    org_id, joined = platform
    banks = BankService(db, organisation_id=org_id)
    marked = banks.add_entry(
        "alpha-known",
        [Signal("pdq", PDQS[0]), Signal("md5", "a" * 32)],
        {"category": "propaganda", "share_with_forum": "yes"},
    )
    banks.add_entry("alpha-known", [Signal("pdq", PDQS[1])], {"category": "recruitment"})
    ex_id = joined["id"]
    assert sync_exchange(db, settings, ex_id).pushed == 0  # nothing shared yet
    share_bank(db, "alpha", "alpha-known")
    report = sync_exchange(db, settings, ex_id)
    assert report.pushed == 2 and report.error is None
    with hub.db.session() as s:
        rows = s.execute(
            select(ForumContribution.signal_type, ForumContribution.labels).order_by(ForumContribution.id)
        ).all()
    assert rows == [("pdq", {"category": "propaganda"}), ("md5", {"category": "propaganda"})]
    assert sync_exchange(db, settings, ex_id).pushed == 0  # pushed once
    share_bank(db, "alpha", "alpha-known", mode="all")
    assert sync_exchange(db, settings, ex_id).pushed == 1
    banks.set_entry_enabled(marked.id, False)
    report = sync_exchange(db, settings, ex_id)
    assert report.retracted == 2
    with hub.db.session() as s:
        assert s.scalar(select(func.count()).where(ForumContribution.retracted_at.is_not(None))) == 2
    # An entry labelled with an incident is contributed under it (while the incident is active).
    hub.service.activate_incident(None, "attack-1")
    banks.add_entry(
        "alpha-known", [Signal("pdq", PDQS[2])], {"category": "livestreamed_attack", "incident": "attack-1"}
    )
    assert sync_exchange(db, settings, ex_id).pushed == 1
    with hub.db.session() as s:
        got = s.execute(
            select(ForumContribution.incident, ForumContribution.labels).where(ForumContribution.value == PDQS[2])
        ).one()
    assert got == ("attack-1", {"category": "livestreamed_attack"})
    # Its own contributions come back through the feed too, labelled with the contributor.
    assert {e.labels["forum_contributor"] for e in entries(db)} == {"alpha"}


def test_a_bank_the_organisation_does_not_own_cannot_be_shared(db, settings, hub, platform):
    other = AccountService(db).create_organisation("gamma")
    BankService(db, organisation_id=other.id).create_bank("gamma-known")
    with pytest.raises(NotFound):
        share_bank(db, "alpha", "gamma-known")
    with pytest.raises(BastionError) as e:
        share_bank(db, "alpha", "forum-alpha")
    assert e.value.code == "forum_bank_not_shareable"
    with pytest.raises(BastionError) as e:
        share_bank(db, "alpha", "alpha-known", mode="some")
    assert e.value.code == "invalid_share_mode"


REVIEW_FORUM_MATCHES = """
version: 1
default: {outcome: allow, reason: Nothing known.}
rules:
  - name: review-forum
    when:
      any_match: {bank: forum-alpha}
    outcome: review
    reason: The forum knows it; a person decides.
"""


def test_review_decisions_on_forum_matches_become_feedback(db, settings, hub, platform):
    from bastion import samples
    from bastion.content import Content
    from bastion.decisions.pipeline import DecisionPipeline
    from bastion.intake.service import IntakeService, Payload, SubmissionMeta
    from bastion.policy.service import PolicyService
    from bastion.review import Reviewer, ReviewService
    from bastion.signals import compute_all
    from bastion.storage.models import Organisation

    org_id, joined = platform
    PolicyService(db).set_policy(org_id, REVIEW_FORUM_MATCHES)
    with db.session() as s:
        s.get(Organisation, org_id).config = {"classifiers": {"semantic": False}}
    u = AccountService(db).create_user("alpha", "r1@alpha.example", "reviewer")
    reviewer = Reviewer(u.id, org_id, "reviewer", u.email)
    images = [samples.encode(samples.generate_image(seed)) for seed in (41, 42)]
    beta = hub.member("beta")
    beta.push(
        [
            ExchangedSignal(
                "pdq",
                next(s.value for s in compute_all(Content.from_bytes(i)) if s.type == "pdq"),
                {"category": "propaganda"},
            )
            for i in images
        ]
    )
    agree_id, fp_id = beta.last_ids
    assert sync_exchange(db, settings, joined["id"]).stored == 2
    matcher = LiveMatcher(db, settings, refresh_seconds=0)
    intake = IntakeService(db, settings, DecisionPipeline(db, settings, matcher))
    for n, data in enumerate(images):
        item = intake.submit(org_id, SubmissionMeta(external_id=f"c-{n}"), Payload(data=data)).item
        assert item["decision"]["outcome"] == "review"
    review = ReviewService(db, settings)
    review.decide(
        reviewer, review.next_item(reviewer).id, "violating", category="propaganda", policy_reference="TOS 4.2"
    )
    review.decide(reviewer, review.next_item(reviewer).id, "not_violating")
    report = sync_exchange(db, settings, joined["id"])
    assert report.feedback == 2 and report.error is None
    assert hub.service.get_contribution(int(agree_id))["consensus"]["counts"] == {"agree": 1}
    assert hub.service.get_contribution(int(fp_id))["consensus"]["counts"] == {"false_positive": 1}
    assert sync_exchange(db, settings, joined["id"]).feedback == 0  # each decision is reported once
    # The consensus change came back through the feed onto the member's copy.
    labels = {e.labels["forum_consensus"] for e in entries(db)}
    assert labels == {"unconfirmed", "disputed"}
    matcher.stop_refresher()


def test_a_sync_whose_bank_was_deleted_says_so_and_stores_nothing(db, settings, hub, platform):
    _, joined = platform
    hub.member("beta").push([ExchangedSignal("pdq", PDQS[0], {})])
    BankService(db).delete_bank("forum-alpha")
    report = sync_exchange(db, settings, joined["id"])
    assert report.error["code"] == "exchange_bank_missing" and report.stored == 0
    assert get_exchange(db, "alpha").cursor is None
    assert get_exchange(db, "alpha").last_error.startswith("exchange_bank_missing")
