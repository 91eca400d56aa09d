"""The rules format and engine: every condition and combinator, first-match order, shadow rules, the built-in
policies, and every validation error with its line number. Pure functions: no database."""

from __future__ import annotations

import textwrap

import pytest

from bastion.errors import InvalidPolicy
from bastion.policy import Evidence, Verdict
from bastion.policy.engine import compile_policy, decide, default_policy, default_source, demo_source

EU27 = 27


def ev(**kw) -> Evidence:
    kw.setdefault("organisation_id", 1)
    kw.setdefault("source", "upload")
    return Evidence(**kw)


def m(bank="known", signal_type="md5", distance=0, source="own_review", **labels) -> dict:
    return {"bank": bank, "bank_id": 1, "bank_kind": "block", "entry_id": 7, "signal_type": signal_type,
            "distance": distance, "labels": labels, "source": source}


def policy(rules: str, default: str = "allow") -> object:
    return compile_policy(f"default: {default}\nrules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))


def fires(when: str, evidence: Evidence) -> bool:
    """Whether a one-rule policy with this ``when`` (YAML, indented under it) removes the evidence."""
    body = textwrap.indent(textwrap.dedent(when).strip(), "      ")
    p = compile_policy(f"rules:\n  - name: r\n    outcome: remove\n    when:\n{body}\n")
    return decide(p, evidence).outcome == "remove"


def problems(source: str) -> list[dict]:
    with pytest.raises(InvalidPolicy) as info:
        compile_policy(textwrap.dedent(source))
    err = info.value
    assert err.code == "invalid_policy" and err.http_status == 422
    assert err.message.startswith("invalid policy: ")
    return err.details["problems"]


def one_problem(source: str) -> dict:
    found = problems(source)
    assert len(found) == 1, found
    return found[0]


# -- conditions ------------------------------------------------------------------------------------------------------


def test_any_match_bank_signal_type_distance_exact_source():
    e = ev(matches=[m(bank="gifct", signal_type="pdq", distance=20, source="gifct")])
    assert fires("any_match: {}", e)
    assert not fires("any_match: {}", ev())
    assert fires("any_match: {bank: gifct}", e) and fires("any_match: {bank: [a, gifct]}", e)
    assert not fires("any_match: {bank: other}", e)
    assert fires("any_match: {signal_type: [pdq, vpdq]}", e) and not fires("any_match: {signal_type: md5}", e)
    assert fires("any_match: {max_distance: 20}", e) and not fires("any_match: {max_distance: 19}", e)
    assert not fires("any_match: {exact: true}", e) and fires("any_match: {exact: false}", e)
    assert fires("any_match: {exact: true}", ev(matches=[m(signal_type="sha256")]))
    assert fires("any_match: {source: gifct}", e) and fires("any_match: {source: GIFCT hash-sharing database}", e)
    assert not fires("any_match: {source: own_review}", e)
    # every filter applies to the same match
    both = ev(matches=[m(bank="a", signal_type="pdq"), m(bank="b", signal_type="md5")])
    assert fires("any_match: {bank: a, signal_type: pdq}", both)
    assert not fires("any_match: {bank: a, signal_type: md5}", both)
    assert fires("match: {bank: b}", both)  # 'match' is any_match


def test_any_match_min_count_and_all_matches_and_suppressed():
    two = ev(matches=[m(category="recruitment"), m(category="propaganda")])
    assert fires("any_match: {min_count: 2}", two) and not fires("any_match: {min_count: 3}", two)
    assert not fires("any_match: {min_count: 2, labels: {category: recruitment}}", two)
    assert fires("all_matches: {labels: {category: [recruitment, propaganda]}}", two)
    assert not fires("all_matches: {labels: {category: recruitment}}", two)
    assert not fires("all_matches: {}", ev())  # no match at all: not "all of none"
    suppressed = ev(suppressed=[m(bank="fp")])
    assert fires("suppressed_match: {bank: fp}", suppressed) and not fires("any_match: {}", suppressed)


def test_label_tests():
    e = ev(matches=[m(category="branded_publication", severity="4", ideology="violent_far_right",
                      entity="Demo Organisation", note="Hello  World")])
    assert fires("any_match: {labels: {category: branded_publication}}", e)
    assert fires("any_match: {labels: {category: Branded publication (official organisation output)}}", e)
    assert fires("any_match: {labels: {category: branded}}", e)  # taxonomy synonyms
    assert fires("any_match: {labels: {category: {not_in: [recruitment]}}}", e)
    assert not fires("any_match: {labels: {category: {ne: branded_publication}}}", e)
    assert fires("any_match: {labels: {ideology: {eq: far right}}}", e)
    assert fires("any_match: {labels: {severity: {gte: 4}}}", e)
    assert not fires("any_match: {labels: {severity: {gt: 4}}}", e)
    assert fires("any_match: {labels: {severity: {gte: critical, lte: 4}}}", e)  # words: low 1 .. critical 4
    assert fires("any_match: {labels: {severity: {lt: 5}}}", e)
    assert fires("any_match: {labels: {note: hello world}}", e)  # free labels: case and spacing folded
    assert fires("any_match: {labels: {entity: demo organisation}}", e)
    assert fires("any_match: {labels: {missing: {exists: false}, note: {exists: true}}}", e)
    assert not fires("any_match: {labels: {missing: x}}", e)
    words = ev(matches=[m(severity="High")])
    assert fires("any_match: {labels: {severity: {gte: 3}}}", words)
    assert not fires("any_match: {labels: {severity: {gte: critical}}}", words)
    assert not fires("any_match: {labels: {severity: {gte: 1}}}", ev(matches=[m(severity="unknown")]))


def test_classifier_condition():
    e = ev(classifier_scores=[{"classifier": "semantic", "label": "similar_to_banked_text", "score": 0.82},
                              {"classifier": "keywords", "label": "Recruitment", "score": 0.4}])
    assert fires("classifier: {min_score: 0.8}", e) and not fires("classifier: {min_score: 0.9}", e)
    assert fires("classifier: {name: semantic, min_score: 0.5}", e)
    assert not fires("classifier: {name: keywords, min_score: 0.5}", e)
    assert fires("classifier: {name: keywords, label: recruitment, min_score: 0.4}", e)
    assert not fires("classifier: {label: recruitment, min_score: 0.5}", e)
    assert fires("classifier: {name: [semantic], min_score: 0.5, max_score: 0.85}", e)
    assert not fires("classifier: {name: semantic, min_score: 0.5, max_score: 0.8}", e)
    assert not fires("classifier: {min_score: 0}", ev())


def test_entity_condition():
    from bastion.banks import entities

    listed = next(e for e in entities.all_entities() if "un_1267" in e.lists and "uk_proscribed" in e.lists)
    uk_only = next(e for e in entities.all_entities() if e.lists == ("uk_proscribed",))
    mention = {"entity": listed.key, "name": listed.name, "lists": list(listed.lists), "matched": listed.name}
    e = ev(entities=[mention])
    assert fires("entity: {}", e) and not fires("entity: {}", ev())
    assert fires("entity: {lists: [UN]}", e) and fires("entity: {lists: un_1267}", e)
    assert not fires("entity: {lists: [EU]}", ev(entities=[{**mention, "lists": ["uk_proscribed"]}]))
    assert fires(f"entity: {{names: ['{listed.name}']}}", e)
    assert not fires(f"entity: {{names: ['{uk_only.name}']}}", e)
    assert not fires("entity: {min_count: 2}", e)
    by_name_only = ev(entities=[{"name": listed.name, "lists": list(listed.lists)}])
    assert fires(f"entity: {{names: ['{listed.name}']}}", by_name_only)


def test_submission_conditions():
    e = ev(jurisdictions=["de", "FR"], surface="Comment", content_type="image", source="upload", language="en-GB",
           prior_violations=3)
    assert fires("jurisdiction: DE", e) and fires("jurisdiction: [IT, fr]", e) and not fires("jurisdiction: IT", e)
    assert fires("jurisdiction: EU", e) and not fires("jurisdiction: EU", ev(jurisdictions=["US"]))
    assert fires("jurisdiction: [NO, SE]", ev(jurisdictions=["no"]))  # NO stays Norway, not YAML 1.1's false
    assert fires("jurisdiction: UK", ev(jurisdictions=["GB"])) and fires("jurisdiction: EL", ev(jurisdictions=["GR"]))
    union_wide = ev(jurisdictions=["EU"])  # intake's mark for a Union-wide submission: in every member state
    assert fires("jurisdiction: EU", union_wide) and fires("jurisdiction: FR", union_wide)
    assert not fires("jurisdiction: [US, GB]", union_wide)
    assert fires("surface: comment", e) and not fires("surface: [post, message]", e)
    assert fires("content_type: [image, video]", e) and not fires("content_type: text", e)
    assert fires("source: upload", e) and not fires("source: [url, text]", e)
    assert fires("language: en", e) and fires("language: en-gb", e) and not fires("language: fr", e)
    assert not fires("language: en", ev())
    assert fires("prior_violations: 3", e) and not fires("prior_violations: 4", e)  # a number means >=
    assert fires("prior_violations: {gt: 2, lte: 3}", e) and not fires("prior_violations: {eq: 2}", e)


def test_combinators_and_implicit_all():
    e = ev(jurisdictions=["DE"], surface="post", matches=[m()])
    assert fires("{jurisdiction: DE, surface: post}", e)  # several keys: all of them
    assert not fires("{jurisdiction: DE, surface: comment}", e)
    assert fires("all: [{jurisdiction: DE}, {any_match: {}}]", e)
    assert not fires("all: [{jurisdiction: DE}, {surface: comment}]", e)
    assert fires("any: [{jurisdiction: FR}, {surface: post}]", e)
    assert not fires("any: [{jurisdiction: FR}, {surface: comment}]", e)
    assert fires("not: {jurisdiction: FR}", e) and not fires("not: {jurisdiction: DE}", e)
    assert fires("any: [{not: {any_match: {}}}, {all: [{surface: post}, {not: {surface: comment}}]}]", e)


# -- rules and outcomes ----------------------------------------------------------------------------------------------


def test_first_match_wins_in_order_and_default():
    p = policy("""
        - name: first
          when: {any_match: {}}
          outcome: review
          queue: hash-match
          priority: 2
          reason: First says review.
        - name: second
          when: {any_match: {}}
          outcome: remove
        - name: catch-all
          outcome: restrict
          in: [DE, eu]
    """)
    v = decide(p, ev(matches=[m()]), version=4)
    assert v == Verdict("review", "first", 4, "First says review.", [], "hash-match", 2, [])
    v = decide(p, ev())
    assert (v.outcome, v.rule, v.reason) == ("restrict", "catch-all", "Rule 'catch-all' matched.")
    assert len(v.restrict_in) == EU27 and "DE" in v.restrict_in  # EU expands, duplicates dropped
    nothing = policy("- name: never\n  when: {surface: none}\n  outcome: remove\n", default="review")
    v = decide(nothing, ev())
    assert (v.outcome, v.rule, v.queue, v.priority, v.reason) == ("review", None, "review", 5, "No rule matched.")


def test_outcome_details_restrict_submission_escalate_defaults():
    p = policy("""
        - name: geo
          when: {surface: post}
          outcome: restrict
          in: [submission, AT]
        - name: threat
          when: {surface: live}
          outcome: escalate
    """)
    v = decide(p, ev(surface="post", jurisdictions=["de", "FR"]))
    assert v.restrict_in == ["AT", "DE", "FR"]
    v = decide(p, ev(surface="live"))
    assert (v.outcome, v.queue, v.priority, v.restrict_in) == ("escalate", "escalation", 1, [])


def test_shadow_rules_always_evaluated_never_acted_on():
    p = policy("""
        - name: trial-lower-threshold
          shadow: true
          when: {classifier: {min_score: 0.5}}
          outcome: remove
          reason: would remove
        - name: review-classifier
          when: {classifier: {min_score: 0.7}}
          outcome: review
        - name: trial-geo
          shadow: true
          outcome: restrict
          in: submission
    """)
    e = ev(jurisdictions=["DE"], classifier_scores=[{"classifier": "c", "label": "x", "score": 0.9}])
    v = decide(p, e)
    assert (v.outcome, v.rule) == ("review", "review-classifier")
    assert v.shadow == [
        {"rule": "trial-lower-threshold", "outcome": "remove", "reason": "would remove"},
        {"rule": "trial-geo", "outcome": "restrict", "reason": "Rule 'trial-geo' matched.", "restrict_in": ["DE"]},
    ]
    v = decide(p, ev(classifier_scores=[{"classifier": "c", "label": "x", "score": 0.6}]))
    assert (v.outcome, v.rule) == ("allow", None)  # the shadow rule matched but did not act
    assert [s["rule"] for s in v.shadow] == ["trial-lower-threshold", "trial-geo"]


def test_decide_takes_an_evidence_dict_and_compile_is_memoised():
    p = default_policy()
    assert compile_policy(default_source()) is p
    v = decide(p, ev(matches=[m(category="recruitment")]).to_dict(), version=2)
    assert (v.outcome, v.rule, v.policy_version) == ("remove", "remove-exact-known-tvec", 2)


def test_yaml_anchors_and_merge_keys_are_reusable():
    p = compile_policy(textwrap.dedent("""
        rules:
          - name: a
            when: {any_match: {labels: &severe {category: [recruitment, instructional]}}}
            outcome: remove
          - name: b
            when: {suppressed_match: {labels: *severe}}
            outcome: review
    """))
    assert decide(p, ev(suppressed=[m(category="instructional")])).rule == "b"


# -- the built-in policies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("evidence", "outcome", "rule"),
    [
        (ev(), "allow", None),
        (ev(matches=[m(category="recruitment")]), "remove", "remove-exact-known-tvec"),
        (ev(matches=[m(signal_type="pdq", distance=12, category="propaganda")]), "remove",
         "remove-near-identical-known-tvec"),
        (ev(matches=[m(signal_type="vpdq", distance=5, category="propaganda")]), "remove",
         "remove-near-identical-known-tvec"),
        (ev(matches=[m(signal_type="pdq", distance=24, category="propaganda")]), "review", "review-bank-match"),
        (ev(matches=[m(category="symbols_insignia")]), "review", "review-bank-match"),
        (ev(matches=[m()]), "review", "review-bank-match"),  # unlabelled
        (ev(matches=[m(severity="critical")]), "remove", "remove-high-severity-exact"),
        (ev(matches=[m(signal_type="pdq", distance=1, category="imminent_credible_threat")]), "escalate",
         "escalate-imminent-threat"),
        (ev(classifier_scores=[{"classifier": "semantic", "label": "similar_to_banked_text", "score": 0.99}]),
         "review", "review-classifier"),
        (ev(classifier_scores=[{"classifier": "entities", "label": "designated_organisation", "score": 1.0}],
            entities=[{"entity": "x", "name": "X", "lists": ["un_1267"], "matched": "X"}]), "allow", None),
        (ev(entities=[{"entity": "x", "name": "X", "lists": ["un_1267"], "matched": "X"}], prior_violations=2),
         "review", "review-designated-entity-repeat-uploader"),
        (ev(suppressed=[m(category="recruitment")]), "allow", None),
    ],
)
def test_default_policy(evidence, outcome, rule):
    v = decide(default_policy(), evidence)
    assert (v.outcome, v.rule) == (outcome, rule)
    assert v.reason


