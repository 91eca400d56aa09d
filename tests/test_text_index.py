"""MinHashIndex: LSH candidates verified by signature similarity; same answers as a full scan."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import InvalidInput, InvalidSignal
from bastion.matching.text_index import TARGET_RECALL, MinHashIndex, candidate_probability, choose_banding
from bastion.samples.documents import edit_document, make_document, make_vocabulary
from bastion.settings import reset_settings_cache
from bastion.signals.text import NUM_PERM, decode_signature, encode_signature, minhash_of_text


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    """60 generated documents' signatures and those of copies with 5% of words edited."""
    rng = np.random.default_rng(7)
    vocab = make_vocabulary(rng, 3000)
    docs = [make_document(rng, vocab, int(rng.integers(100, 400))) for _ in range(60)]
    originals = [minhash_of_text(" ".join(d)) for d in docs]
    edited = [minhash_of_text(" ".join(edit_document(rng, vocab, d, 0.05))) for d in docs]
    return originals, edited  # type: ignore[return-value]


def random_signatures(n: int, seed: int) -> list[str]:
    """Signatures of unrelated texts: independent minimums share almost no values."""
    rng = np.random.default_rng(seed)
    return [encode_signature(s) for s in rng.integers(0, 2**32 - 1, (n, NUM_PERM), dtype=np.uint32)]


_decoded: dict[str, np.ndarray] = {}


def brute_force(stored: dict[int, str], value: str, threshold: float) -> list[tuple[int, float]]:
    """The reference answer: every stored signature compared with the query."""
    ids = list(stored)
    for v in stored.values():
        if v not in _decoded:
            _decoded[v] = decode_signature(v)
    sims = np.count_nonzero(np.stack([_decoded[stored[i]] for i in ids]) == decode_signature(value), axis=1)
    out = [(i, float(s) / NUM_PERM) for i, s in zip(ids, sims, strict=True)]
    return sorted([(i, s) for i, s in out if s >= threshold], key=lambda x: (-x[1], x[0]))


