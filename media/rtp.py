"""RTP (RFC 3550) wire format and per-stream receive statistics (loss, jitter).

Only the fixed header is parsed on the relay's hot path; the relay never copies payloads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct("!BBHII")
RTP_VERSION = 2


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    @staticmethod
    def parse(data: bytes) -> RtpPacket:
        head = read_header(data)
        if head is None:
            raise ValueError("not an RTP version 2 packet, or truncated")
        pt, seq, ts, start, end = head
        cc = data[0] & 0x0F
        csrcs = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
        (ssrc,) = struct.unpack_from("!I", data, 8)
        return RtpPacket(pt, seq, ts, ssrc, bytes(data[start:end]), bool(data[1] & 0x80), tuple(csrcs))

    def serialize(self) -> bytes:
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        head = _HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        if self.csrcs:
            head += struct.pack(f"!{len(self.csrcs)}I", *self.csrcs)
        return head + self.payload


def read_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(payload type, sequence, timestamp, payload start, payload end) of an RTP packet, or None
    when it is not one. The payload starts after the CSRCs *and* any header extension (RFC 3550
    §5.3.1: every WebRTC stack sends ssrc-audio-level) and ends before the padding. The one header
    reader of the relay's hot path and of ``RtpPacket.parse``."""
    n = len(data)
    if n < 12:
        return None
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        return None
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if n < start + 4:
            return None
        start += 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    end = n - data[-1] if b0 & 0x20 else n
    if start > end:
        return None
    return data[1] & 0x7F, (data[2] << 8) | data[3], int.from_bytes(data[4:8], "big"), start, end


def peek_header(data: bytes) -> tuple[int, int, int] | None:
    """(payload type, sequence, timestamp) of an RTP packet, or None if it is not one."""
    head = read_header(data)
    return None if head is None else head[:3]


class ReceiveStats:
    """Expected/received counts with sequence wrap, and interarrival jitter (RFC 3550 A.3, A.8),
    each packet's timestamp read at its payload type's clock (48 kHz for Opus, 8 kHz for G.722
    per RFC 3551, a telephone-event at its own rate), so the jitter is right for every codec."""

    __slots__ = ("_base_seq", "_clock", "_cycles", "_max_seq", "_transit", "jitter_s", "received")

    def __init__(self) -> None:
        self.received = 0
        self._base_seq: int | None = None
        self._max_seq = 0
        self._cycles = 0
        self._transit: float | None = None
        self._clock = 0
        self.jitter_s = 0.0  # in seconds

    def update(self, seq: int, timestamp: int, arrival: float, clock_rate: int = 8000) -> None:
        self.received += 1
        if self._base_seq is None:
            self._base_seq = self._max_seq = seq
        else:
            delta = (seq - self._max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self._max_seq:
                    self._cycles += 1 << 16
                self._max_seq = seq
        transit = arrival - timestamp / clock_rate
        if self._transit is not None and clock_rate == self._clock:
            d = abs(transit - self._transit)
            if d < 3600.0:  # a timestamp wrap between the two packets is not jitter
                self.jitter_s += (d - self.jitter_s) / 16.0
        self._transit, self._clock = transit, clock_rate

    @property
    def expected(self) -> int:
        if self._base_seq is None:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return self.jitter_s * 1000.0
