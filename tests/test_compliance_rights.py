"""Users' rights and preservation (bastion.compliance: statements, preservation, notices, complaints, sweep) on real
SQLite and PostgreSQL: statements of reasons built and validated against the DSA Transparency Database's rules,
content preserved encrypted and purged on a controllable clock, complaints decided by someone else and reinstating,
notices sent or delayed. Bad input gets its code and writes nothing."""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from bastion.accounts.service import AccountService
from bastion.compliance import statements
from bastion.compliance.complaints import ComplaintService
from bastion.compliance.notices import NoticeService
from bastion.compliance.preservation import (
    Accessor,
    ConfigKeyProvider,
    PreservationKeyError,
    PreservationService,
)
from bastion.compliance.sweep import sweep
from bastion.errors import Conflict, Forbidden, InvalidInput, NotFound
from bastion.review import Reviewer, ReviewService
from bastion.review.service import enqueue
from bastion.storage.models import (
    Appeal,
    AuditRecord,
    Complaint,
    ContentBlob,
    ContentItem,
    Decision,
    Event,
    PreservedContent,
    ReviewItem,
    StatementOfReasons,
    UploaderNotice,
    utcnow,
)

SECRET_BYTES = b"benign stand-in bytes of a removed upload 1234567890"


class World:
    def __init__(self, db, settings):
        self.db, self.settings = db, settings
        accounts = AccountService(db)
        self.orgs: dict[str, int] = {}
        self.people: dict[str, Reviewer] = {}
        for name in ("alpha", "beta"):
            self.orgs[name] = accounts.create_organisation(name).id
            for email in ("r1", "r2"):
                u = accounts.create_user(name, f"{email}@{name}.example", "reviewer")
                self.people[f"{name}:{email}"] = Reviewer(u.id, self.orgs[name], "reviewer", u.email)
        self.review = ReviewService(db, settings)

    def content(
        self,
        external_id: str,
        *,
        org: str = "alpha",
        outcome: str = "remove",
        restrict_in=(),
        automated: bool = True,
        blob: bytes | None = SECRET_BYTES,
        content_type: str = "image",
        matches=None,
    ) -> tuple[int, int]:
        with self.db.session() as s:
            item = ContentItem(
                organisation_id=self.orgs[org],
                external_id=external_id,
                uploader_id="user-77",
                jurisdictions=["FR"],
                source="upload",
                content_type=content_type,
                language="fr",
                status="decided",
                signals=[{"type": "sha256", "value": "ab" * 32}],
            )
            s.add(item)
            s.flush()
            if blob is not None:
                s.add(ContentBlob(content_id=item.id, data=blob))
            evidence = {
                "matches": matches
                if matches is not None
                else [{"bank": "alpha-known", "entry_id": 1, "signal_type": "pdq", "distance": 3}]
            }
            d = Decision(
                content_id=item.id,
                organisation_id=item.organisation_id,
                version=1,
                outcome=outcome,
                restrict_in=list(restrict_in),
                rule="remove-known",
                automated=automated,
                reason="Matches known terrorist content.",
                evidence=evidence,
            )
            s.add(d)
            s.flush()
            return item.id, d.id

    def reviewed_removal(self, external_id: str) -> tuple[int, Reviewer]:
        """Content a reviewer (r1) removed: policy sent it to review, r1 decided violating."""
        cid, _ = self.content(external_id, outcome="review", matches=[])
        with self.db.session() as s:
            item = s.get(ContentItem, cid)
            d = s.scalars(select(Decision).where(Decision.content_id == cid)).one()
            enqueue(s, item, d)
        r1 = self.people["alpha:r1"]
        got = self.review.next_item(r1)
        self.review.decide(r1, got.id, "violating", category="glorification", policy_reference="TOS 4.2 terrorism")
        return cid, r1


@pytest.fixture
def world(db, settings):
    return World(db, settings)


