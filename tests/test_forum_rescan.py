"""bastion.forum.rescan: an organisation's recent submissions against a few new hashes (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

import pytest

from bastion.accounts.service import AccountService
from bastion.content import Content
from bastion.errors import InvalidSignal
from bastion.exchanges.base import ExchangedSignal
from bastion.forum import rescan
from bastion.forum.rescan import hamming_block, hex_words, rescan_recent
from bastion.samples import encode, generate_image
from bastion.settings import reset_settings_cache
from bastion.signals.pdq import PDQSignal, hamming
from bastion.signals.text import TextMinHashSignal
from bastion.storage.db import Database
from bastion.storage.models import ContentItem, utcnow


def flip(value: str, bits: int, rng: random.Random) -> str:
    """``value`` (a PDQ hash) with ``bits`` distinct bits flipped."""
    n = int(value, 16)
    for b in rng.sample(range(256), bits):
        n ^= 1 << b
    return f"{n:064x}"


def rand_pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def add_items(
    db: Database, org: int, items: list[tuple[str, list[dict[str, object]]]], age: timedelta = timedelta()
) -> dict[str, int]:
    """Stored submissions (external id, signals) received ``age`` ago; returns their ids by external id."""
    created = utcnow() - age
    out = {}
    with db.session() as s:
        for external_id, sigs in items:
            item = ContentItem(
                organisation_id=org,
                external_id=external_id,
                source="upload",
                signals=sigs,
                status="decided",
                jurisdictions=[],
                created_at=created,
            )
            s.add(item)
            s.flush()
            out[external_id] = item.id
    return out


@pytest.fixture
def orgs(db: Database) -> tuple[int, int]:
    accounts = AccountService(db)
    return accounts.create_organisation("platform-a").id, accounts.create_organisation("platform-b").id


def test_pdq_hits_within_the_threshold_and_not_beyond(db: Database, orgs: tuple[int, int]) -> None:
    a, _ = orgs
    rng = random.Random(1)
    h = rand_pdq(rng)
    near = flip(h, 10, rng)
    ids = add_items(
        db,
        a,
        [
            ("near", [{"type": "pdq", "value": near, "quality": 90}]),
            ("edge", [{"type": "pdq", "value": flip(h, 31, rng), "quality": 90}]),
            ("over", [{"type": "pdq", "value": flip(h, 32, rng), "quality": 90}]),
            ("far", [{"type": "pdq", "value": rand_pdq(rng), "quality": 90}]),
        ],
    )
    new = ExchangedSignal("pdq", h.upper(), labels={"category": "propaganda"}, source_id="c-1")
    hits = rescan_recent(db, a, [new], utcnow() - timedelta(hours=1))
    assert [(x.external_id, x.distance) for x in hits] == [("near", 10.0), ("edge", 31.0)]
    assert hits[0].content_id == ids["near"] and hits[0].signal is new and hits[0].signal_type == "pdq"
    assert hits[0].content_value == near


def test_pdq_threshold_follows_the_setting(
    db: Database, orgs: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = orgs
    rng = random.Random(2)
    h = rand_pdq(rng)
    add_items(db, a, [("d20", [{"type": "pdq", "value": flip(h, 20, rng)}])])
    since = utcnow() - timedelta(hours=1)
    assert len(rescan_recent(db, a, [ExchangedSignal("pdq", h)], since)) == 1
    monkeypatch.setenv("BASTION_PDQ_MATCH_THRESHOLD", "16")
    reset_settings_cache()
    assert rescan_recent(db, a, [ExchangedSignal("pdq", h)], since) == []


def test_a_resized_reencoded_copy_of_a_stored_upload_is_found(db: Database, orgs: tuple[int, int]) -> None:
    a, _ = orgs
    original = generate_image(3)
    stored = PDQSignal.compute(Content.from_bytes(encode(original, "PNG")))[0]
    copy = original.resize((400, 300))
    new = PDQSignal.compute(Content.from_bytes(encode(copy, "JPEG", quality=70)))[0]
    assert stored.value != new.value
    add_items(db, a, [("upload-1", [{"type": "md5", "value": md5("x")}, stored.to_dict()])])
    hits = rescan_recent(db, a, [ExchangedSignal("pdq", new.value)], utcnow() - timedelta(minutes=5))
    assert [h.external_id for h in hits] == ["upload-1"]
    assert hits[0].distance == hamming(stored.value, new.value) <= 31


def test_exact_types_by_equality_only_in_the_window_and_the_organisation(db: Database, orgs: tuple[int, int]) -> None:
    a, b = orgs
    add_items(
        db,
        a,
        [
            ("hit", [{"type": "md5", "value": md5("known")}, {"type": "sha256", "value": "ab" * 32}]),
            ("miss", [{"type": "md5", "value": md5("other")}]),
            ("pdq-same-text", [{"type": "pdq", "value": md5("known") * 2}]),
        ],
    )
    add_items(db, a, [("old", [{"type": "md5", "value": md5("known")}])], age=timedelta(days=3))
    add_items(db, b, [("other-org", [{"type": "md5", "value": md5("known")}])])
    new = [
        ExchangedSignal("md5", md5("known").upper(), source_id="1"),
        ExchangedSignal("sha256", "cd" * 32, source_id="2"),
    ]
    hits = rescan_recent(db, a, new, utcnow() - timedelta(days=1))
    assert [(h.external_id, h.signal_type, h.distance, h.signal.source_id) for h in hits] == [("hit", "md5", 0.0, "1")]
    assert [h.external_id for h in rescan_recent(db, a, new, utcnow() - timedelta(days=7))] == ["hit", "old"]
    assert [h.external_id for h in rescan_recent(db, b, new, utcnow() - timedelta(days=7))] == ["other-org"]


def test_other_types_by_their_own_distance(db: Database, orgs: tuple[int, int]) -> None:
    a, _ = orgs
    text, reordered = TextMinHashSignal.examples()
    unrelated = TextMinHashSignal.compute(
        Content.from_text(
            "a completely different sentence about gardening tools and the price of tomatoes in the spring"
        )
    )[0].value
    add_items(
        db,
        a,
        [("t1", [{"type": "text_minhash", "value": text}]), ("t2", [{"type": "text_minhash", "value": unrelated}])],
    )
    hits = rescan_recent(db, a, [ExchangedSignal("text_minhash", text)], utcnow() - timedelta(hours=1))
    assert [(h.external_id, h.distance) for h in hits] == [("t1", 0.0)]


def test_retracted_signals_are_skipped_and_bad_ones_refused(db: Database, orgs: tuple[int, int]) -> None:
    a, _ = orgs
    add_items(db, a, [("x", [{"type": "md5", "value": md5("known")}])])
    since = utcnow() - timedelta(hours=1)
    assert rescan_recent(db, a, [ExchangedSignal("md5", md5("known"), retracted=True)], since) == []
    assert rescan_recent(db, a, [], since) == []
    with pytest.raises(InvalidSignal):
        rescan_recent(db, a, [ExchangedSignal("pdq", "not-a-hash")], since)
    with pytest.raises(InvalidSignal) as err:
        rescan_recent(db, a, [ExchangedSignal("no_such_type", "x")], since)
    assert err.value.code == "unknown_signal_type"


def test_no_false_hits_against_a_brute_force_reference(
    db: Database, orgs: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of stored hashes (some planted near new ones, across chunk boundaries) give exactly the pairs a
    per-pair Python loop finds: nothing missing, nothing extra."""
    a, _ = orgs
    rng = random.Random(7)
    new = [rand_pdq(rng) for _ in range(40)]
    stored = [rand_pdq(rng) for _ in range(2500)]
    for i in range(0, 2500, 50):  # planted: every 50th near one of the new hashes, at distances 0..40
        stored[i] = flip(new[i % 40], i % 41, rng)
    items = [
        (f"s{i}", [{"type": "pdq", "value": v, "quality": 100}, {"type": "md5", "value": md5(v)}])
        for i, v in enumerate(stored)
    ]
    add_items(db, a, items)
    new_signals = [ExchangedSignal("pdq", v, source_id=str(j)) for j, v in enumerate(new)]
    since = utcnow() - timedelta(hours=1)
    monkeypatch.setattr(rescan, "CHUNK_ROWS", 700)  # several chunks and blocks, uneven sizes
    monkeypatch.setattr(rescan, "BLOCK_ROWS", 256)
    hits = rescan_recent(db, a, new_signals, since)  # hits located by str.find (a few per chunk)
    monkeypatch.setattr(rescan, "FIND_VALUES", 0)
    assert rescan_recent(db, a, new_signals, since) == hits  # ... and by one regex pass
    expected = {
        (f"s{i}", str(j), hamming(v, q)) for i, v in enumerate(stored) for j, q in enumerate(new) if hamming(v, q) <= 31
    }
    got = {(h.external_id, h.signal.source_id, int(h.distance)) for h in hits}
    assert got == expected
    assert len(expected) >= 30  # the planted ones within the threshold


