"""Leads: the import of a campaign's CSV (bad rows reported by line, the rest kept), the store
(SQLite), and the life cycle (pure):

    new → dialing → answered-human | machine | busy | no-answer | failed | invalid | dnc | abandoned
        → retried at a time from ``retry`` (congestion without spending an attempt), or done after
          ``max_attempts`` or a final disposition; ``callback`` dispositions come back at their time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ..config.schema import Campaign
from ..e164 import NumberError, e164
from .compliance import valid_zone
from .pacing import Outcome


class LeadState(StrEnum):
    NEW = "new"
    DIALING = "dialing"
    RETRY = "retry"  # waits for next_at
    CALLBACK = "callback"  # an agent's appointment (next_at), dialled inside calling hours
    DONE = "done"
    INVALID = "invalid"
    DNC = "dnc"


DIALABLE = (LeadState.NEW, LeadState.RETRY, LeadState.CALLBACK)


@dataclass(frozen=True)
class LeadRow:
    """A lead as read from a CSV (line numbers start at 1 with the header)."""

    line: int
    phone: str  # E.164
    name: str = ""
    timezone: str = ""
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportReport:
    rows: list[LeadRow] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    duplicates: int = 0  # rows repeating a number earlier in the same file (merged)


def read_leads(text: str, region: str | None = None) -> ImportReport:
    """Parse a leads CSV: a header row with a ``phone`` column; ``timezone`` (IANA) and ``name``
    optional; every other column is kept as the lead's fields."""
    report = ImportReport()
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        report.errors.append((1, "empty file: a header row with a phone column is needed"))
        return report
    lower = [h.lower() for h in header]
    if "phone" not in lower:
        report.errors.append((1, f"no phone column in the header ({', '.join(header)})"))
        return report
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            report.errors.append((line, f"{len(row)} columns where the header has {len(header)}"))
            continue
        values = {lower[i]: v.strip() for i, v in enumerate(row)}
        try:
            phone = e164(values["phone"], region)
        except NumberError as exc:
            report.errors.append((line, str(exc)))
            continue
        zone = values.get("timezone", "")
        if zone and not valid_zone(zone):
            report.errors.append((line, f"unknown time zone {zone!r}"))
            continue
        extra = {header[i]: row[i].strip() for i in range(len(header)) if lower[i] not in ("phone", "timezone", "name")}
        lead = LeadRow(line, phone, values.get("name", ""), zone, extra)
        if phone in seen:
            report.duplicates += 1
            report.rows[seen[phone]] = lead  # the later row wins (merged)
            continue
        seen[phone] = len(report.rows)
        report.rows.append(lead)
    return report


def read_leads_file(path: str | Path, region: str | None = None) -> ImportReport:
    return read_leads(Path(path).read_text(encoding="utf-8-sig"), region)


# == life cycle (pure) =================================================================================
@dataclass(frozen=True)
class Transition:
    state: LeadState
    next_at: float
    attempts: int


def after_attempt(outcome: Outcome, attempts: int, now: float, campaign: Campaign, *,
                  message_left: bool = False, callback: bool = False) -> Transition:
    """Where a lead goes after an attempt that ended with ``outcome`` (``attempts``: before it;
    ``callback``: the attempt was an agent's appointment)."""
    retry = campaign.retry
    if outcome is Outcome.CONGESTION:  # the trunk (or the agent) was not there: not the callee's doing
        return Transition(LeadState.CALLBACK if callback else LeadState.RETRY, now + 60, attempts)
    spent = attempts + 1
    if outcome is Outcome.INVALID:
        return Transition(LeadState.INVALID, 0.0, spent)
    if outcome is Outcome.HUMAN or (outcome is Outcome.MACHINE and message_left):
        return Transition(LeadState.DONE, 0.0, spent)  # a disposition may still bring it back
    delay = {Outcome.BUSY: retry.busy, Outcome.NO_ANSWER: retry.no_answer, Outcome.MACHINE: retry.machine,
             Outcome.FAILED: retry.failed, Outcome.ABANDONED: retry.abandoned}.get(outcome, retry.failed)
    if spent >= campaign.max_attempts:
        return Transition(LeadState.DONE, 0.0, spent)
    return Transition(LeadState.RETRY, now + delay, spent)


# == the store =========================================================================================
LEAD_COLUMNS = ("id", "campaign", "phone", "name", "timezone", "fields", "state", "attempts", "next_at",
                "last_outcome", "last_at", "disposition", "callback_agent", "source", "line")


@dataclass
class Lead:
    id: int
    campaign: str
    phone: str
    name: str
    timezone: str
    fields: dict[str, Any]
    state: LeadState
    attempts: int
    next_at: float
    last_outcome: str = ""
    disposition: str = ""
    callback_agent: str = ""

    @staticmethod
    def from_row(row: Any) -> Lead:
        return Lead(int(row["id"]), row["campaign"], row["phone"], row["name"], row["timezone"],
                    json.loads(row["fields"] or "{}"), LeadState(row["state"]), int(row["attempts"]),
                    float(row["next_at"] or 0.0), row["last_outcome"], row["disposition"], row["callback_agent"])


def import_statements(campaign: str, rows: Sequence[LeadRow], dnc: set[str], source: str) -> list[tuple[str, tuple]]:
    """Upserts: a number already in the campaign keeps its history (state, attempts) and gets
    the file's fields; a number on a do-not-call list is stored as ``dnc`` (never dialled)."""
    sql = ("INSERT INTO leads (campaign, phone, name, timezone, fields, state, source, line)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
           " ON CONFLICT (campaign, phone) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,"
           " fields = excluded.fields, source = excluded.source, line = excluded.line,"
           " state = CASE WHEN excluded.state = 'dnc' THEN 'dnc' ELSE leads.state END")
    return [(sql, (campaign, r.phone, r.name, r.timezone, json.dumps(r.fields, ensure_ascii=False),
                   LeadState.DNC.value if r.phone in dnc else LeadState.NEW.value, source, r.line)) for r in rows]


def export_rows(rows: Iterable[dict[str, Any]], attempts: dict[int, list[dict[str, Any]]], fmt: str) -> str:
    """Every lead with its attempts, outcomes and disposition (``csv`` or ``json``)."""
    out = []
    for row in rows:
        tries = attempts.get(int(row["id"]), [])
        item = {k: row[k] for k in ("id", "phone", "name", "timezone", "state", "attempts", "last_outcome",
                                    "disposition")}
        item["fields"] = json.loads(row["fields"] or "{}")
        item["outcomes"] = [t["outcome"] for t in tries]
        item["history"] = tries
        out.append(item)
    if fmt == "json":
        return json.dumps(out, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    extra = sorted({k for item in out for k in item["fields"]})
    writer = csv.writer(buf)
    writer.writerow(["id", "phone", "name", "timezone", "state", "attempts", "last_outcome", "disposition",
                     "outcomes", *extra])
    for item in out:
        writer.writerow([item["id"], item["phone"], item["name"], item["timezone"], item["state"], item["attempts"],
                         item["last_outcome"], item["disposition"], " ".join(item["outcomes"]),
                         *(item["fields"].get(k, "") for k in extra)])
    return buf.getvalue()
