"""The entity matcher (designated organisations named in a text) and the organisation keyword matcher.

Names and aliases come from the bundled designation lists (:mod:`bastion.banks.entities`: UN 1267, UK proscribed,
EU terrorist list; English names and aliases, and French aliases). Each alias is put in one of three tiers:

``name`` / ``alias`` (score 1.0 for an organisation's canonical name, 0.9 for another long alias, 0.8 for a
    single-word alias of at most six letters such as "Daesh" or "Hamas"): matched in the text's normal form, the one
    the ``text`` signal hashes (:func:`bastion.signals.text.normalize_text`: NFKC, homoglyphs folded to ASCII,
    case and accents folded, invisible characters removed, leetspeak folded, punctuation to spaces, runs of single
    letters joined), as whole words: the alias's normal form must be preceded and followed by a space or the end
    of the text. So "D@3SH", "ｄａｅｓｈ", "Dа‌esh" (Cyrillic а, a zero-width joiner) and "d a e s h" all match
    "Daesh", while "crisis" or "Isisford" never match "ISIS" (no substring matches). Every alias's normal form
    goes into one Aho-Corasick automaton (pyahocorasick), built once per process: one pass over the text whatever
    the number of aliases.
``acronym`` (score 0.6 for four letters or more, 0.4 for three): aliases written in capitals ("ISIS", "AQAP",
    "JeM"). Their lower-case forms are ordinary words or names too often ("isis" is a goddess and a first name,
    "ira" a retirement account, "let" and "jem" words), so they are matched case-sensitively, as written in the
    list, in the text after NFKC, invisible characters removed and homoglyphs folded with their case kept; a
    letter may be replaced by its leetspeak digit or symbol (``1SIS``, ``I$I$``) and letters may be separated by
    one dot, dash, underscore, slash or space (``I.S.I.S``, ``A Q A P``). In a text written mostly in capitals
    (60% of at least 20 letters) three-letter acronyms are not matched: they would be ordinary words there.
    Acronyms of one or two letters ("IS", "AQ") and a few three-letter ones that are mostly something else
    (:data:`AMBIGUOUS_ACRONYMS`, e.g. "MIT", "CPP", "NSO") are never matched.

An alias shared by two organisations resolves to neither (as in :mod:`bastion.banks.entities`) and is not matched;
single-word aliases that are ordinary words (:data:`COMMON_WORDS`) are not matched either.

The trade-off: a designated name that is also an ordinary phrase ("National Action", "Black September") is found
wherever the phrase is used; that is why the scores are evidence for review and never a reason to remove on their
own. Lower-case or capitalised "isis" is deliberately not matched (the goddess, a first name, a river), while
"ISIS" and "I.S.I.S" are, at 0.6. A one-word name of eight letters or more split in two ("Hizb-allah", "Hez bollah")
is found by also matching those names against every pair of adjacent words joined; shorter names are not (two
ordinary words joined too easily spell a short name), nor is a name split in three ("hezb o llah").
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import ahocorasick

from bastion.banks import entities as catalogue
from bastion.classifiers import (
    Classifier,
    ClassifierContext,
    ClassifierInput,
    ClassifierResult,
    ClassifierScore,
    EntityMention,
    InvalidClassifierConfig,
)
from bastion.signals.text import _normalized, normalize_text

LIST_IDS = ("un_1267", "uk_proscribed", "eu_terrorist_list")
LIST_SHORTHANDS = {"un": "un_1267", "uk": "uk_proscribed", "eu": "eu_terrorist_list"}
# three-letter acronyms on the lists that are mostly something else (words, universities, languages, companies)
_AMBIGUOUS = "MIT CPP JIT HUM NSO ASC AAS ABT IAA IIB MAK GRF MIB FIF ABM BIF ETA LET ANO"
AMBIGUOUS_ACRONYMS = frozenset(_AMBIGUOUS.split(" "))
COMMON_WORDS = frozenset({"martyrs", "jambs", "jamiyat", "base", "the base"})
SPLIT_MIN_LETTERS = 8
SCORE_NAME, SCORE_ALIAS, SCORE_SHORT_ALIAS = 1.0, 0.9, 0.8
SCORE_ACRONYM_LONG, SCORE_ACRONYM_SHORT = 0.6, 0.4
_UNLEET = str.maketrans(
    {
        "4": "A",
        "@": "A",
        "8": "B",
        "3": "E",
        "9": "G",
        "1": "I",
        "!": "I",
        "|": "I",
        "0": "O",
        "5": "S",
        "$": "S",
        "7": "T",
        "2": "Z",
    }
)
_CHAR = r"[^\W_]|[@$!|]"
# a word of letters, digits and leetspeak symbols, or single characters each followed by one separator ("I.S.I.S.")
_ACRONYM_CANDIDATE = re.compile(
    rf"(?<![^\W_])(?:"
    rf"(?:(?:{_CHAR})(?:[.\-_/·•*]\s?|\s)){{2,9}}(?:{_CHAR})"  # single characters, separated
    rf"|(?:{_CHAR}){{1,10}}(?:[-/](?:{_CHAR}){{1,6}}){{1,2}}"  # hyphenated: ISIS-WA, HuM/A
    rf"|(?:{_CHAR}){{3,10}}"  # one word
    rf")(?![^\W_])"
)
# French elision: "l'État islamique", "d'Al-Qaïda" (the normal form drops apostrophes, gluing the article on)
_ELISION = re.compile(r"(?<![^\W_])(qu|[cdjlmnst])['\u2019\u02bc]", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s.\-_/·•*]")
_TWO_LOWER = re.compile(r"[^\W\d_]{2}")
_UPPER_LETTERS = re.compile(r"[A-Z]")
_LETTERS = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class _Alias:
    entity: str
    alias: str  # as listed
    tier: str  # name | alias | acronym
    score: float
    language: str  # en | fr


@dataclass(frozen=True)
class _Index:
    words: Any  # ahocorasick.Automaton: " normal form " -> tuple[_Alias, ...]
    joined: Any  # the same for single-word aliases of SPLIT_MIN_LETTERS letters or more, against joined word pairs
    acronyms: dict[str, _Alias]  # letters and digits as written -> alias
    case_fold: dict[int, str | None]


def normal_form(text: str) -> str:
    """The text signal's normal form, French elided articles first split off ("l'État" -> "l État")."""
    if _ELISION.search(text) is None:
        return _normalized(text)  # the text signal's cached normal form: the pipeline computed it already
    return normalize_text(_ELISION.sub(r"\1 ", text))


