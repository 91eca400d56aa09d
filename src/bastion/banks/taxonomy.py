"""The TVEC label taxonomy: what a bank entry is, whose it is, and where it came from.

Modelled on the GIFCT hash-sharing database taxonomy (behaviour-based categories plus the "branded content",
"attacker manifesto" and "livestreamed attack" additions), so labels survive the trip to and from the industry
exchanges. Keys below are storage values: never rename one; titles are for people and may change.

Labels are a ``dict[str, str]``. Three keys are checked: ``category`` and ``ideology`` must be one of the values
below (titles and common synonyms are accepted and stored as the key), ``entity`` is resolved through the bundled
designation lists (:mod:`bastion.banks.entities`) to a canonical name when listed, and kept as given when not (a
lone attacker, say). Every other key is kept as it is (imports carry their own raw labels). Provenance -- source,
note, who added it and when -- lives in columns, not labels; ``source`` is checked here too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from bastion.errors import InvalidLabel

CATEGORIES: dict[str, str] = {
    "attacker_manifesto": "Attacker manifesto",
    "branded_publication": "Branded publication (official organisation output)",
    "livestreamed_attack": "Livestreamed attack",
    "imminent_credible_threat": "Imminent credible threat",
    "graphic_violence": "Graphic violence against defenceless people",
    "glorification": "Glorification of terrorist acts",
    "recruitment": "Recruitment",
    "instructional": "Instructional material (weapons, attack planning)",
    "propaganda": "Unbranded propaganda",
    "symbols_insignia": "Symbols and insignia",
    "other": "Other / unclear",
}

IDEOLOGIES: dict[str, str] = {
    "violent_islamist": "Violent Islamist / jihadist",
    "violent_far_right": "Violent far-right / white supremacist",
    "ethno_nationalist_separatist": "Ethno-nationalist / separatist",
    "violent_left_wing": "Violent left-wing / anarchist",
    "single_issue": "Single-issue violent extremism",
    "other_unclear": "Other / unclear",
}

SOURCES: dict[str, str] = {
    "own_review": "Our own review",
    "forum": "An industry hash-sharing forum",
    "authority_order": "An order or referral from a competent authority",
    "tech_against_terrorism": "Tech Against Terrorism (TCAP)",
    "gifct": "GIFCT hash-sharing database",
    "other": "Other",
}

# Spellings seen in exchanges and typed by people, folded by _fold() before lookup.
_SYNONYMS: dict[str, dict[str, str]] = {
    "category": {
        "manifesto": "attacker_manifesto",
        "branded": "branded_publication",
        "branded terrorist content": "branded_publication",
        "terrorist publication": "branded_publication",
        "publication": "branded_publication",
        "livestream": "livestreamed_attack",
        "livestreamed": "livestreamed_attack",
        "ict": "imminent_credible_threat",
        "threat": "imminent_credible_threat",
        "graphic violence": "graphic_violence",
        "glorification of terrorist acts": "glorification",
        "instruction": "instructional",
        "instructions": "instructional",
        "radicalisation recruitment instruction": "recruitment",
        "radicalization recruitment instruction": "recruitment",
        "rri": "recruitment",
        "symbols": "symbols_insignia",
        "unclear": "other",
    },
    "ideology": {
        "islamist": "violent_islamist",
        "jihadist": "violent_islamist",
        "far right": "violent_far_right",
        "far_right": "violent_far_right",
        "white supremacist": "violent_far_right",
        "right wing": "violent_far_right",
        "ethno nationalist": "ethno_nationalist_separatist",
        "separatist": "ethno_nationalist_separatist",
        "left wing": "violent_left_wing",
        "anarchist": "violent_left_wing",
        "single issue": "single_issue",
        "other": "other_unclear",
        "unclear": "other_unclear",
    },
    "source": {
        "tat": "tech_against_terrorism",
        "tcap": "tech_against_terrorism",
        "authority": "authority_order",
        "own": "own_review",
    },
}

CHECKED_KEYS = ("entity", "category", "ideology")
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 1000
_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.:-]*$")


def _fold(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form used to compare names."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    stripped = re.sub(r"['’`ʼ‘]", "", stripped.casefold())
    return " ".join(re.sub(r"[\W_]+", " ", stripped).split())


def _lookup_table(key: str, values: Mapping[str, str]) -> dict[str, str]:
    table = {_fold(k): k for k in values}
    table.update({_fold(title): k for k, title in values.items()})
    table.update({_fold(s): k for s, k in _SYNONYMS.get(key, {}).items()})
    return table


_TABLES = {
    "category": (CATEGORIES, _lookup_table("category", CATEGORIES)),
    "ideology": (IDEOLOGIES, _lookup_table("ideology", IDEOLOGIES)),
    "source": (SOURCES, _lookup_table("source", SOURCES)),
}


def allowed_values(key: str) -> dict[str, str]:
    """The allowed values (key -> title) of ``category``, ``ideology`` or ``source``."""
    return dict(_TABLES[key][0])


def normalize_choice(key: str, value: object) -> str:
    """The storage key for a ``category``, ``ideology`` or ``source`` value, or InvalidLabel naming what is allowed."""
    values, table = _TABLES[key]
    text = value if isinstance(value, str) else ""
    found = table.get(_fold(text)) if text.strip() else None
    if found is None:
        allowed = ", ".join(values)
        raise InvalidLabel(
            f"label '{key}': unknown value {value!r}; allowed: {allowed}",
            code="unknown_label_value",
            key=key,
            value=str(value),
            allowed=list(values),
        )
    return found


def normalize_source(value: str | None, default: str = "own_review") -> str:
    return default if value is None or not str(value).strip() else normalize_choice("source", value)


def _as_text(key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidLabel(
            f"label '{key}': value is {len(text)} characters, over the limit of {MAX_VALUE_LENGTH}",
            code="label_too_long",
            key=key,
        )
    return text or None


def normalize_labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """Checked, canonical labels; raises :class:`InvalidLabel` with a code naming the key and what is allowed.

    Keys are lower-cased; empty values are dropped; non-string values become strings (JSON for lists and objects).
    """
    from bastion.banks.entities import canonical_entity_name

    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidLabel(
            f"labels must be an object of key -> value, got {type(labels).__name__}", code="labels_not_object"
        )
    out: dict[str, str] = {}
    for raw_key, raw_value in labels.items():
        key = raw_key.strip().lower() if isinstance(raw_key, str) else ""
        if not key or len(key) > MAX_KEY_LENGTH or not _KEY_RE.match(key):
            raise InvalidLabel(
                f"label key {raw_key!r} is not allowed: use 1-{MAX_KEY_LENGTH} characters a-z, 0-9, _ . : - "
                "starting with a letter or digit",
                code="invalid_label_key",
                key=str(raw_key),
            )
        text = _as_text(key, raw_value)
        if text is None:
            continue
        if key in ("category", "ideology"):
            text = normalize_choice(key, text)
        elif key == "entity":
            text = canonical_entity_name(text)
        out[key] = text
    return out


def parse_label_args(pairs: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` (the CLI's --label) as a dict; a later key wins."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidLabel(f"label {pair!r} is not key=value", code="invalid_label_syntax", label=pair)
        out[key.strip()] = value.strip()
    return out


def parse_label_field(text: str) -> dict[str, Any]:
    """A labels cell: a JSON object (``{"category": "recruitment"}``) or ``key=value;key=value``. Empty: ``{}``."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidLabel(
                f"labels are not valid JSON: {exc.msg} at character {exc.pos}", code="invalid_label_syntax"
            ) from None
        if not isinstance(value, dict):
            raise InvalidLabel("labels must be a JSON object", code="labels_not_object")
        return value
    return parse_label_args(part for part in text.split(";") if part.strip())


def describe() -> dict[str, dict[str, str]]:
    """The whole taxonomy, for ``bastion bank`` help and the API."""
    return {"category": dict(CATEGORIES), "ideology": dict(IDEOLOGIES), "source": dict(SOURCES)}
