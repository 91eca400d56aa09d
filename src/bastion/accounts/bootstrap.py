"""First start: make sure a fresh database has someone who can administer it.

A server started on an empty database would otherwise have no organisation and no API key, and nothing could call
it. :func:`ensure_admin` creates the admin organisation and one key with every scope, and hands its plaintext back
exactly once (only its hash is stored); :func:`ensure_organisation_key` does the same for any named organisation
(``bastion serve --demo`` uses it for the demo organisation, which also owns the demo bank: see
:func:`bastion.demo.seed_demo_bank`, whose ``organisation`` gives an existing unowned demo bank to it).
:func:`ensure_admin_user` gives the admin organisation, while it has no user at all, an admin user
(``BASTION_ADMIN_EMAIL``) with a random one-time password, printed once with the console's address, so the quick
start leads to a console sign-in.
"""

from __future__ import annotations

import secrets

from bastion.accounts.service import SCOPES, AccountService
from bastion.errors import Conflict, NotFound
from bastion.settings import get_settings
from bastion.storage.db import Database

ACTOR = "bootstrap"
DEMO_ORGANISATION = "demo"
DEMO_SCOPES = tuple(s for s in SCOPES if s != "admin")


def ensure_organisation_key(db: Database, name: str, scopes: tuple[str, ...], key_name: str) -> str | None:
    """Create organisation ``name`` with one key of ``scopes``; its plaintext, or None when the organisation exists.

    A concurrent creator loses on the organisation's unique name (Conflict) and returns None, as does every later
    call, so the secret is printed by one process, once.
    """
    service = AccountService(db, actor=ACTOR)
    try:
        service.create_organisation(name)
    except Conflict:
        return None
    _, plaintext = service.create_api_key(name, key_name, list(scopes))
    return plaintext


def ensure_admin(db: Database) -> str | None:
    """On a database with no organisation at all, create the admin organisation and an all-scope key.

    Returns the key's plaintext (the one-time sign-in secret), or None when any organisation already exists.
    """
    service = AccountService(db, actor=ACTOR)
    if service.list_organisations():
        return None
    return ensure_organisation_key(db, get_settings().admin_organisation, SCOPES, "bootstrap-admin")


def ensure_admin_user(db: Database) -> tuple[str, str] | None:
    """While the admin organisation exists and has no user at all, create an admin user with a random password.

    Returns ``(email, password)`` for printing once (only the argon2 hash is stored), or None: no admin
    organisation, it already has users, or a concurrent start created the user first.
    """
    settings = get_settings()
    service = AccountService(db, actor=ACTOR)
    try:
        if service.list_users(settings.admin_organisation):
            return None
    except NotFound:
        return None
    try:
        user = service.create_user(settings.admin_organisation, settings.admin_email, "admin")
    except Conflict:
        return None
    password = secrets.token_urlsafe(18)  # 24 characters, 144 random bits
    service.set_password(settings.admin_organisation, user.id, password)
    return user.email, password
