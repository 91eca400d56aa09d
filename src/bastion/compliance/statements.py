"""Statements of reasons (DSA Art. 17) in the fields of the DSA Transparency Database API.

Every restriction (a ``remove`` or ``restrict`` decision) gets one statement, built from the decision, the content
and the organisation's ``compliance`` configuration (:func:`build`), kept in ``statements_of_reasons`` and exported
as that API's batch body, ``{"statements": [...]}`` with at most 100 statements a call (:func:`batches`).

:func:`validate` applies the Transparency Database's published rules (transparency.dsa.ec.europa.eu, "API
Documentation": required and required-if fields, the allowed values of each enumeration, the length limits, the date
formats and bounds, the PUID's characters) and reports every problem of a batch at once, by statement and field, as
the API itself does (``statement_0: {field: [messages]}``), so a batch Bastion exports is one the API accepts.

Bastion's statements are for terrorist content: category ``STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY`` with the
specification ``KEYWORD_TERRORIST_CONTENT``. A removal on an authority's order is on the ground of illegal content
(the order's legal basis); one on the platform's own initiative is on the ground of its terms and conditions (the
policy rule or the reviewer's policy reference), marked illegal too (``incompatible_content_illegal: Yes``) unless
the organisation configures ``compliance.dsa_ground: illegal``, which states the TCO Regulation as the legal ground.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.errors import InvalidInput
from bastion.storage.models import (
    ContentItem,
    Decision,
    Order,
    OrderTarget,
    Organisation,
    ReviewDecision,
    StatementOfReasons,
    as_utc,
)

BATCH_SIZE = 100  # the Transparency Database's multiple endpoint takes at most 100 statements a call

DECISION_VISIBILITIES = (
    "DECISION_VISIBILITY_CONTENT_REMOVED",
    "DECISION_VISIBILITY_CONTENT_DISABLED",
    "DECISION_VISIBILITY_CONTENT_DEMOTED",
    "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
    "DECISION_VISIBILITY_CONTENT_LABELLED",
    "DECISION_VISIBILITY_OTHER",
)
DECISION_MONETARIES = ("DECISION_MONETARY_SUSPENSION", "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER")
DECISION_PROVISIONS = (
    "DECISION_PROVISION_PARTIAL_SUSPENSION",
    "DECISION_PROVISION_TOTAL_SUSPENSION",
    "DECISION_PROVISION_PARTIAL_TERMINATION",
    "DECISION_PROVISION_TOTAL_TERMINATION",
)
DECISION_ACCOUNTS = ("DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED")
ACCOUNT_TYPES = ("ACCOUNT_TYPE_BUSINESS", "ACCOUNT_TYPE_PRIVATE")
DECISION_GROUNDS = ("DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT")
YES_NO = ("Yes", "No")
CONTENT_TYPES = (
    "CONTENT_TYPE_APP",
    "CONTENT_TYPE_AUDIO",
    "CONTENT_TYPE_IMAGE",
    "CONTENT_TYPE_PRODUCT",
    "CONTENT_TYPE_SYNTHETIC_MEDIA",
    "CONTENT_TYPE_TEXT",
    "CONTENT_TYPE_VIDEO",
    "CONTENT_TYPE_OTHER",
)
CATEGORIES = (
    "STATEMENT_CATEGORY_ANIMAL_WELFARE",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR",
    "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT",
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE",
    "STATEMENT_CATEGORY_UNSAFE_AND_ILLEGAL_PRODUCTS",
    "STATEMENT_CATEGORY_VIOLENCE",
)
# The keywords of the categories Bastion's statements use or neighbour; a statement naming another keyword is
# reported (Bastion never writes one), so extend this list when the Transparency Database adds keywords.
KEYWORDS = (
    "KEYWORD_ILLEGAL_ORGANIZATIONS",
    "KEYWORD_RISK_ENVIRONMENTAL_DAMAGE",
    "KEYWORD_RISK_PUBLIC_HEALTH",
    "KEYWORD_TERRORIST_CONTENT",
    "KEYWORD_HATE_SPEECH",
    "KEYWORD_DEFAMATION",
    "KEYWORD_DISCRIMINATION",
    "KEYWORD_COORDINATED_HARM",
    "KEYWORD_GENDER_BASED_VIOLENCE",
    "KEYWORD_HUMAN_EXPLOITATION",
    "KEYWORD_HUMAN_TRAFFICKING",
    "KEYWORD_INCITEMENT_VIOLENCE_HATRED",
    "KEYWORD_OTHER",
)
SOURCE_TYPES = ("SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER", "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY")
AUTOMATED_DECISIONS = ("AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY", "AUTOMATED_DECISION_NOT_AUTOMATED")
EU_COUNTRIES = (
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
)
EEA_COUNTRIES = (*EU_COUNTRIES, "IS", "LI", "NO")

CATEGORY = "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"
KEYWORD = "KEYWORD_TERRORIST_CONTENT"
TCO_LEGAL_GROUND = "Regulation (EU) 2021/784 (TCO), Article 2(7): terrorist content"
_PUID = re.compile(r"^[A-Za-z0-9_-]+$")
_LANGUAGE = re.compile(r"^[A-Z]{2}$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)

# field -> maximum length of the free-text fields
MAX_LENGTHS = {
    "decision_visibility_other": 500,
    "decision_monetary_other": 500,
    "illegal_content_legal_ground": 500,
    "illegal_content_explanation": 2000,
    "incompatible_content_ground": 500,
    "incompatible_content_explanation": 2000,
    "content_type_other": 500,
    "category_specification_other": 500,
    "decision_facts": 5000,
    "source_identity": 500,
    "puid": 500,
    "decision_ground_reference_url": 500,
}
_CONTENT_TYPES = {"image": ["CONTENT_TYPE_IMAGE"], "video": ["CONTENT_TYPE_VIDEO"], "text": ["CONTENT_TYPE_TEXT"]}
_OTHER_CONTENT = {"pdf": "Document (PDF)", "url": "Link"}


# -- building ---------------------------------------------------------------------------------------------------------
def puid_for(decision: Decision) -> str:
    """Unique within the platform and never reused: the content's Bastion id and the decision's version."""
    return f"bastion-{decision.content_id}-v{decision.version}"


def _order_for(session: Session, decision: Decision) -> Order | None:
    return session.scalars(
        select(Order).join(OrderTarget, OrderTarget.order_id == Order.id).where(OrderTarget.decision_id == decision.id)
    ).first()


def _clip(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build(session: Session, item: ContentItem, decision: Decision) -> dict[str, Any] | None:
    """The statement for a restriction, or None when the decision restricts nothing in the EEA (the Transparency
    Database covers the Union; a restriction only elsewhere needs no statement there)."""
    if decision.outcome not in ("remove", "restrict"):
        return None
    config = dict(
        (session.scalar(select(Organisation.config).where(Organisation.id == item.organisation_id)) or {}).get(
            "compliance"
        )
        or {}
    )
    if decision.outcome == "remove":
        visibility, scope = "DECISION_VISIBILITY_CONTENT_REMOVED", list(EEA_COUNTRIES)
    else:
        visibility = "DECISION_VISIBILITY_CONTENT_DISABLED"
        scope = sorted({j for j in (decision.restrict_in or []) if j in EEA_COUNTRIES})
        if not scope:
            return None
    evidence = dict(decision.evidence or {})
    matches = list(evidence.get("matches") or [])
    classified = list(evidence.get("classifier_scores") or []) + list(evidence.get("entities") or [])
    detected = bool(matches or classified or decision.automated)
    review = session.scalars(select(ReviewDecision).where(ReviewDecision.decision_id == decision.id)).first()
    order = _order_for(session, decision)

    st: dict[str, Any] = {"decision_visibility": [visibility]}
    if order is not None or config.get("dsa_ground") == "illegal":
        st["decision_ground"] = "DECISION_GROUND_ILLEGAL_CONTENT"
        st["illegal_content_legal_ground"] = _clip(order.legal_basis if order else TCO_LEGAL_GROUND, 500)
        st["illegal_content_explanation"] = _clip(
            (
                f"Removal order {order.reference} of {order.issuer} ({order.member_state}): {order.reasons}"
                if order
                else decision.reason
            )
            or "Terrorist content.",
            2000,
        )
    else:
        st["decision_ground"] = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        ground = (
            (review.policy_reference if review and review.policy_reference else None)
            or (f"policy rule {decision.rule}" if decision.rule else None)
            or config.get("terms_reference")
            or "Terms of service: terrorist and violent extremist content"
        )
        st["incompatible_content_ground"] = _clip(ground, 500)
        st["incompatible_content_explanation"] = _clip(
            decision.reason or "Terrorist or violent extremist content.", 2000
        )
        st["incompatible_content_illegal"] = "Yes"
    if config.get("terms_url"):
        st["decision_ground_reference_url"] = str(config["terms_url"])[:500]
    if item.content_type in _CONTENT_TYPES:
        st["content_type"] = list(_CONTENT_TYPES[item.content_type])
    else:
        st["content_type"] = ["CONTENT_TYPE_OTHER"]
        st["content_type_other"] = _OTHER_CONTENT.get(item.content_type or "", "Other content")
    st["category"] = CATEGORY
    st["category_specification"] = [KEYWORD]
    st["territorial_scope"] = scope
    language = (item.language or "")[:2].upper()
    if _LANGUAGE.match(language):
        st["content_language"] = language
    st["content_date"] = max(as_utc(item.created_at).date(), date(2000, 1, 1)).isoformat()
    st["application_date"] = as_utc(decision.created_at).date().isoformat()
    st["decision_facts"] = _clip(_facts(decision, matches, classified, review, order), 5000)
    if order is not None:
        st["source_type"] = "SOURCE_TYPE_OTHER_NOTIFICATION"
        st["source_identity"] = _clip(f"{order.issuer} ({order.member_state})", 500)
    else:
        st["source_type"] = "SOURCE_VOLUNTARY"
    st["automated_detection"] = "Yes" if detected else "No"
    if decision.automated:
        st["automated_decision"] = "AUTOMATED_DECISION_FULLY"
    else:
        st["automated_decision"] = "AUTOMATED_DECISION_PARTIALLY" if detected else "AUTOMATED_DECISION_NOT_AUTOMATED"
    st["puid"] = puid_for(decision)
    return st


def _facts(
    decision: Decision, matches: list[Any], classified: list[Any], review: ReviewDecision | None, order: Order | None
) -> str:
    """Facts and circumstances, without personal data (the Transparency Database is public)."""
    parts = []
    if order is not None:
        parts.append(
            f"A removal order ({order.kind.replace('_', ' ')}) from a competent authority of "
            f"{order.member_state} named this content."
        )
    if matches:
        banks = sorted({str(m.get("bank")) for m in matches if isinstance(m, dict)})
        parts.append(
            f"The content matched {len(matches)} hash(es) of known terrorist content (list(s): {', '.join(banks)})."
        )
    if classified and not matches:
        parts.append("Automated classifiers scored it.")
    if review is not None:
        parts.append(f"A trained reviewer assessed it as violating ({review.category or 'terrorist content'}).")
    elif not decision.automated and order is None:
        parts.append("A person decided on it.")
    parts.append(
        {
            "remove": "The content was removed.",
            "restrict": "Access to the content was disabled in the member states listed.",
        }[decision.outcome]
    )
    return " ".join(parts)


def record(session: Session, item: ContentItem, decision: Decision) -> StatementOfReasons | None:
    """Build, validate and store the statement for ``decision`` in ``session`` (once; None when none is owed)."""
    existing = session.scalars(select(StatementOfReasons).where(StatementOfReasons.decision_id == decision.id)).first()
    if existing is not None:
        return existing
    st = build(session, item, decision)
    if st is None:
        return None
    problems = validate_statement(st)
    if problems:  # a bug in build(), never the caller's input: fail loudly, store nothing
        raise InvalidInput(
            f"the statement for decision {decision.id} breaks the Transparency Database's rules",
            code="invalid_statement",
            errors={"statement_0": problems},
        )
    row = StatementOfReasons(
        organisation_id=item.organisation_id,
        content_id=item.id,
        decision_id=decision.id,
        puid=st["puid"],
        statement=st,
        created_at=decision.created_at,
    )
    session.add(row)
    session.flush()
    return row


# -- validating -------------------------------------------------------------------------------------------------------
def _date(value: Any, low: str, high: str = "2038-01-01") -> str | None:
    """None when ``value`` is a YYYY-MM-DD date within [low, high], else the problem."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return "does not match the format YYYY-MM-DD"
    try:
        d = date.fromisoformat(value)
    except ValueError:
        return "is not a real date"
    if not (date.fromisoformat(low) <= d <= date.fromisoformat(high)):
        return f"must be between {low} and {high}"
    return None


