"""`centralino bench relay`: how many concurrent G.711 calls one media worker relays in time.

N calls (two endpoints each, bridged) in one worker process; a separate generator (``rtpgen.c``,
built with the machine's C compiler) plays both phones of every call — 20 ms packets both ways,
the calls spread over the 20 ms as independent phones are — stamps each packet with its send time
and times it when it comes out of the other side. A packet that never arrives is lost; one that
arrives more than 50 ms after it was sent is as good as lost (a jitter buffer drops it), so the
**capacity** is the largest N with less than 0.1 % lost-or-late packets. With ``--peer rtpengine``
Sipwise rtpengine (Debian ``rtpengine-daemon``, userspace forwarding: ``--table=-1``, one worker
thread, driven over its NG control protocol) relays the same calls from the same generator in the
same run. Each row gives the relay's CPU and the generator's, so neither is mistaken for the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..media.protocol import endpoint_update
from ..media.worker import MediaPool
from .rtpgen import LATE_MS, Generator, GeneratorUnavailable, Result

MAX_LOST_OR_LATE = 0.001


def _cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Row:
    relay: str
    result: Result
    relay_cpu: float  # share of one core over the run
    generator_cpu: float

    @property
    def passed(self) -> bool:
        return self.result.lost_or_late_ratio < MAX_LOST_OR_LATE

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"relay": self.relay, "calls": r.calls, "seconds": r.seconds,
                "offered_pps": round(r.sent / r.seconds), "delivered_pps": round(r.received / r.seconds),
                "loss": round(r.loss_ratio, 6), "late_50ms": round(r.late_ratio, 6),
                "lost_or_late": round(r.lost_or_late_ratio, 6), "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                "p999_ms": r.p999_ms, "max_ms": r.max_ms, "relay_cpu": round(self.relay_cpu, 3),
                "generator_cpu": round(self.generator_cpu, 3), "passed": self.passed}


# -- Centralino's media worker ------------------------------------------------------------------
async def run_centralino(calls: int, duration: float, record: Path | None = None) -> tuple[Row, dict[str, Any]]:
    pool = MediaPool("127.0.0.1", (40000, 40000 + 4 * calls + 100), 1, lambda e: None)
    await pool.start()
    gen = Generator()
    try:
        w = pool.pick()
        pairs = []
        for i in range(calls):
            pair = await w.pair_create(f"bench{i}")  # two endpoints, bridged
            assert pair is not None
            pairs.append(pair)
        client = await asyncio.get_running_loop().run_in_executor(None, gen.start, calls)
        for i, (a, b) in enumerate(pairs):  # each side's SDP: its own generator socket
            await w.update(endpoint_update(a.endpoint, ip="127.0.0.1", port=client[2 * i]))
            await w.update(endpoint_update(b.endpoint, ip="127.0.0.1", port=client[2 * i + 1]))
        if record is not None:  # every call recorded, dual-channel, by the same worker
            for i, (a, b) in enumerate(pairs):
                await w.record_start(a.endpoint, b.endpoint, path=str(record / f"call{i}.wav"), recording=f"r{i}")
        targets = [port for a, b in pairs for port in (a.port, b.port)]
        pid = w.proc.pid  # type: ignore[attr-defined]
        cpu0, t0 = _cpu(pid), time.monotonic()
        result = await asyncio.get_running_loop().run_in_executor(None, gen.go, duration, targets)
        wall = time.monotonic() - t0
        cpu = (_cpu(pid) - cpu0) / wall
        stats = await w.stats()
        extra: dict[str, Any] = {"worker_lost_in": stats["lost"]}
        if record is not None:
            seconds = [(await w.record_stop(f"r{i}"))["seconds"] for i in range(len(pairs))]
            # real time: each file holds as many seconds as the wall clock ran (the tick kept up)
            extra |= {"recordings": len(seconds), "recorded_s_min": min(seconds), "wall_s": round(wall, 2),
                      "tick_ms_avg": stats["tick_ms_avg"]}
        return Row("centralino", result, cpu, result.generator_cpu_s / wall), extra
    finally:
        gen.close()
        await pool.close()


# -- rtpengine ----------------------------------------------------------------------------------
def bencode(value: Any) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    def item(i: int) -> tuple[Any, int]:
        c = data[i:i + 1]
        if c == b"i":
            end = data.index(b"e", i)
            return int(data[i + 1:end]), end + 1
        if c in (b"l", b"d"):
            i += 1
            out: list[Any] = []
            while data[i:i + 1] != b"e":
                v, i = item(i)
                out.append(v)
            return (out if c == b"l" else dict(zip(out[::2], out[1::2], strict=True))), i + 1
        colon = data.index(b":", i)
        n = int(data[i:colon])
        return data[colon + 1:colon + 1 + n].decode("utf-8", "replace"), colon + 1 + n

    value, _ = item(0)
    return value


def _sdp(port: int) -> str:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n")


def _media_port(sdp: str) -> int:
    m = re.search(r"^m=audio (\d+)", sdp, re.M)
    if not m:
        raise RuntimeError(f"rtpengine gave no audio port: {sdp[:200]!r}")
    return int(m.group(1))


class Rtpengine:
    """A userspace rtpengine on loopback, one worker thread (one core's worth, as one of our media
    workers), and a client for its NG protocol."""

    def __init__(self, work: Path, threads: int = 1) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.ng = s.getsockname()
        self.proc = subprocess.Popen(
            ["rtpengine", "--foreground", "--log-stderr", "--table=-1", "--interface=127.0.0.1",
             f"--listen-ng={self.ng[0]}:{self.ng[1]}", "--port-min=30000", "--port-max=39999",
             f"--num-threads={threads}", "--log-level=4", "--delete-delay=0"],
            stdout=(work / "rtpengine.log").open("w"), stderr=subprocess.STDOUT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)
        self._cookie = 0
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command({"command": "ping"}).get("result") == "pong":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"rtpengine did not start: {(work / 'rtpengine.log').read_text()[-400:]}")
            time.sleep(0.2)

    def command(self, body: dict[str, Any]) -> dict[str, Any]:
        self._cookie += 1
        cookie = str(self._cookie).encode()
        self.sock.sendto(cookie + b" " + bencode(body), self.ng)
        while True:
            data, _ = self.sock.recvfrom(65536)
            got, _, rest = data.partition(b" ")
            if got == cookie:
                reply = bdecode(rest)
                if reply.get("result") not in ("ok", "pong"):
                    raise RuntimeError(f"rtpengine: {reply}")
                return reply

    def call(self, i: int, port_a: int, port_b: int) -> tuple[int, int]:
        """Set up call i between the generator's ports; returns where A and B send."""
        ids = {"call-id": f"bench{i}", "from-tag": f"a{i}"}
        offer = self.command({"command": "offer", **ids, "sdp": _sdp(port_a), "replace": ["origin"]})
        answer = self.command({"command": "answer", **ids, "to-tag": f"b{i}", "sdp": _sdp(port_b),
                               "replace": ["origin"]})
        return _media_port(answer["sdp"]), _media_port(offer["sdp"])

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_rtpengine(calls: int, duration: float) -> Row:
    with tempfile.TemporaryDirectory(prefix="centralino-rtpengine-") as tmp:
        engine = Rtpengine(Path(tmp))
        gen = Generator()
        try:
            client = gen.start(calls)
            targets: list[int] = []
            for i in range(calls):
                to_a, to_b = engine.call(i, client[2 * i], client[2 * i + 1])
                targets += [to_a, to_b]
            cpu0, t0 = _cpu(engine.proc.pid), time.monotonic()
            result = gen.go(duration, targets)
            wall = time.monotonic() - t0
            return Row("rtpengine", result, (_cpu(engine.proc.pid) - cpu0) / wall, result.generator_cpu_s / wall)
        finally:
            gen.close()
            engine.close()


