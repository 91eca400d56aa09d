"""A forum hub behind the one exchange interface (:class:`bastion.exchanges.base.Exchange`).

``ForumExchange`` speaks the hub's HTTP API as one member. It signs what it sends with the member's Ed25519 key and
numbers each batch (the hub's ``last_batch + 1``, read from the hub before sending, so a member that crashed after
sending never needs to remember its counter); a batch of contributions is signed once, over the Merkle root of its
payloads. What it fetches it verifies again: each contribution's payload, rebuilt from the fields served, through
its proof to a root its contributor signed, with the contributor's key as this member *pinned* it the first time it
saw it (trust on first use; each batch signature is checked once, however many of its rows a page holds).
A row whose signature fails, or whose contributor's key changed, is not returned: it is
listed in :attr:`ForumExchange.rejected` with its code, so the hub cannot put words in a member's mouth.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion import signals as registry
from bastion.banks.taxonomy import normalize_labels
from bastion.errors import BastionError, Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from bastion.exchanges.base import ExchangedSignal, Feedback, FetchPage, PushResult
from bastion.forum import signing

KIND = "bastion-forum"


class ForumUnreachable(BastionError):
    """The hub could not be reached or answered with something that is not its API."""

    code = "forum_unreachable"
    http_status = 502
    exit_code = 6


# The hub's refusals keep their code and status here, and their kind (a CLI's exit code follows it).
_ERROR_CLASSES: dict[int, type[BastionError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ForumExchange:
    """One member's connection to a hub (see the module docstring)."""

    kind = KIND

    def __init__(
        self,
        name: str,
        url: str,
        api_key: str,
        signing_key: Ed25519PrivateKey | None = None,
        *,
        pinned_keys: dict[str, str] | None = None,
        timeout: float = 15.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.signing_key = signing_key
        self.pinned_keys: dict[str, str] = dict(pinned_keys or {})  # member name -> public key, first seen
        self.rejected: list[dict[str, Any]] = []  # rows of the last fetch that failed verification
        self._batches = signing.BatchVerifier()  # batch signatures already checked
        self.last_ids: list[str] = []  # the hub's ids of the last push, in order
        self._client = client or httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"})
        self._member: str | None = None

    def close(self) -> None:
        self._client.close()

    # -- HTTP --------------------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            r = self._client.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ForumUnreachable(f"the forum hub at {self.url} cannot be reached: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            raise ForumUnreachable(f"the forum hub at {self.url} answered {r.status_code} without JSON") from None
        if r.status_code >= 400:
            err = body.get("error") if isinstance(body, dict) else None
            if not isinstance(err, dict):
                raise ForumUnreachable(f"the forum hub at {self.url} answered {r.status_code}")
            cls = _ERROR_CLASSES.get(r.status_code, BastionError)
            exc = cls(
                f"the forum hub refused: {err.get('message', '')}",
                code=str(err.get("code", "error")),
                **(err.get("details") or {}),
            )
            exc.http_status = r.status_code
            raise exc
        return body

    def me(self) -> dict[str, Any]:
        me = self._call("GET", "/forum/v1/me")["member"]
        self._member = me["name"]
        return me

    @property
    def member(self) -> str:
        if self._member is None:
            self.me()
        assert self._member is not None
        return self._member

    def register_public_key(self) -> dict[str, Any]:
        if self.signing_key is None:
            raise InvalidInput("this exchange has no signing key", code="no_signing_key")
        return self._call(
            "PUT", "/forum/v1/me/public-key", json={"public_key": signing.public_key_text(self.signing_key)}
        )["member"]

    def members(self) -> dict[str, str | None]:
        return {m["name"]: m["public_key"] for m in self._call("GET", "/forum/v1/members")["members"]}

    def incidents(self) -> list[dict[str, Any]]:
        return self._call("GET", "/forum/v1/incidents")["incidents"]

    # -- fetching ----------------------------------------------------------------------------------------------------
    def _key_for(self, member: str, hub_keys: dict[str, str | None] | None) -> tuple[str | None, str | None]:
        """(pinned key, problem code): the key pinned for ``member``, pinning the hub's on first sight. A pinned key
        is kept whatever the hub says now: rows signed with a key the hub swapped in fail their signature check."""
        if member in self.pinned_keys:
            return self.pinned_keys[member], None
        if hub_keys is None or not hub_keys.get(member):
            return None, "member_key_unknown"
        self.pinned_keys[member] = str(hub_keys[member])
        return self.pinned_keys[member], None

    def fetch(self, cursor: str | None, limit: int = 1000) -> FetchPage:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["after"] = cursor
        body = self._call("GET", "/forum/v1/signals", params=params)
        self.rejected = []
        hub_keys: dict[str, str | None] | None = None
        out: list[ExchangedSignal] = []
        changes = body.get("changes", [])
        keys: dict[str, tuple[str | None, str | None]] = {}
        for row in changes:
            contributor = str(row.get("contributor", ""))
            if contributor not in keys:
                if hub_keys is None and contributor not in self.pinned_keys:
                    hub_keys = self.members()  # once a page, only for a contributor not seen before
                keys[contributor] = self._key_for(contributor, hub_keys)
        whole = self._whole_batches(changes, keys)
        for position, row in enumerate(changes):
            contributor = str(row.get("contributor", ""))
            key, problem = keys[contributor]
            if problem is None:
                problem = self._check(row, contributor, key or "", self._batches, position in whole)
            if problem is not None:
                self.rejected.append(
                    {"id": row.get("id"), "seq": row.get("seq"), "contributor": contributor, "code": problem}
                )
                continue
            consensus = row.get("consensus") or {}
            out.append(
                ExchangedSignal(
                    signal_type=row["signal_type"],
                    value=row["value"],
                    labels=dict(row.get("labels") or {}),
                    source_id=str(row["id"]),
                    contributor=contributor,
                    created_at=_parse_time(row.get("created_at")),
                    retracted=bool(row.get("retracted")),
                    incident=row.get("incident"),
                    extra={
                        "consensus": consensus.get("status"),
                        "score": consensus.get("score"),
                        "feedback": consensus.get("counts"),
                        "change": row.get("change"),
                        "priority": bool(row.get("priority")),
                        "seq": row.get("seq"),
                        "signature": row.get("signature"),
                    },
                )
            )
        return FetchPage(out, body.get("next_cursor"), bool(body.get("more")))

    @staticmethod
    def _payload(row: dict[str, Any], contributor: str) -> dict[str, Any]:
        return signing.contribution_payload(
            contributor,
            int(row["batch"]),
            int(row["index"]),
            str(row["signal_type"]),
            str(row["value"]),
            dict(row.get("labels") or {}),
            row.get("incident"),
        )

    def _whole_batches(self, changes: list[dict[str, Any]], keys: dict[str, tuple[str | None, str | None]]) -> set[int]:
        """Positions of rows verified as part of a batch the page holds whole: its root is rebuilt from all its
        leaves (n - 1 hashes) instead of climbing every row's proof (n log n), and its signature checked once. Rows
        of batches the page holds in part are checked one by one through their proofs (in :meth:`_check`)."""
        groups: dict[tuple[str, int, int, str], dict[int, tuple[int, bytes]]] = {}
        for position, row in enumerate(changes):
            contributor = str(row.get("contributor", ""))
            if keys.get(contributor, (None, "x"))[1] is not None:
                continue
            try:
                group = (contributor, int(row["batch"]), int(row["batch_size"]), str(row.get("signature", "")))
                leaf = signing.leaf_hash(self._payload(row, contributor))
                index = int(row["index"])
            except (KeyError, TypeError, ValueError):
                continue
            groups.setdefault(group, {})[index] = (position, leaf)
        verified: set[int] = set()
        for (contributor, batch, size, signature), rows in groups.items():
            if size < 1 or sorted(rows) != list(range(size)):
                continue
            root = signing.merkle_root([rows[i][1] for i in range(size)]).hex()
            try:
                signing.verify(
                    keys[contributor][0] or "", signing.batch_payload(contributor, batch, size, root), signature
                )
            except BastionError:
                continue  # each row is then checked alone, and refused with its own code
            verified.update(position for position, _ in rows.values())
        return verified

    @classmethod
    def _check(
        cls, row: dict[str, Any], contributor: str, key: str, batches: signing.BatchVerifier, verified: bool = False
    ) -> str | None:
        """None when the row is what its contributor signed (and, if retracted, retracted by them), else a code.
        ``verified``: the row's contribution was already checked as part of its whole batch."""
        try:
            if not verified:
                payload = cls._payload(row, contributor)
                batches.verify(
                    key, payload, int(row["batch_size"]), str(row.get("proof", "")), str(row.get("signature", ""))
                )
            if row.get("retracted"):
                r = row.get("retraction") or {}
                signing.verify(
                    key,
                    signing.retraction_payload(
                        contributor, int(r.get("batch", 0)), int(r.get("index", -1)), int(row["id"])
                    ),
                    str(r.get("signature", "")),
                )
            registry.validate(str(row["signal_type"]), str(row["value"]))
        except BastionError as exc:
            return exc.code
        except (KeyError, TypeError, ValueError):
            return "malformed_row"
        return None

    # -- sending -----------------------------------------------------------------------------------------------------
    @property
    def can_push(self) -> bool:
        return self.signing_key is not None

    def _send(self, path: str, build: Any, count: int) -> dict[str, Any]:
        """Sign and send one batch numbered after the hub's last; once more if another batch went first."""
        if self.signing_key is None:
            raise InvalidInput("this exchange has no signing key", code="no_signing_key")
        for attempt in range(2):
            me = self.me()
            batch = int(me["last_batch"]) + 1
            items = [build(me["name"], batch, i) for i in range(count)]
            try:
                return self._call("POST", path, json={"batch": batch, "items": items})
            except BastionError as exc:
                if exc.code in ("batch_replayed", "batch_out_of_order") and attempt == 0:
                    continue
                raise
        raise Conflict("the hub kept refusing the batch number", code="batch_out_of_order")  # pragma: no cover

    def push(self, signals: Sequence[ExchangedSignal]) -> PushResult:
        """Contribute hashes (canonical values and labels, signed); ``last_ids`` gets the hub's ids."""
        if not signals:
            self.last_ids = []
            return PushResult(0)
        assert self.signing_key is not None or not self.can_push
        key = self.signing_key
        canon = [
            (s.signal_type, registry.validate(s.signal_type, s.value), normalize_labels(s.labels), s.incident)
            for s in signals
        ]

        signed: dict[tuple[str, int], str] = {}  # (member, batch) -> the batch signature

        def build(member: str, batch: int, i: int) -> dict[str, Any]:
            if (member, batch) not in signed:
                payloads = [
                    signing.contribution_payload(member, batch, j, stype, value, labels, incident)
                    for j, (stype, value, labels, incident) in enumerate(canon)
                ]
                signed[(member, batch)] = signing.sign_contributions(key, member, batch, payloads)  # type: ignore[arg-type]
            stype, value, labels, incident = canon[i]
            return {
                "signal_type": stype,
                "value": value,
                "labels": labels,
                "incident": incident,
                "signature": signed[(member, batch)],
            }

        body = self._send("/forum/v1/contributions", build, len(canon))
        self.last_ids = [str(i) for i in body["ids"]]
        return PushResult(int(body["accepted"]))

    def send_feedback(self, feedback: Sequence[Feedback]) -> int:
        if not feedback:
            return 0
        key = self.signing_key
        items = list(feedback)

        def build(member: str, batch: int, i: int) -> dict[str, Any]:
            f = items[i]
            payload = signing.feedback_payload(member, batch, i, int(f.source_id), f.kind, dict(f.labels), f.note)
            return {
                "contribution": int(f.source_id),
                "kind": f.kind,
                "labels": dict(f.labels),
                "note": f.note,
                "signature": signing.sign(key, payload),
            }  # type: ignore[arg-type]

        return int(self._send("/forum/v1/feedback", build, len(items))["accepted"])

    def retract(self, source_ids: Sequence[str]) -> int:
        """Withdraw this member's own contributions (the hub refuses anyone else's: ``not_contributor``)."""
        if not source_ids:
            return 0
        key, ids = self.signing_key, [int(i) for i in source_ids]

        def build(member: str, batch: int, i: int) -> dict[str, Any]:
            payload = signing.retraction_payload(member, batch, i, ids[i])
            return {"contribution": ids[i], "signature": signing.sign(key, payload)}  # type: ignore[arg-type]

        return int(self._send("/forum/v1/retractions", build, len(ids))["accepted"])

    def activate_incident(self, name: str, description: str = "", window_hours: int = 24) -> dict[str, Any]:
        """For a member that is a forum lead."""
        return self._call(
            "POST", "/forum/v1/incidents", json={"name": name, "description": description, "window_hours": window_hours}
        )["incident"]

    def deactivate_incident(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/forum/v1/incidents/{name}")["incident"]
