"""Classifiers: the interface and registry, configuration, the entity and keyword matchers (bastion.classifiers)."""

from __future__ import annotations

import pytest

from bastion import classifiers
from bastion.classifiers import (
    ClassifierInput,
    ClassifierScore,
    EntityMention,
    InvalidClassifierConfig,
    run_classifiers,
    validate_classifier_config,
)
from bastion.classifiers.entities import EntityClassifier, find_aliases
from bastion.errors import BastionError
from bastion.policy import Evidence


def _entities(text: str, config: dict | None = None) -> list[dict]:
    scores, entities = run_classifiers(None, {"classifiers": config or {}}, ClassifierInput(text=text), [])
    return entities


def _keys(text: str, config: dict | None = None) -> set[str]:
    return {e["entity"] for e in _entities(text, config)}


# -- interface and registry -----------------------------------------------------------------------------------------
def test_builtins_are_registered_under_stable_names():
    assert {c.name for c in classifiers.all_classifiers()} >= {"entities", "keywords", "semantic"}
    assert classifiers.get("entities").name == "entities"


def test_a_second_classifier_cannot_take_a_registered_name():
    clone = type("Clone", (EntityClassifier,), {})
    with pytest.raises(ValueError, match="registered twice"):
        classifiers.register(clone)
    assert type(classifiers.get("entities")) is EntityClassifier


def test_scores_and_mentions_have_the_evidence_shape():
    score = ClassifierScore("entities", "designated_organisation", 1.7, {"x": 1})
    assert score.to_dict() == {
        "classifier": "entities",
        "label": "designated_organisation",
        "score": 1.0,
        "details": {"x": 1},
    }
    assert ClassifierScore("a", "b", -2).score == 0.0
    assert EntityMention("isil", "ISIL", ["un_1267"], "Daesh").to_dict() == {
        "entity": "isil",
        "name": "ISIL",
        "lists": ["un_1267"],
        "matched": "Daesh",
    }


def test_run_classifiers_output_fits_policy_evidence():
    scores, entities = run_classifiers(
        None, {}, ClassifierInput(text="A report about Boko Haram.", content_type="text"), []
    )
    evidence = Evidence(organisation_id=1, source="text", classifier_scores=scores, entities=entities)
    again = Evidence.from_dict(evidence.to_dict())
    assert (
        again.entities
        == [
            {
                "entity": "boko_haram",
                "name": "Boko Haram",
                "lists": ["un_1267", "uk_proscribed"],
                "matched": "Boko Haram",
            }
        ]
        or again.entities[0]["entity"] == "boko_haram"
    )
    (score,) = [s for s in again.classifier_scores if s["classifier"] == "entities"]
    assert set(score) == {"classifier", "label", "score", "details"}
    assert score["score"] == 1.0 and score["details"]["entity"] == "boko_haram" and score["details"]["lists"]


def test_no_text_means_no_text_classifier_runs():
    assert run_classifiers(None, {}, ClassifierInput(text=None, content_type="image"), [1]) == ([], [])
    assert run_classifiers(None, {}, ClassifierInput(text="   "), [1]) == ([], [])


