"""Persistence as subscribers of the event bus: the CDR, the queue log, the recordings index and
the security log are written here, from the events the B2BUA, the ACD and the security guard
publish — those never touch the database themselves.

The CDR writer is *durable*: the B2BUA awaits it (``publish_durable``) before it forgets the
call, so a ``kill -9`` loses no finished call. The others are ordinary async subscribers (their
own queue and task, in order), as the writes were before.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..events import (
    CallEnded,
    Event,
    EventBus,
    QueueEventBase,
    RecordingReady,
    SecurityEvent,
    Subscription,
)
from .cdr import insert_statements as cdr_rows
from .database import Database, Statement
from .outbox import Outbox
from .queue_log import insert_statements as queue_rows

log = logging.getLogger("centralino.storage")


class Persistence:
    """Subscribes the writers of one database to one bus."""

    def __init__(self, db: Database, bus: EventBus, outbox: Outbox | None = None) -> None:
        self.db = db
        self.outbox = outbox  # webhook deliveries, written in the same transaction as the record
        self.subscriptions: list[Subscription] = [
            bus.subscribe(self.write_cdr, CallEnded, durable=True),
            bus.subscribe(self.write_queue_log, QueueEventBase),
            bus.subscribe(self.index_recording, RecordingReady),
            bus.subscribe(self.log_security, SecurityEvent),
        ]

    def close(self) -> None:
        for sub in self.subscriptions:
            sub.close()

    async def write_cdr(self, event: CallEnded) -> None:  # type: ignore[override]
        try:
            await self.db.write(cdr_rows(list(event.records)) + self._deliveries(event))
        except Exception:
            log.exception("could not write the CDR of call %s", event.call_id)
            return
        self._wake()

    async def write_queue_log(self, event: QueueEventBase) -> None:
        await self.db.write(queue_rows([event.row]) + self._deliveries(event))
        self._wake()

    def _deliveries(self, event: Event) -> list[Statement]:
        return self.outbox.statements_for(event) if self.outbox is not None else []

    def _wake(self) -> None:
        if self.outbox is not None:
            self.outbox.on_enqueued()

    async def index_recording(self, event: RecordingReady) -> None:
        if event.encoded:  # the WAV became an Opus/MP3 file after the call
            wav = str(Path(event.path).with_suffix(".wav"))
            await self.db.write([
                ("UPDATE recordings SET path = ?, format = ? WHERE id = ?", (event.path, event.format, event.recording)),
                ("UPDATE cdr SET recording = ? WHERE recording = ?", (event.path, wav)),
            ])
            return
        await self.db.write([(
            "INSERT OR REPLACE INTO recordings (id, call_id, path, started, seconds, paused_seconds, channels,"
            " format, caller, called, agent) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (event.recording, event.call_id, event.path, event.started, event.seconds, event.paused_seconds,
             event.channels, event.format, event.caller, event.called, event.agent))])

    async def log_security(self, event: SecurityEvent) -> None:
        if event.kind == "auth-failure":
            return  # counted by the guard; the bans and lockouts they lead to are what is kept
        await self.db.write([("INSERT INTO security_events (at, source, kind, detail) VALUES (?, ?, ?, ?)",
                              (event.at, event.source, event.kind, event.detail))])
