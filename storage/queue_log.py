"""The queue log: one row per ACD event (a caller entered, an agent was rung, connected,
abandoned, ...; an agent changed state), the source of every queue and agent statistic."""

from __future__ import annotations

from dataclasses import fields

from ..events import QueueLogRow
from .database import Statement, read_rows

COLUMNS = [f.name for f in fields(QueueLogRow)]
_INSERT = f"INSERT INTO queue_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def insert_statements(events: list[QueueLogRow]) -> list[Statement]:
    return [(_INSERT, tuple(getattr(e, c) for c in COLUMNS)) for e in events]


def load(path: str, since: float | None = None, until: float | None = None) -> list[QueueLogRow]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM queue_log WHERE at >= ? AND at < ? ORDER BY at, id"
    return [QueueLogRow(**row) for row in read_rows(path, sql, (since or 0.0, until or 1e12))]