@pytest.mark.parametrize("threshold", [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0])
def test_banding_reaches_the_recall_target(threshold: float) -> None:
    rows, bands = choose_banding(threshold)
    assert rows * bands <= NUM_PERM
    assert candidate_probability(threshold, rows, bands) >= TARGET_RECALL
    more = rows + 1  # one more row per band would miss the target (rows is the most selective banding)
    assert more > NUM_PERM or candidate_probability(threshold, more, NUM_PERM // more) < TARGET_RECALL


def test_default_banding_follows_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (MinHashIndex().rows, MinHashIndex().bands) == (3, 42)
    monkeypatch.setenv("BASTION_TEXT_NEAR_DUPLICATE_THRESHOLD", "0.8")
    reset_settings_cache()
    index = MinHashIndex()
    assert index.threshold == 0.8 and (index.rows, index.bands) == choose_banding(0.8)


def test_near_duplicates_found_best_first(corpus: tuple[list[str], list[str]]) -> None:
    originals, edited = corpus
    index = MinHashIndex(0.5)
    index.add(list(range(len(originals))), originals)
    assert len(index) == len(originals)
    for i, value in enumerate(edited):
        hits = index.query(value)
        assert hits and hits[0][0] == i and hits[0][1] >= 0.6
        assert [h[0] for h in hits] == [i]  # nothing unrelated
    assert index.query(originals[3]) == [(3, 1.0)]


def test_results_sorted_by_similarity_then_id(corpus: tuple[list[str], list[str]]) -> None:
    originals, edited = corpus
    index = MinHashIndex(0.5)
    index.add([10, 5, 7], [edited[0], originals[0], originals[0]])
    hits = index.query(originals[0])
    assert [h[0] for h in hits] == [5, 7, 10]
    assert hits[0][1] == hits[1][1] == 1.0 > hits[2][1]


def test_add_replace_and_remove(corpus: tuple[list[str], list[str]]) -> None:
    originals, _ = corpus
    index = MinHashIndex(0.5)
    index.add([1, 2, 3], originals[:3])
    index.add([2], [originals[10]])  # replaces id 2
    assert len(index) == 3
    assert index.query(originals[1]) == []
    assert index.query(originals[10]) == [(2, 1.0)]
    assert index.remove([2, 3, 99]) == 2
    assert len(index) == 1 and 2 not in index and 1 in index
    assert index.query(originals[10]) == [] and index.query(originals[2]) == []
    assert index.remove([2]) == 0
    index.add([2], [originals[2]])
    assert index.query(originals[2]) == [(2, 1.0)]


def test_bad_input_changes_nothing(corpus: tuple[list[str], list[str]]) -> None:
    originals, _ = corpus
    index = MinHashIndex(0.5)
    index.add([1], [originals[0]])
    with pytest.raises(InvalidSignal):
        index.add([2, 3], [originals[1], "mh1:128:not-a-signature"])
    with pytest.raises(InvalidInput) as err:
        index.add([2, 3], [originals[1]])
    assert err.value.code == "length_mismatch"
    with pytest.raises(InvalidInput) as err:
        index.add([4, 4], [originals[1], originals[2]])
    assert err.value.code == "duplicate_id"
    with pytest.raises(InvalidInput) as err:
        index.add(["x"], [originals[1]])  # type: ignore[list-item]
    assert err.value.code == "invalid_id"
    assert len(index) == 1 and index.query(originals[1]) == []
    with pytest.raises(InvalidInput) as err:
        index.query(originals[0], threshold=1.5)
    assert err.value.code == "invalid_threshold"
    with pytest.raises(InvalidSignal):
        index.query("mh1:128:AAAA")


def test_empty_index() -> None:
    index = MinHashIndex(0.5)
    assert len(index) == 0
    assert index.query(random_signatures(1, 1)[0]) == []
    index.add([], [])
    assert len(index) == 0


def test_ten_thousand_entries_match_a_full_scan(corpus: tuple[list[str], list[str]]) -> None:
    originals, edited = corpus
    filler = random_signatures(10_000, seed=3)
    stored = {i: v for i, v in enumerate(filler)}
    stored.update({20_000 + i: v for i, v in enumerate(originals)})
    index = MinHashIndex(0.5)
    items = list(stored.items())
    for start in range(0, len(items), 997):  # many adds: exercises the sorted part and the unsorted tail
        chunk = items[start : start + 997]
        index.add([i for i, _ in chunk], [v for _, v in chunk])
    assert len(index) == len(stored)
    assert index._indexed > 0  # the sorted tables were built
    for value in edited + originals[:10]:
        assert index.query(value) == brute_force(stored, value, 0.5)
        # the index compares a handful of candidates, not every stored text
        assert len(index._candidates(index._band_keys(decode_signature(value)[None, :])[0])) < 20
    # remove most entries (compaction) and check again
    gone = [i for i in stored if i % 4 != 0]
    assert index.remove(gone) == len(gone)
    for i in gone:
        del stored[i]
    assert len(index) == len(stored)
    for value in edited:
        assert index.query(value) == brute_force(stored, value, 0.5)


def test_low_threshold_query_scans_everything(corpus: tuple[list[str], list[str]]) -> None:
    originals, edited = corpus
    stored = dict(enumerate(originals + random_signatures(300, seed=5)))
    index = MinHashIndex(0.5)
    index.add(list(stored), list(stored.values()))
    partial = encode_signature(
        np.where(np.arange(NUM_PERM) < 32, decode_signature(originals[0]), decode_signature(originals[1]))
    )  # a quarter of originals[0]'s values: similarity 0.25, far below what 3x42 banding catches reliably
    hits = index.query(partial, threshold=0.2)
    assert hits == brute_force(stored, partial, 0.2)
    assert 0 in dict(hits) and dict(hits)[0] >= 0.25
    assert index.query(partial, threshold=0.0) == brute_force(stored, partial, 0.0)
    assert len(index.query(partial, threshold=0.0)) == len(stored)