# -- report -------------------------------------------------------------------------------------
HEADER = ("| relay | calls | offered pkt/s | lost | late > 50 ms | lost or late | added latency p50 / p99 / max ms "
          "| relay CPU | generator CPU | pass |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|:--:|")


def row_md(row: Row) -> str:
    r = row.result
    return (f"| {row.relay} | {r.calls} | {round(r.sent / r.seconds)} | {r.loss_ratio * 100:.3f}% | "
            f"{r.late_ratio * 100:.3f}% | {r.lost_or_late_ratio * 100:.3f}% | "
            f"{r.p50_ms:.2f} / {r.p99_ms:.2f} / {r.max_ms:.1f} | {row.relay_cpu * 100:.0f}% | "
            f"{row.generator_cpu * 100:.0f}% | {'yes' if row.passed else 'no'} |")


def capacity(rows: list[Row], relay: str) -> int:
    """The largest call count that passed, below the first that failed (a later pass after a
    failure is luck, not capacity)."""
    best = 0
    for row in sorted((r for r in rows if r.relay == relay), key=lambda r: r.result.calls):
        if not row.passed:
            break
        best = row.result.calls
    return best


def summary(rows: list[Row]) -> str:
    relays = list(dict.fromkeys(r.relay for r in rows))
    caps = {name: capacity(rows, name) for name in relays}
    lines = [f"Capacity: the most calls with < {MAX_LOST_OR_LATE * 100:g} % of packets lost or later than "
             f"{LATE_MS:g} ms:", "", "| relay | calls | vs rtpengine |", "|---|---:|---:|"]
    ref = caps.get("rtpengine")
    for name in relays:
        ratio = f"{caps[name] / ref:.2f}x" if ref else "-"
        lines.append(f"| {name} | {caps[name]} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="centralino bench relay")
    p.add_argument("--streams", type=int, nargs="+", default=[100, 250, 500])
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--record", action="store_true", help="also record every call (dual-channel WAV)")
    p.add_argument("--peer", action="append", default=[], choices=["rtpengine"],
                   help="also relay the same calls through this peer in the same run")
    args = p.parse_args(argv)
    try:
        from .rtpgen import build

        build()
    except GeneratorUnavailable as exc:
        print(f"centralino bench relay: {exc}", file=sys.stderr)
        return 2
    if "rtpengine" in args.peer and shutil.which("rtpengine") is None:
        print("centralino bench relay: rtpengine is not installed: apt-get install rtpengine-daemon",
              file=sys.stderr)
        return 2
    rows: list[Row] = []
    extras: list[dict[str, Any]] = []
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="centralino-rec-") as tmp:
        for n in args.streams:
            row, extra = asyncio.run(run_centralino(n, args.duration, Path(tmp) if args.record else None))
            rows.append(row)
            extras.append(extra)
            print(row_md(row), flush=True)
            if "rtpengine" in args.peer:
                rows.append(peer_row := run_rtpengine(n, args.duration))
                print(row_md(peer_row), flush=True)
    if args.record:
        print("\n| calls | recorded s (min) / wall s | tick ms |\n|---:|---:|---:|")
        for n, extra in zip(args.streams, extras, strict=True):
            print(f"| {n} | {extra['recorded_s_min']} / {extra['wall_s']} | {extra['tick_ms_avg']} |")
    print()
    print(summary(rows))
    print(json.dumps([r.as_dict() for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
