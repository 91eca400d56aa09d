"""Reviewer wellbeing rules (bastion.review.wellbeing): preferences, exposure records, break reminders and daily
caps. Real SQLite and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bastion.accounts.service import AccountService
from bastion.errors import Forbidden, InvalidInput, NotFound
from bastion.review.wellbeing import (
    DEFAULT_PREFERENCES,
    GRAPHIC_CATEGORIES,
    Exposure,
    WellbeingService,
    is_graphic,
    seconds_to_next_break,
    validate_preferences,
)
from bastion.storage.models import AuditRecord, ExposureRecord


@pytest.fixture
def people(db):
    accounts = AccountService(db)
    out = {}
    for org in ("alpha", "beta"):
        o = accounts.create_organisation(org)
        u = accounts.create_user(org, f"r1@{org}.example", "reviewer")
        out[org] = (o.id, u.id)
    return out


def test_graphic_categories_are_one_list_of_taxonomy_keys():
    from bastion.banks.taxonomy import CATEGORIES

    assert set(GRAPHIC_CATEGORIES) <= set(CATEGORIES)
    assert is_graphic("graphic_violence") and is_graphic("livestreamed_attack")
    assert not is_graphic("propaganda") and not is_graphic(None)


def test_preferences_default_validate_and_save(db, people):
    org, uid = people["alpha"]
    wb = WellbeingService(db)
    assert wb.preferences(org, uid) == DEFAULT_PREFERENCES
    assert DEFAULT_PREFERENCES["greyscale"] is True and DEFAULT_PREFERENCES["autoplay"] is False
    saved = wb.set_preferences("user:1", org, uid, {"blur": 0, "autoplay": True})
    assert saved == {**DEFAULT_PREFERENCES, "blur": 0, "autoplay": True}
    for bad in (
        {"blur": 41},
        {"blur": -1},
        {"blur": "x"},
        {"greyscale": "yes"},
        {"colour": True},
        {"break_minutes": True},
    ):
        with pytest.raises(InvalidInput) as exc:
            validate_preferences(bad)
        assert exc.value.code == "invalid_preference"
    with db.session() as s:
        assert "preferences_updated" in set(s.scalars(select(AuditRecord.action)))
    with pytest.raises(NotFound):
        wb.preferences(people["beta"][0], uid)  # another organisation's user


def test_exposure_is_summed_per_day_and_validated(db, people):
    org, uid = people["alpha"]
    wb = WellbeingService(db)
    wb.record(org, uid, None, 30, 10)
    got = wb.record(org, uid, None, 12.5, 0)
    assert (got.seconds, got.revealed_seconds, got.cap_minutes, got.cap_reached) == (42.5, 10, None, False)
    assert wb.record(org, uid, None, 0, 0).seconds == 42.5  # nothing on screen: no record
    for seconds, revealed in ((-1, 0), (5, 6), (4000, 0), (float("nan"), 0), (True, 0)):
        with pytest.raises(InvalidInput) as exc:
            wb.record(org, uid, None, seconds, revealed)
        assert exc.value.code == "invalid_exposure"
    with pytest.raises(NotFound):
        wb.record(org, uid, 999_999, 5, 0)  # no such review item
    other_org, other = people["beta"]
    assert wb.exposure(other_org, other).seconds == 0
    with db.session() as s:
        assert len(s.scalars(select(ExposureRecord)).all()) == 2
    assert wb.exposure(org, uid, day="2000-01-01").seconds == 0


def test_daily_cap_refuses_once_reached(db, people):
    org, uid = people["alpha"]
    wb = WellbeingService(db)
    wb.check_cap(org, uid)  # no cap: never refused
    wb.set_daily_cap("user:lead", org, uid, 2)
    wb.record(org, uid, None, 119, 0)
    assert wb.check_cap(org, uid).remaining_seconds == 1
    wb.record(org, uid, None, 1, 1)
    with pytest.raises(Forbidden) as exc:
        wb.check_cap(org, uid)
    assert exc.value.code == "daily_cap_reached"
    wb.set_daily_cap("user:lead", org, uid, None)
    wb.check_cap(org, uid)
    for bad in (0, -5, 1441, 1.5, True):
        with pytest.raises(InvalidInput) as exc:
            wb.set_daily_cap("user:lead", org, uid, bad)
        assert exc.value.code == "invalid_cap"
    with pytest.raises(NotFound):
        wb.set_daily_cap("user:lead", people["beta"][0], uid, 10)
    team = wb.team_exposure(org)
    assert [(p["email"], p["seconds"]) for p in team] == [("r1@alpha.example", 120)]
    with db.session() as s:
        assert [a for a in s.scalars(select(AuditRecord.action)) if a == "daily_cap_set"] == ["daily_cap_set"] * 2


def test_break_reminders_every_n_minutes_of_exposure():
    assert seconds_to_next_break(0, 50) == 3000
    assert seconds_to_next_break(2999, 50) == 1
    assert seconds_to_next_break(3000, 50) == 3000
    assert seconds_to_next_break(100, 0) is None


def test_exposure_value_object():
    e = Exposure("2026-01-01", 90.0, 30.0, 1)
    assert e.cap_reached and e.remaining_seconds == 0
    assert e.to_dict()["cap_reached"] is True
    assert Exposure("2026-01-01", 90.0, 30.0, None).remaining_seconds is None
