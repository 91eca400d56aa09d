"""Tests of the exact PDQ radius index: every engine and strategy against brute force, mutation, persistence."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bastion.errors import BastionError, IndexCorrupt, InvalidInput, InvalidSignal
from bastion.matching import _pdq_numpy, _pdq_store, pdq_index
from bastion.matching.pdq_index import ENGINES, PDQIndex, hash_to_hex, hashes_from_hex

ENGINE_NAMES = ["numpy", "c"]
VARIANTS = [(e, s) for e in ENGINE_NAMES for s in ("index", "linear", "auto")]


def _need(engine: str) -> None:
    if engine not in ENGINES:
        pytest.skip("C extension not built")


def brute(ids: np.ndarray, hashes: np.ndarray, q: np.ndarray, radius: int) -> tuple[list[int], list[int]]:
    d = np.unpackbits(hashes ^ q, axis=1).sum(axis=1) if len(hashes) else np.zeros(0, int)
    hit = d <= radius
    pairs = sorted(zip(d[hit].tolist(), ids[hit].tolist(), strict=True))
    return [i for _, i in pairs], [dd for dd, _ in pairs]


def flip(h: np.ndarray, bits) -> np.ndarray:
    b = np.unpackbits(np.asarray(h, np.uint8))
    for i in bits:
        b[i] ^= 1
    return np.packbits(b)


def clustered(rng: np.random.Generator, n: int, family: int = 10, spread: int = 6) -> np.ndarray:
    centres = rng.integers(0, 256, (max(1, n // family), 32), dtype=np.uint8)
    rows = [flip(centres[i % len(centres)], rng.choice(256, int(rng.integers(0, spread + 1)), replace=False))
            for i in range(n)]  # fmt: skip
    return np.stack(rows) if rows else np.zeros((0, 32), np.uint8)


def check(index: PDQIndex, ids: np.ndarray, hashes: np.ndarray, queries: np.ndarray, radius: int) -> None:
    results = index.query_many(queries, radius)
    assert len(results) == len(queries)
    for q, (got_ids, got_d) in zip(queries, results, strict=True):
        assert got_ids.dtype == np.int64 and got_d.dtype == np.int32
        assert (got_ids.tolist(), got_d.tolist()) == brute(ids, hashes, q, radius), radius


# ---- property tests against brute force ----
hash_bytes = st.binary(min_size=32, max_size=32).map(lambda b: np.frombuffer(b, np.uint8))
flips = st.lists(st.integers(0, 255), max_size=45)


@st.composite
def banks(draw):
    centres = draw(st.lists(hash_bytes, min_size=1, max_size=6))
    rows = [flip(c, draw(st.lists(st.integers(0, 255), max_size=8))) for c in centres for _ in range(draw(
        st.integers(1, 6)))]  # fmt: skip
    rows += draw(st.lists(hash_bytes, max_size=4))
    ids = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=len(rows), max_size=len(rows), unique=True))
    queries = [flip(rows[draw(st.integers(0, len(rows) - 1))], draw(flips)) for _ in range(draw(st.integers(1, 5)))]
    queries += draw(st.lists(hash_bytes, max_size=2))
    return np.array(ids, np.int64), np.stack(rows), np.stack(queries)


@pytest.mark.parametrize(("engine", "strategy"), VARIANTS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bank=banks(), radius=st.one_of(st.integers(0, 40), st.sampled_from([47, 63, 64, 100, 256])))
def test_matches_brute_force(engine, strategy, bank, radius):
    _need(engine)
    ids, hashes, queries = bank
    index = PDQIndex(engine=engine, strategy=strategy)
    index.add(ids, hashes)
    check(index, ids, hashes, queries, radius)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_clustered_bank_every_radius(engine):
    _need(engine)
    rng = np.random.default_rng(7)
    hashes = clustered(rng, 3000)
    ids = rng.permutation(10**6)[:3000].astype(np.int64)
    queries = np.stack([flip(hashes[rng.integers(3000)], rng.choice(256, int(rng.integers(0, 40)), replace=False))
                        for _ in range(40)])  # fmt: skip
    index = PDQIndex(engine=engine, strategy="index")
    index.add(ids, hashes)
    for radius in range(0, 41):
        check(index, ids, hashes, queries, radius)


def test_engines_build_identical_tables():
    _need("c")
    hashes = clustered(np.random.default_rng(3), 5000)
    for a, b in zip(pdq_index._CEngine.build(hashes), _pdq_numpy.build(hashes), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("radius", range(0, 257))
def test_plan_is_a_valid_pigeonhole(radius):
    """The search is exact iff these hold: some super-chunk is within S[i], then one of its halves within H."""
    p = _pdq_numpy.plan(radius)
    assert int((p.S + 1).sum()) >= radius + 1
    for i in range(8):
        assert p.H[2 * i] + p.H[2 * i + 1] >= p.S[i] - 1
    if radius == 31:
        assert p.S.tolist() == [3] * 8 and p.H.tolist() == [1] * 16 and p.probes == 16 * 17


def test_popcount_table_matches_numpy():
    a = np.random.default_rng(0).integers(0, 2**63, 1000, dtype=np.uint64)
    assert np.array_equal(_pdq_numpy.popcount_lut(a), np.unpackbits(a.view(np.uint8)).reshape(-1, 64).sum(1))


# ---- edge cases ----
@pytest.fixture(params=ENGINE_NAMES)
def engine(request):
    _need(request.param)
    return request.param


def test_empty_index(engine, tmp_path):
    index = PDQIndex(engine=engine)
    ids, dists = index.query(bytes(32))
    assert len(index) == 0 and ids.dtype == np.int64 and dists.dtype == np.int32 and len(ids) == 0
    assert index.query_many(np.zeros((0, 32), np.uint8)) == []
    assert index.remove(np.array([1, 2])) == 0
    index.add(np.zeros(0, np.int64), np.zeros((0, 32), np.uint8))
    index.compact()
    index.save(tmp_path / "idx", {"k": 1})
    loaded, meta = PDQIndex.load(tmp_path / "idx", engine=engine)
    assert len(loaded) == 0 and meta == {"k": 1} and len(loaded.query(bytes(32), 256)[0]) == 0


def test_radius_boundaries(engine):
    base = np.zeros(32, np.uint8)
    hashes = np.stack([base, flip(base, range(31)), flip(base, range(32)), flip(base, range(256))])
    index = PDQIndex(engine=engine)
    index.add(np.array([10, 31, 32, 256]), hashes)
    assert index.query(base, 0)[0].tolist() == [10]
    assert index.query(base)[0].tolist() == [10, 31]  # default radius 31 is inclusive
    ids, dists = index.query(base, 32)
    assert ids.tolist() == [10, 31, 32] and dists.tolist() == [0, 31, 32]
    assert index.query(base, 256)[1].tolist() == [0, 31, 32, 256]
    for bad in (-1, 257, 3.5, True, "31"):
        with pytest.raises(InvalidInput):
            index.query(base, bad)


def test_duplicate_hashes_under_different_ids(engine):
    h = np.random.default_rng(1).integers(0, 256, 32, dtype=np.uint8)
    index = PDQIndex(engine=engine)
    index.add(np.array([9, -4, 7]), np.stack([h, h, h]))
    ids, dists = index.query(h)
    assert ids.tolist() == [-4, 7, 9] and dists.tolist() == [0, 0, 0]


def test_query_accepts_bytes_array_and_hex(engine):
    h = np.arange(32, dtype=np.uint8)
    index = PDQIndex(engine=engine)
    index.add(np.array([5]), h[None])
    for form in (h, h.tobytes(), bytearray(h.tobytes()), hash_to_hex(h)):
        assert index.query(form)[0].tolist() == [5]


def test_bad_inputs_raise_clear_errors():
    index = PDQIndex()
    good = np.zeros((2, 32), np.uint8)
    for hashes in (np.zeros((2, 31), np.uint8), np.zeros((2, 32), np.int64), np.zeros(32, np.uint8)):
        with pytest.raises(InvalidSignal):
            index.add(np.array([1, 2]), hashes)
    for ids in (np.array([1.0, 2.0]), np.array([[1, 2]]), np.array([1, 2, 3]), np.array([2**63, 1], np.uint64)):
        with pytest.raises(InvalidInput):
            index.add(ids, good)
    for q in (bytes(31), np.zeros(33, np.uint8), np.zeros(32, np.int32), "ab" * 31):
        with pytest.raises(InvalidSignal):
            index.query(q)
    with pytest.raises(InvalidInput):
        PDQIndex(engine="gpu")
    with pytest.raises(InvalidInput):
        PDQIndex(strategy="fast")
    assert len(index) == 0


# ---- hex ----
def test_hex_round_trip_and_errors():
    values = ["00" * 32, "ff" * 32, "0123456789abcdefABCDEF" + "0" * 42]
    arr = hashes_from_hex(values)
    assert arr.shape == (3, 32) and arr.dtype == np.uint8
    assert [hash_to_hex(h) for h in arr] == [v.lower() for v in values]
    assert hashes_from_hex([]).shape == (0, 32)
    for bad in ("0" * 63, "0" * 65, "g" + "0" * 63, "0" * 62 + " 0", " " + "0" * 63, "é" + "0" * 63, None, b"0" * 64):
        with pytest.raises(InvalidSignal) as err:
            hashes_from_hex(["00" * 32, bad])
        assert err.value.code == "invalid_signal" and "#1" in err.value.message


# ---- mutation ----
def test_add_remove_replace(engine):
    rng = np.random.default_rng(5)
    h = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    index = PDQIndex(engine=engine)
    index.add(np.array([1, 2, 3]), h[:3])
    assert len(index) == 3
    assert index.remove(np.array([2, 99])) == 1
    assert index.remove(np.array([2])) == 0 and len(index) == 2
    assert index.query(h[1])[0].tolist() == []
    index.add(np.array([1]), h[3:4])  # replace id 1's hash
    assert len(index) == 2 and index.query(h[0])[0].tolist() == [] and index.query(h[3])[0].tolist() == [1]
    index.add(np.array([2]), h[1:2])  # re-add a removed id
    assert index.query(h[1])[0].tolist() == [2] and len(index) == 3
    index.add(np.array([7, 7]), h[:2])  # last of a repeated id wins
    assert index.query(h[1])[0].tolist() == [2, 7] and 7 not in index.query(h[0])[0].tolist()
    index.compact()
    assert len(index) == 4 and index.query(h[3])[0].tolist() == [1] and index._snap.dn == 0


@pytest.mark.parametrize("count", [3, 40])  # into the delta / straight into a rebuilt main part
def test_index_does_not_keep_the_callers_arrays(engine, count):
    rng = np.random.default_rng(4)
    ids, hashes = np.arange(count, dtype=np.int64), rng.integers(0, 256, (count, 32), dtype=np.uint8)
    expect = hashes.copy()
    index = PDQIndex(engine=engine)
    index.DELTA_MIN = index.DELTA_MAX = 8
    index.add(ids, hashes)
    ids[:] += 1000
    hashes[:] = 0
    assert [index.query(h)[0].tolist() for h in expect] == [[i] for i in range(count)]


def test_delta_and_tombstones_are_compacted_automatically(engine):
    rng = np.random.default_rng(6)
    index = PDQIndex(engine=engine)
    index.DELTA_MIN = index.DELTA_MAX = 8
    index.DEAD_MIN = 4
    hashes = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    for i in range(40):
        index.add(np.array([i]), hashes[i : i + 1])
        assert index._snap.dn <= 8  # never more than the limit before folding into main
    assert len(index._snap.main.ids) >= 32 and len(index) == 40
    index.remove(np.arange(10))
    assert index._snap.main.dead == 0 and len(index) == 30  # a quarter dead: rebuilt
    check(index, np.arange(10, 40), hashes[10:], hashes[::3], 31)


class IndexModel(RuleBasedStateMachine):
    """Random add/remove/compact sequences against a dict model, with tiny compaction limits."""

    engine = "numpy"

    def __init__(self):
        super().__init__()
        self.index = PDQIndex(engine=self.engine, strategy="index")
        self.index.DELTA_MIN = self.index.DELTA_MAX = 6
        self.index.DEAD_MIN = 3
        self.model: dict[int, np.ndarray] = {}
        self.pool = np.random.default_rng(0).integers(0, 256, (12, 32), dtype=np.uint8)

    @rule(ids=st.lists(st.integers(0, 30), max_size=8), pick=st.lists(st.integers(0, 11), min_size=8, max_size=8))
    def add(self, ids, pick):
        hashes = [flip(self.pool[p], [i % 256]) for i, p in zip(ids, pick, strict=False)]
        self.index.add(np.array(ids, np.int64), np.stack(hashes) if ids else np.zeros((0, 32), np.uint8))
        self.model.update(zip(ids, hashes, strict=True))

    @rule(ids=st.lists(st.integers(0, 35), max_size=6))
    def remove(self, ids):
        assert self.index.remove(np.array(ids, np.int64)) == len(set(ids) & set(self.model))
        for i in ids:
            self.model.pop(i, None)

    @rule()
    def compact(self):
        self.index.compact()

    @precondition(lambda self: self.model)
    @rule(radius=st.sampled_from([0, 2, 31, 40]))
    def query(self, radius):
        ids = np.array(sorted(self.model), np.int64)
        check(self.index, ids, np.stack([self.model[i] for i in ids]), self.pool, radius)

    @invariant()
    def length(self):
        assert len(self.index) == len(self.model)


class CIndexModel(IndexModel):
    engine = "c" if "c" in ENGINES else "numpy"


TestIndexModelNumpy = IndexModel.TestCase
TestIndexModelC = CIndexModel.TestCase
TestIndexModelNumpy.settings = TestIndexModelC.settings = settings(max_examples=40, stateful_step_count=25,
                                                                   deadline=None)  # fmt: skip


def test_queries_run_while_writer_mutates(engine):
    rng = np.random.default_rng(8)
    hashes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    index = PDQIndex(engine=engine)
    index.DELTA_MIN = index.DELTA_MAX = 50
    index.add(np.arange(1000), hashes[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                for ids, dists in index.query_many(hashes[:50], 31):
                    assert len(ids) <= 1 and (not len(ids) or dists[0] == 0)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for start in range(1000, 3000, 40):
        index.add(np.arange(start, start + 40), hashes[start : start + 40])
        index.remove(np.arange(start - 1000, start - 980))
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 3000 - 1000 and index.query(hashes[2999])[0].tolist() == [2999]


# ---- persistence ----
def _saved(tmp_path: Path, engine: str) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(9)
    hashes = clustered(rng, 300)
    ids = np.arange(300, dtype=np.int64) * 7 - 500
    index = PDQIndex(engine=engine)
    index.DELTA_MIN = index.DELTA_MAX = 64
    index.add(ids[:250], hashes[:250])
    index.add(ids[250:], hashes[250:])  # stays in the delta
    index.remove(ids[:5])
    index.save(tmp_path / "idx", {"last_signal_id": 42, "nested": {"a": [1, 2]}})
    return tmp_path / "idx", ids[5:], hashes[5:]


def test_save_load_round_trip(engine, tmp_path):
    directory, ids, hashes = _saved(tmp_path, engine)
    for other in ENGINES:
        loaded, meta = PDQIndex.load(directory, engine=other)
        assert meta == {"last_signal_id": 42, "nested": {"a": [1, 2]}}
        assert len(loaded) == len(ids) and loaded.engine == other
        check(loaded, ids, hashes, hashes[::10], 31)


def test_save_replaces_previous_and_cleans_up(engine, tmp_path):
    directory, ids, hashes = _saved(tmp_path, engine)
    index = PDQIndex(engine=engine)
    index.add(ids[:3], hashes[:3])
    index.save(directory, {"v": 2})
    loaded, meta = PDQIndex.load(directory)
    assert meta == {"v": 2} and len(loaded) == 3
    assert sorted(p.name.split("-")[0] for p in directory.iterdir()) == ["CURRENT", "snap"]


@pytest.mark.parametrize("step", ["hashes.bin", "pointer"])
def test_crash_during_save_keeps_the_old_snapshot(tmp_path, monkeypatch, step):
    directory, ids, _ = _saved(tmp_path, "numpy")
    index = PDQIndex()
    index.add(np.array([1]), np.zeros((1, 32), np.uint8))
    real_write, real_replace = _pdq_store._write, _pdq_store.os.replace

    def write(path, data):
        if path.name == step:
            path.write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return real_write(path, data)

    def replace(src, dst):
        if step == "pointer":
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(_pdq_store, "_write", write)
    monkeypatch.setattr(_pdq_store.os, "replace", replace)
    with pytest.raises(BastionError) as err:
        index.save(directory, {"v": 3})
    monkeypatch.undo()
    assert err.value.code == "index_save_failed"
    loaded, meta = PDQIndex.load(directory)
    assert meta["last_signal_id"] == 42 and len(loaded) == len(ids)


def test_leftovers_of_a_killed_save_are_ignored(tmp_path):
    directory, ids, _ = _saved(tmp_path, "numpy")
    (directory / "snap-1-2-3.tmp").mkdir()
    (directory / "snap-1-2-3.tmp" / "ids.bin").write_bytes(b"partial")
    (directory / "CURRENT.snap-1-2-3.tmp").write_text("snap-1-2-3\n")
    loaded, meta = PDQIndex.load(directory)
    assert len(loaded) == len(ids)


def test_meta_must_be_json(tmp_path):
    index = PDQIndex()
    for meta in ({"t": (1, 2)}, {1: "x"}, {"x": float("nan")}, {"o": object()}, ["list"]):
        with pytest.raises(InvalidInput):
            index.save(tmp_path / "idx", meta)
    assert not (tmp_path / "idx" / "CURRENT").exists()


def _snapshot(directory: Path) -> Path:
    return directory / (directory / "CURRENT").read_text().strip()


def _rewrite_manifest(directory: Path, change) -> None:
    path = _snapshot(directory) / "manifest.json"
    manifest = json.loads(path.read_bytes())
    change(manifest["body"])
    manifest["sha256"] = _pdq_store.hashlib.sha256(_pdq_store._canonical(manifest["body"])).hexdigest()
    path.write_bytes(_pdq_store._canonical(manifest))


def _truncate(d: Path) -> None:
    f = _snapshot(d) / "hashes.bin"
    f.write_bytes(f.read_bytes()[:-7])


def _flip_byte(d: Path) -> None:
    f = _snapshot(d) / "hashes.bin"
    data = bytearray(f.read_bytes())
    data[100] ^= 1
    f.write_bytes(bytes(data))


def _unsorted_ids(d: Path) -> None:
    f = _snapshot(d) / "ids.bin"
    ids = np.frombuffer(f.read_bytes(), "<i8")[::-1].copy()
    f.write_bytes(ids.tobytes())
    digest = _pdq_store.hashlib.sha256(ids.tobytes()).hexdigest()
    _rewrite_manifest(d, lambda b: b["files"]["ids.bin"].update(sha256=digest))


CORRUPTIONS = {
    "missing": lambda d: (d / "CURRENT").unlink(),
    "malformed": lambda d: (d / "CURRENT").write_text("../../etc\n"),
    "truncated": _truncate,
    "checksum": _flip_byte,
    "version": lambda d: _rewrite_manifest(d, lambda b: b.update(version=99)),
}


@pytest.mark.parametrize("reason", sorted(CORRUPTIONS))
def test_damaged_save_is_detected(tmp_path, reason):
    directory, _, _ = _saved(tmp_path, "numpy")
    CORRUPTIONS[reason](directory)
    with pytest.raises(IndexCorrupt) as err:
        PDQIndex.load(directory)
    assert err.value.code == "index_corrupt" and err.value.details["reason"] == reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (_snapshot(d) / "manifest.json").write_text("{not json"),
        lambda d: (_snapshot(d) / "manifest.json").write_text('{"body": {"format": "x"}, "sha256": "0"}'),
        lambda d: _rewrite_manifest(d, lambda b: b.update(format="other")),
        lambda d: _rewrite_manifest(d, lambda b: b.update(count=-1)),
        lambda d: _rewrite_manifest(d, lambda b: b["files"].pop("ids.bin")),
        _unsorted_ids,
        lambda d: os.remove(_snapshot(d) / "ids.bin"),
        lambda d: (_snapshot(d) / "hashes.bin").write_bytes(b""),
    ],
)
def test_other_damage_is_detected(tmp_path, damage):
    directory, _, _ = _saved(tmp_path, "numpy")
    damage(directory)
    with pytest.raises(IndexCorrupt):
        PDQIndex.load(directory)


def test_load_of_nonexistent_directory(tmp_path):
    with pytest.raises(IndexCorrupt) as err:
        PDQIndex.load(tmp_path / "nothing")
    assert err.value.details["reason"] == "missing"