def test_a_failing_classifier_is_skipped_and_the_others_still_run(monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(classifiers.get("keywords"), "classify", boom)
    scores, entities = run_classifiers(
        None, {"classifiers": {"keywords": {"terms": ["ferry"]}}}, ClassifierInput(text="Hamas and the ferry"), []
    )
    assert [e["entity"] for e in entities] == ["hamas"]
    assert "classifier keywords failed" in caplog.text


# -- configuration --------------------------------------------------------------------------------------------------
def test_defaults_enable_entities_and_semantic():
    cfg = validate_classifier_config(None)
    assert cfg["entities"]["enabled"] and cfg["semantic"]["enabled"]
    assert cfg["entities"]["lists"] == ["un_1267", "uk_proscribed", "eu_terrorist_list"]
    assert validate_classifier_config({}) == cfg


def test_config_shorthands_are_completed():
    cfg = validate_classifier_config({"entities": {"lists": ["UN", "uk"]}, "semantic": False})
    assert cfg["entities"]["lists"] == ["un_1267", "uk_proscribed"]
    assert cfg["semantic"] == {**cfg["semantic"], "enabled": False}
    assert cfg["semantic"]["min_score"] == 0.5


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ([], "must be an object"),
        ({"nope": {}}, "unknown classifier 'nope'"),
        ({"entities": {"colour": 1}}, "unknown option(s) colour"),
        ({"entities": {"enabled": "yes"}}, "enabled must be true or false"),
        ({"entities": {"lists": ["XX"]}}, "unknown list 'XX'"),
        ({"entities": {"lists": []}}, "non-empty list"),
        ({"entities": {"min_score": 2}}, "from 0 to 1"),
        ({"entities": 3}, "must be an object of options"),
        ({"semantic": {"min_score": "high"}}, "from 0 to 1"),
        ({"semantic": {"top_k": 0}}, "top_k"),
        ({"keywords": {"terms": "ferry"}}, "must be a list"),
        ({"keywords": {"terms": ["!!!"]}}, "with a word in it"),
        ({"keywords": {"terms": [{"term": "x", "colour": 1}]}}, "terms[0]"),
        ({"keywords": {"terms": [{"term": "ferry", "score": 1.5}]}}, "from 0 to 1"),
    ],
)
def test_invalid_config_is_refused_with_a_code(cfg, fragment):
    with pytest.raises(InvalidClassifierConfig) as info:
        validate_classifier_config(cfg)
    assert isinstance(info.value, BastionError)
    assert info.value.code == "invalid_classifier_config" and info.value.http_status == 400
    assert fragment in info.value.message


def test_run_classifiers_refuses_a_bad_config():
    with pytest.raises(InvalidClassifierConfig):
        run_classifiers(None, {"classifiers": {"entities": {"lists": "UN"}}}, ClassifierInput(text="x"), [])


def test_disabled_classifier_does_not_run():
    assert _entities("Hamas", {"entities": {"enabled": False}}) == []


# -- entity matcher -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, key",
    [
        ("They marched under the Boko Haram banner.", "boko_haram"),
        ("posts praising Hezbollah", "hizballah"),
        ("un texte sur l'État islamique", "isil"),  # French alias
        ("Etat Islamique", "isil"),  # accents dropped
        ("la propagande d'Al-Qaïda", "al_qaida"),
        ("D@3SH", "isil"),  # leetspeak
        ("ｄａｅｓｈ", "isil"),  # fullwidth
        ("D\u0430\u200besh", "isil"),  # Cyrillic a and a zero-width space
        ("d a e s h", "isil"),  # spaced letters
        ("d.a.e.s.h", "isil"),
        ("B0K0 H4R4M", "boko_haram"),
        ("I.S.I.S", "isil"),  # dotted acronym
        ("1SIS is back", "isil"),
        ("\u0399\u0405\u0399\u0405 flags", "isil"),  # Greek Iota and Cyrillic Dze
        ("I\u0336S\u0336I\u0336S\u0336", "isil"),  # combining strike-through marks
        ("I\u200bS\u200bI\u200bS", "isil"),  # zero-width spaces between the letters
        ("Hizb-allah", "hizballah"),  # a long one-word name split in two
        ("A Q A P", "aqap"),
        ("a post about AQIM", "aqim"),
    ],
)
def test_names_aliases_and_evasions_are_found(text, key):
    assert key in _keys(text)


@pytest.mark.parametrize(
    "text",
    [
        "The crisis deepened as the markets fell.",  # "isis" inside a word
        "Isis is the name of my cat, after the Egyptian goddess.",  # not written as the acronym
        "We sailed down the river Isis at Oxford.",
        "Let it be, said the band; LET IT BE, sang the crowd at the stadium tonight.",  # "LeT" only as written
        "The base of the mountain was covered in snow.",  # "The Base": shared alias, and ordinary words
        "My AI assistant is great and the ETA is five minutes.",
        "Hamasaki played the piano; the thesis was approved.",  # names inside longer words
        "I studied at MIT and write C++ (CPP) code.",
        "Les martyrs de la foi sont honorés dans cette église.",
        "L'État a présenté un plan contre la crise; le hamac est dans le jardin.",  # "État" alone is no name
        "Nous avons lu la thèse d'Isis sur l'Égypte ancienne.",
    ],
)
def test_benign_sentences_name_no_organisation(text):
    assert _entities(text) == []


