"""The member side: an organisation joins a hub as one of its exchanges, and chooses which banks it shares.

Joining stores the hub's URL, the member API key and a newly generated Ed25519 signing key encrypted at rest (the
Fernet key of :mod:`bastion.webhooks.crypto`), registers the public key with the hub, and creates the bank the
forum's hashes land in (``forum-<organisation>`` unless named), owned by the organisation, so its policy can name
it (``any_match: {bank: forum-...}``). Sharing a bank with the forum (``share_bank``) is the per-bank setting the
sync's push obeys: ``marked`` shares the entries reviewers banked with "share with forum", ``all`` every entry.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from bastion import audit
from bastion.banks.service import BankService
from bastion.errors import Conflict, InvalidInput, NotFound
from bastion.forum import signing
from bastion.forum.exchange import KIND, ForumExchange
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import Bank, ExchangeSharedBank, Organisation, OrganisationExchange, utcnow
from bastion.webhooks import crypto

SHARE_MODES = ("marked", "all")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


def _organisation(db: Database, ref: int | str) -> Organisation:
    with db.session() as s:
        org = (
            s.get(Organisation, ref)
            if isinstance(ref, int)
            else s.scalars(select(Organisation).where(Organisation.name == ref)).first()
        )
        if org is None:
            raise NotFound(f"no organisation {ref!r}", code="organisation_not_found")
        return org


def join(
    db: Database,
    settings: Settings,
    organisation: int | str,
    url: str,
    api_key: str,
    *,
    name: str = "forum",
    bank: str | None = None,
    actor: str = "cli",
    exchange: ForumExchange | None = None,
) -> dict[str, Any]:
    """Join the hub at ``url`` as the organisation (see the module docstring). ``exchange`` replaces the HTTP client
    (tests). The hub must accept the key and the new public key before anything is stored here."""
    if not _NAME_RE.match(name):
        raise InvalidInput("a forum's name is lower-case letters, digits, '_', '.' or '-'", code="invalid_name")
    if not url.startswith(("http://", "https://")):
        raise InvalidInput("the hub's URL starts with http:// or https://", code="invalid_url")
    org = _organisation(db, organisation)
    with db.session() as s:
        if (
            s.scalar(
                select(OrganisationExchange.id).where(
                    OrganisationExchange.organisation_id == org.id, OrganisationExchange.name == name
                )
            )
            is not None
        ):
            raise Conflict(f"{org.name} already joined an exchange named {name!r}", code="exchange_exists")
    key = signing.new_private_key()
    client = exchange or ForumExchange(name, url, api_key, key)
    client.signing_key = key
    me = client.me()
    client.register_public_key()  # refused (public_key_registered) when this member key joined elsewhere before
    bank_name = bank or f"forum-{org.name}"
    banks = BankService(db, actor, organisation_id=org.id)
    try:
        banks.get_bank(bank_name, writable=True)
    except NotFound:
        banks.create_bank(bank_name, "block", f"hashes from the forum at {url}", actor)
    secrets_json = json.dumps({"api_key": api_key, "signing_key": signing.private_key_text(key)})
    with db.session() as s:
        bank_id = s.scalar(select(Bank.id).where(Bank.name == bank_name))
        row = OrganisationExchange(
            organisation_id=org.id,
            kind=KIND,
            name=name,
            url=url.rstrip("/"),
            secrets_encrypted=crypto.encrypt(settings, secrets_json),
            public_key=signing.public_key_text(key),
            bank_id=bank_id,
            cursor=None,
            state={"member": me["name"], "pinned_keys": {}, "feedback_after": 0},
            enabled=True,
            last_error="",
            created_at=utcnow(),
            created_by=actor,
        )
        s.add(row)
        s.flush()
        audit.append(
            s,
            actor,
            "exchange_joined",
            f"exchange:{row.id}",
            {
                "kind": KIND,
                "name": name,
                "url": row.url,
                "member": me["name"],
                "bank": bank_name,
                "public_key": row.public_key,
            },
            organisation_id=org.id,
        )
        return exchange_dict(row, bank_name)


def exchange_dict(row: OrganisationExchange, bank: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "organisation_id": row.organisation_id,
        "kind": row.kind,
        "name": row.name,
        "url": row.url,
        "member": (row.state or {}).get("member"),
        "bank": bank,
        "public_key": row.public_key,
        "cursor": row.cursor,
        "enabled": row.enabled,
        "last_sync_at": row.last_sync_at.isoformat() if row.last_sync_at else None,
        "last_error": row.last_error,
    }


def get_exchange(db: Database, organisation: int | str, name: str = "forum") -> OrganisationExchange:
    org = _organisation(db, organisation)
    with db.session() as s:
        row = s.scalars(
            select(OrganisationExchange).where(
                OrganisationExchange.organisation_id == org.id, OrganisationExchange.name == name
            )
        ).first()
        if row is None:
            raise NotFound(f"{org.name} has joined no exchange named {name!r}", code="exchange_not_found")
        return row


def list_exchanges(db: Database, organisation: int | str | None = None) -> list[dict[str, Any]]:
    with db.session() as s:
        q = select(OrganisationExchange, Bank.name).outerjoin(Bank, Bank.id == OrganisationExchange.bank_id)
        if organisation is not None:
            q = q.where(OrganisationExchange.organisation_id == _organisation(db, organisation).id)
        return [exchange_dict(r, b) for r, b in s.execute(q.order_by(OrganisationExchange.id))]


def open_exchange(settings: Settings, row: OrganisationExchange) -> ForumExchange:
    """The client of a joined hub, with its decrypted credentials and pinned keys."""
    secret = json.loads(crypto.decrypt(settings, row.secrets_encrypted))
    return ForumExchange(
        row.name,
        row.url,
        secret["api_key"],
        signing.load_private_key(secret["signing_key"]),
        pinned_keys=dict((row.state or {}).get("pinned_keys") or {}),
    )


def share_bank(
    db: Database, organisation: int | str, bank: str, *, forum: str = "forum", mode: str = "marked", actor: str = "cli"
) -> dict[str, Any]:
    """Share one of the organisation's own banks with a joined forum (``mode`` marked or all); idempotent."""
    if mode not in SHARE_MODES:
        raise InvalidInput(f"mode is one of {', '.join(SHARE_MODES)}", code="invalid_share_mode")
    row = get_exchange(db, organisation, forum)
    info = BankService(db, actor, organisation_id=row.organisation_id).get_bank(bank, writable=True)
    if info.id == row.bank_id:
        raise InvalidInput("the forum's own bank is not shared back to it", code="forum_bank_not_shareable")
    with db.session() as s:
        share = s.get(ExchangeSharedBank, (row.id, info.id))
        if share is None:
            share = ExchangeSharedBank(exchange_id=row.id, bank_id=info.id, mode=mode, created_at=utcnow())
            s.add(share)
        share.mode = mode
        audit.append(
            s,
            actor,
            "exchange_bank_shared",
            f"exchange:{row.id}",
            {"bank": bank, "mode": mode},
            organisation_id=row.organisation_id,
        )
    return {"forum": forum, "bank": bank, "mode": mode}


def unshare_bank(db: Database, organisation: int | str, bank: str, *, forum: str = "forum", actor: str = "cli") -> None:
    row = get_exchange(db, organisation, forum)
    info = BankService(db, actor, organisation_id=row.organisation_id).get_bank(bank)
    with db.session() as s:
        share = s.get(ExchangeSharedBank, (row.id, info.id))
        if share is None:
            raise NotFound(f"bank {bank!r} is not shared with {forum!r}", code="not_shared")
        s.delete(share)
        audit.append(
            s,
            actor,
            "exchange_bank_unshared",
            f"exchange:{row.id}",
            {"bank": bank},
            organisation_id=row.organisation_id,
        )
