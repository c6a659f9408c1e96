"""RTP wire format: one header reader for the relay and the parser (CSRCs, header extensions,
padding), and receive statistics whose jitter is right at every codec's clock."""

from __future__ import annotations

import random

import pytest
from centralino.media.rtp import ReceiveStats, RtpPacket, read_header


def _packet(payload: bytes, *, csrcs: int = 0, extension_words: int = 0, padding: int = 0) -> bytes:
    b0 = 0x80 | csrcs | (0x10 if extension_words else 0) | (0x20 if padding else 0)
    out = bytes([b0, 0x80 | 96, 0x12, 0x34, 0, 0, 0x03, 0x20, 0xDE, 0xAD, 0xBE, 0xEF])
    out += b"".join(i.to_bytes(4, "big") for i in range(csrcs))
    if extension_words:
        out += bytes([0xBE, 0xDE]) + extension_words.to_bytes(2, "big") + b"\x11" * (4 * extension_words)
    out += payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


@pytest.mark.parametrize(("csrcs", "words", "padding"), [(0, 0, 0), (0, 1, 0), (0, 0, 4), (2, 3, 7), (15, 0, 1)])
def test_payload_span_skips_csrcs_extension_and_padding(csrcs, words, padding):
    payload = bytes(range(160))
    data = _packet(payload, csrcs=csrcs, extension_words=words, padding=padding)
    pt, seq, ts, start, end = read_header(data)
    assert (pt, seq, ts) == (96, 0x1234, 800)
    assert data[start:end] == payload
    parsed = RtpPacket.parse(data)
    assert parsed.payload == payload and parsed.marker and len(parsed.csrcs) == csrcs


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, bytes([0x40]) + b"\x00" * 20,
                                  _packet(b"")[:12] + b"\x00",  # fine: empty payload
                                  bytes([0x90]) + b"\x00" * 12,  # extension header cut short
                                  bytes([0xA0]) + b"\x00" * 10 + bytes([200])])  # padding longer than packet
def test_truncated_or_foreign_packets_are_not_rtp(data):
    head = read_header(data)
    if len(data) == 13 and data[0] == 0x80:
        assert head is not None and head[3] == 12
    else:
        assert head is None


@pytest.mark.parametrize(("clock", "label"), [(8000, "PCMU"), (8000, "G722"), (48000, "opus"), (16000, "L16/16000")])
def test_jitter_is_measured_at_the_payload_types_clock(clock, label):
    """50 packets/s with ±1 ms of arrival noise: the RFC 3550 estimate is ~0.7 ms at any clock.
    With a fixed 8 kHz clock an Opus stream read ~100 ms."""
    rng = random.Random(7)
    stats = ReceiveStats()
    step = clock // 50
    for n in range(500):
        stats.update(n, (1000 + n * step) & 0xFFFFFFFF, 100.0 + n * 0.02 + rng.uniform(-0.001, 0.001), clock)
    assert 0.3 < stats.jitter_ms < 1.2, (label, stats.jitter_ms)
    assert stats.lost == 0 and stats.expected == 500


def test_events_at_their_own_rate_do_not_disturb_the_estimate():
    stats = ReceiveStats()
    for n in range(200):
        stats.update(n, n * 960, 10.0 + n * 0.02, 48000)
    for k in range(5):  # a key: telephone-event packets at 8000 in the same stream (mismatched phone)
        stats.update(200 + k, 12345, 14.0 + k * 0.02, 8000)
    for n in range(205, 400):
        stats.update(n, n * 960, 10.0 + n * 0.02, 48000)
    assert stats.jitter_ms < 0.5


def test_timestamp_wrap_is_not_jitter():
    stats = ReceiveStats()
    for n in range(100):
        stats.update(n, (0xFFFFFFFF - 50 * 160 + n * 160) & 0xFFFFFFFF, 5.0 + n * 0.02, 8000)
    assert stats.jitter_ms < 0.1