def _is_acronym(alias: str) -> bool:
    """Written in capitals: no two lower-case letters in a row ("ISIS", "JeM", "HuM/A"; not "Hamas")."""
    return not any(m.group().islower() for m in _TWO_LOWER.finditer(alias))


def _acronym_key(alias: str) -> str | None:
    """The letters and digits of an acronym alias as written ("ISIS-WA" -> "ISISWA"); None when not matchable."""
    key = "".join(c for c in alias if c.isalnum())
    if len(key) < 3 or (alias.isupper() and key in AMBIGUOUS_ACRONYMS):
        return None
    return key


def _aliases() -> list[tuple[str, _Alias, str | None]]:
    """(normal form, alias, acronym pattern or None) for every matchable alias of every listed organisation."""
    found: list[tuple[str, _Alias, str | None]] = []
    for entity in catalogue.all_entities():
        forms = [(entity.name, "en", True)] + [(a, "en", False) for a in entity.aliases]
        forms += [(a, "fr", False) for a in entity.aliases_fr]
        for alias, language, canonical in forms:
            normal = normal_form(alias)
            letters = sum(ch.isalnum() for ch in normal)
            if not normal or normal in COMMON_WORDS:
                continue
            if _is_acronym(alias) or letters < 5:
                pattern = _acronym_key(alias)
                if pattern is not None:
                    score = SCORE_ACRONYM_LONG if sum(c.isalnum() for c in alias) >= 4 else SCORE_ACRONYM_SHORT
                    found.append((normal, _Alias(entity.key, alias, "acronym", score, language), pattern))
                continue
            if canonical:
                tier, score = "name", SCORE_NAME
            elif " " not in normal and letters <= 6:
                tier, score = "alias", SCORE_SHORT_ALIAS
            else:
                tier, score = "alias", SCORE_ALIAS
            found.append((normal, _Alias(entity.key, alias, tier, score, language), None))
    return found


def _case_fold_table() -> dict[int, str | None]:
    """For the acronym pass: homoglyphs folded with their case kept (Cyrillic "А" to "A", "а" to "a"), and the
    characters the normaliser strips (marks, invisible and format characters, tags) deleted."""
    import numpy as np

    from bastion.signals.text import _DELETE, _tables

    homoglyphs, strip, _ = _tables()
    table: dict[int, str | None] = {}
    for cp in np.flatnonzero((homoglyphs != np.arange(len(homoglyphs))) & (homoglyphs < 0x80)).tolist():
        if cp < 0x80:
            continue
        ch, t = chr(cp), chr(int(homoglyphs[cp]))
        if t.isalpha() and ch.isupper():
            t = "I" if t == "l" else t.upper()  # an upper-case glyph like "l" is an I
        table[cp] = t
    for cp in np.flatnonzero(strip == _DELETE).tolist():
        table[cp] = None
    for cp in range(0xE0000, 0xE1000):  # tags and variation selectors
        table[cp] = None
    return table


