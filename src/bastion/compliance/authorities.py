"""Authorities: who may send a platform removal orders and referrals, and who receives threat-to-life escalations.

An authority is an organisation of its own (so its people sign in to the console, role ``authority``, and its API
keys carry the ``authority`` scope) with one :class:`~bastion.storage.models.Authority` row saying what it is:

- ``competent_authority``: a competent authority under Regulation (EU) 2021/784 (TCO); its removal orders bind;
- ``referral_unit``: a national internet referral unit (the UK's CTIRU, France's OFAC/PHAROS); it sends referrals
  (non-binding) unless it is also designated competent;
- ``law_enforcement``: the contact that threat-to-life escalations go to, per member state; ``fallback`` marks the
  one used when the jurisdiction is unclear (Europol, member state ``EU``).

An authority addresses a platform only once that platform accepted it (:meth:`AuthorityService.accept`, done by
the operator or the platform's admins): a multi-tenant instance never lets one platform's authorities reach
another platform's content, and an authority asking about a platform that did not accept it gets 404.

Signed files: an authority that cannot call an API registers an Ed25519 public key; a file it drops carries the
order and a signature over the order's canonical JSON (:func:`canonical_json`), checked by :func:`verify_envelope`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion import audit
from bastion.accounts.service import AccountService, normalise_email
from bastion.errors import Conflict, Forbidden, InvalidInput, NotFound
from bastion.storage.db import Database
from bastion.storage.models import Authority, AuthorityPlatform, Organisation, utcnow

KINDS = ("competent_authority", "referral_unit", "law_enforcement")
ORDERING_KINDS = ("competent_authority", "referral_unit")  # law-enforcement contacts receive, they do not order


@dataclass(frozen=True)
class AuthorityInfo:
    id: int
    organisation_id: int
    name: str
    kind: str
    member_state: str
    contact_email: str | None
    has_public_key: bool
    fallback: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["created_at"] = self.created_at.isoformat()
        return out


def _info(a: Authority, name: str) -> AuthorityInfo:
    return AuthorityInfo(
        a.id,
        a.organisation_id,
        name,
        a.kind,
        a.member_state,
        a.contact_email,
        bool(a.public_key),
        bool(a.fallback),
        a.created_at,
    )


def validate_member_state(raw: str) -> str:
    from bastion.intake.service import validate_jurisdiction

    code = validate_jurisdiction(str(raw or ""))
    if len(code) != 2:
        raise InvalidInput(f"a member state is a two-letter code (or EU), not {raw!r}", code="invalid_jurisdiction")
    return code


def parse_public_key(text: str) -> str:
    """``text`` (base64 of the raw 32-byte Ed25519 public key) checked and normalised; InvalidInput
    ``invalid_public_key``."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError, AttributeError):
        raise InvalidInput(
            "a public key is the base64 of a raw 32-byte Ed25519 key", code="invalid_public_key"
        ) from None
    return base64.b64encode(raw).decode("ascii")


def canonical_json(obj: Any) -> bytes:
    """The bytes a signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def new_signing_key() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private, public), each the base64 of its raw 32 bytes (for an authority's tools
    and for tests; Bastion stores only the public half)."""
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def sign_envelope(private_key_b64: str, authority: str, order: dict[str, Any]) -> dict[str, Any]:
    """The file an authority drops: ``{"authority", "order", "signature"}`` signed with its private key."""
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))
    signature = key.sign(canonical_json(order))
    return {"authority": authority, "order": order, "signature": base64.b64encode(signature).decode("ascii")}


def verify_envelope(public_key_b64: str | None, envelope: dict[str, Any]) -> None:
    """Raise Forbidden ``invalid_signature`` unless ``envelope['signature']`` signs ``envelope['order']``."""
    if not public_key_b64:
        raise Forbidden(
            "this authority has registered no signing key; it cannot send signed files", code="no_signing_key"
        )
    try:
        signature = base64.b64decode(str(envelope.get("signature") or ""), validate=True)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        key.verify(signature, canonical_json(envelope.get("order")))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Forbidden(
            "the file's signature does not match the authority's registered key", code="invalid_signature"
        ) from None


def authority_of(s: Session, organisation_id: int) -> Authority | None:
    return s.scalar(select(Authority).where(Authority.organisation_id == organisation_id))


def accepts(s: Session, authority_id: int, platform_id: int) -> bool:
    return s.get(AuthorityPlatform, (authority_id, platform_id)) is not None


def law_enforcement_contact(s: Session, jurisdictions: list[str]) -> Authority | None:
    """The law-enforcement contact for the first of ``jurisdictions`` that has one, else the fallback (Europol)."""
    rows = s.scalars(select(Authority).where(Authority.kind == "law_enforcement").order_by(Authority.id)).all()
    by_state = {}
    for a in rows:
        by_state.setdefault(a.member_state, a)
    for j in jurisdictions:
        if j in by_state:
            return by_state[j]
    return next((a for a in rows if a.fallback), None)


