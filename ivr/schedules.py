"""Opening hours: weekday spans in a time zone, with holidays (`schedules:` in the plan)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from zoneinfo import ZoneInfo

from ..config.schema import Schedule

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _days(spec: str) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        a = DAYS.index(lo)
        b = DAYS.index(hi) if hi else a
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return out


def _span(text: str) -> tuple[time, time]:
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
        if local.weekday() in _days(days):
            for span in str(spans).split(","):
                start, end = _span(span)
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
