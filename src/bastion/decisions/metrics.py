"""Prometheus instruments of the decision pipeline: submissions, decisions by outcome, matches per bank, hashing
and matching latency, and the job queue's depth and age (read from the database at scrape time, so every API
instance reports the same, whole-deployment numbers)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from bastion.storage.db import Database

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _QueueCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Any:
        from bastion.jobs.queue import JobQueue

        jobs = GaugeMetricFamily("bastion_jobs", "Jobs waiting (queued) or being worked on (running).",
                                 labels=["status"])
        age = GaugeMetricFamily("bastion_jobs_oldest_queued_seconds", "Age of the oldest queued job.")
        try:
            depth = JobQueue(self.db, "metrics").depth()
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot read the job queue: %s", type(exc).__name__)
            return
        jobs.add_metric(["queued"], depth["queued"])
        jobs.add_metric(["running"], depth["running"])
        age.add_metric([], depth["oldest_queued_seconds"])
        yield jobs
        yield age


class PipelineMetrics:
    """Counters and histograms updated by :class:`~bastion.decisions.pipeline.DecisionPipeline` in this process."""

    def __init__(self, registry: CollectorRegistry, db: Database | None = None) -> None:
        self.submissions = Counter("bastion_submissions", "Submissions accepted, by source and content type.",
                                   ["source", "content_type"], registry=registry)
        self.decisions = Counter("bastion_decisions", "Automated decisions made, by outcome.", ["outcome"],
                                 registry=registry)
        self.matches = Counter("bastion_matches", "Bank entries matched by decided submissions, by bank.", ["bank"],
                               registry=registry)
        self.hash_seconds = Histogram("bastion_hash_duration_seconds", "Time to compute a submission's signals.",
                                      buckets=_LATENCY_BUCKETS, registry=registry)
        self.match_seconds = Histogram("bastion_match_duration_seconds", "Time to match a submission's signals.",
                                       buckets=_LATENCY_BUCKETS, registry=registry)
        if db is not None:
            registry.register(_QueueCollector(db))

    def observe(self, source: str, content_type: str | None, outcome: str, banks: list[str],
                timings: dict[str, float]) -> None:
        self.submissions.labels(source, content_type or "unknown").inc()
        self.decisions.labels(outcome).inc()
        for bank in banks:
            self.matches.labels(bank).inc()
        if "hash" in timings:
            self.hash_seconds.observe(timings["hash"])
        if "match" in timings:
            self.match_seconds.observe(timings["match"])
