"""The webhook outbox: each event a webhook wants becomes a row of ``webhook_outbox``, written in
the same transaction as the event's own records (the CDR, the queue-log row), so a delivery is
never promised for a record that was not kept nor lost for one that was. api/webhooks.py sends
the rows and marks them delivered or dead.

The body is built here, once, in the endpoint's format (storage/webhook_formats.py); the message
id (``msg_…``) is fixed at that moment, so every retry carries the same ``webhook-id`` and a
receiver can drop duplicates.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from ..config.schema import Plan
from ..events import CallEnded, Event, EventBus, QueueEventBase, Subscription
from .database import Database, Statement
from .webhook_formats import RecordingLink, body_for

_INSERT = ("INSERT INTO webhook_outbox (webhook, event_id, type, payload, created, next_at) "
           "VALUES (?, ?, ?, ?, ?, ?)")


class Outbox:
    """Which events go to which webhook, as rows to write with the event's records."""

    def __init__(self, plan_of: Callable[[], Plan], db: Database, bus: EventBus,
                 recording_link: RecordingLink | None = None) -> None:
        self.plan_of, self.db, self.recording_link = plan_of, db, recording_link
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
        now = time.time()
        for name, hook in hooks.items():
            if event.type.startswith(hook.wants):
                body = body_for(event, hook, set(plan.agents), self.recording_link)
                if body is not None:
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