class AuthorityService:
    """Create authorities, record which platforms accept them; every change audited as ``actor``."""

    def __init__(self, db: Database, actor: str = "cli") -> None:
        self.db = db
        self.actor = actor

    def create(
        self,
        name: str,
        kind: str,
        member_state: str,
        *,
        contact_email: str | None = None,
        public_key: str | None = None,
        fallback: bool = False,
    ) -> AuthorityInfo:
        """A new authority organisation (Conflict when the name is taken)."""
        if kind not in KINDS:
            raise InvalidInput(f"an authority's kind is one of {', '.join(KINDS)}", code="invalid_authority_kind")
        state = validate_member_state(member_state)
        email = normalise_email(contact_email) if contact_email else None
        key = parse_public_key(public_key) if public_key else None
        if fallback and kind != "law_enforcement":
            raise InvalidInput(
                "only a law-enforcement contact is the fallback for escalations", code="invalid_fallback"
            )
        org = AccountService(self.db, self.actor).create_organisation(name)
        try:
            with self.db.session() as s:
                a = Authority(
                    organisation_id=org.id,
                    kind=kind,
                    member_state=state,
                    contact_email=email,
                    public_key=key,
                    fallback=fallback,
                    created_at=utcnow(),
                )
                s.add(a)
                s.flush()
                audit.append(
                    s,
                    self.actor,
                    "authority_created",
                    f"authority:{a.id}",
                    {
                        "name": org.name,
                        "kind": kind,
                        "member_state": state,
                        "contact_email": email,
                        "signing_key": bool(key),
                        "fallback": fallback,
                    },
                    org.id,
                )
                return _info(a, org.name)
        except IntegrityError as exc:  # pragma: no cover - the organisation was just created
            raise Conflict(f"authority {name!r} already exists") from exc

    def _authority(self, s: Session, ref: str | int) -> tuple[Authority, str]:
        org = AccountService._org(s, ref)
        a = authority_of(s, org.id)
        if a is None:
            raise NotFound(f"{org.name!r} is not an authority", code="authority_not_found")
        return a, org.name

    def get(self, ref: str | int) -> AuthorityInfo:
        with self.db.session() as s:
            a, name = self._authority(s, ref)
            return _info(a, name)

    def for_organisation(self, organisation_id: int) -> AuthorityInfo | None:
        with self.db.session() as s:
            a = authority_of(s, organisation_id)
            org = s.get(Organisation, organisation_id)
            return _info(a, org.name) if a is not None and org is not None else None

    def list(self) -> list[AuthorityInfo]:
        with self.db.session() as s:
            rows = s.execute(
                select(Authority, Organisation.name)
                .join(Organisation, Organisation.id == Authority.organisation_id)
                .order_by(Authority.id)
            ).all()
            return [_info(a, n) for a, n in rows]

    def set_public_key(self, ref: str | int, public_key: str | None) -> AuthorityInfo:
        key = parse_public_key(public_key) if public_key else None
        with self.db.session() as s:
            a, name = self._authority(s, ref)
            a.public_key = key
            audit.append(
                s, self.actor, "authority_key_set", f"authority:{a.id}", {"signing_key": bool(key)}, a.organisation_id
            )
            return _info(a, name)

    def accept(self, authority: str | int, platform: str | int) -> None:
        """``platform`` accepts orders and referrals from ``authority`` (idempotent)."""
        with self.db.session() as s:
            a, name = self._authority(s, authority)
            if a.kind not in ORDERING_KINDS:
                raise InvalidInput("a law-enforcement contact sends no orders", code="invalid_authority_kind")
            org = AccountService._org(s, platform)
            if authority_of(s, org.id) is not None:
                raise InvalidInput("an authority is not a platform", code="not_a_platform")
            if not accepts(s, a.id, org.id):
                s.add(AuthorityPlatform(authority_id=a.id, organisation_id=org.id, created_at=utcnow()))
                s.flush()
                audit.append(s, self.actor, "authority_accepted", f"authority:{a.id}", {"authority": name}, org.id)

    def revoke_acceptance(self, authority: str | int, platform: str | int) -> None:
        with self.db.session() as s:
            a, name = self._authority(s, authority)
            org = AccountService._org(s, platform)
            link = s.get(AuthorityPlatform, (a.id, org.id))
            if link is None:
                raise NotFound(f"{org.name!r} does not accept {name!r}", code="not_accepted")
            s.delete(link)
            audit.append(s, self.actor, "authority_unaccepted", f"authority:{a.id}", {"authority": name}, org.id)

    def platforms(self, authority: str | int) -> list[str]:
        with self.db.session() as s:
            a, _ = self._authority(s, authority)
            return list(
                s.scalars(
                    select(Organisation.name)
                    .join(AuthorityPlatform, AuthorityPlatform.organisation_id == Organisation.id)
                    .where(AuthorityPlatform.authority_id == a.id)
                    .order_by(Organisation.name)
                )
            )
