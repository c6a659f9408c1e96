"""Reading the recordings index (written by storage/subscribers.py): what the API lists and serves."""

from __future__ import annotations

from typing import Any

from .database import Database

_COLUMNS = "id, call_id, path, started, seconds, paused_seconds, channels, format, caller, called, agent"


async def list_recordings(db: Database, *, since: float | None = None, until: float | None = None,
                          agents: set[str] | None = None, call_id: str | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
    """Newest first; ``agents``: only recordings of those agents (None: all)."""
    sql, params = f"SELECT {_COLUMNS} FROM recordings WHERE 1=1", []  # type: ignore[var-annotated]
    if since is not None:
        sql += " AND started >= ?"
        params.append(since)
    if until is not None:
        sql += " AND started < ?"
        params.append(until)
    if call_id:
        sql += " AND call_id = ?"
        params.append(call_id)
    if agents is not None:
        if not agents:
            return []
        sql += f" AND agent IN ({','.join('?' for _ in agents)})"
        params.extend(sorted(agents))
    sql += " ORDER BY started DESC LIMIT ?"
    params.append(limit)
    return [dict(r) for r in await db.fetchall(sql, params)]


async def recording(db: Database, ident: str) -> dict[str, Any] | None:
    row = await db.fetchone(f"SELECT {_COLUMNS} FROM recordings WHERE id = ?", (ident,))
    return dict(row) if row is not None else None
