"""DTMF as RFC 4733 telephone-events: the payload format, and a receiver that reports each
digit once when it ends (the end packet is sent three times; later ones are duplicates)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in timestamp units (8 kHz: 160 per 20 ms)

    @staticmethod
    def parse(payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise ValueError("telephone-event payload shorter than 4 bytes")
        event, flags, duration = _EVENT.unpack_from(payload)
        return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF)

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None


class DtmfReceiver:
    """Feed telephone-event packets of one stream; get a digit when one ends, once."""

    __slots__ = ("_done", "clock_rate")

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._done: int | None = None  # RTP timestamp of the last reported event

    def feed(self, timestamp: int, payload: bytes, clock_rate: int | None = None) -> tuple[str, int] | None:
        """(digit, duration in ms) when this packet ends a new event, else None; durations are
        in units of the event's payload type clock (8000, or 48000 beside Opus)."""
        try:
            ev = TelephoneEvent.parse(payload)
        except ValueError:
            return None
        if not ev.end or timestamp == self._done or ev.digit is None:
            return None
        self._done = timestamp
        return ev.digit, ev.duration * 1000 // (clock_rate or self.clock_rate)