def _count(db, model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def _events(db, type_: str) -> list[dict]:
    with db.session() as s:
        return [e.payload for e in s.scalars(select(Event).where(Event.type == type_).order_by(Event.id))]


# -- statements of reasons --------------------------------------------------------------------------------------------
def test_an_automated_removal_gets_a_valid_statement_with_the_terrorism_fields(world, db, settings):
    cid, did = world.content("post-1")
    assert sweep(db, settings)["restrictions"] == 1
    with db.session() as s:
        row = s.scalars(select(StatementOfReasons)).one()
    st = row.statement
    assert statements.validate([st]) == {}
    assert st["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert st["category"] == "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"
    assert st["category_specification"] == ["KEYWORD_TERRORIST_CONTENT"]
    assert st["decision_ground"] == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    assert st["incompatible_content_ground"] == "policy rule remove-known"
    assert st["content_type"] == ["CONTENT_TYPE_IMAGE"] and st["content_language"] == "FR"
    assert st["automated_detection"] == "Yes" and st["automated_decision"] == "AUTOMATED_DECISION_FULLY"
    assert st["source_type"] == "SOURCE_VOLUNTARY"
    assert len(st["territorial_scope"]) == 30 and "NO" in st["territorial_scope"]
    assert st["puid"] == f"bastion-{cid}-v1" and row.decision_id == did
    assert "user-77" not in json.dumps(st)  # the Transparency Database is public: no personal data


def test_an_organisation_may_state_the_tco_as_legal_ground_and_a_restriction_covers_its_member_states(
    world, db, settings
):
    from bastion.storage.models import Organisation

    with db.session() as s:
        s.get(Organisation, world.orgs["alpha"]).config = {"compliance": {"dsa_ground": "illegal"}}
    world.content("geo-1", outcome="restrict", restrict_in=["DE", "FR", "US"], content_type="pdf")
    world.content("geo-2", outcome="restrict", restrict_in=["US"])  # outside the EEA: no statement owed
    sweep(db, settings)
    with db.session() as s:
        rows = s.scalars(select(StatementOfReasons)).all()
        assert _count(db, UploaderNotice) == 2  # but both uploaders are told
    assert len(rows) == 1
    st = rows[0].statement
    assert st["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert "2021/784" in st["illegal_content_legal_ground"] and st["illegal_content_explanation"]
    assert st["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    assert st["territorial_scope"] == ["DE", "FR"]
    assert st["content_type"] == ["CONTENT_TYPE_OTHER"] and st["content_type_other"] == "Document (PDF)"
    assert statements.validate([st]) == {}


def _valid() -> dict:
    return {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
        "illegal_content_legal_ground": "TCO Art. 2(7)",
        "illegal_content_explanation": "terrorist content",
        "content_type": ["CONTENT_TYPE_TEXT"],
        "category": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
        "category_specification": ["KEYWORD_TERRORIST_CONTENT"],
        "territorial_scope": ["FR"],
        "content_date": "2024-05-01",
        "application_date": "2024-05-02",
        "decision_facts": "facts",
        "source_type": "SOURCE_VOLUNTARY",
        "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_FULLY",
        "puid": "post-1_v1",
    }


def test_validation_reports_every_broken_rule_by_statement_and_field():
    assert statements.validate([_valid()]) == {}
    bad = copy.deepcopy(_valid())
    del bad["illegal_content_legal_ground"]  # required if the ground is illegal content
    bad["decision_facts"] = "x" * 5001
    bad["puid"] = "has space"
    bad["automated_decision"] = "maybe"
    bad["territorial_scope"] = ["FR", "US"]
    bad["content_type"] = ["CONTENT_TYPE_OTHER"]  # then content_type_other is required
    bad["application_date"] = "2019-12-31"
    bad["content_date"] = "2024-02-30"
    none = {k: v for k, v in _valid().items() if k != "decision_visibility"}
    errors = statements.validate([_valid(), bad, none])
    assert set(errors) == {"statement_1", "statement_2"}
    e = errors["statement_1"]
    assert set(e) == {
        "illegal_content_legal_ground",
        "decision_facts",
        "puid",
        "automated_decision",
        "territorial_scope",
        "content_type_other",
        "application_date",
        "content_date",
    }
    assert "required" in e["illegal_content_legal_ground"][0]
    assert "5000" in e["decision_facts"][0] and "'US'" in e["territorial_scope"][0]
    assert "between 2020-01-01" in e["application_date"][0] and "real date" in e["content_date"][0]
    assert "decision monetary" in errors["statement_2"]["decision_visibility"][0]
    incompatible = {**_valid(), "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT"}
    assert set(statements.validate([incompatible])["statement_0"]) == {
        "incompatible_content_ground",
        "incompatible_content_explanation",
    }
    assert statements.validate([_valid(), _valid()])["statement_1"]["puid"][0].startswith("The puid is not unique")
    assert "at most 100" in statements.validate([_valid()] * 101)["batch"]["statements"][0]
    assert "non-empty" in statements.validate({"statements": []})["batch"]["statements"][0]
    with pytest.raises(InvalidInput) as exc:
        statements.check([bad])
    assert exc.value.code == "invalid_statements" and "statement_0" in exc.value.details["errors"]


def test_export_batches_hold_at_most_100_statements():
    many = [{**_valid(), "puid": f"p{i}"} for i in range(250)]
    bodies = list(statements.batches(many))
    assert [len(b["statements"]) for b in bodies] == [100, 100, 50]
    assert all(statements.validate(b["statements"]) == {} for b in bodies)


# -- preservation -----------------------------------------------------------------------------------------------------
def _preserver(world) -> Accessor:
    return Accessor("user:preserver@alpha.example", world.orgs["alpha"], frozenset({"preservation"}))


def test_removed_content_is_preserved_encrypted_and_read_only_with_the_preservation_scope(world, db, settings):
    world.content("post-enc")
    sweep(db, settings)
    with db.session() as s:
        row = s.scalars(select(PreservedContent)).one()
        raw = bytes(row.ciphertext)
    assert row.has_bytes and row.purged_at is None
    assert SECRET_BYTES not in raw and base64.b64encode(SECRET_BYTES) not in raw and b"post-enc" not in raw
    assert (row.expires_at - row.preserved_at) == timedelta(days=183)
    service = PreservationService(db, settings)
    with pytest.raises(Forbidden) as exc:
        service.read(
            Accessor("user:r1@alpha.example", world.orgs["alpha"], frozenset({"review"})), row.id, purpose="curious"
        )
    assert exc.value.code == "preservation_forbidden"
    beta = Accessor("user:x@beta.example", world.orgs["beta"], frozenset({"preservation"}))
    with pytest.raises(NotFound):
        service.read(beta, row.id, purpose="request 1")
    with pytest.raises(InvalidInput) as exc:
        service.read(_preserver(world), row.id, purpose=" ")
    assert exc.value.code == "purpose_required"
    got = service.read(_preserver(world), row.id, purpose="authority request FR-2024-1")
    assert base64.b64decode(got["package"]["bytes_base64"]) == SECRET_BYTES
    assert got["package"]["content"]["external_id"] == "post-enc"
    assert [d["outcome"] for d in got["package"]["decisions"]] == ["remove"]
    with db.session() as s:
        reads = s.scalars(select(AuditRecord).where(AuditRecord.action == "preservation_read")).all()
    assert [r.details["purpose"] for r in reads] == ["authority request FR-2024-1"]


def test_the_wrong_key_or_altered_bytes_fail_clearly(world, db, settings):
    world.content("post-key")
    sweep(db, settings)
    with db.session() as s:
        pid = s.scalars(select(PreservedContent.id)).one()
    other = settings.model_copy(update={"preservation_key": SecretStr(base64.b64encode(b"k" * 32).decode())})
    with pytest.raises(PreservationKeyError) as exc:
        PreservationService(db, other).read(_preserver(world), pid, purpose="check")
    assert exc.value.code == "preservation_key_unavailable" and "restore that key" in exc.value.message

    class SameIdWrongKey:  # a KMS handing back the wrong bytes under the right id
        def current(self):
            return ConfigKeyProvider(settings).current()[0], b"w" * 32

        def get(self, key_id):
            return b"w" * 32

    with pytest.raises(PreservationKeyError) as exc:
        PreservationService(db, settings, SameIdWrongKey()).read(_preserver(world), pid, purpose="check")
    assert exc.value.code == "preservation_decrypt_failed"
    bad = settings.model_copy(update={"preservation_key": SecretStr("not base64!")})
    with pytest.raises(InvalidInput) as exc:
        ConfigKeyProvider(bad)
    assert exc.value.code == "invalid_preservation_key"


def test_preservation_is_purged_after_expiry_and_an_extension_keeps_it(world, db, settings):
    world.content("post-old")
    world.content("post-kept")
    sweep(db, settings)
    service = PreservationService(db, settings)
    with db.session() as s:
        old, kept = s.scalars(select(PreservedContent).order_by(PreservedContent.id)).all()
    expiry = old.expires_at
    with pytest.raises(InvalidInput) as exc:
        service.extend(
            _preserver(world),
            kept.id,
            until=expiry - timedelta(days=1),
            requested_by="Court of Paris",
            reference="RG 24/1",
        )
    assert exc.value.code == "extension_not_later"
    with pytest.raises(InvalidInput) as exc:
        service.extend(
            _preserver(world), kept.id, until=expiry + timedelta(days=90), requested_by="", reference="RG 24/1"
        )
    assert exc.value.code == "requested_by_required"
    extended = service.extend(
        _preserver(world),
        kept.id,
        until=expiry + timedelta(days=90),
        requested_by="Tribunal judiciaire de Paris",
        reference="RG 24/1",
    )
    assert extended["extensions"][0]["requested_by"] == "Tribunal judiciaire de Paris"

    assert service.purge_due(now=expiry - timedelta(seconds=1)) == 0
    assert service.purge_due(now=expiry + timedelta(seconds=1)) == 1
    assert service.purge_due(now=expiry + timedelta(seconds=2)) == 0
    with db.session() as s:
        old, kept = s.scalars(select(PreservedContent).order_by(PreservedContent.id)).all()
        purges = s.scalars(select(AuditRecord).where(AuditRecord.action == "preservation_purged")).all()
    assert old.ciphertext is None and old.purged_at is not None and kept.ciphertext is not None
    assert [p.target for p in purges] == [f"preservation:{old.id}"]
    with pytest.raises(Conflict) as exc:
        service.read(_preserver(world), old.id, purpose="too late")
    assert exc.value.code == "preservation_purged"
    assert service.read(_preserver(world), kept.id, purpose="court")["package"]["bytes_base64"]
    assert sweep(db, settings, now=expiry + timedelta(days=91))["purged"] == 1  # the workers' sweep purges too


# -- notices ----------------------------------------------------------------------------------------------------------
def test_the_uploader_is_notified_unless_an_authority_delays_it_six_weeks_renewable_once(world, db, settings):
    sent_id, _ = world.content("post-n1")
    delayed_id, _ = world.content("post-n2")
    with pytest.raises(Conflict) as exc:
        NoticeService(db, settings).delay(
            "authority:fr",
            world.orgs["alpha"],
            world.content("kept", outcome="allow")[0],
            requested_by="OCLCTIC",
            reference="R-1",
        )
    assert exc.value.code == "no_restriction"
    notices = NoticeService(db, settings)
    first = notices.delay("authority:fr", world.orgs["alpha"], delayed_id, requested_by="OCLCTIC", reference="R-1")
    assert first["status"] == "delayed"
    sweep(db, settings)
    events = _events(db, "uploader.notice")
    assert [e["content"]["external_id"] for e in events] == ["post-n1"]
    assert events[0]["statement_of_reasons"]["puid"] == f"bastion-{sent_id}-v1"
    assert events[0]["complaint"]["path"] == f"/v1/content/{sent_id}/complaints"
    with pytest.raises(Conflict) as exc:
        notices.delay("authority:fr", world.orgs["alpha"], sent_id, requested_by="OCLCTIC", reference="R-2")
    assert exc.value.code == "notice_already_sent"
    renewed = notices.delay(
        "authority:fr", world.orgs["alpha"], delayed_id, requested_by="OCLCTIC", reference="R-1b", renew=True
    )
    assert renewed["delay_renewals"] == 1
    with pytest.raises(Conflict) as exc:
        notices.delay(
            "authority:fr", world.orgs["alpha"], delayed_id, requested_by="OCLCTIC", reference="R-1c", renew=True
        )
    assert exc.value.code == "delay_renewal_limit"
    until = utcnow() + timedelta(weeks=12)
    assert notices.send_due(now=until - timedelta(days=1)) == 0
    assert notices.send_due(now=until + timedelta(minutes=1)) == 1
    assert [e["content"]["external_id"] for e in _events(db, "uploader.notice")] == ["post-n1", "post-n2"]


# -- complaints -------------------------------------------------------------------------------------------------------
def test_a_complaint_is_decided_by_someone_else_and_reinstatement_goes_through_the_webhook(world, db, settings):
    cid, r1 = world.reviewed_removal("post-c1")
    complaints = ComplaintService(db, settings)
    c = complaints.lodge(
        "api-key:1", world.orgs["alpha"], cid, regime="dsa", reason="satire, not propaganda", complainant_id="user-77"
    )
    assert c["outcome"] == "pending" and c["regime"] == "dsa"
    assert c["deadline_at"] > c["created_at"]
    with db.session() as s:
        item = s.scalars(select(ReviewItem).where(ReviewItem.kind == "appeal")).one()
        assert item.excluded_user_id == r1.user_id and item.deadline_at is not None
    assert world.review.next_item(r1) is None  # the original reviewer is never offered it
    with pytest.raises(Forbidden) as exc:
        world.review.open_item(r1, item.id)
    assert exc.value.code == "own_decision"
    r2 = world.people["alpha:r2"]
    got = world.review.next_item(r2)
    assert got.id == item.id
    world.review.decide(r2, got.id, "overturn", note="news reporting")
    done = complaints.get(world.orgs["alpha"], c["id"])
    assert done["outcome"] == "reinstated" and done["reinstatement"]["decision_version"] == 3
    changed = _events(db, "decision.changed")
    assert changed[-1]["reinstated"] is True and changed[-1]["decision"]["outcome"] == "allow"
    with pytest.raises(NotFound):
        complaints.get(world.orgs["beta"], c["id"])


def test_bad_complaints_get_their_code_and_store_nothing(world, db, settings):
    cid, _ = world.content("post-c2")
    allowed, _ = world.content("post-c3", outcome="allow")
    complaints = ComplaintService(db, settings)
    cases = [
        (dict(content_id=cid, regime="gdpr"), "invalid_regime"),
        (dict(content_id=cid, regime="tco", reason="x" * 5001), "reason_too_long"),
        (dict(content_id=allowed, regime="tco"), "not_complainable"),
        (dict(content_id=999999, regime="tco"), "content_not_found"),
    ]
    for kwargs, code in cases:
        with pytest.raises((InvalidInput, Conflict, NotFound)) as exc:
            complaints.lodge("api-key:1", world.orgs["alpha"], **kwargs)
        assert exc.value.code == code
    with pytest.raises(NotFound):
        complaints.lodge("api-key:1", world.orgs["beta"], content_id=cid, regime="tco")  # another organisation's
    assert (_count(db, Appeal), _count(db, Complaint), _count(db, ReviewItem)) == (0, 0, 0)
    complaints.lodge("api-key:1", world.orgs["alpha"], cid, regime="tco")
    with pytest.raises(Conflict) as exc:
        complaints.lodge("api-key:1", world.orgs["alpha"], cid, regime="dsa")
    assert exc.value.code == "complaint_exists"
    assert (_count(db, Appeal), _count(db, Complaint), _count(db, ReviewItem)) == (1, 1, 1)


def test_complaint_reminders_before_the_deadline_and_once_overdue(world, db, settings):
    cid, _ = world.content("post-c4")
    complaints = ComplaintService(db, settings)
    c = complaints.lodge("api-key:1", world.orgs["alpha"], cid, regime="tco")
    with db.session() as s:
        created = s.get(Complaint, c["id"]).created_at
    assert complaints.remind_due(now=created + timedelta(days=10)) == 0
    assert complaints.remind_due(now=created + timedelta(days=11, hours=1)) == 1
    assert complaints.remind_due(now=created + timedelta(days=12)) == 0
    assert complaints.remind_due(now=created + timedelta(days=14, seconds=1)) == 1
    assert complaints.remind_due(now=created + timedelta(days=20)) == 0
    assert [e["complaint"]["id"] for e in _events(db, "complaint.reminder")] == [c["id"]]
    overdue = _events(db, "complaint.overdue")
    assert len(overdue) == 1 and overdue[0]["seconds_left"] < 0 and overdue[0]["complaint"]["overdue"] is True


def test_the_sweep_is_idempotent(world, db, settings):
    world.content("post-s1")
    first = sweep(db, settings)
    second = sweep(db, settings)
    assert first["restrictions"] == 1 and second["restrictions"] == 0
    assert (_count(db, StatementOfReasons), _count(db, PreservedContent), _count(db, UploaderNotice)) == (1, 1, 1)
    assert len(_events(db, "uploader.notice")) == 1


# -- preservation in the decision's transaction -----------------------------------------------------------------------
REMOVE_KNOWN = """
version: 1
default:
  outcome: allow
  reason: Nothing known.
rules:
  - name: remove-known
    when:
      any_match: {bank: alpha-known}
    outcome: remove
    reason: Matches known content.
"""


def _known_image_removal(db, settings):
    from bastion import samples
    from bastion.banks.service import BankService
    from bastion.content import Content
    from bastion.decisions.pipeline import DecisionPipeline
    from bastion.intake.service import IntakeService, Payload, SubmissionMeta
    from bastion.matching.live import LiveMatcher
    from bastion.policy.service import PolicyService
    from bastion.signals import compute_all
    from bastion.storage.models import Organisation

    org_id = AccountService(db).create_organisation("alpha").id
    PolicyService(db).set_policy(org_id, REMOVE_KNOWN)
    with db.session() as s:
        s.get(Organisation, org_id).config = {"classifiers": {"semantic": False}}
    BankService(db, organisation_id=org_id).create_bank("alpha-known")
    known = samples.encode(samples.generate_image(5))
    BankService(db, organisation_id=org_id).add_entry(
        "alpha-known", compute_all(Content.from_bytes(known)), {"category": "propaganda"}
    )
    upload = samples.encode(samples.generate_image(5).resize((400, 300)), quality=70)
    matcher = LiveMatcher(db, settings, refresh_seconds=0)
    try:
        matcher.refresh(force=True)
        intake = IntakeService(db, settings, DecisionPipeline(db, settings, matcher))
        item = intake.submit(org_id, SubmissionMeta(external_id="re-upload"), Payload(data=upload)).item
    finally:
        matcher.stop_refresher()
    return org_id, item, upload


def test_an_automated_removal_is_preserved_with_its_bytes_in_the_decisions_transaction(db, settings):
    org_id, item, upload = _known_image_removal(db, settings)
    assert item["decision"]["outcome"] == "remove"
    with db.session() as s:
        row = s.scalars(select(PreservedContent)).one()  # before any sweep
        assert s.get(ContentBlob, item["id"]) is None  # Bastion's working copy is gone; the sealed one stays
    assert row.has_bytes and upload not in bytes(row.ciphertext)
    got = PreservationService(db, settings).read(
        Accessor("user:p@alpha.example", org_id, frozenset({"preservation"})), row.id, purpose="test"
    )
    assert base64.b64decode(got["package"]["bytes_base64"]) == upload
    assert sweep(db, settings)["restrictions"] == 1  # the statement and notice follow; nothing preserved twice
    assert _count(db, PreservedContent) == 1 and _count(db, StatementOfReasons) == 1


def test_a_broken_preservation_key_never_stops_a_removal(db, settings):
    broken = settings.model_copy(update={"preservation_key": SecretStr("not base64!")})
    org_id, item, _ = _known_image_removal(db, broken)
    assert item["decision"]["outcome"] == "remove"
    assert _count(db, PreservedContent) == 0
    sweep(db, settings)  # the key fixed: the sweep preserves what it still can (record and hashes)
    with db.session() as s:
        row = s.scalars(select(PreservedContent)).one()
    assert row.has_bytes is False


def test_a_removal_on_an_authoritys_order_states_illegal_content_and_the_order(world, db, settings):
    from bastion.storage.models import Authority, Order, OrderTarget

    cid, did = world.content("ordered", automated=False, matches=[])
    authority_org = AccountService(db).create_organisation("pharos").id
    with db.session() as s:
        a = Authority(organisation_id=authority_org, kind="competent_authority", member_state="FR")
        s.add(a)
        s.flush()
        now = utcnow()
        o = Order(
            authority_id=a.id,
            organisation_id=world.orgs["alpha"],
            kind="removal_order",
            reference="FR-77",
            issuer="OCLCTIC",
            member_state="FR",
            legal_basis="Article 3 of Regulation (EU) 2021/784",
            reasons="Recruitment video of a designated organisation",
            issued_at=now,
            received_at=now,
            status="executed",
        )
        s.add(o)
        s.flush()
        s.add(
            OrderTarget(
                order_id=o.id,
                organisation_id=world.orgs["alpha"],
                reference="ordered",
                content_id=cid,
                status="removed",
                decision_id=did,
            )
        )
    sweep(db, settings)
    with db.session() as s:
        st = s.scalars(select(StatementOfReasons)).one().statement
    assert st["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert st["illegal_content_legal_ground"] == "Article 3 of Regulation (EU) 2021/784"
    assert "FR-77" in st["illegal_content_explanation"] and "Recruitment video" in st["illegal_content_explanation"]
    assert st["source_type"] == "SOURCE_TYPE_OTHER_NOTIFICATION" and st["source_identity"] == "OCLCTIC (FR)"
    assert st["automated_detection"] == "No" and st["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert "removal order" in st["decision_facts"] and statements.validate([st]) == {}


def test_the_sweep_leaves_removals_older_than_the_preservation_period_alone(world, db, settings):
    _, old = world.content("ancient")
    with db.session() as s:
        s.get(Decision, old).created_at = utcnow() - timedelta(days=settings.preservation_days + 1)
    world.content("recent")
    assert sweep(db, settings)["restrictions"] == 1  # an upgrade does not notify uploaders of long-past removals
    with db.session() as s:
        assert s.scalars(select(UploaderNotice.decision_id)).all() != [old]
        assert s.scalar(select(func.count()).select_from(UploaderNotice).where(UploaderNotice.decision_id == old)) == 0
