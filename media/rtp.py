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
        if len(data) < 12:
            raise ValueError("RTP packet shorter than its header")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise ValueError("not RTP version 2")
        cc = b0 & 0x0F
        offset = 12 + 4 * cc
        csrcs = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
        if b0 & 0x10:  # header extension
            if len(data) < offset + 4:
                raise ValueError("truncated RTP header extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if b0 & 0x20 and end > offset:  # padding
            end -= data[-1]
        if offset > end:
            raise ValueError("truncated RTP packet")
        return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80), tuple(csrcs))

    def serialize(self) -> bytes:
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        head = _HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        if self.csrcs:
            head += struct.pack(f"!{len(self.csrcs)}I", *self.csrcs)
        return head + self.payload


def peek_header(data: bytes) -> tuple[int, int, int] | None:
    """(payload type, sequence, timestamp) of an RTP packet, or None if it is not one."""
    if len(data) < 12 or data[0] >> 6 != RTP_VERSION:
        return None
    return data[1] & 0x7F, (data[2] << 8) | data[3], int.from_bytes(data[4:8], "big")


class ReceiveStats:
    """Expected/received counts with sequence wrap, and interarrival jitter (RFC 3550 A.3, A.8)."""

    __slots__ = ("_base_seq", "_cycles", "_max_seq", "_transit", "clock_rate", "jitter", "received")

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.received = 0
        self._base_seq: int | None = None
        self._max_seq = 0
        self._cycles = 0
        self._transit: float | None = None
        self.jitter = 0.0  # in timestamp units

    def update(self, seq: int, timestamp: int, arrival: float) -> None:
        self.received += 1
        if self._base_seq is None:
            self._base_seq = self._max_seq = seq
        else:
            delta = (seq - self._max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self._max_seq:
                    self._cycles += 1 << 16
                self._max_seq = seq
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

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
        return self.jitter * 1000.0 / self.clock_rate