def validate_statement(st: Any) -> dict[str, list[str]]:
    """Every rule the statement breaks, by field (empty when it is valid)."""
    errors: dict[str, list[str]] = {}

    def err(field: str, message: str) -> None:
        errors.setdefault(field, []).append(f"The {field.replace('_', ' ')} {message}.")

    if not isinstance(st, dict):
        return {"statement": ["A statement must be a JSON object."]}

    def present(field: str) -> bool:
        v = st.get(field)
        return v is not None and v != "" and v != []

    def one_of(field: str, allowed: tuple[str, ...], *, required: bool = False) -> None:
        if not present(field):
            if required:
                err(field, "field is required")
            return
        if st[field] not in allowed:
            err(field, f"value {st[field]!r} is invalid (allowed: {', '.join(allowed)})")

    def many_of(field: str, allowed: tuple[str, ...], *, required: bool = False) -> None:
        if not present(field):
            if required:
                err(field, "field is required")
            return
        v = st[field]
        if not isinstance(v, list):
            err(field, "must be an array")
            return
        bad = [x for x in v if x not in allowed]
        if bad:
            err(field, f"value(s) {', '.join(map(repr, bad))} are invalid (allowed: {', '.join(allowed)})")

    def text(field: str, *, required: bool = False) -> None:
        if not present(field):
            if required:
                err(field, "field is required")
            return
        v = st[field]
        if not isinstance(v, str):
            err(field, "must be a string")
        elif len(v) > MAX_LENGTHS[field]:
            err(field, f"may not be greater than {MAX_LENGTHS[field]} characters (it has {len(v)})")

    # what was restricted: at least one of the four decision fields
    decisions = ("decision_visibility", "decision_monetary", "decision_provision", "decision_account")
    if not any(present(f) for f in decisions):
        err(
            "decision_visibility",
            "field is required when none of decision monetary / decision provision / decision account are present",
        )
    many_of("decision_visibility", DECISION_VISIBILITIES)
    visibility = st.get("decision_visibility") if isinstance(st.get("decision_visibility"), list) else []
    text("decision_visibility_other", required="DECISION_VISIBILITY_OTHER" in visibility)
    one_of("decision_monetary", DECISION_MONETARIES)
    text("decision_monetary_other", required=st.get("decision_monetary") == "DECISION_MONETARY_OTHER")
    one_of("decision_provision", DECISION_PROVISIONS)
    one_of("decision_account", DECISION_ACCOUNTS)
    one_of("account_type", ACCOUNT_TYPES)

    one_of("decision_ground", DECISION_GROUNDS, required=True)
    illegal = st.get("decision_ground") == "DECISION_GROUND_ILLEGAL_CONTENT"
    incompatible = st.get("decision_ground") == "DECISION_GROUND_INCOMPATIBLE_CONTENT"
    text("illegal_content_legal_ground", required=illegal)
    text("illegal_content_explanation", required=illegal)
    text("incompatible_content_ground", required=incompatible)
    text("incompatible_content_explanation", required=incompatible)
    one_of("incompatible_content_illegal", YES_NO)
    if present("decision_ground_reference_url"):
        text("decision_ground_reference_url")
        if isinstance(st["decision_ground_reference_url"], str) and not _URL.match(st["decision_ground_reference_url"]):
            err("decision_ground_reference_url", "must be a valid URL")

    many_of("content_type", CONTENT_TYPES, required=True)
    types = st.get("content_type") if isinstance(st.get("content_type"), list) else []
    text("content_type_other", required="CONTENT_TYPE_OTHER" in types)

    one_of("category", CATEGORIES, required=True)
    many_of("category_addition", CATEGORIES)
    many_of("category_specification", KEYWORDS)
    text("category_specification_other")

    many_of("territorial_scope", EEA_COUNTRIES, required=True)
    if present("content_language") and (
        not isinstance(st["content_language"], str) or not _LANGUAGE.match(st["content_language"])
    ):
        err("content_language", "must be an upper-case ISO 639-1 code (e.g. EN)")

    for field, low in (("content_date", "2000-01-01"), ("application_date", "2020-01-01")):
        if not present(field):
            err(field, "field is required")
        elif (problem := _date(st[field], low)) is not None:
            err(field, problem)
    for field in (
        "end_date_account_restriction",
        "end_date_monetary_restriction",
        "end_date_service_restriction",
        "end_date_visibility_restriction",
    ):
        if present(field):
            problem = _date(st[field], "2020-01-01")
            if problem is None and isinstance(st.get("application_date"), str) and st[field] < st["application_date"]:
                problem = "must be a date after or equal to the application date"
            if problem is not None:
                err(field, problem)

    text("decision_facts", required=True)
    one_of("source_type", SOURCE_TYPES, required=True)
    text("source_identity")
    one_of("automated_detection", YES_NO, required=True)
    one_of("automated_decision", AUTOMATED_DECISIONS, required=True)
    text("puid", required=True)
    if isinstance(st.get("puid"), str) and st["puid"] and not _PUID.match(st["puid"]):
        err("puid", "may contain only letters, digits, '-' and '_'")
    return errors


