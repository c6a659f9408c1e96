"""The recent events of the bus for API clients: the WebSocket stream ``/api/v1/events`` and the
long poll ``/api/v1/events/poll`` (``centralino events``).

One bus subscriber fills a bounded buffer (the replay a reconnecting client resumes from with
``?since=SEQ``) and hands each event to the live streams. Events are kept as they are published
and turned into JSON only for a reader that wants them, so a busy switch pays one append per event.
Each stream has its own bounded queue: one that falls ``STREAM_QUEUE`` events behind (a stalled
browser) is closed with 4008 and nobody else, least of all the SIP path, waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..events import Event, EventBus, Subscription, to_json

KEEP = 5000  # events kept for replay (older ones are gone: a reader is told so)
MAX_WAIT = 25.0  # seconds a long poll may wait for the next event
STREAM_QUEUE = 1000  # events a stream may fall behind by before it is cut off
CLOSE_TOO_SLOW = 4008
CLOSE_GONE = 4010

Match = Callable[[Event], bool]


def everything(_: Event) -> bool:
    return True


class EventTail:
    def __init__(self, bus: EventBus, keep: int = KEEP) -> None:
        self.bus = bus
        self.buffer: deque[Event] = deque(maxlen=keep)
        self._changed: asyncio.Event | None = None
        self._listeners: list[Callable[[Event], None]] = []
        self.cut_off = 0  # streams closed for falling behind
        self.sub: Subscription = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        self.buffer.append(event)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        for listener in self._listeners:
            listener(event)

    def gone(self, seq: int) -> bool:
        """Whether events after ``seq`` have already left the buffer (a resume would have a gap)."""
        return bool(self.buffer) and seq < self.buffer[0].seq - 1

    def since(self, seq: int, prefixes: tuple[str, ...] = (), limit: int = 500,
              match: Match = everything) -> tuple[list[dict[str, Any]], int]:
        """Events after ``seq`` whose type starts with one of ``prefixes`` (all without) and that
        ``match`` lets through, oldest first, and the sequence number to ask from next time."""
        out: list[dict[str, Any]] = []
        last = seq
        for event in self.buffer:
            if event.seq <= seq:
                continue
            last = event.seq
            if (not prefixes or event.type.startswith(prefixes)) and match(event):
                out.append(to_json(event))
                if len(out) >= limit:
                    break
        return out, last

    async def wait(self, seq: int, prefixes: tuple[str, ...], timeout: float,
                   match: Match = everything) -> tuple[list[dict[str, Any]], int]:
        """Like ``since``, waiting up to ``timeout`` seconds for a matching event to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(0.0, timeout), MAX_WAIT)
        while True:
            found, last = self.since(seq, prefixes, match=match)
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found, last
            seq = last
            if self._changed is None:
                self._changed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stream(self, ws: WebSocket, since: int | None, match: Match) -> None:
        """Send ``ws`` every matching event: first a ``hello`` with the current sequence number,
        then (with ``since``) the buffered events after it, then live ones, each once, in order."""
        queue: asyncio.Queue[Event] = asyncio.Queue(STREAM_QUEUE)
        overflow = asyncio.Event()

        def on_event(event: Event) -> None:
            if overflow.is_set() or not match(event):
                return
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                overflow.set()

        self._listeners.append(on_event)  # before the replay is read: no gap between the two
        try:
            await ws.send_json({"type": "hello", "seq": self.bus.last_seq,
                                "oldest": self.buffer[0].seq if self.buffer else self.bus.last_seq + 1})
            last = self.bus.last_seq if since is None else since
            if since is not None:
                if self.gone(since):
                    await ws.send_json({"type": "gone", "since": since, "oldest": self.buffer[0].seq,
                                        "error": "events after that sequence number are no longer kept; "
                                                 "read the current state and reconnect without since"})
                    await ws.close(CLOSE_GONE)
                    return
                for event in list(self.buffer):
                    if event.seq > since and match(event):
                        await ws.send_json(to_json(event))
                        last = event.seq
            sender = asyncio.ensure_future(self._send_live(ws, queue, last))
            cut = asyncio.ensure_future(overflow.wait())
            closed = asyncio.ensure_future(self._until_closed(ws))
            done, pending = await asyncio.wait({sender, cut, closed}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if cut in done:
                self.cut_off += 1
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(CLOSE_TOO_SLOW, "too slow: fell behind the event stream"), 1.0)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self._listeners.remove(on_event)

    @staticmethod
    async def _send_live(ws: WebSocket, queue: asyncio.Queue[Event], last: int) -> None:
        while True:
            event = await queue.get()
            if event.seq > last:  # already sent in the replay
                await ws.send_json(to_json(event))
                last = event.seq

    @staticmethod
    async def _until_closed(ws: WebSocket) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await ws.receive_text()  # clients send nothing; this sees the close

    def close(self) -> None:
        self.sub.close()


__all__ = ["EventTail"]