@functools.lru_cache(maxsize=1)
def index() -> _Index:
    """The process-wide matcher over every listed alias (built once, with the normaliser's tables: about 1 s)."""
    aliases = _aliases()
    owners: dict[str, set[str]] = {}
    for normal, alias, _ in aliases:
        owners.setdefault(normal, set()).add(alias.entity)
    automaton, joined = ahocorasick.Automaton(), ahocorasick.Automaton()
    by_normal: dict[str, dict[tuple[str, str], _Alias]] = {}
    acronyms: dict[str, _Alias] = {}
    for normal, alias, pattern in aliases:
        if len(owners[normal]) > 1:  # shared by two organisations: names neither
            continue
        if pattern is None:
            by_normal.setdefault(normal, {}).setdefault((alias.entity, alias.alias), alias)
        else:
            acronyms.setdefault(pattern, alias)
    for normal, found in by_normal.items():
        automaton.add_word(f" {normal} ", tuple(found.values()))
        if " " not in normal and len(normal) >= SPLIT_MIN_LETTERS:
            joined.add_word(f" {normal} ", tuple(found.values()))
    automaton.make_automaton()
    joined.add_word(" ", ())  # an automaton needs a word
    joined.make_automaton()
    return _Index(automaton, joined, acronyms, _case_fold_table())


def _shouting(text: str) -> bool:
    letters = len(_LETTERS.findall(text[:20_000]))
    return letters >= 20 and len(_UPPER_LETTERS.findall(text[:20_000])) > 0.6 * letters


def _case_kept(text: str, table: dict[int, str | None]) -> str:
    t = unicodedata.normalize("NFKC", text)
    if t.isascii():
        return t
    return unicodedata.normalize("NFKD", t).translate(table)  # accents and other marks decomposed, then dropped


def find_aliases(text: str, normal: str | None = None) -> list[tuple[_Alias, str]]:
    """Every (alias, how it was found: "normal" or "acronym") in ``text``; ``normal``: its normal form if known."""
    idx = index()
    normal = normal_form(text) if normal is None else normal
    hits: list[tuple[_Alias, str]] = []
    if normal:
        for _, found in idx.words.iter(f" {normal} "):
            hits.extend((a, "normal") for a in found)
        words = normal.split(" ")
        if len(words) > 1:  # a long one-word name split in two: "Hizb-allah", "Hez bollah"
            pairs = " ".join([a + b for a, b in zip(words, words[1:], strict=False)])
            for _, found in idx.joined.iter(f" {pairs} "):
                hits.extend((a, "normal") for a in found)
    shouting = None
    for m in _ACRONYM_CANDIDATE.finditer(_case_kept(text, idx.case_fold)):
        word = m.group()
        if word.islower():  # most words: no capital, no acronym
            continue
        alias = _acronym(idx, word)
        found = (
            [alias]
            if alias
            else [_acronym(idx, part) for part in re.split(r"[-/]", word) if "-" in word or "/" in word]
        )
        for alias in found:
            if alias is None:
                continue
            if alias.score < SCORE_ACRONYM_LONG:
                shouting = _shouting(text) if shouting is None else shouting
                if shouting:
                    continue
            hits.append((alias, "acronym"))
    return hits


def _acronym(idx: _Index, word: str) -> _Alias | None:
    key = _SEPARATORS.sub("", word)
    return idx.acronyms.get(key) or idx.acronyms.get(key.translate(_UNLEET))


