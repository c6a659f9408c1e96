"""Call detail records: one row per call (leg 'call') and one per leg ('a', 'b'), written
durably before a call's state is dropped; exported by `centralino cdr`."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, fields
from datetime import datetime, tzinfo

from ..events import CdrRecord
from .database import Statement, read_rows

DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED", "CONGESTION")


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


TIME_COLUMNS = ("start", "answer", "end")


def _iso(value: float | None, zone: tzinfo | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, zone).isoformat(timespec="milliseconds")


def export(rows: list[dict], fmt: str, zone: tzinfo | None = None) -> str:
    """CSV or JSON; times in ISO 8601 with their zone (``zone``, default the local one). JSON
    keeps the epoch seconds too, as ``start_epoch``… for programs."""
    out = []
    for row in rows:
        item = dict(row)
        for col in TIME_COLUMNS:
            item[col] = _iso(row.get(col), zone or datetime.now().astimezone().tzinfo)
            if fmt == "json":
                item[f"{col}_epoch"] = row.get(col)
        out.append(item)
    if fmt == "json":
        return json.dumps(out, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", *_COLUMNS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(out)
    return buf.getvalue()


__all__ = ["DISPOSITIONS", "CdrRecord", "asdict", "export", "insert_statements", "query"]
