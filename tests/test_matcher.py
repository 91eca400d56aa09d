"""The matcher against real banks: altered copies match, unrelated content does not, and bank changes
(disable, delete, allow-lists, new entries) take effect through the change feed and the saved index."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion import signals
from bastion.banks.service import BankService
from bastion.content import Content
from bastion.matching.matcher import Matcher, open_matcher, snapshot_dir_for
from bastion.samples import altered_copies, encode, generate_image


def _write(path: Path, img) -> Path:
    path.write_bytes(encode(img))
    return path


def _signals(path: Path):
    return signals.compute_all(Content.from_path(path))


@pytest.fixture
def banked(db, tmp_path):
    """A bank holding two generated images; returns (service, [paths])."""
    service = BankService(db)
    service.create_bank("known")
    paths = [_write(tmp_path / f"known-{i}.jpg", generate_image(i)) for i in range(2)]
    service.add_files("known", paths, labels={"category": "recruitment"})
    return service, paths


def _entry_ids(result):
    return sorted({m.entry_id for m in result.matches})


def test_altered_copies_match_and_unrelated_do_not(db, banked, tmp_path, settings):
    service, paths = banked
    matcher = open_matcher(db, settings)
    from PIL import Image

    original = Image.open(paths[0])
    original.load()
    for name, img in altered_copies(original):
        result = matcher.match(_signals(_write(tmp_path / f"copy-{name}.jpg", img)))
        assert result.matches, f"{name} copy did not match"
        m = result.matches[0]
        assert m.bank == "known" and m.signal_type == "pdq"
        assert m.distance <= settings.pdq_match_threshold
        assert m.labels["category"] == "recruitment"
    for seed in range(100, 110):
        result = matcher.match(_signals(_write(tmp_path / f"other-{seed}.jpg", generate_image(seed))))
        assert result.matches == [], f"unrelated image {seed} matched"


def test_exact_copy_matches_every_file_signal(db, banked):
    service, paths = banked
    result = open_matcher(db).match(_signals(paths[1]))
    assert {m.signal_type for m in result.matches} >= {"md5", "sha256", "pdq"}
    assert {m.distance for m in result.matches if m.signal_type == "pdq"} == {0}


def test_mirrored_copy_reports_its_transform(db, banked, tmp_path):
    from PIL import Image, ImageOps

    _, paths = banked
    mirrored = _write(tmp_path / "mirror.jpg", ImageOps.mirror(Image.open(paths[0])))
    result = open_matcher(db).match(_signals(mirrored))
    assert result.matches and result.matches[0].detail.get("transform")


def test_disabled_entry_and_bank_stop_matching(db, banked):
    service, paths = banked
    matcher = open_matcher(db)
    query = _signals(paths[0])
    entry_id = _entry_ids(matcher.match(query))[0]
    service.set_entry_enabled(entry_id, False)
    assert matcher.match(query).matches == []  # re-checked in SQL even before the feed is applied
    assert matcher.refresh() > 0  # the feed removes it from the index
    assert matcher.match(query).matches == []
    service.set_entry_enabled(entry_id, True)
    matcher.refresh()
    assert _entry_ids(matcher.match(query)) == [entry_id]
    service.set_bank_enabled("known", False)
    matcher.refresh()
    assert matcher.match(query).matches == []
    assert len(matcher.pdq) == 0


def test_deleted_bank_is_dropped_from_the_index(db, banked):
    service, paths = banked
    matcher = open_matcher(db)
    assert len(matcher.pdq) == 2
    service.delete_bank("known")
    matcher.refresh()
    assert len(matcher.pdq) == 0
    assert matcher.match(_signals(paths[0])).matches == []


def test_allow_list_suppresses_block_matches(db, banked):
    service, paths = banked
    service.create_bank("false-positives", kind="allow")
    service.add_files("false-positives", [paths[0]], labels={})
    matcher = open_matcher(db)
    result = matcher.match(_signals(paths[0]))
    assert result.matches == []
    assert {m.bank for m in result.suppressed} == {"known"}
    assert {m.bank for m in result.allowed_by} == {"false-positives"}
    other = matcher.match(_signals(paths[1]))  # not on the allow-list: still matches
    assert {m.bank for m in other.matches} == {"known"}


def test_restart_loads_the_saved_index_and_applies_only_the_delta(db, banked, tmp_path, settings):
    service, paths = banked
    first = open_matcher(db, settings)
    assert (snapshot_dir_for(settings) / "pdq").exists()
    new = _write(tmp_path / "new.jpg", generate_image(77))
    service.add_files("known", [new], labels={})
    restarted = Matcher(db, settings, snapshot_dir=snapshot_dir_for(settings))
    assert restarted._loaded_snapshot
    assert len(restarted.pdq) == 2  # from disk, not the database
    similar = len([s for s in signals.usable(_signals(new)) if not signals.get(s.type).exact])  # pdq, orb
    assert restarted.refresh() == similar  # only the new entry's signals are read
    assert restarted.match(_signals(new)).matches
    assert first.refresh() == similar


def test_corrupt_snapshot_falls_back_to_the_database(db, banked, settings):
    _, paths = banked
    open_matcher(db, settings)
    damaged = 0
    for f in (snapshot_dir_for(settings) / "pdq").rglob("*"):
        if f.is_file() and f.stat().st_size > 64:
            f.write_bytes(f.read_bytes()[:64])
            damaged += 1
    assert damaged
    matcher = open_matcher(db, settings)
    assert not matcher._loaded_snapshot
    assert matcher.match(_signals(paths[0])).matches


def test_near_duplicate_text_matches(db):
    from bastion.samples import sample_texts

    service = BankService(db)
    service.create_bank("texts")
    text = " ".join(sample_texts() * 3)
    service.add_entry("texts", signals.usable(signals.compute_all(Content.from_text(text))), labels={})
    matcher = open_matcher(db)
    words = text.split()
    for i in range(0, len(words), 20):  # change 5 % of the words
        words[i] = "zebra"
    result = matcher.match(signals.compute_all(Content.from_text(" ".join(words))))
    assert "text_minhash" in {m.signal_type for m in result.matches}
    other = matcher.match(
        signals.compute_all(
            Content.from_text(
                "An entirely different note about the weather in the mountains and the price of bread today."
            )
        )
    )
    assert other.matches == []


def test_reencoded_video_matches_by_vpdq_and_unrelated_does_not(db, tmp_path):
    from bastion.samples import generate_video

    service = BankService(db)
    service.create_bank("videos")
    original = tmp_path / "original.mp4"
    generate_video(original, seconds=5, fps=10, size=(320, 240), seed=3)
    service.add_files("videos", [original], labels={"category": "livestreamed_attack"})
    copy = tmp_path / "copy.mp4"  # smaller, different codec settings: new bytes, same pictures
    generate_video(copy, seconds=5, fps=10, size=(256, 192), seed=3, codec="mpeg4")
    other = tmp_path / "other.mp4"
    generate_video(other, seconds=5, fps=10, size=(320, 240), seed=99)
    matcher = open_matcher(db)
    result = matcher.match(_signals(copy))
    (m,) = [m for m in result.matches if m.signal_type == "vpdq"]
    assert m.detail["query_match_percent"] >= 80 and m.labels["category"] == "livestreamed_attack"
    assert not [m for m in result.matches if m.signal_type in ("md5", "sha256")]
    assert [m for m in matcher.match(_signals(other)).matches if m.signal_type == "vpdq"] == []
