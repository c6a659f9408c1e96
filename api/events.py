"""The recent events of the bus for API clients (``POST /events``, ``centralino events``): a
bounded buffer a subscriber fills and long-polling readers take from by sequence number. Events
are kept as they are published and turned into JSON only when someone asks, so a busy switch
pays one append per event."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..events import Event, EventBus, Subscription, to_json

KEEP = 5000  # events kept for readers that poll (older ones are gone: a reader sees the gap)
MAX_WAIT = 25.0  # seconds a long poll may wait for the next event


class EventTail:
    def __init__(self, bus: EventBus, keep: int = KEEP) -> None:
        self.buffer: deque[Event] = deque(maxlen=keep)
        self._changed: asyncio.Event | None = None
        self.sub: Subscription = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        self.buffer.append(event)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def since(self, seq: int, prefixes: tuple[str, ...] = (), limit: int = 500) -> tuple[list[dict[str, Any]], int]:
        """Events after ``seq`` whose type starts with one of ``prefixes`` (all without), oldest
        first, and the sequence number to ask from next time."""
        out: list[dict[str, Any]] = []
        last = seq
        for event in self.buffer:
            if event.seq <= seq:
                continue
            last = event.seq
            if not prefixes or event.type.startswith(prefixes):
                out.append(to_json(event))
                if len(out) >= limit:
                    break
        return out, last

    async def wait(self, seq: int, prefixes: tuple[str, ...], timeout: float) -> tuple[list[dict[str, Any]], int]:
        """Like ``since``, waiting up to ``timeout`` seconds for a matching event to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(0.0, timeout), MAX_WAIT)
        while True:
            found, last = self.since(seq, prefixes)
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found, last
            seq = last
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    def close(self) -> None:
        self.sub.close()


__all__ = ["EventTail"]
