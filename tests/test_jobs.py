"""The database job queue: disjoint claims under concurrency, leases that expire, lease-checked completion,
retries with back-off."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bastion.jobs.queue import JobQueue, LeaseLost
from bastion.storage.models import Job, utcnow


def _enqueue(db, n: int, kind: str = "k") -> None:
    with db.session() as s:
        for i in range(n):
            JobQueue.enqueue(s, kind, payload={"i": i})


def test_enqueue_is_part_of_the_callers_transaction(db):
    with pytest.raises(RuntimeError), db.session() as s:
        JobQueue.enqueue(s, "k")
        raise RuntimeError("rolled back")
    assert JobQueue(db).claim(10) == []


def test_concurrent_workers_claim_disjoint_jobs(db):
    _enqueue(db, 200)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        q = JobQueue(db, name)
        mine = claimed.setdefault(name, [])
        try:
            while batch := q.claim(7):
                for job in batch:
                    with db.session() as s:
                        q.complete(s, job.id)
                    mine.append(job.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    every = [j for ids in claimed.values() for j in ids]
    assert len(every) == 200 and len(set(every)) == 200  # each job run once, by one worker
    with db.session() as s:
        assert set(s.scalars(select(Job.status))) == {"done"}


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_complete(db):
    _enqueue(db, 1)
    first, second = JobQueue(db, "first"), JobQueue(db, "second")
    (job,) = first.claim()
    assert second.claim() == []  # leased
    with db.session() as s:  # the first worker "dies": its lease runs out
        s.execute(update(Job).values(locked_until=utcnow() - timedelta(seconds=1)))
    (again,) = second.claim()
    assert again.id == job.id and again.attempts == 2
    with pytest.raises(LeaseLost), db.session() as s:
        first.complete(s, job.id)
    with db.session() as s:
        second.complete(s, job.id)
        assert s.get(Job, job.id).status == "done"


def test_failures_back_off_then_give_up(db):
    _enqueue(db, 1)
    q = JobQueue(db, "w", max_attempts=2)
    (job,) = q.claim()
    assert q.fail(job.id, "boom") == "queued"
    assert q.claim() == []  # not due yet: back-off
    with db.session() as s:
        row = s.get(Job, job.id)
        assert row.last_error == "boom"
        row.run_after = utcnow() - timedelta(seconds=1)
    (job,) = q.claim()
    assert job.attempts == 2 and q.fail(job.id, "boom again") == "failed"
    with db.session() as s:
        row = s.get(Job, job.id)
        assert row.status == "failed" and row.finished_at is not None


def test_depth_reports_queued_running_and_age(db):
    _enqueue(db, 3)
    q = JobQueue(db, "w")
    q.claim(1)
    depth = q.depth()
    assert depth["queued"] == 2 and depth["running"] == 1 and depth["oldest_queued_seconds"] >= 0


def test_claim_filters_by_kind(db):
    _enqueue(db, 2, kind="a")
    _enqueue(db, 1, kind="b")
    assert [j.kind for j in JobQueue(db, "w").claim(10, kinds=("b",))] == ["b"]
