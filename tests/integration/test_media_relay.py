"""Media workers relay RTP between bridged endpoints over real UDP sockets: latching, strict
source afterwards, RTCP, counters, inactivity timeout — in worker processes and in-process."""

from __future__ import annotations

import asyncio
import socket

import pytest
from centralino.media.rtp import RtpPacket
from centralino.media.worker import MediaPool


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