def validate(statements: Any) -> dict[str, dict[str, list[str]]]:
    """Every problem of a batch body's ``statements``, keyed ``statement_<index>`` as the Transparency Database
    answers (empty when the batch is valid). The batch itself: a list of 1 to 100 statements with unique PUIDs."""
    if not isinstance(statements, list) or not statements:
        return {"batch": {"statements": ["The statements field must be a non-empty array."]}}
    out: dict[str, dict[str, list[str]]] = {}
    if len(statements) > BATCH_SIZE:
        out["batch"] = {"statements": [f"A batch holds at most {BATCH_SIZE} statements (it has {len(statements)})."]}
    seen: dict[str, int] = {}
    for i, st in enumerate(statements):
        problems = validate_statement(st)
        puid = st.get("puid") if isinstance(st, dict) else None
        if isinstance(puid, str) and puid:
            if puid in seen:
                problems.setdefault("puid", []).append(
                    f"The puid is not unique within this batch (statement_{seen[puid]} has it too)."
                )
            seen.setdefault(puid, i)
        if problems:
            out[f"statement_{i}"] = problems
    return out


def check(statements: Any) -> None:
    """Raise InvalidInput ``invalid_statements`` (with every problem) unless the batch is valid."""
    problems = validate(statements)
    if problems:
        n = sum(len(v) for v in problems.values())
        raise InvalidInput(
            f"{n} field(s) break the DSA Transparency Database's rules", code="invalid_statements", errors=problems
        )


