"""`centralino report --campaign NAME`: a campaign's attempts (one row per attempt in
``lead_attempts``, the dialer's queue log) summed per campaign, agent, interval or disposition
(pure; the CLI reads the rows from SQLite)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from .pacing import Outcome

COLUMNS = ("attempts", *(o.value for o in Outcome))


def _key(row: Mapping[str, Any], by: str, interval: float, zone: tzinfo) -> str:
    if by == "agent":
        return str(row.get("agent") or "-")
    if by == "interval":
        start = float(row["at"]) - float(row["at"]) % interval
        return datetime.fromtimestamp(start, zone).isoformat(timespec="minutes")
    if by == "disposition":
        return str(row.get("disposition") or "-")
    return str(row["campaign"])


def summarize_attempts(rows: Iterable[Mapping[str, Any]], by: str = "campaign", *, interval: float = 3600.0,
                       zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """Per group: attempts and each outcome's count; live answers (connected + abandoned) with
    the abandonment rate, the contact rate (live answers per attempt), AMD's machine share of
    answered calls, and the mean seconds to an answer or a refusal."""
    zone = zone or UTC
    groups: dict[str, dict[str, Any]] = {}
    rings: dict[str, list[float]] = {}
    for row in rows:
        key = _key(row, by, interval, zone)
        g = groups.setdefault(key, {by: key, **{c: 0 for c in COLUMNS}})
        g["attempts"] += 1
        outcome = str(row["outcome"])
        if outcome in g:
            g[outcome] += 1
        rings.setdefault(key, []).append(float(row.get("ring_seconds") or 0.0))
    out = []
    for key, g in groups.items():
        live = g[Outcome.HUMAN.value] + g[Outcome.ABANDONED.value]
        answered = live + g[Outcome.MACHINE.value]
        g["live_answers"] = live
        g["abandon_rate"] = round(g[Outcome.ABANDONED.value] / live, 4) if live else 0.0
        g["contact_rate"] = round(live / g["attempts"], 4) if g["attempts"] else 0.0
        g["machine_share"] = round(g[Outcome.MACHINE.value] / answered, 4) if answered else 0.0
        g["mean_ring_seconds"] = round(sum(rings[key]) / len(rings[key]), 1)
        out.append(g)
    return sorted(out, key=lambda g: str(g[by]))


__all__ = ["COLUMNS", "summarize_attempts"]
