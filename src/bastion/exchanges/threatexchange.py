"""Meta's ThreatExchange: its files (as python-threatexchange writes them) and its Graph API's /threat_updates.

Bastion does not depend on the ``threatexchange`` package (it pulls in FAISS and its own hashers); it speaks the
same formats and the same API, modelled on python-threatexchange 1.2.17, and is tested against recorded responses
of that shape (tests/data/threatexchange_*.json) served on loopback.

Files
    ``te-csv``: ``threatexchange dataset -P --csv``: header ``signal_type,signal_str,collab,category,tags``; the
    category is the aggregate opinion (``POSITIVE_CLASS``, ``NEGATIVE_CLASS``, ``INVESTIGATION_SEED``) and tags are
    space-separated. ``te-signals``: the simple signal file python-threatexchange's file exchange reads
    (``LocalFileSignalExchangeAPI``): one ``<signal_type> <signal>`` per line (or a bare signal, with a default type).
API
    ``GET /<privacy_group>/threat_updates/?start_time=…&limit=…&fields=…`` pages through ``data`` with
    ``paging.next``; an update with ``should_delete`` (or without ``descriptors``) is a retraction. Feedback becomes
    reactions on the indicator's descriptors (``POST /<descriptor_id>/`` with ``reactions=…``).

Signal types map by name (python-threatexchange's ``pdq``, ``video_md5``, ``url``...) or by ThreatExchange indicator
type (``HASH_PDQ``, ``HASH_MD5``, ``URI``...). Labels keep everything the source said: ``te_collab``,
``te_category``, ``te_tags``, ``te_status``, ``te_owner_app_ids``, ``te_descriptor_ids``, ``te_indicator_type``.
A ``NEGATIVE_CLASS`` / ``NON_MALICIOUS`` opinion is kept as a label, not dropped: whether to match on it is policy's
business.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from bastion import signals as signal_registry
from bastion.errors import BastionError, InvalidInput
from bastion.exchanges.base import ExchangedSignal, Feedback, FetchPage, PushResult
from bastion.signals.text import normalize_text

KIND = "threatexchange"
DEFAULT_API = "https://graph.facebook.com/v26.0"
TE_CSV_COLUMNS = ("signal_type", "signal_str", "collab", "category", "tags")
#: python-threatexchange signal type names -> Bastion's
TE_NAMES = {
    "pdq": "pdq",
    "video_md5": "md5",
    "md5": "md5",
    "photo_md5": "md5",
    "video_sha256": "sha256",
    "sha256": "sha256",
    "url": "url",
    "url_md5": "url_md5",
    "raw_text": "text",
    "vpdq": "vpdq",
    "video_tmk_pdqf": "tmk",
}
#: ThreatExchange indicator types -> Bastion's
TE_INDICATOR_TYPES = {
    "HASH_PDQ": "pdq",
    "HASH_MD5": "md5",
    "HASH_VIDEO_MD5": "md5",
    "HASH_SHA256": "sha256",
    "HASH_VIDEO_SHA256": "sha256",
    "URI": "url",
    "RAW_URI": "url",
    "UNCLICKABLE_URL": "url",
    "HASH_URL_MD5": "url_md5",
    "TEXT_STRING": "text",
    "HASH_TMK": "tmk",
}
#: Bastion signal type -> python-threatexchange name (writing te-csv)
TE_NAMES_OUT = {
    "pdq": "pdq",
    "md5": "video_md5",
    "sha256": "video_sha256",
    "url": "url",
    "url_md5": "url_md5",
    "vpdq": "vpdq",
    "tmk": "video_tmk_pdqf",
}
#: feedback kind -> ThreatExchange reaction (developers.facebook.com/docs/threat-exchange/reference/reacting)
REACTIONS = {
    "agree": "HELPFUL",
    "seen": "SAW_THIS_TOO",
    "false_positive": "NOT_HELPFUL",
    "disagree_label": "DISAGREE_WITH_TAGS",
}
UPDATE_FIELDS = "indicator,type,last_updated,should_delete,descriptors{id,reactions,owner{id},tags,status}"


class ExchangeUnavailable(BastionError):
    """An exchange's API could not be reached, refused the credentials, or answered something that is not its API."""

    code = "exchange_unavailable"
    http_status = 502
    exit_code = 6


def bastion_type(te_name: str, value: str, where: str) -> tuple[str, str]:
    """(Bastion signal type, canonical value) for a python-threatexchange type name or TE indicator type."""
    name = te_name.strip()
    stype = TE_NAMES.get(name.lower()) or TE_INDICATOR_TYPES.get(name.upper())
    if stype is None:
        raise InvalidInput(
            f"{where}: ThreatExchange signal type {te_name!r} has no Bastion equivalent", code="unsupported_signal_type"
        )
    if stype == "text":  # TE carries the raw text; Bastion exchanges the digest of its normal form
        value = hashlib.sha256(normalize_text(value).encode("utf-8")).hexdigest()
    try:
        return stype, signal_registry.validate(stype, value)
    except BastionError as exc:
        raise type(exc)(f"{where}: {exc.message}", code=exc.code) from None


