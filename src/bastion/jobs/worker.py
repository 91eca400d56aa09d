"""The worker loop: decide queued submissions and deliver webhook events.

``bastion worker`` runs it as its own process; ``bastion serve`` runs ``BASTION_WORKER_THREADS`` of them inside the
API process. Any number of workers, on any number of machines, share one PostgreSQL database: jobs are leased
(:mod:`bastion.jobs.queue`), and a job's result commits in the same transaction that marks it done, after checking
the lease, so a worker killed at any instant loses nothing and no submission is decided twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion.content import Content
from bastion.decisions.metrics import PipelineMetrics
from bastion.decisions.pipeline import DecisionPipeline
from bastion.errors import BastionError
from bastion.intake.fetch import fetch_url
from bastion.intake.service import PROCESS_JOB
from bastion.jobs.queue import ClaimedJob, JobQueue, LeaseLost
from bastion.matching.live import LiveMatcher
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import ContentBlob, ContentItem

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 20.0
MAINTENANCE_SECONDS = 3600.0
ORDERS_PASS_SECONDS = 5.0  # orders' alerts are per minute; escalation e-mail should leave at once


class Worker:
    def __init__(self, db: Database, settings: Settings, *, matcher: LiveMatcher | None = None,
                 name: str | None = None, batch: int = 8, metrics: PipelineMetrics | None = None) -> None:
        self.db = db
        self.settings = settings
        self.matcher = matcher or LiveMatcher(db, settings)
        self.queue = JobQueue(db, name, lease=timedelta(seconds=settings.job_lease_seconds))
        self.pipeline = DecisionPipeline(db, settings, self.matcher, metrics)
        self.batch = batch
        self.processed = 0
        self._next_maintenance = 0.0  # the first pass prunes
        self._next_forum_sync = 0.0  # the first pass syncs joined forums (bastion.forum.sync)
        self._next_compliance = 0.0  # the first pass sweeps (bastion.compliance.sweep)
        self._next_orders = 0.0  # the first pass runs the orders' clock and escalation e-mail (issue 6)

    @property
    def name(self) -> str:
        return self.queue.worker

    # -- one pass -----------------------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Claim and run up to ``batch`` jobs, then deliver due webhook events. Returns the work done."""
        jobs = self.queue.claim(self.batch)
        content_jobs = [j for j in jobs if j.kind == PROCESS_JOB]
        for job in jobs:
            if job.kind != PROCESS_JOB:
                self.handle(job)
        if len(content_jobs) > 1:
            self._process_batch(content_jobs)
        elif content_jobs:
            self.handle(content_jobs[0])
        self._maintain()
        self._sync_forums()
        self._compliance()
        self._orders()
        return len(jobs) + self._deliver()

    def _compliance(self, now: float | None = None) -> bool:
        """Every ``BASTION_COMPLIANCE_SWEEP_SECONDS``: statements of reasons, preservation and notices for new
        restrictions, complaint reminders, ended notice delays, expired preservation purged. True if it ran."""
        now = time.monotonic() if now is None else now
        if now < self._next_compliance:
            return False
        self._next_compliance = now + self.settings.compliance_sweep_seconds
        from bastion.compliance.sweep import sweep

        try:
            done = sweep(self.db, self.settings)
        except Exception:  # noqa: BLE001 - the next sweep retries; deciding submissions goes on
            log.exception("compliance sweep failed")
            return False
        if any(done.values()):
            log.info("compliance sweep", extra=done)
        return True

    def _orders(self, now: float | None = None) -> bool:
        """Every few seconds: authorities' orders (alerts at 30/45/55 minutes, confirmations owed, signed files in
        BASTION_ORDERS_DROP_DIR) and threat-to-life escalation e-mail (bastion.compliance). True if it ran."""
        now = time.monotonic() if now is None else now
        if now < self._next_orders:
            return False
        self._next_orders = now + ORDERS_PASS_SECONDS
        from bastion.compliance.escalation import EscalationService
        from bastion.compliance.orders import OrderService, watch_drop_dir

        for name, step in (("orders", lambda: OrderService(self.db, self.settings).sweep()),
                           ("order files", lambda: watch_drop_dir(self.db, self.settings)),
                           ("escalations", lambda: EscalationService(self.db, self.settings).deliver_due())):
            try:
                step()
            except Exception:  # noqa: BLE001 - the next pass retries; deciding submissions goes on
                log.exception("%s pass failed", name)
        return True

    def _sync_forums(self, now: float | None = None) -> int:
        """Every ``BASTION_FORUM_SYNC_SECONDS``: one sync pass of each joined forum whose turn it is (claimed in the
        database, so one worker syncs each); incident hashes are rescanned with this worker's pipeline."""
        now = time.monotonic() if now is None else now
        if self.settings.forum_sync_seconds <= 0 or now < self._next_forum_sync:
            return 0
        self._next_forum_sync = now + self.settings.forum_sync_seconds
        from bastion.forum.sync import due_exchanges, sync_exchange

        done = 0
        try:
            for exchange_id in due_exchanges(self.db, self.settings.forum_sync_seconds):
                report = sync_exchange(self.db, self.settings, exchange_id, pipeline=self.pipeline)
                done += report.stored + report.pushed + report.feedback + len(report.decisions)
        except Exception:  # noqa: BLE001 - the next pass retries; deciding submissions goes on
            log.exception("forum sync failed")
        return done

    def _maintain(self, now: float | None = None) -> bool:
        """Once an hour per worker: prune the webhook outbox (``BASTION_OUTBOX_RETENTION_DAYS``). True if it ran."""
        now = time.monotonic() if now is None else now
        if self.settings.outbox_retention_days <= 0 or now < self._next_maintenance:
            return False
        self._next_maintenance = now + MAINTENANCE_SECONDS
        from bastion.webhooks.service import prune

        try:
            deliveries, events = prune(self.db, timedelta(days=self.settings.outbox_retention_days))
        except Exception:  # noqa: BLE001 - housekeeping never stops the worker; the next hour retries
            log.exception("outbox pruning failed")
            return False
        if deliveries or events:
            log.info("outbox pruned", extra={"deliveries": deliveries, "events": events})
        return True

    def _process_batch(self, jobs: list[ClaimedJob]) -> None:
        """Analyse each claimed submission, then record all their decisions in one transaction (one commit for the
        batch). Anything unusual (bad content, a lost lease, a decision already made, any error) sends the jobs
        concerned through :meth:`handle`, one at a time, which deals with each case on its own."""
        with self._renewing([j.id for j in jobs]):
            ids = [j.content_id for j in jobs]
            with self.db.session() as s:
                items = {i.id: i for i in s.scalars(select(ContentItem).where(ContentItem.id.in_(ids)))}
                blobs = dict(s.execute(select(ContentBlob.content_id, ContentBlob.data)
                                       .where(ContentBlob.content_id.in_(ids))).all())
            ready: list[tuple[ClaimedJob, ContentItem, Any]] = []
            single: list[ClaimedJob] = []
            for job in jobs:
                item = items.get(job.content_id or 0)
                if item is None or item.status != "pending":
                    single.append(job)
                    continue
                try:
                    analysis = self.pipeline.analyse(item, self._content(item, blobs.get(item.id)))
                except Exception:  # noqa: BLE001 - handled (and reported) one at a time below
                    single.append(job)
                    continue
                ready.append((job, item, analysis))
            if ready:
                try:
                    with self.db.session() as s:
                        for job, item, analysis in ready:
                            s.add(item)
                            self.pipeline.record(s, item, analysis, queued=True)
                            self.queue.complete(s, job.id)
                except Exception:  # noqa: BLE001 - nothing of the batch was written; sort it out job by job
                    log.info("batch rolled back; deciding its jobs one by one", exc_info=True)
                    single.extend(job for job, _, _ in ready)
                else:
                    self.processed += len(ready)
        for job in single:
            self.handle(job)

    @contextmanager
    def _renewing(self, job_ids: list[int]) -> Iterator[None]:
        """Renew the leases of ``job_ids`` every third of the lease while the block runs."""
        done = threading.Event()
        period = self.queue.lease.total_seconds() / 3

        def renew() -> None:
            while not done.wait(period):
                for job_id in job_ids:
                    try:
                        self.queue.extend(job_id)
                    except Exception:  # noqa: BLE001 - the completion's lease check decides
                        log.warning("lease renewal failed", extra={"job": job_id})

        renewer = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()

    def _deliver(self) -> int:
        try:
            from bastion.webhooks import deliver_due
        except ImportError:  # pragma: no cover - webhooks are part of the package
            return 0
        return deliver_due(self.db, self.settings)

    def handle(self, job: ClaimedJob) -> None:
        """Run one job, renewing its lease every third of the lease while it runs (a long video keeps its job; a
        dead worker's lease simply runs out)."""
        with self._renewing([job.id]):
            self._handle(job)

    def _handle(self, job: ClaimedJob) -> None:
        try:
            if job.kind == PROCESS_JOB:
                self._process_content(job)
            else:
                self.queue.fail(job.id, f"unknown job kind {job.kind!r}", retry=False)
        except LeaseLost:
            log.warning("lease lost; another worker took the job over", extra={"job": job.id})
        except Exception as exc:  # noqa: BLE001 - retried with back-off; the error is kept on the job
            log.exception("job failed", extra={"job": job.id})
            self.queue.fail(job.id, f"{type(exc).__name__}: {exc}")

    def _process_content(self, job: ClaimedJob) -> None:
        with self.db.session() as s:
            item = s.get(ContentItem, job.content_id)
            blob = s.get(ContentBlob, job.content_id)
            data = blob.data if blob is not None else None
        if item is None or item.status != "pending":  # deleted, or decided by an earlier attempt
            with self.db.session() as s:
                self.queue.complete(s, job.id)
            return
        try:
            content = self._content(item, data)
            analysis = self.pipeline.analyse(item, content)
        except BastionError as exc:  # the content itself is bad (corrupt video, unreachable URL): final
            with self.db.session() as s:
                fresh = s.get(ContentItem, item.id, with_for_update=s.get_bind().dialect.name == "postgresql")
                if fresh is not None and fresh.status == "pending":
                    self.pipeline.record_failure(s, fresh, exc)
                self.queue.complete(s, job.id)
            return
        try:
            with self.db.session() as s:
                fresh = s.get(ContentItem, item.id)  # the unique (content, version) key and the lease guard races
                if fresh is not None and fresh.status == "pending":
                    self.pipeline.record(s, fresh, analysis, queued=True)
                self.queue.complete(s, job.id)
        except IntegrityError:  # another attempt decided it first (unique content/version): nothing to do
            with self.db.session() as s:
                self.queue.complete(s, job.id)
        self.processed += 1

    def _content(self, item: ContentItem, data: bytes | None) -> Content:
        if item.source == "url" and data is None:
            private = self.settings.fetch_allow_private  # a closed network (or a test): any address, any port
            fetched = fetch_url(item.url or "", max_bytes=self.settings.max_upload_bytes,
                                timeout=FETCH_TIMEOUT_SECONDS, allow_private=private,
                                **({"allowed_ports": range(1, 65536)} if private else {}))
            if fetched.status >= 400:
                raise BastionError(f"fetching the URL answered HTTP {fetched.status}", code="url_fetch_status",
                                   status=fetched.status)
            content = Content.from_bytes(fetched.data, self.settings)
            content.url = item.url
            return content
        if data is None:
            raise BastionError("the submission's bytes are missing", code="content_missing")
        if item.source == "text":
            return Content.from_text(data.decode("utf-8"), self.settings)
        return Content.from_bytes(data, self.settings)

    # -- the loop -----------------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, idle_sleep: float = 0.2) -> None:
        """Work until ``stop`` is set; sleeps ``idle_sleep`` when there was nothing to do."""
        log.info("worker started", extra={"worker": self.name})
        while not stop.is_set():
            try:
                did = self.run_once()
            except Exception:  # noqa: BLE001 - a database outage: wait and go on
                log.exception("worker pass failed")
                did = 0
            if not did:
                stop.wait(idle_sleep)
        log.info("worker stopped", extra={"worker": self.name, "processed": self.processed})


def start_worker_threads(db: Database, settings: Settings, matcher: LiveMatcher, count: int,
                         metrics: PipelineMetrics | None = None) -> tuple[threading.Event, list[threading.Thread]]:
    """``count`` worker threads sharing ``matcher`` (for ``bastion serve``); set the event to stop them."""
    stop = threading.Event()
    threads = []
    for i in range(count):
        worker = Worker(db, settings, matcher=matcher, metrics=metrics)
        t = threading.Thread(target=worker.run, args=(stop,), name=f"bastion-worker-{i}", daemon=True)
        t.start()
        threads.append(t)
    return stop, threads
