"""Policy evaluation speed: decisions per second for a 20-rule policy, the built-in policy and a one-rule baseline.

Evidence is a generated mix: a third with no match, a third with one or two bank matches (exact or PDQ, various
labels), the rest with classifier scores and entity mentions; jurisdictions, surfaces and uploader histories vary.
Every policy decides the same evidence; one core, median over rounds.

    .venv/bin/python bench/bench_policy.py            # 20,000 evidences x 5 rounds
    .venv/bin/python bench/bench_policy.py --quick    # 2,000 x 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bastion.policy import Evidence
from bastion.policy.engine import compile_policy, decide, default_source

CATEGORIES = ["recruitment", "propaganda", "branded_publication", "symbols_insignia", "other", "instructional"]
BASELINE = "rules:\n  - name: remove-any-match\n    when: {any_match: {}}\n    outcome: remove\n"


def twenty_rules() -> str:
    rules = []
    for i in range(16):
        cat = CATEGORIES[i % len(CATEGORIES)]
        rules.append(
            f"""  - name: rule-{i}
    when:
      all:
        - any_match: {{bank: [bank-{i % 4}, shared], labels: {{category: {cat}, severity: {{gte: {i % 4}}}}}}}
        - jurisdiction: [{"DE" if i % 2 else "FR"}, EU]
        - not: {{surface: profile}}
    outcome: {"restrict" if i % 3 == 0 else "review"}
    {"in: submission" if i % 3 == 0 else "queue: q" + str(i)}
"""
        )
    rules.append("""  - name: shadow-classifier
    shadow: true
    when: {classifier: {min_score: 0.4}}
    outcome: review
  - name: entity-repeat
    when: {entity: {lists: [UN, EU]}, prior_violations: 2}
    outcome: review
  - name: classifier
    when: {classifier: {name: [semantic, keywords], min_score: 0.7}}
    outcome: review
  - name: any-match
    when: {any_match: {}}
    outcome: review
""")
    return "default: allow\nrules:\n" + "".join(rules)


def evidences(n: int, seed: int = 7) -> list[Evidence]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 3
        matches, scores, entities = [], [], []
        if kind == 1:
            for _ in range(rng.randint(1, 2)):
                matches.append(
                    {
                        "bank": rng.choice(["bank-0", "bank-1", "bank-2", "bank-3", "shared"]),
                        "bank_id": 1,
                        "bank_kind": "block",
                        "entry_id": rng.randint(1, 10**6),
                        "signal_type": rng.choice(["md5", "pdq", "pdq", "sha256"]),
                        "distance": rng.randint(0, 31),
                        "labels": {"category": rng.choice(CATEGORIES), "severity": str(rng.randint(1, 4))},
                        "source": "own_review",
                    }
                )
        elif kind == 2:
            scores.append({"classifier": rng.choice(["semantic", "keywords"]), "label": "x", "score": rng.random()})
            if rng.random() < 0.3:
                entities.append({"entity": "e", "name": "E", "lists": ["un_1267"], "matched": "E"})
        out.append(
            Evidence(
                organisation_id=1,
                source="upload",
                content_type="image",
                surface=rng.choice(["post", "comment", "profile"]),
                jurisdictions=rng.sample(["DE", "FR", "US", "GB", "IT"], rng.randint(0, 2)),
                prior_violations=rng.randint(0, 3),
                matches=matches,
                classifier_scores=scores,
                entities=entities,
            )
        )
    return out


def rate(source: str, evs: list[Evidence], rounds: int) -> float:
    policy = compile_policy(source)
    results = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for e in evs:
            decide(policy, e, 1)
        results.append(len(evs) / (time.perf_counter() - t0))
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (2_000, 3) if args.quick else (20_000, 5)
    evs = evidences(n)
    src = twenty_rules()
    assert len(compile_policy(src).spec.rules) == 20
    t0 = time.perf_counter()
    compile_policy.cache_clear()
    compile_policy(src)
    compile_ms = (time.perf_counter() - t0) * 1000
    print(
        f"{n} evidences x {rounds} rounds, median decisions per second (one core); "
        f"compiling the 20 rules: {compile_ms:.1f} ms"
    )
    for label, source in (
        ("baseline (1 rule)", BASELINE),
        ("built-in default (7 rules)", default_source()),
        ("20 rules (1 shadow)", src),
    ):
        print(f"  {label:<28} {rate(source, evs, rounds):>10,.0f}/s")


if __name__ == "__main__":
    main()
