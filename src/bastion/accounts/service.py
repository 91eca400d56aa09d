"""AccountService: organisations, their users (identities with a role) and API keys (created, listed, revoked,
authenticated).

A key looks like ``bst_<prefix>_<secret>``. The prefix (8 characters) is public: it is stored in clear, shown in
listings and used to find the key's row. The secret (32 random bytes, base64url) is shown once, when the key is
created, and only its SHA-256 is stored.

Why a plain SHA-256 and not a password hash (bcrypt, argon2)? Password hashes are deliberately slow because
passwords are low-entropy and guessable; these secrets are 256 bits from ``secrets.token_urlsafe``, so nobody can
brute-force a leaked hash, and a fast hash keeps authentication on every API request cheap. The comparison uses
``hmac.compare_digest`` so timing tells an attacker nothing about how much of a hash matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion import audit
from bastion.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from bastion.storage.db import Database
from bastion.storage.models import ApiKey, Organisation, User, UserSession, utcnow

SCOPES = ("submit", "review", "curate", "policy", "admin", "metrics", "authority")  # authority: orders (issue 6)
SCOPES = (*SCOPES, "preservation")  # preservation: read and extend preserved removed content (TCO Art. 6)
# A user's role in their organisation (the review console's sign-in attaches to these identities). Later issues add
# the authority and forum roles here.
ROLES = ("reviewer", "lead", "admin", "authority")  # authority: an authority's people see their orders
EMAIL_MAX = 320
# A pragmatic address check (not full RFC 5322): a dot-atom local part of at most 64 characters, then a domain of
# two or more DNS labels (letters, digits, inner hyphens; punycode for international names).
_EMAIL_RE = re.compile(
    r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
)
KEY_PREFIX = "bst"
PREFIX_LEN = 8
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$")
_KEY_RE = re.compile(r"^bst_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{20,100})$")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class OrganisationInfo:
    id: int
    name: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never its secret or its hash."""

    id: int
    organisation_id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("created_at", "expires_at", "revoked_at", "last_used_at"):
            out[k] = out[k].isoformat() if out[k] else None
        return out


@dataclass(frozen=True)
class UserInfo:
    """A person in an organisation, with one role. No credentials yet: sign-in comes with the review console."""

    id: int
    organisation_id: int
    email: str
    role: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["created_at"] = self.created_at.isoformat()
        return out


@dataclass(frozen=True)
class Principal:
    """Who is calling: an organisation, through one of its keys, with these scopes."""

    organisation_id: int
    organisation_name: str
    key_id: int
    scopes: frozenset[str]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def revoke_user_sessions(s: Session, user_id: int) -> int:
    """Revoke every live console session of a user, in ``s``'s transaction; how many were revoked."""
    result = s.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)


def _org_info(org: Organisation) -> OrganisationInfo:
    return OrganisationInfo(id=org.id, name=org.name, created_at=org.created_at)  # type: ignore[arg-type]


