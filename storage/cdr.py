"""Call detail records: one row per call (leg 'call') and one per leg ('a', 'b'), written
durably before a call's state is dropped; exported by `centralino cdr`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields

from .database import Statement, read_rows

DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED", "CONGESTION")


@dataclass
class CdrRecord:
    call_id: str
    leg: str  # "call", "a" (caller side) or "b" (callee side)
    start: float
    end: float
    disposition: str
    leg_call_id: str = ""
    answer: float | None = None
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    caller: str = ""
    called: str = ""
    source: str = ""  # "extension:1001" or "trunk:provider"
    did: str = ""
    destination: str = ""
    sip_status: int | None = None
    q850_cause: int | None = None
    hangup_by: str = ""
    recording: str | None = None
    rtp_rx: int | None = None
    rtp_lost: int | None = None
    rtp_jitter_ms: float | None = None


_COLUMNS = [f.name for f in fields(CdrRecord)]
_INSERT = f"INSERT INTO cdr ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"


def insert_statements(records: list[CdrRecord]) -> list[Statement]:
    return [(_INSERT, tuple(getattr(r, c) for c in _COLUMNS)) for r in records]


def query(path: str, since: float | None = None, until: float | None = None, legs: bool = False) -> list[dict]:
    sql = "SELECT * FROM cdr WHERE 1=1"
    params: list[object] = []
    if not legs:
        sql += " AND leg = 'call'"
    if since is not None:
        sql += " AND start >= ?"
        params.append(since)
    if until is not None:
        sql += " AND start < ?"
        params.append(until)
    return read_rows(path, sql + " ORDER BY start, id", params)


def export(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", *_COLUMNS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


__all__ = ["DISPOSITIONS", "CdrRecord", "asdict", "export", "insert_statements", "query"]
