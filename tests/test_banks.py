"""Banks: the TVEC taxonomy, the bundled designation lists, and BankService on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from sqlalchemy import func, select

from bastion.banks import entities
from bastion.banks.service import BankService
from bastion.banks.taxonomy import CATEGORIES, IDEOLOGIES, normalize_labels, parse_label_args, parse_label_field
from bastion.errors import Conflict, InvalidInput, InvalidLabel, InvalidSignal, NotFound
from bastion.samples import encode, generate_image
from bastion.signals import Signal
from bastion.storage.models import BankChange, BankEntry, BankSignal

MD5 = "9e107d9d372bb6826bd81d3542a419d6"
PDQ = "f" * 8 + "0" * 56


# -- taxonomy ------------------------------------------------------------------------------------------------------
def test_labels_are_canonicalised_and_extra_keys_kept():
    labels = normalize_labels(
        {
            "Category": "Attacker manifesto",  # a title
            "ideology": "far-right",  # a synonym
            "entity": "daesh",  # an alias of a listed organisation
            "tat_id": 123,  # extra keys are kept, as strings
            "flags": ["a", "b"],
            "empty": "  ",
        }
    )
    assert labels == {
        "category": "attacker_manifesto",
        "ideology": "violent_far_right",
        "entity": "Islamic State of Iraq and the Levant",
        "tat_id": "123",
        "flags": '["a","b"]',
    }


def test_every_taxonomy_key_and_title_is_accepted():
    for key, title in CATEGORIES.items():
        assert normalize_labels({"category": key}) == {"category": key}
        assert normalize_labels({"category": title.upper()}) == {"category": key}
    for key in IDEOLOGIES:
        assert normalize_labels({"ideology": key}) == {"ideology": key}


def test_unknown_label_value_names_the_key_and_the_allowed_values():
    with pytest.raises(InvalidLabel) as exc:
        normalize_labels({"category": "cat pictures"})
    err = exc.value
    assert err.code == "unknown_label_value"
    assert err.details["key"] == "category"
    assert err.details["allowed"] == list(CATEGORIES)
    assert "category" in err.message and "attacker_manifesto" in err.message


@pytest.mark.parametrize(
    ("labels", "code"),
    [
        ({"bad key!": "x"}, "invalid_label_key"),
        ({"": "x"}, "invalid_label_key"),
        ({"note": "x" * 1001}, "label_too_long"),
        (["category"], "labels_not_object"),
        ({"ideology": "vegan"}, "unknown_label_value"),
    ],
)
def test_bad_labels_are_refused_with_a_code(labels, code):
    with pytest.raises(InvalidLabel) as exc:
        normalize_labels(labels)
    assert exc.value.code == code


def test_label_fields_parse_json_and_key_value_pairs():
    assert parse_label_field('{"category": "recruitment", "n": 1}') == {"category": "recruitment", "n": 1}
    assert parse_label_field("category=recruitment; entity = Lone attacker ") == {
        "category": "recruitment",
        "entity": "Lone attacker",
    }
    assert parse_label_field("") == {}
    with pytest.raises(InvalidLabel) as exc:
        parse_label_field("{not json")
    assert exc.value.code == "invalid_label_syntax"
    with pytest.raises(InvalidLabel) as exc:
        parse_label_args(["category"])
    assert exc.value.code == "invalid_label_syntax"


# -- entity lists --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("ISIS", "Islamic State of Iraq and the Levant"),
        ("État islamique", "Islamic State of Iraq and the Levant"),
        ("etat  ISLAMIQUE", "Islamic State of Iraq and the Levant"),
        ("Al-Qaïda", "Al Qa'ida"),
        ("al qaeda", "Al Qa'ida"),
        ("Jabhat al-Nusrah", "Al-Nusrah Front for the People of the Levant"),
        ("PKK", "Kurdistan Workers' Party"),
        ("Sentier lumineux", "Sendero Luminoso"),
        ("hezbollah", "Hizballah"),
    ],
)
def test_entity_aliases_resolve_to_the_canonical_name(name, canonical):
    assert entities.canonical_entity_name(name) == canonical


def test_unlisted_and_ambiguous_entities_are_kept_as_given():
    assert entities.resolve("A Lone Attacker") is None
    assert entities.canonical_entity_name("  A Lone   Attacker ") == "A Lone Attacker"
    # "The Base" is Al-Qaida's literal name and a neo-Nazi group's: resolve to neither.
    assert {e.key for e in entities.lookup("the base")} == {"al_qaida", "the_base"}
    assert entities.canonical_entity_name("The Base") == "The Base"


def test_entities_merge_across_lists():
    isil = entities.resolve("Daech")
    assert isil is not None and set(isil.lists) == {"un_1267", "uk_proscribed"}
    assert "QDe.115" in isil.refs
    pkk = entities.resolve("PKK")
    assert pkk is not None and set(pkk.lists) == {"uk_proscribed", "eu_terrorist_list"}
    assert entities.search("nusra")[0].key == "al_nusrah_front"


def test_bundled_lists_say_where_they_come_from():
    lists = {x.id: x for x in entities.entity_lists()}
    assert set(lists) == {"un_1267", "uk_proscribed", "eu_terrorist_list"}
    for x in lists.values():
        assert x.source.startswith("https://")
        assert x.version and "verify" in x.retrieval.lower()
        assert x.count > 10
    un = json.loads(resources.files("bastion.banks").joinpath("data", "un_1267.json").read_text("utf-8"))
    # Only organisations: UN entity references are QDe.* (ISIL/Al-Qaida) or TAe.* (Taliban), never individuals.
    assert all(e["ref"].startswith(("QDe.", "TAe.")) for e in un["entities"])
    for name in entities.LIST_FILES:
        doc = json.loads(resources.files("bastion.banks").joinpath("data", name).read_text("utf-8"))
        keys = [e["key"] for e in doc["entities"]]
        assert len(keys) == len(set(keys)), name
        assert all(e["name"].strip() for e in doc["entities"])
        assert all(e.get("ideology") in (None, *IDEOLOGIES) for e in doc["entities"])


# -- BankService ---------------------------------------------------------------------------------------------------
def _changes(db) -> list[tuple[str, int, int | None]]:
    with db.session() as s:
        return [(c.kind, c.bank_id, c.entry_id) for c in s.scalars(select(BankChange).order_by(BankChange.seq))]


def test_create_list_get_banks(db):
    svc = BankService(db)
    svc.create_bank("known", description="known content", created_by="alice")
    svc.create_bank("false-positives", kind="allow")
    assert [(b.name, b.kind) for b in svc.list_banks()] == [("false-positives", "allow"), ("known", "block")]
    info = svc.get_bank("known")
    assert (info.entries, info.signals, info.created_by, info.enabled) == (0, 0, "alice", True)
    with pytest.raises(Conflict) as exc:
        svc.create_bank("known")
    assert exc.value.code == "bank_exists"
    with pytest.raises(NotFound) as exc:
        svc.get_bank("nope")
    assert exc.value.code == "not_found" and exc.value.details == {"bank": "nope"}
    with pytest.raises(InvalidInput) as exc:
        svc.create_bank("no spaces please")
    assert exc.value.code == "invalid_bank_name"
    with pytest.raises(InvalidInput) as exc:
        svc.create_bank("x", kind="maybe")
    assert exc.value.code == "invalid_bank_kind"


def test_add_entry_stores_canonical_signals_and_labels(db):
    svc = BankService(db)
    svc.create_bank("known")
    long_url = "https://example.com/" + "a" * 300
    entry = svc.add_entry(
        "known",
        [Signal("md5", MD5.upper()), Signal("pdq", PDQ, quality=90), Signal("url", long_url)],
        {"entity": "ISIS", "category": "recruitment"},
        source="forum",
        note="from the forum",
        added_by="alice",
    )
    assert entry.labels == {"entity": "Islamic State of Iraq and the Levant", "category": "recruitment"}
    assert (entry.source, entry.note, entry.added_by, entry.enabled) == ("forum", "from the forum", "alice", True)
    by_type = {s.type: s for s in entry.signals}
    assert by_type["md5"].value == MD5
    assert by_type["pdq"].quality == 90
    with db.session() as s:
        rows = {r.signal_type: r for r in s.scalars(select(BankSignal))}
    assert rows["md5"].lookup_key == MD5
    assert rows["url"].lookup_key.startswith("sha256:") and len(rows["url"].lookup_key) == 7 + 64
    assert rows["url"].value == by_type["url"].value and len(rows["url"].value) > 160
    assert {r.bank_id for r in rows.values()} == {svc.get_bank("known").id}
    assert svc.get_bank("known").signals == 3
    with pytest.raises(Conflict) as exc:
        svc.add_entry("known", [Signal("md5", MD5)])
    assert exc.value.code == "already_banked" and exc.value.details["entry_id"] == entry.id


@pytest.mark.parametrize(
    ("signals", "labels", "source", "code"),
    [
        ([Signal("md5", "xyz")], None, "own_review", "invalid_signal"),
        ([Signal("sha1", MD5)], None, "own_review", "unknown_signal_type"),
        ([], None, "own_review", "no_signals"),
        ([Signal("md5", MD5)], {"category": "nope"}, "own_review", "unknown_label_value"),
        ([Signal("md5", MD5)], None, "a friend", "unknown_label_value"),
    ],
)
def test_add_entry_refuses_bad_input_and_writes_nothing(db, signals, labels, source, code):
    svc = BankService(db)
    svc.create_bank("known")
    with pytest.raises(InvalidInput) as exc:
        svc.add_entry("known", signals, labels, source=source)
    assert exc.value.code == code
    assert svc.get_bank("known").entries == 0


def test_invalid_signal_is_an_invalid_input():
    assert issubclass(InvalidSignal, InvalidInput)


def test_disable_enable_delete_write_the_change_feed(db):
    svc = BankService(db)
    bank = svc.create_bank("known")
    e1 = svc.add_entry("known", [Signal("md5", MD5)])
    e2 = svc.add_entry("known", [Signal("pdq", PDQ)])
    assert _changes(db) == []  # new signals are found by id, not through the feed
    assert svc.set_entry_enabled(e1.id, False).enabled is False
    svc.set_entry_enabled(e1.id, False)  # no change, no row
    svc.set_entry_enabled(e1.id, True)
    svc.delete_entry(e2.id)
    svc.set_bank_enabled("known", False)
    svc.set_bank_enabled("known", True)
    assert _changes(db) == [
        ("entry_disabled", bank.id, e1.id),
        ("entry_enabled", bank.id, e1.id),
        ("entry_deleted", bank.id, e2.id),
        ("bank_disabled", bank.id, None),
        ("bank_enabled", bank.id, None),
    ]
    assert [e.id for e in svc.list_entries("known")] == [e1.id]
    with pytest.raises(NotFound) as exc:
        svc.get_entry(e2.id)
    assert exc.value.code == "not_found" and exc.value.details == {"entry_id": e2.id}
    svc.delete_bank("known")
    assert _changes(db)[-1] == ("bank_deleted", bank.id, None)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(BankEntry)) == 0
        assert s.scalar(select(func.count()).select_from(BankSignal)) == 0  # no orphan signals


def test_disabled_entries_are_counted_and_kept(db):
    svc = BankService(db)
    svc.create_bank("known")
    e = svc.add_entry("known", [Signal("md5", MD5)])
    svc.set_entry_enabled(e.id, False)
    info = svc.get_bank("known")
    assert (info.entries, info.enabled_entries, info.signals) == (1, 0, 1)
    assert svc.list_entries("known", include_disabled=False) == []
    assert svc.get_entry(e.id).enabled is False


def test_signal_ids_are_never_reused_after_a_delete(db):
    """Matchers load "signals with id > last seen": a deleted last id must not come back."""
    svc = BankService(db)
    svc.create_bank("known")
    e1 = svc.add_entry("known", [Signal("md5", MD5)])
    svc.delete_entry(e1.id)
    e2 = svc.add_entry("known", [Signal("md5", MD5)])
    assert e2.id > e1.id and e2.signals[0].id > e1.signals[0].id


def test_add_files_banks_usable_signals_and_reports_the_rest(db, tmp_path):
    svc = BankService(db)
    svc.create_bank("known")
    image = tmp_path / "known.jpg"
    image.write_bytes(encode(generate_image(7)))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    report = svc.add_files(
        "known",
        [image, empty, tmp_path / "missing.jpg"],
        {"category": "branded_publication"},
        source="own_review",
        added_by="alice",
    )
    assert [o.path for o in report.added] == [str(image)]
    added = svc.get_entry(report.added[0].entry_id)
    assert {"md5", "sha256"} <= {s.type for s in added.signals}
    assert added.content_type == "image" and added.origin == "known.jpg"
    assert added.labels == {"category": "branded_publication"}
    assert {o.path: o.error["code"] for o in report.failed} == {
        str(empty): "empty_content",
        str(tmp_path / "missing.jpg"): "file_not_found",
    }
    again = svc.add_files("known", [image])
    assert [o.entry_id for o in again.already_banked] == [added.id] and not again.added
    with pytest.raises(InvalidLabel):
        svc.add_files("known", [image], {"ideology": "nope"})
    with pytest.raises(NotFound):
        svc.add_files("nope", [image])


def test_bank_writes_are_serialised(db):
    """A writer waits for another's transaction, so signal ids become visible in id order (matchers rely on it)."""
    import threading

    from bastion.banks.importer import lock_bank_writes

    svc = BankService(db)
    svc.create_bank("known")
    locked, release = threading.Event(), threading.Event()
    done: list[int] = []

    def holder() -> None:
        with db.session() as s:
            lock_bank_writes(s)
            locked.set()
            release.wait(30)

    def writer() -> None:
        done.append(svc.add_entry("known", [Signal("md5", MD5)]).id)

    first = threading.Thread(target=holder)
    first.start()
    assert locked.wait(30)
    second = threading.Thread(target=writer)
    second.start()
    second.join(1.0)
    blocked = second.is_alive() and not done
    release.set()
    first.join(30)
    second.join(30)
    assert blocked, "a second writer went ahead while the first held the bank write lock"
    assert len(done) == 1 and svc.get_bank("known").entries == 1
