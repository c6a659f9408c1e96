"""The jitter buffer under simulated time: order, loss, duplicates, late packets, wrap-around,
and a depth that follows the network's jitter."""

from __future__ import annotations

import random

from centralino.media.jitter import FrameKind, JitterBuffer


def play(jb: JitterBuffer, arrivals: list[tuple[float, int]], ticks: int, start_ts: int = 0):
    """arrivals: (time, sequence); the payload is the sequence number as bytes."""
    out = []
    events = sorted(arrivals)
    i = 0
    for tick in range(ticks):
        now = tick * 0.02
        while i < len(events) and events[i][0] <= now:
            t, seq = events[i]
            jb.put(seq & 0xFFFF, (start_ts + seq * 160) & 0xFFFFFFFF, seq.to_bytes(4, "big"), t)
            i += 1
        out.append(jb.get(now))
    return out


def audio(frames):
    return [int.from_bytes(f.payload, "big") for f in frames if f.kind is FrameKind.AUDIO]


def test_in_order_stream_plays_every_frame():
    frames = play(JitterBuffer(), [(n * 0.02, n) for n in range(50)], 60)
    assert audio(frames) == list(range(50))


def test_reordering_is_undone():
    arrivals = []
    for n in range(0, 50, 2):
        arrivals += [(n * 0.02, n + 1), (n * 0.02 + 0.001, n)]  # pairs swapped
    jb = JitterBuffer(min_frames=2)
    assert audio(play(jb, arrivals, 70)) == list(range(50))
    assert jb.lost == 0


def test_loss_is_marked_for_concealment_and_duplicates_ignored():
    arrivals = [(n * 0.02, n) for n in range(30) if n not in (10, 11, 20)] + [(0.3, 14)]
    jb = JitterBuffer()
    frames = play(jb, arrivals, 40)
    kinds = [(f.kind, f.sequence) for f in frames if f.kind is not FrameKind.EMPTY]
    assert (FrameKind.LOST, 10) in kinds and (FrameKind.LOST, 11) in kinds and (FrameKind.LOST, 20) in kinds
    assert jb.lost == 3 and jb.duplicates == 1


def test_sequence_and_timestamp_wrap():
    base = 65530
    arrivals = [(n * 0.02, base + n) for n in range(20)]
    frames = play(JitterBuffer(), arrivals, 30, start_ts=2**32 - 160 * 5)
    assert [s & 0xFFFF for s in audio(frames)] == [(base + n) & 0xFFFF for n in range(20)]


def test_late_packets_are_dropped():
    arrivals = [(n * 0.02, n) for n in range(20) if n != 5] + [(0.3, 5)]  # 5 arrives long after its turn
    jb = JitterBuffer()
    play(jb, arrivals, 30)
    assert jb.late == 1 and jb.lost == 1


def test_depth_follows_jitter():
    rng = random.Random(3)
    jittery = [(n * 0.02 + rng.uniform(0, 0.06), n) for n in range(200)]
    jb = JitterBuffer(max_frames=10)
    frames = play(jb, jittery, 260)
    assert jb.target >= 3  # about twice the ±30 ms spread, in 20 ms frames
    assert jb.lost < 10 and len(audio(frames)) > 185
    calm = JitterBuffer()
    play(calm, [(n * 0.02, n) for n in range(200)], 210)
    assert calm.target == 1