def test_default_policy_never_removes_on_a_classifier_alone():
    scores = [{"classifier": name, "label": label, "score": 1.0}
              for name in ("semantic", "keywords", "entities", "future")
              for label in ("similar_to_banked_text", "recruitment", "imminent_credible_threat",
                            "designated_organisation")]
    v = decide(default_policy(), ev(classifier_scores=scores, prior_violations=99))
    assert v.outcome in ("review", "escalate")


def test_demo_policy_compiles_and_shows_every_kind_of_outcome():
    p = compile_policy(demo_source())
    assert len(p.shadow) == 1
    v = decide(p, ev(jurisdictions=["DE"], matches=[m(category="symbols_insignia")]))
    assert (v.outcome, v.restrict_in) == ("restrict", ["DE"])
    from bastion.demo import DEMO_BANK

    v = decide(p, ev(matches=[m(bank=DEMO_BANK, signal_type="pdq", distance=8, category="branded_publication")]))
    assert v.outcome == "remove"
    v = decide(p, ev(classifier_scores=[{"classifier": "semantic", "label": "s", "score": 0.6}]))
    assert v.outcome == "allow" and v.shadow[0]["rule"] == "shadow-classifier-lower-threshold"


# -- validation: every error path, with its line ---------------------------------------------------------------------


