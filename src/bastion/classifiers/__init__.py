"""Classifiers: plug-ins that score a submission's text (or, later, images), configured per organisation.

A classifier reads a :class:`ClassifierInput` and returns :class:`ClassifierScore` items (and, for the entity
matcher, :class:`EntityMention` items); the pipeline puts them, as dicts, in ``policy.Evidence.classifier_scores``
and ``Evidence.entities``. Scores are evidence for the organisation's policy, never decisions: the default policy
sends content that only a classifier flagged to review, and never removes it on a classifier alone.

Shipped classifiers (see docs/classifiers.md):

- ``entities``: names and aliases (English and French) of designated organisations from the bundled UN, UK and EU
  lists, found in the text through the text signal's normalisation (leetspeak, homoglyphs, spacing tricks).
- ``keywords``: an organisation's own keyword list, matched the same way (off unless configured).
- ``semantic``: similarity of meaning between the text and the texts banked in the banks the organisation may
  match against (a sentence-embedding model packaged on PyPI; nothing is downloaded at run time).

Configuration lives in ``Organisation.config["classifiers"]``: ``{name: {"enabled": bool, ...options}}``; a missing
classifier or option takes its default (:data:`DEFAULTS`). :func:`validate_classifier_config` checks it and returns
it complete; the pipeline calls :func:`run_classifiers`.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bastion.errors import InvalidInput
from bastion.storage.db import Database

log = logging.getLogger(__name__)


class InvalidClassifierConfig(InvalidInput):
    """An organisation's ``classifiers`` configuration is malformed (unknown classifier or option, bad value)."""

    code = "invalid_classifier_config"


@dataclass
class ClassifierInput:
    """What a classifier sees of one submission. ``text``: the submitted text or the text extracted from a PDF
    (None for media without text); ``image``: image bytes, for image classifiers (none ship yet);
    ``text_embedding``: the text's ``text_embedding`` signal value when the caller already computed the signals
    (saves the semantic classifier embedding the text again)."""

    text: str | None = None
    content_type: str | None = None  # image | video | text | pdf | url ...
    language: str | None = None
    image: bytes | None = None
    text_embedding: str | None = None


@dataclass
class ClassifierScore:
    """One score: ``classifier`` (its registry name), ``label`` (what it scores), ``score`` in 0..1, ``details``."""

    classifier: str
    label: str
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.score = round(min(1.0, max(0.0, float(self.score))), 4)

    def to_dict(self) -> dict[str, Any]:
        return {"classifier": self.classifier, "label": self.label, "score": self.score, "details": self.details}


@dataclass
class EntityMention:
    """A designated organisation named in the text: its key, canonical name, the lists designating it, and the
    name or alias (as listed) that was found."""

    entity: str
    name: str
    lists: list[str]
    matched: str

    def to_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "name": self.name, "lists": list(self.lists), "matched": self.matched}


@dataclass
class ClassifierResult:
    scores: list[ClassifierScore] = field(default_factory=list)
    entities: list[EntityMention] = field(default_factory=list)


@dataclass
class ClassifierContext:
    """What a classifier may use besides the input: the database and the banks the organisation may match."""

    db: Database | None
    bank_ids: list[int]


class Classifier(ABC):
    """Base class of classifiers. ``name`` is a configuration key and appears in evidence: never rename one."""

    name: ClassVar[str]
    #: default options, "enabled" included; every option a configuration may set must appear here
    defaults: ClassVar[dict[str, Any]] = {"enabled": True}
    #: content types with text it reads; None: any input with text
    needs_text: ClassVar[bool] = True

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options merged over the defaults, checked; raise InvalidClassifierConfig with the option's path."""
        unknown = sorted(set(options) - set(cls.defaults))
        if unknown:
            raise InvalidClassifierConfig(
                f"classifiers.{cls.name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(cls.defaults)}",
                classifier=cls.name,
            )
        merged = {**copy.deepcopy(cls.defaults), **options}
        if not isinstance(merged["enabled"], bool):
            raise InvalidClassifierConfig(f"classifiers.{cls.name}.enabled must be true or false", classifier=cls.name)
        return merged

    @abstractmethod
    def classify(self, inp: ClassifierInput, options: dict[str, Any], ctx: ClassifierContext) -> ClassifierResult:
        """Scores for one input, with validated ``options``."""