def _key_info(key: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=key.id,
        organisation_id=key.organisation_id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


def _user_info(user: User) -> UserInfo:
    return UserInfo(
        id=user.id,
        organisation_id=user.organisation_id,
        email=user.email,
        role=user.role,
        created_at=user.created_at,
    )


def normalise_email(email: str) -> str:
    """``email`` stripped, its domain lower-cased (the local part keeps its case); InvalidInput ``invalid_email``."""
    if not isinstance(email, str):
        raise InvalidInput("an email address is text", code="invalid_email")
    email = email.strip()
    local, at, domain = email.rpartition("@")
    clean = f"{local}{at}{domain.lower()}"
    if len(clean) > EMAIL_MAX or not _EMAIL_RE.fullmatch(clean):
        raise InvalidInput(f"not a valid email address: {email[:100]!r}", code="invalid_email")
    return clean


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {str(role)[:50]!r}; allowed: {', '.join(ROLES)}", code="invalid_role")
    return role


def validate_scopes(scopes: list[str] | tuple[str, ...]) -> list[str]:
    if not scopes:
        raise InvalidInput("an API key needs at least one scope", code="invalid_scope", allowed=list(SCOPES))
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope(s) {', '.join(unknown)}; allowed: {', '.join(SCOPES)}", code="invalid_scope")
    return [s for s in SCOPES if s in scopes]


class AccountService:
    """The one writer of organisations and API keys; each change is recorded in the audit log (as ``actor``)."""

    def __init__(self, db: Database, actor: str = "cli") -> None:
        self.db = db
        self.actor = actor

    # organisations

    def create_organisation(self, name: str) -> OrganisationInfo:
        name = name.strip()
        if not _NAME_RE.match(name):
            raise InvalidInput(
                "organisation names are 1-100 letters, digits, spaces, '_', '.' or '-'", code="invalid_name"
            )
        try:
            with self.db.session() as s:
                if s.scalar(select(Organisation.id).where(Organisation.name == name)) is not None:
                    raise Conflict(f"organisation {name!r} already exists")
                org = Organisation(name=name)
                s.add(org)
                s.flush()
                audit.append(s, self.actor, "organisation_created", f"organisation:{org.id}", {"name": name}, org.id)
                return _org_info(org)
        except IntegrityError as exc:  # a concurrent create of the same name
            raise Conflict(f"organisation {name!r} already exists") from exc

    @staticmethod
    def _org(s: Session, ref: str | int) -> Organisation:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            org = s.get(Organisation, int(ref))
        else:
            org = s.scalar(select(Organisation).where(Organisation.name == ref))
        if org is None:
            raise NotFound(f"no organisation {ref!r}")
        return org

    def get_organisation(self, ref: str | int) -> OrganisationInfo:
        with self.db.session() as s:
            return _org_info(self._org(s, ref))

    def list_organisations(self) -> list[OrganisationInfo]:
        with self.db.session() as s:
            return [_org_info(o) for o in s.scalars(select(Organisation).order_by(Organisation.id))]

    # keys

    def create_api_key(
        self, org: str | int, name: str, scopes: list[str] | tuple[str, ...], expires_in: timedelta | None = None
    ) -> tuple[ApiKeyInfo, str]:
        """Create a key; returns its record and the plaintext ``bst_<prefix>_<secret>``, which is never stored."""
        name = name.strip()
        if not _NAME_RE.match(name):
            raise InvalidInput("key names are 1-100 letters, digits, spaces, '_', '.' or '-'", code="invalid_name")
        clean_scopes = validate_scopes(scopes)
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidInput("a key's lifetime must be positive", code="invalid_expiry")
        now = utcnow()
        for _ in range(5):  # a prefix collision (36^8 space) is vanishingly rare; retry rather than fail
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LEN))
            secret = secrets.token_urlsafe(32)
            try:
                with self.db.session() as s:
                    o = self._org(s, org)
                    key = ApiKey(
                        organisation_id=o.id,
                        name=name,
                        prefix=prefix,
                        secret_hash=hash_secret(secret),
                        scopes=clean_scopes,
                        created_at=now,
                        expires_at=now + expires_in if expires_in is not None else None,
                    )
                    s.add(key)
                    s.flush()
                    audit.append(
                        s,
                        self.actor,
                        "api_key_created",
                        f"api-key:{key.id}",
                        {
                            "name": name,
                            "prefix": prefix,
                            "scopes": clean_scopes,
                            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                        },
                        o.id,
                    )
                    return _key_info(key), f"{KEY_PREFIX}_{prefix}_{secret}"
            except IntegrityError:
                continue
        raise Conflict("could not allocate a unique key prefix; try again")  # pragma: no cover

    def list_keys(self, org: str | int) -> list[ApiKeyInfo]:
        with self.db.session() as s:
            o = self._org(s, org)
            keys = s.scalars(select(ApiKey).where(ApiKey.organisation_id == o.id).order_by(ApiKey.id))
            return [_key_info(k) for k in keys]

    def revoke_key(self, key_id: int, *, organisation_id: int | None = None) -> ApiKeyInfo:
        """Revoke a key (idempotent). With ``organisation_id``, another organisation's key is reported not found."""
        with self.db.session() as s:
            key = s.get(ApiKey, key_id)
            if key is None or (organisation_id is not None and key.organisation_id != organisation_id):
                raise NotFound(f"no API key {key_id}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                audit.append(
                    s, self.actor, "api_key_revoked", f"api-key:{key.id}", {"prefix": key.prefix}, key.organisation_id
                )
            s.flush()
            return _key_info(key)

    def authenticate(self, plaintext: str) -> Principal:
        """The principal behind a key, or Unauthenticated with code invalid_api_key / api_key_revoked / _expired."""
        m = _KEY_RE.match(plaintext.strip()) if plaintext else None
        if m is None:
            raise Unauthenticated("not a Bastion API key", code="invalid_api_key")
        prefix, secret = m.groups()
        with self.db.session() as s:
            row = s.execute(
                select(ApiKey, Organisation.name)
                .join(Organisation, Organisation.id == ApiKey.organisation_id)
                .where(ApiKey.prefix == prefix)
            ).first()
            key, org_name = (row[0], row[1]) if row is not None else (None, "")
            # Compare against a dummy hash when the prefix is unknown, so both paths do the same work.
            stored = key.secret_hash if key is not None else hash_secret("")
            if not hmac.compare_digest(stored, hash_secret(secret)) or key is None:
                raise Unauthenticated("invalid API key", code="invalid_api_key")
            now = utcnow()
            if key.revoked_at is not None:
                raise Unauthenticated("this API key has been revoked", code="api_key_revoked")
            expires = key.expires_at
            if expires is not None and expires <= now:
                raise Unauthenticated("this API key has expired", code="api_key_expired")
            last = key.last_used_at
            if last is None or now - last > LAST_USED_RESOLUTION:  # not a write on every request
                key.last_used_at = now
            return Principal(
                organisation_id=key.organisation_id,
                organisation_name=org_name,
                key_id=key.id,
                scopes=frozenset(key.scopes),
            )

    # users

    @staticmethod
    def _user(s: Session, org: Organisation, user_id: int) -> User:
        user = s.get(User, user_id) if isinstance(user_id, int) and 0 < user_id < 2**63 else None
        if user is None or user.organisation_id != org.id:  # another organisation's user does not exist here
            raise NotFound(f"no user {user_id} in organisation {org.name!r}", code="user_not_found")
        return user

    @staticmethod
    def _lock_org(s: Session, org: Organisation) -> None:
        """Serialise role changes within an organisation (PostgreSQL; SQLite's writer lock does it there)."""
        s.execute(select(Organisation.id).where(Organisation.id == org.id).with_for_update())

    @staticmethod
    def _keep_an_admin(s: Session, user: User) -> None:
        """Refuse to demote or delete the organisation's last admin user (Conflict ``last_admin``)."""
        if user.role != "admin":
            return
        admins = s.scalar(
            select(func.count(User.id)).where(User.organisation_id == user.organisation_id, User.role == "admin")
        )
        if (admins or 0) <= 1:
            raise Conflict(
                f"user {user.id} is the organisation's last admin; make another user admin first", code="last_admin"
            )

    def create_user(self, org: str | int, email: str, role: str = "reviewer") -> UserInfo:
        """Add a person to an organisation with one of :data:`ROLES`; an address already there (ignoring case) is a
        Conflict ``user_exists``."""
        clean = normalise_email(email)
        validate_role(role)
        try:
            with self.db.session() as s:
                o = self._org(s, org)
                taken = s.scalar(
                    select(User.id).where(User.organisation_id == o.id, func.lower(User.email) == clean.lower())
                )
                if taken is not None:
                    raise Conflict(f"{clean} is already a user of {o.name!r} (user {taken})", code="user_exists")
                user = User(organisation_id=o.id, email=clean, role=role, created_at=utcnow())
                s.add(user)
                s.flush()
                audit.append(s, self.actor, "user_created", f"user:{user.id}", {"email": clean, "role": role}, o.id)
                return _user_info(user)
        except IntegrityError as exc:  # a concurrent create of the same address
            raise Conflict(f"{clean} is already a user of this organisation", code="user_exists") from exc

    def list_users(self, org: str | int) -> list[UserInfo]:
        with self.db.session() as s:
            o = self._org(s, org)
            return [
                _user_info(u) for u in s.scalars(select(User).where(User.organisation_id == o.id).order_by(User.id))
            ]

    def get_user(self, org: str | int, user_id: int) -> UserInfo:
        """One of ``org``'s users; another organisation's user is NotFound ``user_not_found``."""
        with self.db.session() as s:
            return _user_info(self._user(s, self._org(s, org), user_id))

    def set_role(self, org: str | int, user_id: int, role: str) -> UserInfo:
        """Change a user's role (no change, no audit record); the last admin cannot be demoted."""
        validate_role(role)
        with self.db.session() as s:
            o = self._org(s, org)
            self._lock_org(s, o)
            user = self._user(s, o, user_id)
            if user.role != role:
                if role != "admin":
                    self._keep_an_admin(s, user)
                previous, user.role = user.role, role
                s.flush()
                audit.append(
                    s,
                    self.actor,
                    "user_role_changed",
                    f"user:{user.id}",
                    {"email": user.email, "from": previous, "to": role},
                    o.id,
                )
            return _user_info(user)

    def delete_user(self, org: str | int, user_id: int) -> UserInfo:
        """Remove a user from the organisation (the audit log keeps who they were); not the last admin."""
        with self.db.session() as s:
            o = self._org(s, org)
            self._lock_org(s, o)
            user = self._user(s, o, user_id)
            self._keep_an_admin(s, user)
            info = _user_info(user)
            revoke_user_sessions(s, user.id)
            s.delete(user)
            s.flush()
            audit.append(
                s, self.actor, "user_deleted", f"user:{info.id}", {"email": info.email, "role": info.role}, o.id
            )
            return info

    def find_user(self, org: str | int, email: str) -> UserInfo:
        """``org``'s user with this address (ignoring case), or NotFound ``user_not_found``."""
        clean = normalise_email(email)
        with self.db.session() as s:
            o = self._org(s, org)
            user = s.scalar(select(User).where(User.organisation_id == o.id, func.lower(User.email) == clean.lower()))
            if user is None:
                raise NotFound(f"no user {clean} in organisation {o.name!r}", code="user_not_found")
            return _user_info(user)

    def set_password(self, org: str | int, user_id: int, password: str) -> UserInfo:
        """Set a user's console password (argon2id; InvalidInput ``weak_password`` under 12 characters) and sign
        out every session they have. Audited as ``password_set`` (never with the password or its hash)."""
        from bastion.accounts.passwords import hash_password

        hashed = hash_password(password)  # validate and hash before taking any lock: it is deliberately slow
        with self.db.session() as s:
            o = self._org(s, org)
            user = self._user(s, o, user_id)
            user.password_hash = hashed
            revoked = revoke_user_sessions(s, user.id)
            s.flush()
            audit.append(
                s,
                self.actor,
                "password_set",
                f"user:{user.id}",
                {"email": user.email, "sessions_revoked": revoked},
                o.id,
            )
            return _user_info(user)

    def set_disabled(self, org: str | int, user_id: int, disabled: bool) -> UserInfo:
        """Disable a user (they cannot sign in; their sessions end at once) or enable them again. The last enabled
        admin cannot be disabled (Conflict ``last_admin``). Audited as ``user_disabled`` / ``user_enabled``."""
        with self.db.session() as s:
            o = self._org(s, org)
            self._lock_org(s, o)
            user = self._user(s, o, user_id)
            if user.disabled == disabled:
                return _user_info(user)
            if disabled and user.role == "admin":
                others = s.scalar(
                    select(func.count(User.id)).where(
                        User.organisation_id == o.id, User.role == "admin", User.disabled.is_(False), User.id != user.id
                    )
                )
                if not others:
                    raise Conflict(f"user {user.id} is the organisation's last enabled admin", code="last_admin")
            user.disabled = disabled
            revoked = revoke_user_sessions(s, user.id) if disabled else 0
            s.flush()
            action = "user_disabled" if disabled else "user_enabled"
            details = {"email": user.email, "sessions_revoked": revoked}
            audit.append(s, self.actor, action, f"user:{user.id}", details, o.id)
            return _user_info(user)
