"""Designated terrorist organisations, from the public lists platforms moderate against, for the ``entity`` label.

The lists ship as JSON files in ``banks/data/`` (UN Security Council ISIL/Al-Qaida and Taliban entities, the UK
proscribed organisations, the EU terrorist list), each with its official source, the list version it was
transcribed from and an honest retrieval note: there is no network access where Bastion is built, so they are
transcriptions to verify, not live feeds. Only organisations are kept, never individuals.

One organisation can be on several lists; entries share a ``key`` across files and are merged into one
:class:`Entity`. Its canonical name comes from the first list in :data:`NAME_PRECEDENCE` that has it (the UK list
uses the common English names; the UN list the formal listing names). Names and aliases, English and French, are
matched case-, accent- and punctuation-insensitively. An alias used by two organisations (e.g. "The Base", both
Al-Qaida's literal name and a neo-Nazi group) resolves to neither: the label keeps the name as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from bastion.banks.taxonomy import _fold

LIST_FILES = ("un_1267.json", "uk_proscribed.json", "eu_terrorist_list.json")
NAME_PRECEDENCE = ("uk_proscribed", "un_1267", "eu_terrorist_list")


@dataclass(frozen=True)
class EntityList:
    """One bundled designation list and where it came from."""

    id: str
    title: str
    publisher: str
    source: str
    version: str
    retrieval: str
    count: int

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Entity:
    """One designated organisation, merged across the lists that name it."""

    key: str
    name: str
    aliases: tuple[str, ...]
    aliases_fr: tuple[str, ...]
    ideology: str | None
    lists: tuple[str, ...]
    refs: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "aliases": list(self.aliases),
            "aliases_fr": list(self.aliases_fr),
            "ideology": self.ideology,
            "lists": list(self.lists),
            "refs": list(self.refs),
        }


@dataclass(frozen=True)
class _Catalogue:
    lists: tuple[EntityList, ...]
    entities: dict[str, Entity]
    index: dict[str, frozenset[str]]  # folded name or alias -> entity keys


def _read(file_name: str) -> dict:
    text = resources.files("bastion.banks").joinpath("data", file_name).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _catalogue() -> _Catalogue:
    lists: list[EntityList] = []
    records: dict[str, list[tuple[str, dict]]] = {}
    for file_name in LIST_FILES:
        doc = _read(file_name)
        lists.append(
            EntityList(
                doc["list"],
                doc["title"],
                doc["publisher"],
                doc["source"],
                doc["version"],
                doc["retrieval"],
                len(doc["entities"]),
            )
        )
        for item in doc["entities"]:
            records.setdefault(item["key"], []).append((doc["list"], item))
    rank = {list_id: i for i, list_id in enumerate(NAME_PRECEDENCE)}
    entities: dict[str, Entity] = {}
    index: dict[str, set[str]] = {}
    for key, found in records.items():
        found.sort(key=lambda pair: rank.get(pair[0], len(rank)))
        name = found[0][1]["name"]
        aliases: list[str] = []
        aliases_fr: list[str] = []
        for _, item in found:
            for alias in [item["name"], *item.get("aliases", [])]:
                if alias != name and alias not in aliases:
                    aliases.append(alias)
            aliases_fr.extend(a for a in item.get("aliases_fr", []) if a not in aliases_fr and a not in aliases)
        ideology = next((item["ideology"] for _, item in found if item.get("ideology")), None)
        entity = Entity(
            key=key,
            name=name,
            aliases=tuple(aliases),
            aliases_fr=tuple(aliases_fr),
            ideology=ideology,
            lists=tuple(dict.fromkeys(list_id for list_id, _ in found)),
            refs=tuple(item["ref"] for _, item in found if item.get("ref")),
        )
        entities[key] = entity
        for alias in (name, *aliases, *aliases_fr):
            folded = _fold(alias)
            if folded:
                index.setdefault(folded, set()).add(key)
    return _Catalogue(tuple(lists), entities, {k: frozenset(v) for k, v in index.items()})


def entity_lists() -> list[EntityList]:
    """The bundled lists with their source, version and retrieval note."""
    return list(_catalogue().lists)


def all_entities() -> list[Entity]:
    return sorted(_catalogue().entities.values(), key=lambda e: _fold(e.name))


def get_entity(key: str) -> Entity | None:
    return _catalogue().entities.get(key)


def lookup(name: str) -> list[Entity]:
    """Every listed organisation that ``name`` is the name or an alias of (several when the alias is shared)."""
    cat = _catalogue()
    return [cat.entities[k] for k in sorted(cat.index.get(_fold(name), ()))]


def resolve(name: str) -> Entity | None:
    """The one listed organisation ``name`` designates, or None when unlisted or ambiguous."""
    found = lookup(name)
    return found[0] if len(found) == 1 else None


def canonical_entity_name(name: str) -> str:
    """The canonical name when ``name`` resolves to a listed organisation; otherwise ``name`` as given (stripped)."""
    entity = resolve(name)
    return entity.name if entity is not None else " ".join(name.split())


def search(query: str = "", limit: int | None = None) -> list[Entity]:
    """Organisations whose name or an alias contains ``query`` (folded); all of them for an empty query."""
    q = _fold(query)
    cat = _catalogue()
    if not q:
        found = all_entities()
    else:
        keys = {k for alias, ks in cat.index.items() if q in alias for k in ks}
        exact = cat.index.get(q, frozenset())
        found = sorted((cat.entities[k] for k in keys), key=lambda e: (e.key not in exact, _fold(e.name)))
    return found[:limit] if limit else found
