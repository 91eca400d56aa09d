"""Reviewer wellbeing: what softens the content on screen, how long each person was exposed to it, and when to stop.

Reviewing violent extremist content harms people. The console therefore shows images and video blurred and in
greyscale until the reviewer reveals them, never plays sound or video on its own unless the person asked for it,
warns before the most graphic categories, reminds the reviewer to take a break every N minutes of exposure, and
stops handing out items once the day's exposure reaches the cap a lead set for them.

This module is the rules, not the pages: per-user preferences (``users.preferences``), exposure records
(``exposure_records``: seconds with media on screen and seconds revealed, per item, per UTC day), the daily cap
(``users.daily_cap_minutes``) and the check the next-item path makes (:meth:`WellbeingService.check_cap`, Forbidden
``daily_cap_reached``). Every change a person makes is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bastion import audit
from bastion.errors import Forbidden, InvalidInput, NotFound
from bastion.storage.db import Database
from bastion.storage.models import ExposureRecord, ReviewItem, User, utcnow

#: Categories whose items show a warning page before any media (the most graphic material). One list, used by the
#: item view and its tests.
GRAPHIC_CATEGORIES: tuple[str, ...] = (
    "graphic_violence",
    "livestreamed_attack",
    "imminent_credible_threat",
    "attacker_manifesto",
)

#: Preferences and their defaults: blur radius in CSS pixels (0 = no blur), greyscale, video autoplay (always muted
#: at first), and minutes of exposure between break reminders (0 = no reminders).
DEFAULT_PREFERENCES: dict[str, Any] = {"blur": 16, "greyscale": True, "autoplay": False, "break_minutes": 50}
MAX_BLUR = 40
MAX_BREAK_MINUTES = 480
MAX_CAP_MINUTES = 1440
#: One exposure report covers at most this many seconds (the page reports every few seconds and on leaving).
MAX_REPORT_SECONDS = 3600.0


def is_graphic(category: str | None) -> bool:
    return category in GRAPHIC_CATEGORIES


def today(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m-%d")


def validate_preferences(changes: dict[str, Any]) -> dict[str, Any]:
    """The preferences in ``changes`` checked and normalised (unknown keys refused: ``invalid_preference``)."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in DEFAULT_PREFERENCES:
            raise InvalidInput(
                f"unknown preference {key!r}; one of: {', '.join(DEFAULT_PREFERENCES)}", code="invalid_preference"
            )
        if key in ("greyscale", "autoplay"):
            if not isinstance(value, bool):
                raise InvalidInput(f"{key} is on or off (true/false)", code="invalid_preference")
            out[key] = value
            continue
        limit = MAX_BLUR if key == "blur" else MAX_BREAK_MINUTES
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise InvalidInput(f"{key} is a whole number from 0 to {limit}", code="invalid_preference")
        out[key] = value
    return out


@dataclass(frozen=True)
class Exposure:
    """One reviewer's exposure on one UTC day, against their cap."""

    day: str
    seconds: float
    revealed_seconds: float
    cap_minutes: int | None

    @property
    def cap_reached(self) -> bool:
        return self.cap_minutes is not None and self.seconds >= self.cap_minutes * 60

    @property
    def remaining_seconds(self) -> float | None:
        return None if self.cap_minutes is None else max(0.0, self.cap_minutes * 60 - self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "seconds": round(self.seconds, 1),
            "revealed_seconds": round(self.revealed_seconds, 1),
            "cap_minutes": self.cap_minutes,
            "cap_reached": self.cap_reached,
            "remaining_seconds": None if self.remaining_seconds is None else round(self.remaining_seconds, 1),
        }


def seconds_to_next_break(exposed_seconds: float, break_minutes: int) -> float | None:
    """Seconds of further exposure until the next break reminder (every ``break_minutes`` of exposure), or None."""
    if break_minutes <= 0:
        return None
    period = break_minutes * 60
    return period - (exposed_seconds % period)