def test_hamming_block_is_popcount_of_xor() -> None:
    rng = random.Random(3)
    xs, qs = [rand_pdq(rng) for _ in range(20)], [rand_pdq(rng) for _ in range(5)]
    d = hamming_block(hex_words(xs), hex_words(qs))
    assert d.shape == (20, 5)
    assert [[int(v) for v in row] for row in d] == [[hamming(x, q) for q in qs] for x in xs]


def test_signals_in_another_json_layout_are_still_read(db: Database, orgs: tuple[int, int]) -> None:
    """Rows whose JSON the fast path does not know (keys in another order, two signals of a type, a value with an
    escaped quote, digits and colons inside values) fall back to row-by-row decoding: same hits, no extra ones."""
    a, _ = orgs
    rng = random.Random(9)
    h = rand_pdq(rng)
    add_items(
        db,
        a,
        [
            ("reordered", [{"value": flip(h, 3, rng), "quality": 80, "type": "pdq"}]),
            (
                "two",
                [
                    {"type": "pdq", "value": rand_pdq(rng)},
                    {"type": "url", "value": "http://a.example:8080/12:34"},
                    {"type": "pdq", "value": flip(h, 5, rng)},
                ],
            ),
            ("quoted", [{"type": "url", "value": 'http://b.example/"pdq"'}, {"type": "pdq", "value": flip(h, 7, rng)}]),
            ("plain", [{"type": "pdq", "value": flip(h, 9, rng)}]),
            ("far", [{"type": "pdq", "value": rand_pdq(rng)}, {"type": "md5", "value": md5("12:")}]),
        ],
    )
    hits = rescan_recent(db, a, [ExchangedSignal("pdq", h)], utcnow() - timedelta(hours=1))
    assert sorted((x.external_id, x.distance) for x in hits) == [
        ("plain", 9.0),
        ("quoted", 7.0),
        ("reordered", 3.0),
        ("two", 5.0),
    ]
