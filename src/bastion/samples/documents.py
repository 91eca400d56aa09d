"""Generated benign documents for measuring near-duplicate text matching (tests and bench/bench_text_minhash.py).

Words are made of random syllables and drawn with a Zipf distribution, so common words repeat as they do in real
prose and unrelated documents share some word sequences by chance. Nothing here is, or resembles, real text.
"""

from __future__ import annotations

import numpy as np

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "de", "gu", "fo", "bi", "ha", "je", "wu")


def make_vocabulary(rng: np.random.Generator, size: int = 5000) -> list[str]:
    """``size`` distinct made-up words of one to four syllables."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES, int(rng.integers(1, 5)))))
    return sorted(words)


def make_document(rng: np.random.Generator, vocab: list[str], n_words: int) -> list[str]:
    """``n_words`` words drawn with Zipf weights (exponent 1.1)."""
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    return [vocab[i] for i in rng.choice(len(vocab), n_words, p=p / p.sum())]


def edit_document(rng: np.random.Generator, vocab: list[str], words: list[str], share: float) -> list[str]:
    """A copy with ``share`` of its words edited: each edit replaces, inserts or deletes one word at random."""
    out = list(words)
    for _ in range(max(1, round(share * len(words)))):
        op, i = int(rng.integers(3)), int(rng.integers(len(out)))
        if op == 0:
            out[i] = vocab[int(rng.integers(len(vocab)))]
        elif op == 1:
            out.insert(i, vocab[int(rng.integers(len(vocab)))])
        else:
            del out[i]
    return out
