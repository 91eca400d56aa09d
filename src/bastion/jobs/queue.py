"""A durable job queue in Bastion's own database.

Why not a queue library: PostgreSQL is Bastion's one distributed engine, and the job that decides a submission must
commit in the *same transaction* as the decision, its audit record and its webhook events (so a decision is never
made twice or lost). A job table in that database gives exactly that; procrastinate and similar libraries are
PostgreSQL-only (Bastion also runs on the embedded SQLite) and keep their own connection. The queue is small:

- :meth:`JobQueue.enqueue` adds a job in the caller's transaction (with the submission it concerns).
- :meth:`JobQueue.claim` leases due jobs to one worker: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` inside
  an ``UPDATE ... RETURNING``, so any number of workers on any number of machines take disjoint jobs without
  waiting on each other; on SQLite the same ``UPDATE`` runs under SQLite's single writer lock.
- A worker that dies (SIGKILL, power loss) holds its jobs only until the lease expires; then another worker claims
  them again. :meth:`JobQueue.complete` runs in the transaction that records the job's result and succeeds only if
  this worker still holds the lease; otherwise :class:`LeaseLost` rolls that transaction back, so a job whose lease
  was taken over is never acted on twice.
- :meth:`JobQueue.fail` retries with exponential back-off up to ``max_attempts``, then marks the job failed.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bastion.storage.db import Database
from bastion.storage.models import Job, utcnow

DEFAULT_LEASE = timedelta(seconds=60)
DEFAULT_MAX_ATTEMPTS = 5


class LeaseLost(RuntimeError):
    """The job's lease expired and another worker claimed it: this worker's result must not be recorded."""


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    organisation_id: int | None
    content_id: int | None
    payload: dict[str, Any]
    attempts: int


def worker_name() -> str:
    """A name unique to this process (host, pid and a random suffix: a pid can be reused after a crash)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobQueue:
    def __init__(self, db: Database, worker: str | None = None, *, lease: timedelta = DEFAULT_LEASE,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.db = db
        self.worker = worker or worker_name()
        self.lease = lease
        self.max_attempts = max_attempts

    # -- producing ----------------------------------------------------------------------------------------------------
    @staticmethod
    def enqueue(session: Session, kind: str, *, organisation_id: int | None = None, content_id: int | None = None,
                payload: dict[str, Any] | None = None, run_after: datetime | None = None) -> Job:
        """Add a job in ``session``'s transaction: it exists exactly when that transaction commits."""
        job = Job(kind=kind, organisation_id=organisation_id, content_id=content_id, payload=payload or {},
                  status="queued", attempts=0, run_after=run_after or utcnow())
        session.add(job)
        return job

    # -- consuming ----------------------------------------------------------------------------------------------------
    def claim(self, limit: int = 1, kinds: tuple[str, ...] | None = None) -> list[ClaimedJob]:
        """Lease up to ``limit`` due jobs (queued and due, or running with an expired lease) to this worker."""
        now = utcnow()
        due = (
            select(Job.id)
            .where(
                ((Job.status == "queued") & (Job.run_after <= now))
                | ((Job.status == "running") & (Job.locked_until < now))
            )
            .order_by(Job.id)
            .limit(limit)
        )
        if kinds:
            due = due.where(Job.kind.in_(kinds))
        with self.db.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            stmt = (
                update(Job)
                .where(Job.id.in_(due.scalar_subquery()))
                .values(status="running", locked_by=self.worker, locked_until=now + self.lease,
                        attempts=Job.attempts + 1)
                .returning(Job.id, Job.kind, Job.organisation_id, Job.content_id, Job.payload, Job.attempts)
                .execution_options(synchronize_session=False)
            )
            rows = s.execute(stmt).all()
        return sorted((ClaimedJob(*r) for r in rows), key=lambda j: j.id)

    def extend(self, job_id: int) -> bool:
        """Renew this worker's lease on a long job; False if the lease was lost."""
        with self.db.session() as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.locked_by == self.worker, Job.status == "running")
                .values(locked_until=utcnow() + self.lease)
            )
            return res.rowcount == 1

    def complete(self, session: Session, job_id: int) -> None:
        """Mark the job done in ``session`` (the transaction recording its result). Raises :class:`LeaseLost`
        when another worker holds it now, which rolls the whole transaction back."""
        res = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.locked_by == self.worker, Job.status == "running")
            .values(status="done", finished_at=utcnow(), locked_until=None)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:
            raise LeaseLost(f"job {job_id} is no longer leased to {self.worker}")

    def fail(self, job_id: int, error: str, *, retry: bool = True) -> str:
        """Record a failed attempt: back to the queue with back-off (10 s, 20 s, 40 s...), or ``failed`` for good
        after ``max_attempts`` or when ``retry`` is false. Returns the job's new status."""
        with self.db.session() as s:
            job = s.get(Job, job_id, with_for_update=s.get_bind().dialect.name == "postgresql")
            if job is None or job.locked_by != self.worker or job.status != "running":
                return job.status if job is not None else "missing"
            job.last_error = error[:2000]
            job.locked_by, job.locked_until = None, None
            if retry and job.attempts < self.max_attempts:
                job.status = "queued"
                job.run_after = utcnow() + timedelta(seconds=10 * 2 ** (job.attempts - 1))
            else:
                job.status = "failed"
                job.finished_at = utcnow()
            return job.status

    # -- observing ----------------------------------------------------------------------------------------------------
    def depth(self) -> dict[str, Any]:
        """Queued and running jobs, and the age in seconds of the oldest queued one (for /metrics)."""
        with self.db.session() as s:
            counts = dict(s.execute(
                select(Job.status, func.count()).where(Job.status.in_(("queued", "running"))).group_by(Job.status)
            ).all())
            oldest = s.scalar(select(func.min(Job.created_at)).where(Job.status == "queued"))
        age = 0.0
        if oldest is not None:
            age = max(0.0, (utcnow() - oldest).total_seconds())
        return {"queued": counts.get("queued", 0), "running": counts.get("running", 0), "oldest_queued_seconds": age}
