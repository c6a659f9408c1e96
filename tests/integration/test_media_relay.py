"""Media workers relay RTP between bridged endpoints over real UDP sockets: latching, strict
source afterwards, RTCP, counters, inactivity timeout — in worker processes and in-process."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from centralino.media.rtp import RtpPacket
from centralino.media.worker import MediaPool
from helpers import need_tool


def rtp(seq: int, payload: bytes = b"\xff" * 160) -> bytes:
    return RtpPacket(0, seq, seq * 160, 0x1234, payload).serialize()


@pytest.mark.parametrize("workers", [0, 2])
def test_relay_latch_strict_source_and_stats(workers):
    async def main():
        events = []
        pool = MediaPool("127.0.0.1", (41000, 41999), workers, events.append)
        await pool.start()
        try:
            w = pool.pick()
            a = await w.request({"cmd": "endpoint.create", "call": "c1"})
            b = await w.request({"cmd": "endpoint.create", "call": "c1"})
            assert a["ok"] and b["ok"] and a["port"] % 2 == 0
            await w.request({"cmd": "bridge", "a": a["endpoint"], "b": b["endpoint"]})
            alice = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            bob = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            evil = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for s in (alice, bob, evil):
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            # Bob's address comes from his SDP; Alice is learned from her first packet
            await w.request({"cmd": "endpoint.update", "endpoint": b["endpoint"], "ip": "127.0.0.1",
                             "port": bob.getsockname()[1]})
            loop = asyncio.get_running_loop()
            for seq in range(10):
                alice.sendto(rtp(seq), ("127.0.0.1", a["port"]))
            got = [await asyncio.wait_for(loop.sock_recv(bob, 2048), 2) for _ in range(10)]
            assert [RtpPacket.parse(p).sequence for p in got] == list(range(10))
            # Bob answers to the port he saw; it reaches Alice's learned address
            bob.sendto(rtp(100), ("127.0.0.1", b["port"]))
            back = await asyncio.wait_for(loop.sock_recv(alice, 2048), 2)
            assert RtpPacket.parse(back).sequence == 100
            # an injector to Alice's side is dropped and counted, Bob hears nothing of it
            for seq in range(5):
                evil.sendto(rtp(500 + seq), ("127.0.0.1", a["port"]))
            await asyncio.sleep(0.2)
            with pytest.raises(BlockingIOError):
                bob.recv(2048)
            stats = await w.request({"cmd": "endpoint.stats", "endpoint": a["endpoint"]})
            assert stats["rx"] == 10 and stats["dropped_source"] == 5 and stats["lost"] == 0
            # RTCP follows the same path on the odd ports
            alice.sendto(b"\x80\xc8\x00\x06" + b"\x00" * 24, ("127.0.0.1", a["port"] + 1))
            bob_rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            bob_rtcp.bind(("127.0.0.1", bob.getsockname()[1] + 1))
            bob_rtcp.setblocking(False)
            alice.sendto(b"\x80\xc8\x00\x06" + b"\x00" * 24, ("127.0.0.1", a["port"] + 1))
            report = await asyncio.wait_for(loop.sock_recv(bob_rtcp, 2048), 2)
            assert report[1] == 0xC8  # a sender report
            # loss is counted from sequence gaps
            for seq in (20, 22, 23):
                alice.sendto(rtp(seq), ("127.0.0.1", a["port"]))
            await asyncio.sleep(0.2)
            stats = await w.request({"cmd": "endpoint.stats", "endpoint": a["endpoint"]})
            assert stats["lost"] == 11  # 10..19 and 21 never arrived: 24 expected, 13 received
        finally:
            await pool.close()
    asyncio.run(main())


def test_inactivity_timeout_event():
    async def main():
        events = []
        pool = MediaPool("127.0.0.1", (42000, 42099), 1, events.append)
        await pool.start()
        try:
            w = pool.pick()
            a = await w.request({"cmd": "endpoint.create", "call": "c2"})
            await w.request({"cmd": "timeout", "endpoints": [a["endpoint"]], "seconds": 0.5})
            for _ in range(40):
                if events:
                    break
                await asyncio.sleep(0.05)
            assert events and events[0]["event"] == "rtp.timeout" and events[0]["call"] == "c2"
        finally:
            await pool.close()
    asyncio.run(main())


@pytest.mark.parametrize("workers", [0, 1])
def test_inband_dtmf_in_the_audio_is_detected_by_the_worker(workers, tmp_path):
    """A phone without telephone-events sends the keys as tones in its A-law audio: the worker's
    20 ms tick decodes and detects them (sox-generated tones)."""
    import subprocess
    import wave

    from centralino.media.codecs.g711 import alaw_encode
    from centralino.media.dtmf_inband import HIGH, KEYS, LOW
    from helpers import need_tool

    sox = need_tool("sox")
    pcm = []
    for key in "47#":
        r = next(i for i, row in enumerate(KEYS) if key in row)
        out = tmp_path / f"{ord(key)}.wav"
        subprocess.run([sox, "-n", "-r", "8000", "-b", "16", "-c", "1", str(out), "synth", "0.12", "sine",
                        str(LOW[r]), "sine", str(HIGH[KEYS[r].index(key)]), "remix", "-", "vol", "0.4"], check=True)
        with wave.open(str(out)) as w:
            pcm.append(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"))
        pcm.append(np.zeros(960, dtype=np.int16))
    audio = np.concatenate(pcm)
    audio = np.concatenate([audio, np.zeros((-len(audio)) % 160, dtype=np.int16)])
    payloads = [alaw_encode(audio[i:i + 160]).tobytes() for i in range(0, len(audio), 160)]

    async def main():
        events = []
        pool = MediaPool("127.0.0.1", (43000, 43099), workers, events.append)
        await pool.start()
        try:
            w = pool.pick()
            a = await w.request({"cmd": "endpoint.create", "call": "tones"})
            b = await w.request({"cmd": "endpoint.create", "call": "tones"})
            await w.request({"cmd": "bridge", "a": a["endpoint"], "b": b["endpoint"]})
            assert (await w.request({"cmd": "detect", "endpoint": a["endpoint"]}))["ok"]
            phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            phone.bind(("127.0.0.1", 0))
            for seq, payload in enumerate(payloads):
                phone.sendto(RtpPacket(8, seq, seq * 160, 0x99, payload).serialize(), ("127.0.0.1", a["port"]))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            return [e for e in events if e.get("event") == "dtmf"]
        finally:
            await pool.close()

    digits = asyncio.run(main())
    assert [d["digit"] for d in digits] == ["4", "7", "#"]
    assert all(d["method"] == "inband" and d["call"] == "tones" for d in digits)


def test_the_relay_bench_times_every_packet_through_a_worker_and_through_rtpengine(tmp_path):
    """`centralino bench relay --peer rtpengine` end to end on a few calls: the C generator plays
    both phones, every packet comes out of the other side of a Centralino media worker and of a
    userspace rtpengine, and each is timed (its send time travels in the payload)."""
    from centralino.bench.relay import row_md, run_centralino, run_rtpengine

    need_tool("cc")
    row, extra = asyncio.run(run_centralino(3, 1.0))
    r = row.result
    assert r.calls == 3 and r.sent >= 2 * 3 * 40  # 50 packets/s per side, one second
    assert r.received == r.sent and r.lost == 0 and extra["worker_lost_in"] == 0
    assert 0 <= r.p50_ms <= r.p99_ms <= r.max_ms  # figures measured, not assumed
    assert row_md(row).startswith("| centralino | 3 |")
    need_tool("rtpengine")
    peer = run_rtpengine(3, 1.0)
    assert peer.result.received == peer.result.sent >= 240  # (its CPU over 1 s can be under one clock tick)