def test_yaml_syntax_errors_have_a_line():
    p = one_problem("rules:\n  - name: a\n    outcome: [remove\n")
    assert p["line"] == 4 and "not valid YAML" in p["message"]
    p = one_problem("rules:\n  - name: a\n   outcome: remove\n")
    assert p["line"] == 3 and "not valid YAML" in p["message"]
    p = one_problem("rules: []\n---\nrules: []\n")
    assert "not valid YAML" in p["message"] and p["line"] == 2


def test_top_level_problems():
    assert "empty" in one_problem("")["message"]
    assert "empty" in one_problem("# just a comment\n")["message"]
    assert "must be a mapping" in one_problem("- a\n- b\n")["message"]
    p = one_problem("default: allow\n")
    assert p["path"] == "rules" and "missing 'rules'" in p["message"]
    p = one_problem("rules: {}\n")
    assert (p["path"], p["line"]) == ("rules", 1) and "must be a list" in p["message"]
    p = one_problem("version: 2\nrules: []\n")
    assert (p["path"], p["line"]) == ("version", 1) and "unsupported rules format version" in p["message"]
    p = one_problem("rules: []\nname: x\n")
    assert (p["path"], p["line"]) == ("name", 2) and "unknown key 'name'" in p["message"]
    p = one_problem("rules: []\nrules: []\n")
    assert (p["path"], p["line"]) == ("rules", 2) and "given twice" in p["message"]
    p = one_problem("rules: []\ndefault: {outcome: delete}\n")
    assert (p["path"], p["line"]) == ("default.outcome", 2) and "unknown outcome 'delete'" in p["message"]
    p = one_problem("rules: []\ndefault: {outcome: allow, colour: red}\n")
    assert p["path"] == "default.colour"
    assert compile_policy("rules: []\n").spec.default.outcome == "allow"
    assert compile_policy("rules:\n").spec.rules == ()