_REGISTRY: dict[str, Classifier] = {}


def register(classifier: type[Classifier] | Classifier) -> Classifier:
    """Register a classifier (class or instance) under its ``name``; a name is registered once."""
    instance = classifier() if isinstance(classifier, type) else classifier
    name = getattr(instance, "name", None)
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(f"classifier {classifier!r} needs a lower-case alphanumeric name")
    if name in _REGISTRY and type(_REGISTRY[name]) is not type(instance):
        raise ValueError(f"classifier name {name!r} registered twice")
    _REGISTRY[name] = instance
    return instance


def get(name: str) -> Classifier:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidClassifierConfig(
            f"unknown classifier {name!r}; known: {', '.join(sorted(_REGISTRY))}", classifier=name
        ) from None


def all_classifiers() -> list[Classifier]:
    return list(_REGISTRY.values())


def default_config() -> dict[str, dict[str, Any]]:
    """Every registered classifier with its default options."""
    return {c.name: copy.deepcopy(c.defaults) for c in _REGISTRY.values()}


def validate_classifier_config(cfg: Any) -> dict[str, dict[str, Any]]:
    """The complete configuration (defaults filled in) for ``cfg`` (the value of ``Organisation.config
    ["classifiers"]``; None or absent means all defaults). Raises InvalidClassifierConfig."""
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise InvalidClassifierConfig("classifiers must be an object: {classifier name: {options}}")
    out = default_config()
    for name, options in cfg.items():
        classifier = get(str(name))
        if isinstance(options, bool):  # shorthand: {"semantic": false}
            options = {"enabled": options}
        if not isinstance(options, dict):
            raise InvalidClassifierConfig(
                f"classifiers.{name} must be an object of options (or true/false)", classifier=name
            )
        out[classifier.name] = classifier.validate_options(options)
    return out


def run_classifiers(
    db: Database | None, organisation_config: dict[str, Any] | None, inp: ClassifierInput, bank_ids: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every classifier the organisation has enabled over ``inp``.

    ``organisation_config``: the organisation's whole ``config`` (its ``"classifiers"`` key is read; None or {}
    means defaults). ``bank_ids``: the banks the organisation may match against (its own and those shared with
    it); the semantic classifier compares only with entries of those banks. Returns ``(classifier_scores,
    entities)`` as dicts in the shape of ``policy.Evidence``. A malformed configuration raises
    InvalidClassifierConfig; a classifier that fails at run time is logged and skipped (the others still run), so
    a submission is never lost to a classifier bug.
    """
    config = validate_classifier_config((organisation_config or {}).get("classifiers"))
    ctx = ClassifierContext(db=db, bank_ids=sorted(set(bank_ids)))
    scores: list[dict[str, Any]] = []
    entities: dict[str, dict[str, Any]] = {}
    for classifier in all_classifiers():
        options = config[classifier.name]
        if not options.get("enabled"):
            continue
        if classifier.needs_text and not (inp.text and inp.text.strip()):
            continue
        try:
            result = classifier.classify(inp, options, ctx)
        except InvalidClassifierConfig:
            raise
        except Exception:  # noqa: BLE001 - one classifier's failure must not lose the submission
            log.exception("classifier %s failed; its scores are left out", classifier.name)
            continue
        scores.extend(s.to_dict() for s in result.scores)
        for mention in result.entities:
            entities.setdefault(mention.entity, mention.to_dict())
    scores.sort(key=lambda s: (-s["score"], s["classifier"], s["label"]))
    return scores, list(entities.values())


def _register_builtins() -> None:
    from bastion.classifiers import entities, semantic

    for classifier in (entities.EntityClassifier, entities.KeywordClassifier, semantic.SemanticClassifier):
        register(classifier)


_register_builtins()

__all__ = [
    "Classifier",
    "ClassifierContext",
    "ClassifierInput",
    "ClassifierResult",
    "ClassifierScore",
    "EntityMention",
    "InvalidClassifierConfig",
    "all_classifiers",
    "default_config",
    "get",
    "register",
    "run_classifiers",
    "validate_classifier_config",
]