class WellbeingService:
    """Preferences, exposure and caps of an organisation's people."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _user(s: Any, organisation_id: int, user_id: int) -> User:
        user = s.get(User, user_id)
        if user is None or user.organisation_id != organisation_id:
            raise NotFound(f"no user {user_id}", code="user_not_found")
        return user

    # -- preferences -------------------------------------------------------------------------------------------------
    def preferences(self, organisation_id: int, user_id: int) -> dict[str, Any]:
        """The user's preferences, defaults filled in."""
        with self.db.session() as s:
            stored = dict(self._user(s, organisation_id, user_id).preferences or {})
        out = dict(DEFAULT_PREFERENCES)
        out.update({k: v for k, v in stored.items() if k in DEFAULT_PREFERENCES})
        return out

    def set_preferences(
        self, actor: str, organisation_id: int, user_id: int, changes: dict[str, Any]
    ) -> dict[str, Any]:
        clean = validate_preferences(changes)
        with self.db.session() as s:
            user = self._user(s, organisation_id, user_id)
            user.preferences = {**dict(user.preferences or {}), **clean}
            audit.append(s, actor, "preferences_updated", f"user:{user_id}", clean, organisation_id=organisation_id)
        return self.preferences(organisation_id, user_id)

    # -- exposure ----------------------------------------------------------------------------------------------------
    def record(
        self, organisation_id: int, user_id: int, item_id: int | None, seconds: float, revealed_seconds: float
    ) -> Exposure:
        """Add one report from the item page: seconds with media on screen, of which ``revealed_seconds`` unblurred."""
        for name, value in (("seconds", seconds), ("revealed_seconds", revealed_seconds)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value != value
                or not 0 <= value <= MAX_REPORT_SECONDS
            ):
                raise InvalidInput(
                    f"{name} is a number of seconds from 0 to {MAX_REPORT_SECONDS:.0f}", code="invalid_exposure"
                )
        if revealed_seconds > seconds:
            raise InvalidInput("revealed_seconds cannot be more than seconds", code="invalid_exposure")
        with self.db.session() as s:
            self._user(s, organisation_id, user_id)
            if item_id is not None:
                row = s.get(ReviewItem, item_id)
                if row is None or row.organisation_id != organisation_id:
                    raise NotFound(f"no review item {item_id}", code="review_item_not_found")
            if seconds > 0:
                s.add(
                    ExposureRecord(
                        organisation_id=organisation_id,
                        user_id=user_id,
                        item_id=item_id,
                        day=today(),
                        seconds=float(seconds),
                        revealed_seconds=float(revealed_seconds),
                        at=utcnow(),
                    )
                )
        return self.exposure(organisation_id, user_id)

    def exposure(self, organisation_id: int, user_id: int, day: str | None = None) -> Exposure:
        day = day or today()
        with self.db.session() as s:
            user = self._user(s, organisation_id, user_id)
            seconds, revealed = s.execute(
                select(
                    func.coalesce(func.sum(ExposureRecord.seconds), 0.0),
                    func.coalesce(func.sum(ExposureRecord.revealed_seconds), 0.0),
                ).where(
                    ExposureRecord.user_id == user_id,
                    ExposureRecord.organisation_id == organisation_id,
                    ExposureRecord.day == day,
                )
            ).one()
            return Exposure(day, float(seconds), float(revealed), user.daily_cap_minutes)

    def team_exposure(self, organisation_id: int, day: str | None = None) -> list[dict[str, Any]]:
        """Every person of the organisation with today's exposure and their cap (the leads' caps page)."""
        day = day or today()
        with self.db.session() as s:
            sums = dict(
                (uid, (sec, rev))
                for uid, sec, rev in s.execute(
                    select(
                        ExposureRecord.user_id,
                        func.sum(ExposureRecord.seconds),
                        func.sum(ExposureRecord.revealed_seconds),
                    )
                    .where(ExposureRecord.organisation_id == organisation_id, ExposureRecord.day == day)
                    .group_by(ExposureRecord.user_id)
                )
            )
            users = s.scalars(select(User).where(User.organisation_id == organisation_id).order_by(User.email)).all()
            return [
                {
                    "user_id": u.id,
                    "email": u.email,
                    "role": u.role,
                    "disabled": u.disabled,
                    **Exposure(
                        day,
                        float(sums.get(u.id, (0, 0))[0] or 0),
                        float(sums.get(u.id, (0, 0))[1] or 0),
                        u.daily_cap_minutes,
                    ).to_dict(),
                }
                for u in users
            ]

    # -- caps --------------------------------------------------------------------------------------------------------
    def set_daily_cap(self, actor: str, organisation_id: int, user_id: int, minutes: int | None) -> int | None:
        """Set (or with None remove) a person's daily exposure cap in minutes. Leads do this."""
        if minutes is not None and (
            isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_CAP_MINUTES
        ):
            raise InvalidInput(
                f"a daily cap is a whole number of minutes from 1 to {MAX_CAP_MINUTES}, or none", code="invalid_cap"
            )
        with self.db.session() as s:
            user = self._user(s, organisation_id, user_id)
            previous = user.daily_cap_minutes
            user.daily_cap_minutes = minutes
            audit.append(
                s,
                actor,
                "daily_cap_set",
                f"user:{user_id}",
                {"minutes": minutes, "previous": previous},
                organisation_id=organisation_id,
            )
        return minutes

    def check_cap(self, organisation_id: int, user_id: int) -> Exposure:
        """Raise Forbidden ``daily_cap_reached`` when today's exposure reached the person's cap (before leasing)."""
        exposure = self.exposure(organisation_id, user_id)
        if exposure.cap_reached:
            raise Forbidden(
                f"you have reached today's exposure limit of {exposure.cap_minutes} minutes; no more items today. "
                "Please take a rest; a lead can change the limit.",
                code="daily_cap_reached",
                cap_minutes=exposure.cap_minutes,
            )
        return exposure


__all__ = [
    "DEFAULT_PREFERENCES",
    "GRAPHIC_CATEGORIES",
    "Exposure",
    "WellbeingService",
    "is_graphic",
    "seconds_to_next_break",
    "validate_preferences",
]