def test_rule_level_problems_name_the_rule_path_and_line():
    p = one_problem("""\
        rules:
          - name: ok
            outcome: allow
          - name: bad
            outcome: delete
        """)
    assert p == {"line": 5, "path": "rules[1].outcome", "rule": "bad",
                 "message": "unknown outcome 'delete'; allowed: remove, restrict, review, escalate, allow"}
    p = one_problem("rules:\n  - outcome: allow\n")
    assert (p["path"], p["line"], p["rule"]) == ("rules[0].name", 2, None) and "needs a 'name'" in p["message"]
    p = one_problem("rules:\n  - name: 'no spaces allowed'\n    outcome: allow\n")
    assert (p["path"], p["line"]) == ("rules[0].name", 2)
    p = one_problem("rules:\n  - name: a\n")
    assert p["path"] == "rules[0].outcome" and "missing 'outcome'" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: allow\n    colour: red\n")
    assert (p["path"], p["line"], p["rule"]) == ("rules[0].colour", 4, "a") and "unknown key 'colour'" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: allow\n  - name: a\n    outcome: remove\n")
    assert (p["path"], p["line"]) == ("rules[1].name", 4) and "duplicate rule name 'a'" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: allow\n    shadow: yes\n")
    assert (p["path"], p["line"]) == ("rules[0].shadow", 4)  # 'yes' is text here, not a boolean
    p = one_problem("rules:\n  - name: a\n    outcome: allow\n    reason: 3\n")
    assert (p["path"], p["line"]) == ("rules[0].reason", 4) and "must be text" in p["message"]
    p = one_problem("rules:\n  - just a string\n")
    assert (p["path"], p["line"]) == ("rules[0]", 2) and "must be a mapping" in p["message"]