def test_scores_rank_names_above_short_aliases_above_acronyms():
    by_key = {}
    for text in ("Boko Haram", "Daesh", "ISIS", "the IRA"):
        scores, _ = run_classifiers(None, {}, ClassifierInput(text=text), [])
        by_key[text] = scores[0]["score"]
    assert by_key["Boko Haram"] == 1.0 > by_key["Daesh"] > by_key["ISIS"] > by_key["the IRA"] > 0


def test_three_letter_acronyms_are_ignored_in_shouted_text_and_acronyms_can_be_turned_off():
    assert "ira" in _keys("a history of the IRA")
    assert "ira" not in _keys("I WILL PUT MY SAVINGS IN AN IRA ACCOUNT BEFORE THE END OF THE YEAR")
    assert "isil" in _keys("WE SAW ISIS ON THE NEWS TONIGHT AND EVERYONE WAS TALKING")
    assert _keys("ISIS", {"entities": {"acronyms": False}}) == set()


def test_lists_option_filters_by_designating_list():
    assert "hamas" in _keys("Hamas", {"entities": {"lists": ["UK"]}})
    mention = _entities("Hamas", {"entities": {"lists": ["UK"]}})[0]
    assert mention["lists"] == ["uk_proscribed"]
    # Boko Haram is on the UN and UK lists: kept for UN only, gone for EU only
    assert "boko_haram" in _keys("Boko Haram", {"entities": {"lists": ["UN"]}})
    assert "boko_haram" not in _keys("Boko Haram", {"entities": {"lists": ["EU"]}})


def test_min_score_drops_weak_mentions():
    assert _keys("ISIS and Boko Haram", {"entities": {"min_score": 0.8}}) == {"boko_haram"}


def test_one_mention_per_organisation_with_every_form_found_in_details():
    scores, entities = run_classifiers(
        None, {}, ClassifierInput(text="Daesh, also called ISIS or the Islamic State"), []
    )
    assert [e["entity"] for e in entities] == ["isil"]
    (score,) = [s for s in scores if s["classifier"] == "entities"]
    assert {"Daesh", "ISIS"} <= set(score["details"]["matched"])


def test_find_aliases_reports_how_a_name_was_found():
    hows = {(a.entity, how) for a, how in find_aliases("D a e s h and AQAP")}
    assert ("isil", "normal") in hows and ("aqap", "acronym") in hows


# -- keywords -------------------------------------------------------------------------------------------------------
def test_keywords_match_whole_words_through_evasions_with_labels():
    cfg = {"keywords": {"terms": ["night ferry", {"term": "lighthouse", "label": "coast", "score": 0.9}]}}
    scores, _ = run_classifiers(
        None, {"classifiers": cfg}, ClassifierInput(text="Take the N1GHT   F3RRY to the L.i.g.h.t.h.o.u.s.e"), []
    )
    by_label = {s["label"]: s for s in scores if s["classifier"] == "keywords"}
    assert by_label["keyword"]["score"] == 0.7 and by_label["keyword"]["details"]["terms"] == ["night ferry"]
    assert by_label["coast"]["score"] == 0.9
    none, _ = run_classifiers(None, {"classifiers": cfg}, ClassifierInput(text="ferrymen and lighthouses"), [])
    assert [s for s in none if s["classifier"] == "keywords"] == []


def test_validation_is_idempotent_so_a_stored_complete_config_validates_again():
    cfg = validate_classifier_config(
        {"entities": {"lists": ["EU"]}, "keywords": {"terms": ["ferry", {"term": "dock", "label": "port"}]}}
    )
    assert validate_classifier_config(cfg) == cfg
    assert cfg["keywords"]["terms"] == [
        {"term": "ferry", "label": "keyword", "score": 0.7},
        {"term": "dock", "label": "port", "score": 0.7},
    ]
