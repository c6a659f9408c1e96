"""`centralino bench relay`: how many concurrent G.711 streams one media worker relays without
loss. N calls (2 endpoints each, bridged) in one worker process; a separate load process sends
20 ms RTP packets both ways on every call (50 packets/s per direction, like a real call) and
counts what comes out the other side. Reports packets/s relayed, loss, and the worker's CPU."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..media.protocol import endpoint_update
from ..media.rtp import RtpPacket
from ..media.worker import MediaPool


def _drain(socks: list[socket.socket]) -> int:
    n = 0
    for s in socks:
        while True:
            try:
                s.recv(2048)
                n += 1
            except BlockingIOError:
                break
    return n


def _load(targets: list[tuple[int, int]], duration: float, ready: Any, go: Any, result: Any) -> None:
    """Both sides of every call: send one packet per 20 ms per direction, count arrivals."""
    socks = []
    for _ in range(len(targets) * 2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    ready.send([s.getsockname()[1] for s in socks])
    go.recv()  # both sides' addresses are known to the worker: start the clock
    payload = b"\xd5" * 160
    sent = received = 0
    seq = 0
    start = time.monotonic()
    next_tick = start
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        if now >= next_tick:
            pkt = RtpPacket(8, seq & 0xFFFF, seq * 160, 0x1234, payload).serialize()
            for i, (pa, pb) in enumerate(targets):
                socks[2 * i].sendto(pkt, ("127.0.0.1", pa))
                socks[2 * i + 1].sendto(pkt, ("127.0.0.1", pb))
                sent += 2
            seq += 1
            next_tick += 0.02
        received += _drain(socks)
        time.sleep(0.001)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # drain what is still in flight
        received += _drain(socks)
        time.sleep(0.01)
    result.send({"sent": sent, "received": received, "seconds": duration})


async def run(streams: int, duration: float, record: Path | None = None) -> dict[str, Any]:
    pool = MediaPool("127.0.0.1", (40000, 40000 + 4 * streams + 100), 1, lambda e: None)
    await pool.start()
    try:
        w = pool.pick()
        pairs = []
        for i in range(streams):
            pair = await w.pair_create(f"bench{i}")  # two endpoints, bridged
            assert pair is not None
            pairs.append(pair)
        ctx = mp.get_context("spawn")
        ready_r, ready_w = ctx.Pipe(False)
        res_r, res_w = ctx.Pipe(False)
        go_r, go_w = ctx.Pipe(False)
        proc = ctx.Process(target=_load, args=([(a.port, b.port) for a, b in pairs], duration, ready_w, go_r, res_w))
        proc.start()
        client_ports = await asyncio.get_running_loop().run_in_executor(None, ready_r.recv)
        for i, (a, b) in enumerate(pairs):  # each side's SDP: its own client socket
            await w.update(endpoint_update(a.endpoint, ip="127.0.0.1", port=client_ports[2 * i]))
            await w.update(endpoint_update(b.endpoint, ip="127.0.0.1", port=client_ports[2 * i + 1]))
        pid = w.proc.pid  # type: ignore[attr-defined]
        if record is not None:  # every call recorded, dual-channel, by the same worker
            for i, (a, b) in enumerate(pairs):
                await w.record_start(a.endpoint, b.endpoint, path=str(record / f"call{i}.wav"), recording=f"r{i}")
        go_w.send(True)
        cpu0, t0 = _cpu(pid), time.monotonic()
        load = await asyncio.get_running_loop().run_in_executor(None, res_r.recv)
        cpu = (_cpu(pid) - cpu0) / (time.monotonic() - t0)
        proc.join()
        stats = await w.stats()
        loss = 1 - load["received"] / load["sent"] if load["sent"] else 1.0
        extra: dict[str, Any] = {}
        if record is not None:
            seconds = [(await w.record_stop(f"r{i}"))["seconds"]
                       for i in range(len(pairs))]
            # real time: each file holds as many seconds as the wall clock ran (the tick kept up)
            extra = {"recordings": len(seconds), "recorded_s_min": min(seconds),
                     "wall_s": round(time.monotonic() - t0, 2), "tick_ms_avg": stats["tick_ms_avg"]}
        return {
            "streams": streams, "calls_equivalent": streams, "seconds": duration,
            "offered_pps": round(load["sent"] / duration), "relayed_pps": round(stats["tx"] / duration),
            "end_to_end_loss": round(loss, 5), "worker_lost_in": stats["lost"],
            "worker_cpu": round(cpu, 2), **extra,
        }
    finally:
        await pool.close()


def _cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="centralino bench relay")
    p.add_argument("--streams", type=int, nargs="+", default=[100, 250, 500])
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--record", action="store_true", help="also record every call (dual-channel WAV)")
    args = p.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="centralino-rec-") as tmp:
        rows = [asyncio.run(run(n, args.duration, Path(tmp) if args.record else None)) for n in args.streams]
    rec = " recorded s (min) / wall s | tick ms |" if args.record else ""
    print("| calls | offered pkt/s | relayed pkt/s | end-to-end loss | worker CPU |" + rec)
    print("|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.record else ""))
    for r in rows:
        tail = f" {r['recorded_s_min']} / {r['wall_s']} | {r['tick_ms_avg']} |" if args.record else ""
        print(f"| {r['streams']} | {r['offered_pps']} | {r['relayed_pps']} | {r['end_to_end_loss'] * 100:.3f}% | "
              f"{r['worker_cpu'] * 100:.0f}% |" + tail)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