# -- exporting --------------------------------------------------------------------------------------------------------
def query(
    session: Session,
    organisation_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int = 0,
    limit: int = BATCH_SIZE,
) -> list[StatementOfReasons]:
    q = (
        select(StatementOfReasons)
        .where(StatementOfReasons.organisation_id == organisation_id, StatementOfReasons.id > after_id)
        .order_by(StatementOfReasons.id)
        .limit(limit)
    )
    if since is not None:
        q = q.where(StatementOfReasons.created_at >= since)
    if until is not None:
        q = q.where(StatementOfReasons.created_at < until)
    return list(session.scalars(q))


def batches(statements: Iterable[dict[str, Any]], size: int = BATCH_SIZE) -> Iterator[dict[str, Any]]:
    """The API's batch bodies: ``{"statements": [...]}`` of at most ``size`` (100) each."""
    chunk: list[dict[str, Any]] = []
    for st in statements:
        chunk.append(st)
        if len(chunk) == size:
            yield {"statements": chunk}
            chunk = []
    if chunk:
        yield {"statements": chunk}


__all__ = [
    "BATCH_SIZE",
    "CATEGORY",
    "KEYWORD",
    "batches",
    "build",
    "check",
    "puid_for",
    "query",
    "record",
    "validate",
    "validate_statement",
]
