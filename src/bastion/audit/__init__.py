"""The audit log: who changed what, append-only and hash-chained so tampering shows.

Every bank change, key change, export (and, as they arrive, decisions, reviews, policy changes and logins) calls
:func:`append` inside the same transaction as the change, so a rolled-back change leaves no record. Records are
numbered 1, 2, 3... under a lock and each stores ``prev_hash`` (the previous record's hash; 64 zeros for the first)
and ``hash`` = SHA-256 of the canonical JSON of ``(seq, at, actor, organisation_id, action, target, details,
prev_hash)``. :func:`verify` recomputes the chain and names the first broken record:

- ``hash_mismatch``: a record's content was altered;
- ``seq_gap``: a record was removed (numbers jump);
- ``prev_mismatch``: a record was inserted, removed and renumbered, or records were reordered;
- ``head_mismatch``: the log does not end where the anchor says (records deleted from the tail).

The anchor (table ``audit_anchor``) is one row holding the last seq and hash, updated with every append. It shows a
truncated tail, but whoever can rewrite the database can rewrite the anchor and recompute the whole chain too. The
real defence is a head exported out of band: ``bastion audit verify`` prints it; keep it somewhere else and compare.
On PostgreSQL a trigger also rejects UPDATE and DELETE on ``audit_log`` (someone able to disable triggers can still
tamper; TRUNCATE is not blocked so the test suite can empty tables). On SQLite only the chain protects the log.
"""

from bastion.audit.log import GENESIS_HASH, VerifyReport, append, compute_hash, list_records, lock_audit, verify

__all__ = ["GENESIS_HASH", "VerifyReport", "append", "compute_hash", "list_records", "lock_audit", "verify"]
