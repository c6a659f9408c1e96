"""Compliance, by construction (pure): whom the dialer may call at a given moment.

- calling hours and days in the CALLEE's local time: the lead's own ``timezone`` if it has one,
  else every zone the number's prefix may be in (``phonenumbers``); a number with several
  candidate zones is called only when the window holds in all of them; no zone known → not called;
- never a number on a do-not-call list (checked at import and again before each attempt);
- the abandonment ledger lives with the pacer (``pacing.AbandonLedger``); ``status`` reports it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

from ..e164 import NumberError, e164
from ..schedules import time_span, weekdays

UNKNOWN_ZONES = {"Etc/Unknown", ""}


def zones_for(phone: str, zone: str = "") -> tuple[str, ...]:
    """The callee's time zones: the lead's own, else those its number may be in."""
    if zone:
        return (zone,)
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(z for z in number_zones.time_zones_for_number(number) if z not in UNKNOWN_ZONES)


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


@dataclass(frozen=True)
class Window:
    """When callees may be called: ``hours`` and ``days`` of *their* local time."""

    hours: str = "09:00-21:00"
    days: str = "mon-sun"

    def open_in(self, zone: str, at: datetime) -> tuple[bool, str]:
        local = at.astimezone(ZoneInfo(zone))
        if local.weekday() not in weekdays(self.days):
            return False, f"{local:%a %H:%M} in {zone} is not a calling day ({self.days})"
        for start, end in (time_span(span) for span in self.hours.split(",")):
            if start <= local.time() < end:
                return True, f"{local:%a %H:%M} in {zone} is within {self.hours}"
        return False, f"{local:%a %H:%M} in {zone} is outside {self.hours}"

    def may_call(self, phone: str, zone: str, at: datetime) -> tuple[bool, str]:
        """Whether the callee's local time allows a call at ``at`` (aware), and why."""
        zones = zones_for(phone, zone)
        if not zones:
            return False, "the callee's time zone is unknown (give the lead a timezone)"
        for z in zones:
            ok, why = self.open_in(z, at)
            if not ok:
                return False, why + (f" (one of the number's {len(zones)} zones)" if len(zones) > 1 else "")
        if len(zones) > 1:
            return True, f"within {self.hours} in all {len(zones)} of the number's zones"
        return ok, why


def read_dnc(paths: Iterable[str | Path], region: str | None = None) -> set[str]:
    """Numbers of do-not-call lists: CSV with a ``phone`` column, or one number per line."""
    out: set[str] = set()
    for path in paths:
        text = Path(path).read_text(encoding="utf-8-sig")
        lines = text.splitlines()
        if lines and "phone" in [c.strip().lower() for c in next(csv.reader([lines[0]]))]:
            rows = csv.DictReader(lines)
            raws = [(r.get("phone") or r.get("Phone") or "") for r in rows]
        else:
            raws = [line.split(",")[0] for line in lines]
        for raw in raws:
            try:
                out.add(e164(raw, region))
            except NumberError:
                continue
    return out
