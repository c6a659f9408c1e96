"""The queue log: one row per ACD event (a caller entered, an agent was rung, connected,
abandoned, ...; an agent changed state), the source of every queue and agent statistic."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..events import QueueLogRow
from .database import Database, Statement, read_rows

COLUMNS = [f.name for f in fields(QueueLogRow)]
_INSERT = f"INSERT INTO queue_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def insert_statements(events: list[QueueLogRow]) -> list[Statement]:
    return [(_INSERT, tuple(getattr(e, c) for c in COLUMNS)) for e in events]


def load(path: str, since: float | None = None, until: float | None = None) -> list[QueueLogRow]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM queue_log WHERE at >= ? AND at < ? ORDER BY at, id"
    return [QueueLogRow(**row) for row in read_rows(path, sql, (since or 0.0, until or 1e12))]


async def agent_calls(db: Database, agent: str, since: float, limit: int = 500) -> list[dict[str, Any]]:
    """The calls an agent took since ``since`` (newest first), from its queue-log rows: the
    queue, the caller, the wait, the talk time, the disposition and notes it set, and the ids of
    the call's recordings."""
    rows = await db.fetchall(
        "SELECT at, event, call_id, queue, caller, did, wait, talk, reason, notes FROM queue_log "
        "WHERE agent = ? AND at >= ? AND event IN ('CONNECT', 'COMPLETE', 'DISPOSITION') ORDER BY at, id",
        (agent, since))
    calls: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["event"] != "CONNECT" and r["call_id"] not in calls:
            continue  # its CONNECT was before ``since``
        c = calls.setdefault(r["call_id"], {
            "call_id": r["call_id"], "queue": r["queue"], "caller": r["caller"], "did": r["did"],
            "connected": r["at"], "wait": r["wait"], "talk": None, "hung_up_by": None,
            "disposition": None, "notes": "", "recordings": []})
        if r["event"] == "COMPLETE":
            c["talk"], c["hung_up_by"] = r["talk"], r["reason"] or None
        elif r["event"] == "DISPOSITION":
            c["disposition"], c["notes"] = r["reason"], r["notes"]
    newest = sorted(calls.values(), key=lambda c: c["connected"], reverse=True)[:limit]
    if newest:
        marks = ",".join("?" for _ in newest)
        for rec in await db.fetchall(f"SELECT id, call_id FROM recordings WHERE call_id IN ({marks}) ORDER BY started",
                                     tuple(c["call_id"] for c in newest)):
            calls[rec["call_id"]]["recordings"].append(rec["id"])
    return newest
