"""The webhook outbox: each event a webhook wants becomes a row of ``webhook_outbox``, written in
the same transaction as the event's own records (the CDR, the queue-log row), so a delivery is
never promised for a record that was not kept nor lost for one that was. api/webhooks.py sends
the rows and marks them delivered or dead.

The body is built here, once, in the endpoint's format (``standard``: Standard Webhooks' envelope
``{"type", "timestamp", "data"}``); the message id (``msg_…``) is fixed at that moment, so every
retry carries the same ``webhook-id`` and a receiver can drop duplicates.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..config.schema import Plan
from ..events import CallEnded, Event, EventBus, QueueEventBase, Subscription, to_json
from .database import Database, Statement

_INSERT = ("INSERT INTO webhook_outbox (webhook, event_id, type, payload, created, next_at) "
           "VALUES (?, ?, ?, ?, ?, ?)")


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def _direction(source: str, destination: str) -> str:
    if source.startswith("trunk:"):
        return "inbound"
    if destination.startswith("trunk:") or source.startswith("campaign"):
        return "outbound"
    return "internal"


def standard_data(event: Event, agents_of_plan: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The ``data`` of a standard delivery: a call summary for call.ended (``agent``: the last
    agent of the plan who answered it), the row for queue events, the event's own fields otherwise."""
    if isinstance(event, CallEnded):
        c = event.summary
        agents = [r.destination.partition(":")[2] for r in event.records[1:]
                  if r.leg == "b" and r.answer is not None and r.destination.startswith("extension:")
                  and r.destination.partition(":")[2] in agents_of_plan]
        return {
            "call_id": c.call_id, "seq": event.seq, "direction": _direction(c.source, c.destination),
            "caller": c.caller, "called": c.called, "did": c.did, "source": c.source,
            "destination": c.destination, "agent": agents[-1] if agents else None,
            "start": _iso(c.start), "answer": _iso(c.answer), "end": _iso(c.end),
            "ring_seconds": round(c.ring_seconds, 3), "talk_seconds": round(c.talk_seconds, 3),
            "result": c.disposition, "hangup_by": c.hangup_by, "sip_status": c.sip_status,
            "q850_cause": c.q850_cause, "recording": c.recording, "campaign": c.campaign or None,
            "lead_id": c.lead_id,
        }
    if isinstance(event, QueueEventBase):
        r = event.row
        return {"seq": event.seq, "call_id": r.call_id, "event": r.event, "queue": r.queue, "agent": r.agent,
                "caller": r.caller, "did": r.did, "position": r.position, "wait_seconds": r.wait,
                "talk_seconds": r.talk, "reason": r.reason, "state": r.state, "notes": r.notes, "at": _iso(r.at)}
    data = to_json(event)
    data.pop("type", None)
    return data


def envelope(event: Event, agents_of_plan: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    return {"type": event.type, "timestamp": _iso(event.at), "data": standard_data(event, agents_of_plan)}


class Outbox:
    """Which events go to which webhook, as rows to write with the event's records."""

    def __init__(self, plan_of: Callable[[], Plan], db: Database, bus: EventBus) -> None:
        self.plan_of, self.db = plan_of, db
        self.on_enqueued: Callable[[], None] = lambda: None
        self.enqueued = 0
        self._pending: list[Statement] = []
        self._flush_scheduled = False
        # events other than CDRs and queue-log rows have no record of their own: written in batches
        self.sub: Subscription = bus.subscribe(self._on_other)

    def statements_for(self, event: Event) -> list[Statement]:
        plan = self.plan_of()
        hooks = plan.webhooks
        if not hooks:
            return []
        out: list[Statement] = []
        body: str | None = None
        now = time.time()
        for name, hook in hooks.items():
            if event.type.startswith(tuple(hook.events)):
                body = body or json.dumps(envelope(event, set(plan.agents)), separators=(",", ":"), default=str)
                out.append((_INSERT, (name, f"msg_{secrets.token_hex(12)}", event.type, body, now, now)))
        self.enqueued += len(out)
        return out

    def _on_other(self, event: Event) -> None:
        if isinstance(event, (CallEnded, QueueEventBase)) or not self.plan_of().webhooks:
            return  # those go with their records (storage/subscribers.py)
        rows = self.statements_for(event)
        if not rows:
            return
        self._pending.extend(rows)
        if not self._flush_scheduled:
            import asyncio

            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))

    async def _flush(self) -> None:
        rows, self._pending, self._flush_scheduled = self._pending, [], False
        await self.db.write(rows)
        self.on_enqueued()

    def close(self) -> None:
        self.sub.close()
