"""The queue log: one row per ACD event (a caller entered, an agent was rung, connected,
abandoned, ...; an agent changed state), the source of every queue and agent statistic."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .database import Statement, read_rows


@dataclass(frozen=True)
class QueueEvent:
    at: float
    event: str  # ENTER RING RINGNOANSWER CONNECT ABANDON COMPLETE TIMEOUT FULL EMPTY CALLBACK AGENT
    call_id: str = ""
    queue: str = ""
    agent: str = ""
    caller: str = ""
    did: str = ""
    position: int | None = None
    wait: float | None = None
    talk: float | None = None
    reason: str = ""  # COMPLETE: agent/caller hung up; ABANDON: original position; AGENT: pause reason
    state: str = ""  # AGENT: the new state
    prev: str = ""  # AGENT: the state left
    seconds: float | None = None  # AGENT: time spent in ``prev``


COLUMNS = [f.name for f in fields(QueueEvent)]
_INSERT = f"INSERT INTO queue_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


def insert_statements(events: list[QueueEvent]) -> list[Statement]:
    return [(_INSERT, tuple(getattr(e, c) for c in COLUMNS)) for e in events]


def load(path: str, since: float | None = None, until: float | None = None) -> list[QueueEvent]:
    sql = f"SELECT {', '.join(COLUMNS)} FROM queue_log WHERE at >= ? AND at < ? ORDER BY at, id"
    return [QueueEvent(**row) for row in read_rows(path, sql, (since or 0.0, until or 1e12))]