def _lists_option(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidClassifierConfig(
            f"classifiers.entities.lists must be a non-empty list of list ids ({', '.join(LIST_IDS)}, or UN, UK, EU)",
            classifier="entities",
        )
    out: list[str] = []
    for v in value:
        list_id = LIST_SHORTHANDS.get(v.strip().lower(), v.strip().lower())
        if list_id not in LIST_IDS:
            raise InvalidClassifierConfig(
                f"classifiers.entities.lists: unknown list {v!r}; known: {', '.join(LIST_IDS)} (or UN, UK, EU)",
                classifier="entities",
            )
        if list_id not in out:
            out.append(list_id)
    return out


def _score_option(name: str, option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidClassifierConfig(f"classifiers.{name}.{option} must be a number from 0 to 1", classifier=name)
    return float(value)


class EntityClassifier(Classifier):
    """Designated organisations named in the text: one score per organisation, plus its entity mention."""

    name = "entities"
    defaults = {"enabled": True, "lists": list(LIST_IDS), "min_score": 0.0, "acronyms": True}

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        merged = super().validate_options(options)
        merged["lists"] = _lists_option(merged["lists"])
        merged["min_score"] = _score_option(cls.name, "min_score", merged["min_score"])
        if not isinstance(merged["acronyms"], bool):
            raise InvalidClassifierConfig("classifiers.entities.acronyms must be true or false", classifier=cls.name)
        return merged

    def classify(self, inp: ClassifierInput, options: dict[str, Any], ctx: ClassifierContext) -> ClassifierResult:
        wanted = set(options["lists"])
        best: dict[str, tuple[_Alias, list[str]]] = {}
        for alias, _how in find_aliases(inp.text or ""):
            if alias.tier == "acronym" and not options["acronyms"]:
                continue
            current = best.get(alias.entity)
            if current is None:
                best[alias.entity] = (alias, [alias.alias])
                continue
            top, forms = current
            if alias.alias not in forms:
                forms.append(alias.alias)
            if alias.score > top.score:
                best[alias.entity] = (alias, forms)
        result = ClassifierResult()
        for key, (alias, forms) in sorted(best.items(), key=lambda kv: (-kv[1][0].score, kv[0])):
            entity = catalogue.get_entity(key)
            if entity is None:  # pragma: no cover - the catalogue and the index are built from the same files
                continue
            lists = [list_id for list_id in entity.lists if list_id in wanted]
            if not lists or alias.score < options["min_score"]:
                continue
            result.scores.append(
                ClassifierScore(
                    self.name,
                    "designated_organisation",
                    alias.score,
                    {
                        "entity": key,
                        "name": entity.name,
                        "lists": lists,
                        "matched": sorted(forms),
                        "tier": alias.tier,
                        "language": alias.language,
                    },
                )
            )
            result.entities.append(EntityMention(key, entity.name, lists, alias.alias))
        return result


# -- organisation keywords ----------------------------------------------------------------------------------------
MAX_TERMS = 5_000
MAX_TERM_CHARS = 200


@functools.lru_cache(maxsize=32)
def _keyword_automaton(terms: tuple[tuple[str, str, float], ...]) -> Any:
    automaton = ahocorasick.Automaton()
    by_normal: dict[str, list[tuple[str, str, float]]] = {}
    for term, label, score in terms:
        by_normal.setdefault(normal_form(term), []).append((term, label, score))
    for normal, found in by_normal.items():
        automaton.add_word(f" {normal} ", tuple(found))
    automaton.make_automaton()
    return automaton


class KeywordClassifier(Classifier):
    """An organisation's own terms, matched as whole words in the normal form (the entity matcher's rules).

    ``terms``: strings, or ``{"term", "label" (default "keyword"), "score" (default the ``score`` option)}``.
    One score per label: the highest of its terms found; details list the terms found.
    """

    name = "keywords"
    defaults = {"enabled": True, "terms": [], "score": 0.7}

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        merged = super().validate_options(options)
        default_score = _score_option(cls.name, "score", merged["score"])
        terms = merged["terms"]
        if not isinstance(terms, list) or len(terms) > MAX_TERMS:
            raise InvalidClassifierConfig(
                f"classifiers.keywords.terms must be a list of at most {MAX_TERMS} terms", classifier=cls.name
            )
        clean: list[dict[str, Any]] = []
        for i, item in enumerate(terms):
            where = f"classifiers.keywords.terms[{i}]"
            if isinstance(item, str):
                item = {"term": item}
            if not isinstance(item, dict) or set(item) - {"term", "label", "score"} or "term" not in item:
                raise InvalidClassifierConfig(
                    f"{where} must be a string or {{term, label, score}}", classifier=cls.name
                )
            term, label = item["term"], item.get("label", "keyword")
            if not isinstance(term, str) or not normal_form(term) or len(term) > MAX_TERM_CHARS:
                raise InvalidClassifierConfig(
                    f"{where}.term must be a text with a word in it, at most {MAX_TERM_CHARS} characters",
                    classifier=cls.name,
                )
            if not isinstance(label, str) or not label.strip() or len(label) > 64:
                raise InvalidClassifierConfig(f"{where}.label must be a short text", classifier=cls.name)
            score = _score_option(cls.name, f"terms[{i}].score", item.get("score", default_score))
            clean.append({"term": term, "label": label.strip(), "score": score})
        merged["terms"] = clean
        merged["score"] = default_score
        return merged

    def classify(self, inp: ClassifierInput, options: dict[str, Any], ctx: ClassifierContext) -> ClassifierResult:
        result = ClassifierResult()
        if not options["terms"]:
            return result
        automaton = _keyword_automaton(tuple((t["term"], t["label"], t["score"]) for t in options["terms"]))
        normal = normal_form(inp.text or "")
        by_label: dict[str, tuple[float, set[str]]] = {}
        if normal:
            for _, found in automaton.iter(f" {normal} "):
                for term, label, score in found:
                    top, seen = by_label.get(label, (0.0, set()))
                    seen.add(term)
                    by_label[label] = (max(top, score), seen)
        for label, (score, seen) in sorted(by_label.items()):
            result.scores.append(ClassifierScore(self.name, label, score, {"terms": sorted(seen)}))
        return result