def test_outcome_field_problems():
    p = one_problem("rules:\n  - name: a\n    outcome: restrict\n")
    assert p["path"] == "rules[0].in" and "needs 'in'" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: remove\n    in: [DE]\n")
    assert (p["path"], p["line"]) == ("rules[0].in", 4) and "only for outcome 'restrict'" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: restrict\n    in: [DEU]\n")
    assert (p["path"], p["line"]) == ("rules[0].in", 4) and "ISO 3166-1 alpha-2" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: restrict\n    in: []\n")
    assert "empty" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: allow\n    queue: q\n")
    assert (p["path"], p["line"]) == ("rules[0].queue", 4) and "only for outcomes 'review'" in p["message"]
    p = one_problem("rules:\n  - name: a\n    outcome: remove\n    priority: 1\n")
    assert p["path"] == "rules[0].priority"
    p = one_problem("rules:\n  - name: a\n    outcome: review\n    queue: Not Valid\n")
    assert (p["path"], p["line"]) == ("rules[0].queue", 4)
    p = one_problem("rules:\n  - name: a\n    outcome: escalate\n    priority: 11\n")
    assert (p["path"], p["line"]) == ("rules[0].priority", 4) and "1 (most urgent) to 10" in p["message"]


def _when_problem(when: str) -> dict:
    body = textwrap.indent(textwrap.dedent(when).strip(), "      ")
    return one_problem(f"rules:\n  - name: r\n    outcome: remove\n    when:\n{body}\n")