# -- files -----------------------------------------------------------------------------------------------------------
def read_te_csv(stream: IO[str]) -> Iterator[ExchangedSignal]:
    """Signals of a ``threatexchange dataset -P --csv`` file; the first bad row raises with its line."""
    reader = csv.DictReader(stream)
    missing = [c for c in ("signal_type", "signal_str") if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(
            f"not a ThreatExchange CSV: no column {', '.join(missing)} (header {','.join(TE_CSV_COLUMNS)})",
            code="missing_column",
        )
    for row in reader:
        line = reader.line_num
        stype, value = bastion_type(row.get("signal_type") or "", row.get("signal_str") or "", f"line {line}")
        labels = {f"te_{k}": v.strip() for k in ("collab", "category", "tags") if (v := row.get(k) or "").strip()}
        yield ExchangedSignal(
            stype,
            value,
            labels,
            source_id=f"{row.get('collab') or ''}:{stype}:{value}"[:200],
            contributor=row.get("collab") or None,
        )


def read_te_signals(stream: IO[str], default_type: str | None = None) -> Iterator[ExchangedSignal]:
    """Signals of a simple signal file: ``<signal_type> <signal>`` per line, or bare signals of ``default_type``."""
    for line_no, line in enumerate(stream, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if default_type:
            te_name, signal = default_type, text
        else:
            te_name, _, signal = text.partition(" ")
            if not signal.strip():
                raise InvalidInput(f"line {line_no}: expected '<signal_type> <signal>'", code="missing_field")
        stype, value = bastion_type(te_name, signal.strip(), f"line {line_no}")
        yield ExchangedSignal(stype, value, {}, source_id=f"{stype}:{value}"[:200])


def write_te_csv(signals: Iterable[ExchangedSignal], out: IO[str]) -> int:
    """Write signals as ``threatexchange dataset --csv`` does (types it has no name for are left out)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TE_CSV_COLUMNS)
    n = 0
    for sig in signals:
        name = TE_NAMES_OUT.get(sig.signal_type)
        if name is None or sig.retracted:
            continue
        category = sig.labels.get("te_category") or "POSITIVE_CLASS"
        writer.writerow(
            [
                name,
                sig.value,
                sig.labels.get("te_collab") or sig.contributor or "",
                category,
                sig.labels.get("te_tags", ""),
            ]
        )
        n += 1
    return n


# -- the Graph API -----------------------------------------------------------------------------------------------------
def _without_token(url: str) -> str:
    """A paging URL without its access_token (cursors are stored; the token is not)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "access_token"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def update_to_signal(update: dict[str, Any]) -> ExchangedSignal | None:
    """One /threat_updates record as a signal (None: an indicator type Bastion does not match)."""
    te_type = str(update.get("type") or "")
    if te_type.upper() not in TE_INDICATOR_TYPES:
        return None
    stype, value = bastion_type(te_type, str(update.get("indicator") or ""), f"indicator {update.get('id')}")
    descriptors = (update.get("descriptors") or {}).get("data") or []
    tags: set[str] = set()
    statuses, owners, ids = [], [], []
    for d in descriptors:
        raw_tags = d.get("tags") or []
        if isinstance(raw_tags, dict):
            raw_tags = [t.get("text", "") for t in raw_tags.get("data", [])]
        tags.update(t for t in raw_tags if t)
        if d.get("status"):
            statuses.append(str(d["status"]))
        if isinstance(d.get("owner"), dict) and d["owner"].get("id"):
            owners.append(str(d["owner"]["id"]))
        if d.get("id"):
            ids.append(str(d["id"]))
    labels = {"te_indicator_type": te_type, "source": "other"}
    for key, values in (
        ("te_tags", sorted(tags)),
        ("te_status", sorted(set(statuses))),
        ("te_owner_app_ids", sorted(set(owners))),
        ("te_descriptor_ids", ids),
    ):
        if values:
            labels[key] = ",".join(values)
    updated = update.get("last_updated")
    created_at = None
    if isinstance(updated, int | float) or (isinstance(updated, str) and updated.isdigit()):
        created_at = datetime.fromtimestamp(int(updated), UTC)
    return ExchangedSignal(
        stype,
        value,
        labels,
        source_id=str(update.get("id") or f"{stype}:{value}"),
        contributor=owners[0] if owners else None,
        created_at=created_at,
        retracted=bool(update.get("should_delete")) or "descriptors" not in update,
        extra={"descriptor_ids": ids},
    )


class ThreatExchangeAPI:
    """ThreatExchange's /threat_updates for one privacy group, behind :class:`bastion.exchanges.base.Exchange`.

    The cursor is JSON: ``{"next": <paging URL without the token>, "time": <highest last_updated so far>}`` while a
    walk is under way, ``{"start_time": <time>}`` once caught up (the next walk starts there; TE keeps deletions for
    90 days).
    """

    kind = KIND

    def __init__(
        self,
        name: str,
        access_token: str,
        privacy_group: int | str,
        *,
        base_url: str = DEFAULT_API,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not str(privacy_group).isdigit():
            raise InvalidInput("a ThreatExchange privacy group is a number", code="invalid_privacy_group")
        self.name = name
        self.access_token = access_token
        self.privacy_group = str(privacy_group)
        self.base_url = base_url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)
        self.rejected: list[dict[str, Any]] = []  # records of the last page Bastion could not take, with a code

    @property
    def can_push(self) -> bool:
        return False

    def close(self) -> None:
        self._client.close()

    def _get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = urlsplit(url)  # a paging URL carries its own query: keep it, add ours (httpx would replace it)
        query = parse_qsl(parts.query, keep_blank_values=True) + [(k, str(v)) for k, v in params.items()]
        query.append(("access_token", self.access_token))
        try:
            response = self._client.get(urlunsplit(parts._replace(query=urlencode(query))))
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"ThreatExchange could not be reached: {exc}") from None
        if response.status_code in (401, 403) or (response.status_code == 400 and "OAuthException" in response.text):
            raise ExchangeUnavailable("ThreatExchange refused the access token", code="exchange_unauthorised")
        if response.status_code != 200:
            raise ExchangeUnavailable(f"ThreatExchange answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise ExchangeUnavailable("ThreatExchange answered something that is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("data", []), list):
            raise ExchangeUnavailable("ThreatExchange answered JSON that is not a threat_updates page")
        return body

    def fetch(self, cursor: str | None, limit: int = 1000) -> FetchPage:
        state = _load_cursor(cursor)
        self.rejected = []
        if state.get("next"):
            body = self._get(str(state["next"]), {})
            highest = int(state.get("time") or 0)
        else:
            params: dict[str, Any] = {"limit": min(limit, 1000), "fields": UPDATE_FIELDS}
            if state.get("start_time"):
                params["start_time"] = int(state["start_time"])
            body = self._get(f"{self.base_url}/{self.privacy_group}/threat_updates/", params)
            highest = int(state.get("start_time") or 0)
        signals = []
        for update in body.get("data", []):
            try:
                sig = update_to_signal(update)
            except BastionError as exc:
                self.rejected.append({"id": update.get("id"), "code": exc.code, "message": exc.message})
                continue
            if str(update.get("last_updated") or "").isdigit():
                highest = max(highest, int(update["last_updated"]))
            if sig is None:
                self.rejected.append(
                    {
                        "id": update.get("id"),
                        "code": "unsupported_signal_type",
                        "message": f"indicator type {update.get('type')!r}",
                    }
                )
            else:
                signals.append(sig)
        following = (body.get("paging") or {}).get("next")
        if following:
            return FetchPage(signals, json.dumps({"next": _without_token(following), "time": highest}), True)
        return FetchPage(signals, json.dumps({"start_time": highest}), False)

    def push(self, signals: Sequence[ExchangedSignal]) -> PushResult:
        raise InvalidInput("Bastion does not contribute to ThreatExchange (read only)", code="exchange_read_only")

    def send_feedback(self, feedback: Sequence[Feedback]) -> int:
        """Each feedback as a reaction on every descriptor of the indicator (looked up on ThreatExchange)."""
        sent = 0
        for fb in feedback:
            reaction = REACTIONS[fb.kind]
            body = self._get(f"{self.base_url}/{fb.source_id}/", {"fields": "descriptors{id}"})
            for d in (body.get("descriptors") or {}).get("data") or []:
                try:
                    response = self._client.post(
                        f"{self.base_url}/{d['id']}/",
                        params={"access_token": self.access_token},
                        data={"reactions": reaction},
                    )
                except httpx.HTTPError as exc:
                    raise ExchangeUnavailable(f"ThreatExchange could not be reached: {exc}") from None
                if response.status_code != 200:
                    raise ExchangeUnavailable(f"ThreatExchange refused the reaction ({response.status_code})")
            sent += 1
        return sent


def _load_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        state = json.loads(cursor)
    except ValueError:
        raise InvalidInput(f"not a cursor of this exchange: {cursor!r:.80}", code="invalid_cursor") from None
    if not isinstance(state, dict):
        raise InvalidInput(f"not a cursor of this exchange: {cursor!r:.80}", code="invalid_cursor")
    return state


def te_csv_text(signals: Iterable[ExchangedSignal]) -> str:
    out = io.StringIO()
    write_te_csv(signals, out)
    return out.getvalue()


__all__ = [
    "ThreatExchangeAPI",
    "ExchangeUnavailable",
    "read_te_csv",
    "read_te_signals",
    "write_te_csv",
    "update_to_signal",
    "KIND",
]
