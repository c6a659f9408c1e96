"""Queue and agent statistics from queue-log events: one function for the real-time view
(today's events kept in memory) and for historical reports (events read from SQLite).

Definitions (what a contact-centre supervisor expects):
- offered = callers that entered; answered = connected to an agent; abandoned = hung up waiting
- service level = answered within the queue's threshold / (answered + abandoned)
- ASA = average wait of answered calls; AHT = average talk + wrap-up of completed calls
- abandon rate = abandoned / offered
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from ..storage.queue_log import QueueLogRow


def local_midnight(now: float | None = None) -> float:
    """The start of today in the switch's local time ("today" of the live figures)."""
    now = time.time() if now is None else now
    return time.mktime((*time.localtime(now)[:3], 0, 0, 0, 0, 0, -1))


GROUPINGS = ("queue", "agent", "interval", "did", "source", "disposition")
# what happened to a caller, from the event that ended its time in the queue
_DISPOSITION = {"COMPLETE": "answered", "ABANDON": "abandoned", "TIMEOUT": "timeout", "FULL": "full",
                "EMPTY": "empty", "CALLBACK": "callback"}


def _key(by: str, interval: float, callers: dict[str, QueueLogRow],
         outcome: dict[str, str]) -> Callable[[QueueLogRow], str]:
    if by == "queue":
        return lambda e: e.queue
    if by == "agent":
        return lambda e: e.agent
    if by == "interval":
        return lambda e: time.strftime("%Y-%m-%d %H:%M", time.localtime(e.at - e.at % interval))
    if by in ("did", "source"):
        # the number called (DID) or the caller's number, as the ENTER event recorded them
        def of(e: QueueLogRow) -> str:
            first = callers.get(e.call_id, e)
            return first.did if by == "did" else first.caller
        return of
    if by == "disposition":
        return lambda e: outcome.get(e.call_id, "waiting")
    raise ValueError(f"cannot group by {by!r} (use one of {', '.join(GROUPINGS)})")


def summarize(events: Iterable[QueueLogRow], by: str = "queue", *, interval: float = 3600.0,
              thresholds: dict[str, int] | None = None) -> list[dict[str, object]]:
    """One row of figures per group, in group order."""
    events = list(events)
    thresholds = thresholds or {}
    callers = {e.call_id: e for e in events if e.event == "ENTER"}
    wrapups: dict[str, list[float]] = defaultdict(list)
    outcome = {e.call_id: _DISPOSITION[e.event] for e in events if e.event in _DISPOSITION}
    key = _key(by, interval, callers, outcome)
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e.event == "AGENT" and e.prev == "wrap-up" and e.seconds is not None:
            wrapups[e.agent].append(e.seconds)
    for e in events:
        if by == "agent" and not e.agent:
            continue
        if by != "agent" and e.event == "AGENT":
            continue
        g = groups[key(e)]
        sl = thresholds.get(e.queue, 20)
        if e.event == "ENTER":
            g["offered"] += 1
        elif e.event == "CONNECT":
            g["answered"] += 1
            g["wait_answered"] += e.wait or 0.0
            g["within_sl"] += (e.wait or 0.0) <= sl
        elif e.event == "ABANDON":
            g["abandoned"] += 1
            g["wait_abandoned"] += e.wait or 0.0
        elif e.event == "COMPLETE":
            g["completed"] += 1
            g["talk"] += e.talk or 0.0
        elif e.event in ("TIMEOUT", "FULL", "EMPTY", "CALLBACK", "MOVED"):
            g[e.event.lower()] += 1
        elif e.event == "RINGNOANSWER":
            g["missed_rings"] += 1
        elif e.event == "AGENT" and e.seconds is not None and e.prev:
            g[f"seconds_{e.prev}"] += e.seconds
    rows: list[dict[str, object]] = []
    for name in sorted(groups):
        g = groups[name]
        answered, abandoned, completed = g["answered"], g["abandoned"], g["completed"]
        wrap = sum(wrapups.get(name, [])) if by == "agent" else 0.0
        row: dict[str, object] = {
            by: name, "offered": int(g["offered"]), "answered": int(answered), "abandoned": int(abandoned),
            "timeout": int(g["timeout"]), "rejected": int(g["full"] + g["empty"]), "callbacks": int(g["callback"]),
            "moved": int(g["moved"]),
            "service_level": round(g["within_sl"] / (answered + abandoned), 4) if answered + abandoned else None,
            "abandon_rate": round(abandoned / g["offered"], 4) if g["offered"] else None,
            "asa": round(g["wait_answered"] / answered, 1) if answered else None,
            "aht": round((g["talk"] + wrap) / completed, 1) if completed else None,
            "talk": round(g["talk"], 1), "missed_rings": int(g["missed_rings"]),
        }
        if by == "agent":
            row.update(ready=round(g["seconds_available"], 1), wrapup=round(g["seconds_wrap-up"], 1),
                       paused=round(g["seconds_paused"], 1))
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()
