"""A jitter buffer for the streams the switch itself listens to (IVR, recording, mixing,
detection): packets in as they arrive, one 20 ms frame out per tick — reordered, with lost
frames marked for concealment, an adaptive depth, and sequence/timestamp wrap-around.
Sans-I/O: the caller passes ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FrameKind(Enum):
    AUDIO = "audio"
    LOST = "lost"  # a gap in the sequence: conceal it (repeat/fade/comfort noise)
    EMPTY = "empty"  # nothing to play (not started, underrun, or the sender is silent)


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    payload: bytes | None = None
    sequence: int | None = None


def _unwrap(seq: int, reference: int) -> int:
    """Extend a 16-bit sequence number to the one nearest ``reference`` (an extended number)."""
    base = reference - (reference & 0xFFFF)
    candidate = base + seq
    if candidate - reference > 0x8000:
        candidate -= 0x10000
    elif reference - candidate > 0x8000:
        candidate += 0x10000
    return candidate


class JitterBuffer:
    def __init__(self, *, frame_ms: int = 20, clock_rate: int = 8000, min_frames: int = 1,
                 max_frames: int = 10) -> None:
        self.frame = frame_ms / 1000.0
        self.clock_rate = clock_rate
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.target = min_frames  # current depth in frames
        self._packets: dict[int, bytes] = {}
        self._highest: int | None = None  # extended sequence
        self._next: int | None = None  # next extended sequence to play; None: not started
        self._transit: float | None = None
        self.jitter = 0.0  # seconds (RFC 3550 estimator)
        self.late = self.duplicates = self.lost = self.played = self.underruns = 0

    def put(self, sequence: int, timestamp: int, payload: bytes, now: float) -> None:
        ext = sequence if self._highest is None else _unwrap(sequence, self._highest)
        if self._next is not None and ext < self._next:
            self.late += 1
            return
        if ext in self._packets:
            self.duplicates += 1
            return
        self._packets[ext] = payload
        if self._highest is None or ext > self._highest:
            self._highest = ext
        transit = now - timestamp / self.clock_rate
        if self._transit is not None:
            d = abs(transit - self._transit)
            # timestamps wrap every 2^32 samples: a jump of hours is a wrap, not jitter
            if d < 3600:
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        wanted = int(min(self.max_frames, max(self.min_frames, round(2 * self.jitter / self.frame) + 1)))
        if wanted > self.target:
            self.target = wanted  # grow at once; shrink only when the buffer runs long (get)

    @property
    def depth(self) -> int:
        """Frames buffered ahead of the playout point."""
        if not self._packets:
            return 0
        start = self._next if self._next is not None else min(self._packets)
        return (self._highest or 0) - start + 1

    def get(self, now: float) -> Frame:
        if self._next is None:
            if not self._packets or self.depth < self.target:
                return Frame(FrameKind.EMPTY)
            self._next = min(self._packets)
        if not self._packets:
            self.underruns += 1
            return Frame(FrameKind.EMPTY)
        # running too far behind (the jitter settled): skip one frame to shed latency
        if self.depth > self.target + 2 and self.target > self.min_frames:
            self._packets.pop(self._next, None)
            self._next += 1
            self.target = max(self.min_frames, self.target - 1)
        seq = self._next
        self._next += 1
        payload = self._packets.pop(seq, None)
        if payload is None:
            self.lost += 1
            return Frame(FrameKind.LOST, None, seq & 0xFFFF)
        self.played += 1
        return Frame(FrameKind.AUDIO, payload, seq & 0xFFFF)
