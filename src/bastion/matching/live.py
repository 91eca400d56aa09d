"""A matcher shared by the threads of one process and kept fresh from the bank change feed.

Every API process and every worker holds one :class:`LiveMatcher`. Before a match it refreshes the index when the
last refresh is older than ``BASTION_INDEX_REFRESH_SECONDS`` (default 1 s): new bank signals are read by id and
disabled or deleted entries from ``bank_changes`` (:meth:`Matcher.refresh`), never a full reload. A hash banked
anywhere is therefore matched by every process within about a second of its commit; a background thread
(:meth:`start_refresher`) keeps idle processes just as fresh, so the first request after a quiet spell does not pay
for a large catch-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from bastion.matching.matcher import Matcher, MatchResult, open_matcher
from bastion.settings import Settings
from bastion.signals.base import Signal
from bastion.storage.db import Database

log = logging.getLogger(__name__)


class LiveMatcher:
    def __init__(self, db: Database, settings: Settings, *, refresh_seconds: float | None = None) -> None:
        self.db = db
        self.settings = settings
        self.refresh_seconds = settings.index_refresh_seconds if refresh_seconds is None else refresh_seconds
        self._lock = threading.RLock()
        self._matcher: Matcher | None = None
        self._refreshed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def matcher(self) -> Matcher:
        """The underlying matcher, loaded (from the saved snapshot when there is one) on first use."""
        with self._lock:
            if self._matcher is None:
                self._matcher = open_matcher(self.db, self.settings)
                self._refreshed_at = time.monotonic()
            return self._matcher

    @property
    def loaded(self) -> bool:
        return self._matcher is not None

    def refresh(self, *, force: bool = False) -> int:
        """Apply bank changes since the last refresh (if stale, or always with ``force``); returns signals changed."""
        with self._lock:
            matcher = self.matcher
            if not force and time.monotonic() - self._refreshed_at < self.refresh_seconds:
                return 0
            changed = matcher.refresh()
            self._refreshed_at = time.monotonic()
            return changed

    def match(self, signals: Iterable[Signal], *, bank_ids: Iterable[int] | None = None) -> MatchResult:
        with self._lock:
            self.refresh()
            return self.matcher.match(signals, bank_ids=bank_ids)

    # -- background refresh ---------------------------------------------------------------------------------------
    def start_refresher(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="bastion-index-refresh", daemon=True)
        self._thread.start()

    def stop_refresher(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # a database hiccup must not kill the refresher; the next tick retries
                log.exception("index refresh failed")
