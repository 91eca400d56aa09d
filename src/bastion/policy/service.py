"""Versioned per-organisation policies: set (checked, audited), read the one in force, history with diffs.

Each ``set_policy`` stores the YAML verbatim as the next version in ``policy_versions``; the highest version is in
force. An organisation without a stored version runs the built-in policy (``default.yaml``), reported as version
None.

Hot path: :meth:`PolicyService.current` costs one indexed query (the newest version's number and text) per call;
compiling is memoised on the text (:func:`~bastion.policy.engine.compile_policy`), so an unchanged policy is a
dictionary lookup. Reading the text each time, rather than caching on ``(organisation, version)`` or a TTL, means a
new version is in force for the very next decision in every process, with no stale window and nothing to
invalidate (a cache keyed on the version number alone could also confuse two databases in one process).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion import audit
from bastion.audit.log import lock_audit
from bastion.errors import Conflict, InvalidPolicy, NotFound
from bastion.policy.engine import CompiledPolicy, compile_policy, default_policy, default_source
from bastion.storage.db import Database
from bastion.storage.models import Organisation, PolicyVersion, as_utc

log = logging.getLogger(__name__)


@dataclass
class PolicyVersionInfo:
    organisation_id: int
    version: int
    comment: str
    created_by: str
    created_at: datetime
    sha256: str
    source: str | None = None  # included by get() and current_info(), not by history()
    diff: str | None = None  # history(diff=True): unified diff against the previous version
    changed: bool = True  # set_policy(): False when the text equals the version already in force

    def to_dict(self) -> dict[str, Any]:
        created = as_utc(self.created_at)
        out: dict[str, Any] = {
            "organisation_id": self.organisation_id,
            "version": self.version,
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": created.isoformat(),
            "sha256": self.sha256,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.diff is not None:
            out["diff"] = self.diff
        return out


def _sha(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _info(row: PolicyVersion, *, with_source: bool) -> PolicyVersionInfo:
    return PolicyVersionInfo(
        organisation_id=row.organisation_id,
        version=row.version,
        comment=row.comment,
        created_by=row.created_by,
        created_at=row.created_at,
        sha256=_sha(row.source),
        source=row.source if with_source else None,
    )


_reported: set[tuple[int, int]] = set()


def _log_unusable(organisation_id: int, version: int, exc: InvalidPolicy) -> None:
    if (organisation_id, version) not in _reported:
        _reported.add((organisation_id, version))
        log.error("policy version %s of organisation %s no longer passes the checks and is skipped: %s",
                  version, organisation_id, exc.message)


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name)
    )


class PolicyService:
    """The one writer of ``policy_versions``; every change is recorded in the audit log as ``actor``."""

    MAX_COMMENT = 2000

    def __init__(self, db: Database, actor: str = "cli") -> None:
        self.db = db
        self.actor = actor

    def set_policy(self, organisation_id: int, source: str, comment: str = "") -> PolicyVersionInfo:
        """Check ``source`` and store it as the organisation's next version (nothing is stored when it is invalid).

        Setting the text already in force stores nothing and returns that version with ``changed=False``.
        """
        compiled = compile_policy(source)  # raises InvalidPolicy
        comment = (comment or "").strip()[: self.MAX_COMMENT]
        try:
            with self.db.session() as s:
                lock_audit(s)  # serialises concurrent setters: the version number below is then free
                if s.get(Organisation, organisation_id) is None:
                    raise NotFound(f"no organisation {organisation_id}")
                newest = s.scalar(
                    select(PolicyVersion)
                    .where(PolicyVersion.organisation_id == organisation_id)
                    .order_by(PolicyVersion.version.desc())
                    .limit(1)
                )
                if newest is not None and newest.source == source:
                    info = _info(newest, with_source=True)
                    info.changed = False
                    return info
                row = PolicyVersion(
                    organisation_id=organisation_id,
                    version=(newest.version if newest is not None else 0) + 1,
                    source=source,
                    comment=comment,
                    created_by=self.actor,
                )
                s.add(row)
                s.flush()
                audit.append(
                    s,
                    self.actor,
                    "policy_set",
                    f"policy:{organisation_id}",
                    {
                        "version": row.version,
                        "previous_version": newest.version if newest is not None else None,
                        "comment": comment,
                        "sha256": compiled.sha256,
                        "rules": len(compiled.live),
                        "shadow_rules": len(compiled.shadow),
                    },
                    organisation_id=organisation_id,
                )
                return _info(row, with_source=True)
        except IntegrityError as exc:  # pragma: no cover - the audit lock serialises setters
            raise Conflict("the policy was changed at the same time; try again") from exc

    def current(self, organisation_id: int) -> tuple[int | None, CompiledPolicy]:
        """The version in force and its compiled rules; ``(None, built-in default)`` when none was ever set.

        One query per call (see the module docstring); compiling is memoised on the text. A stored version that no
        longer passes the checks (rules tightened by an upgrade) is skipped, with an error logged, for the newest
        one that does, or the built-in default: decisions keep flowing.
        """
        with self.db.session() as s:
            row = s.execute(
                select(PolicyVersion.version, PolicyVersion.source)
                .where(PolicyVersion.organisation_id == organisation_id)
                .order_by(PolicyVersion.version.desc())
                .limit(1)
            ).first()
        if row is None:
            return None, default_policy()
        try:
            return row.version, compile_policy(row.source)
        except InvalidPolicy as exc:
            _log_unusable(organisation_id, row.version, exc)
        with self.db.session() as s:
            older = s.execute(
                select(PolicyVersion.version, PolicyVersion.source)
                .where(PolicyVersion.organisation_id == organisation_id, PolicyVersion.version < row.version)
                .order_by(PolicyVersion.version.desc())
            ).all()
        for version, source in older:
            try:
                return version, compile_policy(source)
            except InvalidPolicy as exc:
                _log_unusable(organisation_id, version, exc)
        return None, default_policy()

    def current_info(self, organisation_id: int) -> PolicyVersionInfo | None:
        """The version in force with its text, or None when the organisation runs the built-in default."""
        with self.db.session() as s:
            row = s.scalar(
                select(PolicyVersion)
                .where(PolicyVersion.organisation_id == organisation_id)
                .order_by(PolicyVersion.version.desc())
                .limit(1)
            )
            return _info(row, with_source=True) if row is not None else None

    def get(self, organisation_id: int, version: int) -> PolicyVersionInfo:
        """One stored version with its text (NotFound for another organisation's, or one that does not exist)."""
        with self.db.session() as s:
            row = s.scalar(
                select(PolicyVersion).where(
                    PolicyVersion.organisation_id == organisation_id, PolicyVersion.version == version
                )
            )
            if row is None:
                raise NotFound(f"no policy version {version} for this organisation")
            return _info(row, with_source=True)

    def history(self, organisation_id: int, *, diff: bool = False) -> list[PolicyVersionInfo]:
        """Every version, newest first: who set it, when, with which comment; with ``diff``, a unified diff of each
        version against the one before it (the first against the built-in default)."""
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(PolicyVersion)
                    .where(PolicyVersion.organisation_id == organisation_id)
                    .order_by(PolicyVersion.version)
                )
            )
            out: list[PolicyVersionInfo] = []
            previous, previous_name = default_source(), "built-in default"
            for row in rows:
                info = _info(row, with_source=False)
                if diff:
                    info.diff = unified_diff(previous, row.source, previous_name, f"version {row.version}")
                previous, previous_name = row.source, f"version {row.version}"
                out.append(info)
        return out[::-1]