@pytest.mark.parametrize(
    ("when", "path", "line", "fragment"),
    [
        ("jurisdcition: DE", "rules[0].when.jurisdcition", 5, "unknown condition 'jurisdcition'"),
        ("[]", "rules[0].when", 4, "non-empty mapping"),
        ("{}", "rules[0].when", 4, "got an empty mapping"),
        ("any: []", "rules[0].when.any", 5, "got an empty list"),
        ("all: {surface: post}", "rules[0].when.all", 5, "non-empty list"),
        ("any:\n  - surface: post\n  - bogus: 1", "rules[0].when.any[1].bogus", 7, "unknown condition 'bogus'"),
        ("not: surface", "rules[0].when.not", 5, "non-empty mapping"),
        ("any_match: {colour: red}", "rules[0].when.any_match.colour", 5, "unknown key 'colour'"),
        ("any_match: []", "rules[0].when.any_match", 5, "must be a mapping"),
        ("any_match:\n  signal_type: phash", "rules[0].when.any_match.signal_type", 6, "unknown signal type 'phash'"),
        ("any_match:\n  max_distance: -1", "rules[0].when.any_match.max_distance", 6, "between 0"),
        ("any_match:\n  max_distance: near", "rules[0].when.any_match.max_distance", 6, "must be a number"),
        ("any_match:\n  exact: maybe", "rules[0].when.any_match.exact", 6, "true or false"),
        ("any_match:\n  source: rumour", "rules[0].when.any_match.source", 6, "unknown value 'rumour'"),
        ("any_match:\n  min_count: 0", "rules[0].when.any_match.min_count", 6, ">= 1"),
        ("all_matches: {min_count: 2}", "rules[0].when.all_matches.min_count", 5, "unknown key 'min_count'"),
        ("any_match:\n  bank: []", "rules[0].when.any_match.bank", 6, "the list is empty"),
        ("any_match:\n  labels: {}", "rules[0].when.any_match.labels", 6, "non-empty mapping"),
        ("any_match:\n  labels:\n    category: bogus", "rules[0].when.any_match.labels.category", 7,
         "unknown value 'bogus'"),
        ("any_match:\n  labels:\n    ideology: [violent_far_right, nope]", "rules[0].when.any_match.labels.ideology",
         7, "unknown value 'nope'"),
        ("any_match:\n  labels:\n    severity: {gte: extreme}", "rules[0].when.any_match.labels.severity.gte", 7,
         "low, medium, high, critical"),
        ("any_match:\n  labels:\n    severity: {above: 3}", "rules[0].when.any_match.labels.severity.above", 7,
         "unknown operator 'above'"),
        ("any_match:\n  labels:\n    category: {eq: [a, b]}", "rules[0].when.any_match.labels.category.eq", 7,
         "takes one value"),
        ("any_match:\n  labels:\n    note: {exists: 1}", "rules[0].when.any_match.labels.note.exists", 7,
         "true or false"),
        ("any_match:\n  labels:\n    Bad Key: x", "rules[0].when.any_match.labels.Bad Key", 7, "not allowed"),
        ("any_match:\n  labels:\n    source: gifct", "rules[0].when.any_match.labels.source", 7, "not a label"),
        ("any_match:\n  labels:\n    note: {}", "rules[0].when.any_match.labels.note", 7, "empty test"),
        ("classifier: {name: semantic}", "rules[0].when.classifier.min_score", 5, "needs 'min_score'"),
        ("classifier:\n  min_score: 1.5", "rules[0].when.classifier.min_score", 6, "between 0 and 1"),
        ("classifier:\n  min_score: .nan", "rules[0].when.classifier.min_score", 6, "must be a number"),
        ("classifier:\n  min_score: 0.5\n  model: x", "rules[0].when.classifier.model", 7, "unknown key 'model'"),
        ("entity:\n  lists: [XX]", "rules[0].when.entity.lists", 6, "unknown designation list 'xx'"),
        ("entity:\n  names: [Nobody In Particular Ltd]", "rules[0].when.entity.names", 6, "names no single"),
        ("entity:\n  min_count: -1", "rules[0].when.entity.min_count", 6, ">= 1"),
        ("jurisdiction: Germany", "rules[0].when.jurisdiction", 5, "not an ISO 3166-1 alpha-2 country code"),
        ("jurisdiction: [DE, XX]", "rules[0].when.jurisdiction", 5, "'XX' is not an ISO 3166-1 alpha-2"),
        ("jurisdiction: submission", "rules[0].when.jurisdiction", 5, "not an ISO 3166-1 alpha-2"),
        ("content_type: gif", "rules[0].when.content_type", 5, "unknown content type 'gif'"),
        ("source: email", "rules[0].when.source", 5, "unknown source 'email'"),
        ("surface: 'a post'", "rules[0].when.surface", 5, "not a valid value"),
        ("language: english!", "rules[0].when.language", 5, "not a valid value"),
        ("prior_violations: {more: 2}", "rules[0].when.prior_violations.more", 5, "unknown key 'more'"),
        ("prior_violations: many", "rules[0].when.prior_violations", 5, "takes a number"),
        ("prior_violations: {gte: -1}", "rules[0].when.prior_violations.gte", 5, "between 0"),
        ("surface: post\nsurface: comment", "rules[0].when.surface", 6, "given twice"),
        ("surface: true", "rules[0].when.surface", 5, "expected a name"),
    ],
)
def test_condition_problems(when, path, line, fragment):
    p = _when_problem(when)
    assert (p["path"], p["line"], p["rule"]) == (path, line, "r"), p
    assert fragment in p["message"], p


