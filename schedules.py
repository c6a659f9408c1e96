"""Opening hours (pure): weekday spans in a time zone, holidays (`schedules:` in the plan), and
the day/night overrides an administrator sets (`centralino schedule office closed`). The router,
the IVR and the dialer's calling-hours check all read them from here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from .config.schema import Plan, Schedule

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def weekdays(spec: str) -> set[int]:
    """'mon-fri,sun' → {0, 1, 2, 3, 4, 6} (ranges may wrap: 'sat-mon')."""
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        a = DAYS.index(lo)
        b = DAYS.index(hi) if hi else a
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return out


def time_span(text: str) -> tuple[time, time]:
    """'09:00-21:00' → (09:00, 21:00); '24:00' is the end of the day."""
    lo, _, hi = text.strip().partition("-")
    h1, m1 = (int(x) for x in lo.split(":"))
    h2, m2 = (int(x) for x in hi.split(":"))
    return time(h1, m1), (time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2))


def is_open(schedule: Schedule, at: datetime) -> tuple[bool, str]:
    """Whether the schedule is open at ``at`` (aware or UTC-naive), and why, for dry runs."""
    tz = ZoneInfo(schedule.timezone)
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo("UTC"))
    local = at.astimezone(tz)
    if local.date() in schedule.holidays:
        return False, f"{local:%Y-%m-%d} is a holiday"
    for days, spans in schedule.open.items():
        if local.weekday() in weekdays(days):
            for span in str(spans).split(","):
                start, end = time_span(span)
                if start <= local.time() < end:
                    return True, f"{local:%a %H:%M} {schedule.timezone} is within {days} {span.strip()}"
    return False, f"{local:%a %H:%M} {schedule.timezone} is outside opening hours"


def schedule_open(schedules: Mapping[str, Schedule], name: str, at: datetime,
                  forced: Mapping[str, bool]) -> tuple[bool, str]:
    """A schedule's state, unless an administrator forced it open or closed (day/night switch:
    `POST /schedules`, `centralino schedule`) — a snow day, a late evening, a team meeting."""
    if name in forced:
        return forced[name], f"forced {'open' if forced[name] else 'closed'} by an override"
    return is_open(schedules[name], at)


class OverrideMode(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    AUTO = "auto"  # back to the schedule's hours


class ScheduleOverrides:
    """Schedules forced open or closed. Pure: storage persists it (``storage/overrides.py``)
    and restores it at start; the API and CLI change it through ``set``."""

    def __init__(self, forced: Mapping[str, bool] | None = None) -> None:
        self._forced: dict[str, bool] = dict(forced or {})

    @property
    def forced(self) -> Mapping[str, bool]:
        return self._forced

    def mode(self, name: str) -> OverrideMode:
        if name not in self._forced:
            return OverrideMode.AUTO
        return OverrideMode.OPEN if self._forced[name] else OverrideMode.CLOSED

    def force(self, name: str, mode: OverrideMode | str) -> OverrideMode:
        mode = OverrideMode(mode)
        if mode is OverrideMode.AUTO:
            self._forced.pop(name, None)
        else:
            self._forced[name] = mode is OverrideMode.OPEN
        return mode

    def plan_changed(self, plan: Plan) -> None:
        self.keep_only(set(plan.schedules))

    def keep_only(self, names: set[str]) -> None:
        """After a reload: overrides of schedules no longer in the plan are dropped."""
        for name in [n for n in self._forced if n not in names]:
            del self._forced[name]

    def state(self, schedules: Mapping[str, Schedule], name: str, at: datetime) -> tuple[bool, str]:
        return schedule_open(schedules, name, at, self._forced)
