"""Console sign-in: passwords checked with throttling, browser sessions created, looked up, ended.

A session is a random 256-bit token in an HttpOnly cookie; only its SHA-256 is stored (``user_sessions``), so a
copy of the database signs nobody in. Each session has its own CSRF secret, which the console puts in its forms.
A session ends after ``console_session_idle_minutes`` unused, ``console_session_max_hours`` after sign-in, on
sign-out, and for all of a user's sessions when their password changes or they are disabled or deleted
(:func:`bastion.accounts.service.revoke_user_sessions`).

Sign-in never tells whether an address exists: an unknown address, a user without a password, a disabled user and
a wrong password all get Unauthenticated ``invalid_credentials``, and an unknown address still costs one argon2
verification (:func:`~bastion.accounts.passwords.dummy_verify`). Users are unique per organisation, not globally:
without an organisation name the password is tried against each user with that address (at most
:data:`MAX_CANDIDATES`), and only when it is right for more than one is the caller asked to name the organisation
(InvalidInput ``organisation_required``), which therefore reveals nothing to someone without the password.

Throttling (table ``login_attempts``): once an address has ``login_max_failures_per_email`` failures, or a client
address ``login_max_failures_per_client``, within ``login_throttle_minutes``, further attempts are refused with 429
``too_many_attempts`` before any password is checked. A successful sign-in clears the address's count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion import audit
from bastion.accounts.passwords import dummy_verify, hash_password, needs_rehash, verify_password
from bastion.accounts.service import normalise_email
from bastion.errors import BastionError, Forbidden, InvalidInput, Unauthenticated
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import LoginAttempt, Organisation, User, UserSession, utcnow

MAX_CANDIDATES = 10  # users sharing one address across organisations whose passwords one sign-in tries
LAST_SEEN_RESOLUTION = timedelta(seconds=30)  # a session's last_seen_at is not rewritten on every request
ACTOR = "console"


class TooManyAttempts(BastionError):
    """Too many failed sign-ins for this address or from this client: wait and try again."""

    code = "too_many_attempts"
    http_status = 429
    exit_code = 5


@dataclass(frozen=True)
class SessionUser:
    """The signed-in person behind a console request."""

    session_id: int
    user_id: int
    organisation_id: int
    organisation_name: str
    email: str
    role: str
    csrf_secret: str
    expires_at: datetime

    @property
    def actor(self) -> str:
        """How the audit log names this person (``user:<id>``)."""
        return f"user:{self.user_id}"


@dataclass(frozen=True)
class NewSession:
    token: str  # for the cookie only: never stored, never logged
    user: SessionUser


@dataclass(frozen=True)
class VerifiedIdentity:
    """What an identity provider vouches for: an e-mail address, and the organisation when it knows it."""

    email: str
    organisation: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _clean_email(email: str) -> str | None:
    try:
        return normalise_email(email)
    except InvalidInput:
        return None


class SessionService:
    """Sign-in, session lookup and sign-out for the console."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    # throttling

    def _throttled(self, s: Session, email_key: str, client: str) -> bool:
        since = utcnow() - timedelta(minutes=self.settings.login_throttle_minutes)
        last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(LoginAttempt.email == email_key, LoginAttempt.ok))
        email_since = max(since, last_ok) if last_ok is not None else since
        by_email = s.scalar(
            select(func.count(LoginAttempt.id)).where(
                LoginAttempt.email == email_key, LoginAttempt.ok.is_(False), LoginAttempt.at > email_since
            )
        )
        if (by_email or 0) >= self.settings.login_max_failures_per_email:
            return True
        by_client = s.scalar(
            select(func.count(LoginAttempt.id)).where(
                LoginAttempt.client == client, LoginAttempt.ok.is_(False), LoginAttempt.at > since
            )
        )
        return (by_client or 0) >= self.settings.login_max_failures_per_client

    def _record_failure(self, email_key: str, client: str, reason: str, user: User | None = None) -> None:
        with self.db.session() as s:
            s.add(LoginAttempt(email=email_key, client=client, ok=False, at=utcnow()))
            details = {"email": email_key, "client": client, "reason": reason}
            target = f"user:{user.id}" if user is not None else f"email:{email_key}"
            audit.append(s, ACTOR, "login_failed", target, details, user.organisation_id if user else None)

    # sign-in

    def sign_in(
        self, email: str, password: str, organisation: str | None = None, *, client: str = "", user_agent: str = ""
    ) -> NewSession:
        """A new session for the user with this address and password; see the module docstring for the errors."""
        client = (client or "unknown")[:64]
        clean = _clean_email(email) if isinstance(email, str) else None
        email_key = (clean or str(email or "").strip())[:320].lower()
        org_name = (organisation or "").strip() or None
        with self.db.session() as s:
            if self._throttled(s, email_key, client):
                raise TooManyAttempts("too many failed sign-ins; wait a few minutes and try again")
            candidates: list[tuple[User, str]] = []
            if clean is not None:
                query = (
                    select(User, Organisation.name)
                    .join(Organisation, Organisation.id == User.organisation_id)
                    .where(func.lower(User.email) == clean.lower())
                    .order_by(User.id)
                    .limit(MAX_CANDIDATES)
                )
                if org_name is not None:
                    query = query.where(Organisation.name == org_name)
                candidates = [(row[0], row[1]) for row in s.execute(query)]
            # Every candidate costs one verification, and no candidate costs one too (unknown address).
            matches = []
            for user, name in candidates:
                if user.password_hash:
                    if verify_password(user.password_hash, password):
                        matches.append((user, name))
                else:
                    dummy_verify()
            if not candidates:
                dummy_verify()
        if not matches:
            self._record_failure(email_key, client, "bad_credentials" if candidates else "unknown")
            raise Unauthenticated("wrong e-mail address or password", code="invalid_credentials")
        if len(matches) > 1:
            raise InvalidInput(
                "this address belongs to several organisations: name yours", code="organisation_required"
            )
        user, name = matches[0]
        if user.disabled:
            self._record_failure(email_key, client, "disabled", user)
            raise Unauthenticated("wrong e-mail address or password", code="invalid_credentials")
        return self._open(
            user.id, client=client, user_agent=user_agent, method="password", email_key=email_key, password=password
        )

    def sign_in_verified(self, identity: VerifiedIdentity, *, client: str = "", user_agent: str = "") -> NewSession:
        """A session for the existing, enabled user an identity provider vouched for (never creates one).

        Forbidden ``unknown_user`` when no enabled user has the address (in the named organisation, when given);
        InvalidInput ``organisation_required`` when several organisations have it and the provider named none.
        """
        clean = _clean_email(identity.email)
        if clean is None:
            raise Forbidden("the identity provider gave no usable e-mail address", code="unknown_user")
        with self.db.session() as s:
            query = (
                select(User.id, User.disabled)
                .join(Organisation, Organisation.id == User.organisation_id)
                .where(func.lower(User.email) == clean.lower())
                .limit(MAX_CANDIDATES)
            )
            if identity.organisation:
                query = query.where(Organisation.name == identity.organisation)
            rows = [r for r in s.execute(query) if not r.disabled]
        if not rows:
            raise Forbidden(f"{clean} is not an enabled Bastion user; ask an admin to add you", code="unknown_user")
        if len(rows) > 1:
            raise InvalidInput(
                "this address belongs to several organisations and the identity provider named none",
                code="organisation_required",
            )
        return self._open(
            rows[0].id, client=(client or "unknown")[:64], user_agent=user_agent, method="oidc", email_key=clean.lower()
        )

    def _open(
        self, user_id: int, *, client: str, user_agent: str, method: str, email_key: str, password: str | None = None
    ) -> NewSession:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        new_hash = None
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is None or user.disabled:  # deleted or disabled a moment ago
                raise Unauthenticated("wrong e-mail address or password", code="invalid_credentials")
            if password is not None and user.password_hash and needs_rehash(user.password_hash):
                new_hash = hash_password(password)
                user.password_hash = new_hash
            row = UserSession(
                token_hash=hash_token(token),
                user_id=user.id,
                organisation_id=user.organisation_id,
                csrf_secret=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=self.settings.console_session_max_hours),
                user_agent=(user_agent or "")[:300],
            )
            s.add(row)
            s.add(LoginAttempt(email=email_key, client=client, ok=True, at=now))
            s.flush()
            org_name = s.scalar(select(Organisation.name).where(Organisation.id == user.organisation_id)) or ""
            details = {"email": user.email, "method": method, "client": client, "session": row.id}
            if new_hash is not None:
                details["password_rehashed"] = True
            audit.append(s, f"user:{user.id}", "login", f"user:{user.id}", details, user.organisation_id)
            return NewSession(token=token, user=self._session_user(row, user, org_name))

    @staticmethod
    def _session_user(row: UserSession, user: User, org_name: str) -> SessionUser:
        return SessionUser(
            session_id=row.id,
            user_id=user.id,
            organisation_id=user.organisation_id,
            organisation_name=org_name,
            email=user.email,
            role=user.role,
            csrf_secret=row.csrf_secret,
            expires_at=row.expires_at,
        )

    # lookup and sign-out

    def lookup(self, token: str) -> SessionUser:
        """The live session behind a cookie's token, or Unauthenticated: ``invalid_session`` (unknown or revoked, or
        its user disabled) or ``session_expired`` (idle too long, or past its absolute expiry)."""
        if not token or len(token) > 100:
            raise Unauthenticated("please sign in", code="invalid_session")
        wanted = hash_token(token)
        with self.db.session() as s:
            found = s.execute(
                select(UserSession, User, Organisation.name)
                .join(User, User.id == UserSession.user_id)
                .join(Organisation, Organisation.id == User.organisation_id)
                .where(UserSession.token_hash == wanted)
            ).first()
            # The row was found by its hash; compare again in constant time, as API keys do.
            if found is None or not hmac.compare_digest(found[0].token_hash, wanted):
                raise Unauthenticated("please sign in", code="invalid_session")
            row, user, org_name = found
            now = utcnow()
            if row.revoked_at is not None or user.disabled:
                raise Unauthenticated("please sign in", code="invalid_session")
            idle = timedelta(minutes=self.settings.console_session_idle_minutes)
            if row.expires_at <= now or now - row.last_seen_at > idle:
                raise Unauthenticated("your session has ended; please sign in again", code="session_expired")
            if now - row.last_seen_at > LAST_SEEN_RESOLUTION:
                row.last_seen_at = now
            return self._session_user(row, user, org_name)

    def sign_out(self, token: str) -> bool:
        """Revoke the session behind ``token`` (audited ``logout``); False when there was no live one."""
        if not token or len(token) > 100:
            return False
        with self.db.session() as s:
            row = s.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utcnow()
            s.flush()
            audit.append(
                s, f"user:{row.user_id}", "logout", f"user:{row.user_id}", {"session": row.id}, row.organisation_id
            )
            return True