def test_every_problem_is_reported_at_once_in_line_order():
    found = problems("""\
        rules:
          - name: a
            outcome: delete
          - name: b
            outcome: restrict
            when: {surface: post, colour: red}
          - name: a
            outcome: allow
        """)
    assert [(p["line"], p["path"]) for p in found] == [
        (3, "rules[0].outcome"), (4, "rules[1].in"), (6, "rules[1].when.colour"), (7, "rules[2].name")
    ]
    with pytest.raises(InvalidPolicy) as info:
        compile_policy(textwrap.dedent("rules:\n  - name: a\n    outcome: delete\n  - name: b\n    outcome: x\n"))
    assert "line 3: rules[0].outcome (rule 'a')" in info.value.message and "(and 1 more problem)" in info.value.message


def test_limits():
    from bastion.policy import rules

    p = one_problem("#" * (rules.MAX_SOURCE_CHARS + 1))
    assert "at most" in p["message"]
    n = rules.MAX_DEPTH + 2
    deep = "rules:\n  - name: a\n    outcome: allow\n    when: " + "{not: " * n + "{surface: x}" + "}" * n + "\n"
    assert any("nest" in p["message"] for p in problems(deep))
    # a billion-laughs style alias bomb is refused, not expanded
    bomb = ["rules:", "  - name: a", "    outcome: allow", "    when:", "      any:", "        - &a0 {surface: x}"]
    for i in range(1, 20):
        bomb.append(f"        - &a{i} {{any: [*a{i - 1}, *a{i - 1}, *a{i - 1}]}}")
    assert "more than 50000 conditions" in one_problem("\n".join(bomb) + "\n")["message"]
    with pytest.raises(InvalidPolicy):
        compile_policy(None)  # type: ignore[arg-type]
