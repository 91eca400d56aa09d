"""Tech Against Terrorism's hash list (TCAP) API behind :class:`bastion.exchanges.base.Exchange`.

Modelled on python-threatexchange 1.2.17's client (``exchanges/clients/techagainstterrorism/api.py``) and tested
against recorded responses of its shape (tests/data/tat_*.json) on loopback:

1. ``POST token-auth/tcap/`` with the form ``username``, ``password`` -> ``{"token": "<JWT>"}``
2. ``GET api/hash-list/v2/all?order=asc&after=<checkpoint>`` with ``Authorization: Bearer <JWT>`` ->
   ``{"count", "next", "previous", "checkpoint", "results": [{"id", "hash_digest", "algorithm", "ideology",
   "file_type", "deleted", "created_on", "updated_on"}]}``; ``next`` (a URL, or just its query) pages on, and
   ``checkpoint`` ("<timestamp>,<id>" of the last record) is where the next walk starts.

A ``deleted`` record is a retraction. TAT's fields are kept as ``tat_<field>`` labels and its ideology is mapped into
the taxonomy (``islamist`` -> ``violent_islamist``, ``far-right`` -> ``violent_far_right``), as the TAT file reader
(:mod:`bastion.banks.formats`) does. TAT takes no contributions or feedback through this API.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from bastion import signals as signal_registry
from bastion.banks.formats import TAT_IDEOLOGY
from bastion.errors import BastionError, InvalidInput
from bastion.exchanges.base import ExchangedSignal, Feedback, FetchPage, PushResult
from bastion.exchanges.threatexchange import ExchangeUnavailable, _load_cursor

KIND = "tat"
DEFAULT_API = "https://app.terrorismanalytics.org/"
AUTH_PATH = "token-auth/tcap/"
LIST_PATH = "api/hash-list/v2/all"
TAT_ALGORITHMS = {"pdq": "pdq", "md5": "md5", "sha256": "sha256", "sha-256": "sha256"}


def entry_to_signal(entry: dict[str, Any]) -> ExchangedSignal:
    """One hash-list record as a signal (raises ``InvalidInput``/``InvalidSignal`` for a record Bastion can't use)."""
    where = f"TAT record {entry.get('id')}"
    algorithm = str(entry.get("algorithm") or "").strip().lower()
    stype = TAT_ALGORITHMS.get(algorithm)
    if stype is None:
        raise InvalidInput(
            f"{where}: algorithm {entry.get('algorithm')!r} has no Bastion equivalent", code="unsupported_signal_type"
        )
    try:
        value = signal_registry.validate(stype, str(entry.get("hash_digest") or ""))
    except BastionError as exc:
        raise type(exc)(f"{where}: {exc.message}", code=exc.code) from None
    labels = {
        f"tat_{k}": str(v)
        for k, v in entry.items()
        if k not in ("hash_digest", "algorithm", "deleted") and v not in (None, "")
    }
    ideology = TAT_IDEOLOGY.get(str(entry.get("ideology") or "").strip().lower())
    if ideology:
        labels["ideology"] = ideology
    labels["source"] = "tech_against_terrorism"
    created_at = None
    if isinstance(entry.get("created_on"), str):
        try:
            created_at = datetime.fromisoformat(entry["created_on"].replace("Z", "+00:00"))
        except ValueError:
            created_at = None
    elif isinstance(entry.get("updated_on"), int | float):
        created_at = datetime.fromtimestamp(float(entry["updated_on"]), UTC)
    return ExchangedSignal(
        stype,
        value,
        labels,
        source_id=f"tat:{entry.get('id')}",
        contributor="tech_against_terrorism",
        created_at=created_at,
        retracted=entry.get("deleted") is True or str(entry.get("deleted")).lower() == "true",
    )


class TATHashListAPI:
    """The TCAP hash list for one account. Cursor: ``{"after": <checkpoint>, "next": <page URL or query>}``."""

    kind = KIND

    def __init__(
        self,
        name: str,
        username: str,
        password: str,
        *,
        base_url: str = DEFAULT_API,
        client: httpx.Client | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.username = username
        self.password = password
        self.base_url = base_url.rstrip("/") + "/"
        self._client = client or httpx.Client(timeout=timeout)
        self._token: str | None = None
        self.rejected: list[dict[str, Any]] = []

    @property
    def can_push(self) -> bool:
        return False

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"Tech Against Terrorism could not be reached: {exc}") from None
        if response.status_code in (400, 401, 403):
            raise ExchangeUnavailable("Tech Against Terrorism refused the credentials", code="exchange_unauthorised")
        if response.status_code != 200:
            raise ExchangeUnavailable(f"Tech Against Terrorism answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ExchangeUnavailable("Tech Against Terrorism answered something that is not JSON") from None

    def token(self) -> str:
        if self._token is None:
            body = self._request(
                "POST",
                self.base_url + AUTH_PATH,
                data={"username": self.username, "password": self.password, "resend": "false"},
            )
            if not isinstance(body, dict) or not body.get("token"):
                raise ExchangeUnavailable("Tech Against Terrorism gave no token", code="exchange_unauthorised")
            self._token = str(body["token"])
        return self._token

    def fetch(self, cursor: str | None, limit: int = 1000) -> FetchPage:
        state = _load_cursor(cursor)
        self.rejected = []
        after = str(state.get("after") or "")
        headers = {"Authorization": f"Bearer {self.token()}"}
        following = state.get("next")
        if following:
            url = (
                following
                if str(following).startswith(("http://", "https://"))
                else (f"{self.base_url}{LIST_PATH}?{following}")
            )
            body = self._request("GET", url, headers=headers)
        else:
            body = self._request(
                "GET", self.base_url + LIST_PATH, headers=headers, params={"order": "asc", "after": after}
            )
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ExchangeUnavailable("Tech Against Terrorism answered JSON that is not a hash-list page")
        signals = []
        for entry in body["results"]:
            try:
                signals.append(entry_to_signal(entry))
            except BastionError as exc:
                self.rejected.append({"id": entry.get("id"), "code": exc.code, "message": exc.message})
        checkpoint = str(body.get("checkpoint") or after)
        if body.get("next"):
            return FetchPage(
                signals, json.dumps({"after": after, "next": body["next"], "checkpoint": checkpoint}), True
            )
        return FetchPage(signals, json.dumps({"after": checkpoint}), False)

    def push(self, signals: Sequence[ExchangedSignal]) -> PushResult:
        raise InvalidInput(
            "the Tech Against Terrorism hash list takes no contributions here", code="exchange_read_only"
        )

    def send_feedback(self, feedback: Sequence[Feedback]) -> int:
        return 0  # the hash-list API has no feedback endpoint


__all__ = ["TATHashListAPI", "entry_to_signal", "KIND"]
