"""Day/night overrides kept across restarts: the ``meta`` table holds ``schedule:NAME`` → mode."""

from __future__ import annotations

from ..schedules import OverrideMode, ScheduleOverrides
from .database import Database


async def load_overrides(db: Database, known: set[str]) -> ScheduleOverrides:
    overrides = ScheduleOverrides()
    for row in await db.fetchall("SELECT key, value FROM meta WHERE key LIKE 'schedule:%'"):
        name = row["key"].split(":", 1)[1]
        if name in known and row["value"] in ("open", "closed"):
            overrides.force(name, row["value"])
    return overrides


async def save_override(db: Database, name: str, mode: OverrideMode) -> None:
    key = f"schedule:{name}"
    if mode is OverrideMode.AUTO:
        await db.write([("DELETE FROM meta WHERE key = ?", (key,))])
    else:
        await db.write([("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, mode.value))])
