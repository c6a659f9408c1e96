"""The media engine of a worker: RTP/RTCP endpoints on UDP port pairs, bridged in pairs.

Symmetric RTP: an endpoint latches on to the address of the first packet it receives and from
then on drops (and counts) packets from anywhere else. Each packet is relayed out of the bridged
endpoint's own socket, to that side's learned address (or the one its SDP declared).
An RTP inactivity timer per endpoint is re-armed lazily on expiry, never polled.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .codecs.g711 import ALAW_TO_PCM, ULAW_TO_PCM
from .dtmf import DtmfReceiver
from .dtmf_inband import InbandDetector
from .jitter import FrameKind, JitterBuffer
from .rtp import ReceiveStats, peek_header

TICK = 0.02  # the worker's 20 ms tick for everything it listens to
SILENT_FRAME = bytes([0xD5]) * 160  # A-law zero

log = logging.getLogger("centralino.media")

Address = tuple[str, int]
EventSink = Callable[[dict[str, Any]], None]


class _Port(asyncio.DatagramProtocol):
    __slots__ = ("endpoint", "is_rtcp", "transport")

    def __init__(self, endpoint: Endpoint, is_rtcp: bool) -> None:
        self.endpoint = endpoint
        self.is_rtcp = is_rtcp
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        if self.is_rtcp:
            self.endpoint.on_rtcp(data, addr)
        else:
            self.endpoint.on_rtp(data, addr)


class Endpoint:
    def __init__(self, engine: MediaEngine, ident: str, ip: str, port: int, call: str) -> None:
        self.engine = engine
        self.id = ident
        self.call = call
        self.ip = ip
        self.port = port
        self.rtp: _Port | None = None
        self.rtcp: _Port | None = None
        self.peer: Endpoint | None = None
        self.expected: Address | None = None  # from the SDP
        self.expected_rtcp: Address | None = None
        self.learned: Address | None = None
        self.learned_rtcp: Address | None = None
        self.stats = ReceiveStats()
        self.dtmf_pt: int | None = None  # the telephone-event payload type of this side's SDP
        self.dtmf = DtmfReceiver()
        self.jitter: JitterBuffer | None = None  # set while the worker listens to this side
        self.rx = self.tx = self.rx_rtcp = self.tx_rtcp = 0
        self.dropped_source = 0
        self.last_rx = time.monotonic()
        self.timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.created = time.monotonic()

    # -- hot path --------------------------------------------------------------------------
    def on_rtp(self, data: bytes, addr: tuple) -> None:
        learned = self.learned
        if learned is None:
            self.learned = learned = (addr[0], addr[1])
            log.debug("endpoint %s learned %s:%d", self.id, addr[0], addr[1])
        elif addr[0] != learned[0] or addr[1] != learned[1]:
            self.dropped_source += 1
            return
        self.rx += 1
        now = time.monotonic()
        self.last_rx = now
        head = peek_header(data)
        if head is not None:
            self.stats.update(head[1], head[2], now)
            if self.jitter is not None and head[0] in (0, 8) and len(data) == 172:
                # what the worker listens to (in-band DTMF): payload type in the first byte
                self.jitter.put(head[1], head[2], bytes((head[0],)) + data[12:], now)
            if head[0] == self.dtmf_pt:
                digit = self.dtmf.feed(head[2], data[12 + 4 * (data[0] & 0x0F):])
                if digit is not None:
                    self.engine.emit({"event": "dtmf", "endpoint": self.id, "call": self.call,
                                      "digit": digit[0], "duration_ms": digit[1]})
        peer = self.peer
        if peer is not None and peer.rtp is not None and peer.rtp.transport is not None:
            dest = peer.learned or peer.expected
            if dest is not None:
                peer.rtp.transport.sendto(data, dest)
                peer.tx += 1

    def on_rtcp(self, data: bytes, addr: tuple) -> None:
        learned = self.learned_rtcp
        if learned is None:
            # RTCP must come from the same host as the learned RTP (or the SDP's), any port
            host = self.learned[0] if self.learned else (self.expected[0] if self.expected else addr[0])
            if addr[0] != host:
                self.dropped_source += 1
                return
            self.learned_rtcp = learned = (addr[0], addr[1])
        elif addr[0] != learned[0] or addr[1] != learned[1]:
            self.dropped_source += 1
            return
        self.rx_rtcp += 1
        peer = self.peer
        if peer is not None and peer.rtcp is not None and peer.rtcp.transport is not None:
            dest = peer.learned_rtcp or peer.expected_rtcp
            if dest is not None:
                peer.rtcp.transport.sendto(data, dest)
                peer.tx_rtcp += 1

    # -- inactivity ------------------------------------------------------------------------
    def arm_timeout(self, seconds: float) -> None:
        self.timeout = seconds
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds > 0:
            self.last_rx = max(self.last_rx, time.monotonic())
            self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        remaining = self.last_rx + self.timeout - time.monotonic()
        self._timer = loop.call_at(loop.time() + max(0.05, remaining), self._check)

    def _check(self) -> None:
        self._timer = None
        if time.monotonic() - self.last_rx >= self.timeout:
            self.engine.emit({"event": "rtp.timeout", "endpoint": self.id, "call": self.call,
                              "idle": round(time.monotonic() - self.last_rx, 1)})
        else:
            self._schedule()

    def snapshot(self) -> dict[str, Any]:
        return {
            "endpoint": self.id, "call": self.call, "local": [self.ip, self.port],
            "learned": list(self.learned) if self.learned else None,
            "rx": self.rx, "tx": self.tx, "rx_rtcp": self.rx_rtcp, "tx_rtcp": self.tx_rtcp,
            "dropped_source": self.dropped_source, "expected": self.stats.expected,
            "lost": self.stats.lost, "jitter_ms": round(self.stats.jitter_ms, 2),
        }

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for port in (self.rtp, self.rtcp):
            if port is not None and port.transport is not None:
                port.transport.close()


class MediaEngine:
    """Everything one worker does; commands in, replies and events out."""

    def __init__(self, bind_ip: str, port_low: int, port_high: int, emit: EventSink | None = None) -> None:
        self.bind_ip = bind_ip
        self.port_low = port_low + (port_low % 2)
        self.port_high = port_high
        self.endpoints: dict[str, Endpoint] = {}
        self._ids = itertools.count(1)
        self._next_port = self.port_low
        self.emit: EventSink = emit or (lambda e: None)
        self._listening: list[Endpoint] = []
        self._detector = InbandDetector(0)
        self._tick: asyncio.TimerHandle | None = None
        self.totals = {"created": 0, "dropped_source": 0, "rx": 0, "tx": 0, "lost": 0}

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("cmd")
        try:
            if op == "endpoint.create":
                ep = await self._create(str(cmd.get("call", "")))
                return {"ok": True, "endpoint": ep.id, "ip": ep.ip, "port": ep.port}
            if op == "endpoint.update":
                ep = self.endpoints[cmd["endpoint"]]
                if cmd.get("ip") and cmd.get("port"):
                    new = (cmd["ip"], int(cmd["port"]))
                    if ep.expected is not None and new != ep.expected:
                        # the far end moved (re-INVITE): learn its new source again
                        ep.learned = ep.learned_rtcp = None
                    ep.expected = new
                    ep.expected_rtcp = (cmd["ip"], int(cmd.get("rtcp_port") or int(cmd["port"]) + 1))
                if cmd.get("dtmf_pt") is not None:
                    ep.dtmf_pt = int(cmd["dtmf_pt"])
                return {"ok": True}
            if op == "bridge":
                a, b = self.endpoints[cmd["a"]], self.endpoints[cmd["b"]]
                a.peer, b.peer = b, a
                return {"ok": True}
            if op == "timeout":
                for ident in cmd["endpoints"]:
                    self.endpoints[ident].arm_timeout(float(cmd["seconds"]))
                return {"ok": True}
            if op == "detect":
                ep = self.endpoints[cmd["endpoint"]]
                if cmd.get("inband_dtmf", True):
                    self._listen(ep)
                else:
                    self._unlisten(ep)
                return {"ok": True}
            if op == "endpoint.stats":
                return {"ok": True, **self.endpoints[cmd["endpoint"]].snapshot()}
            if op == "endpoint.destroy":
                ep = self.endpoints.pop(cmd["endpoint"], None)
                if ep is None:
                    return {"ok": False, "error": "no such endpoint"}
                snap = ep.snapshot()
                self._retire(ep)
                return {"ok": True, **snap}
            if op == "stats":
                live = list(self.endpoints.values())
                return {"ok": True, "endpoints": len(live),
                        "rx": self.totals["rx"] + sum(e.rx for e in live),
                        "tx": self.totals["tx"] + sum(e.tx for e in live),
                        "lost": self.totals["lost"] + sum(e.stats.lost for e in live),
                        "dropped_source": self.totals["dropped_source"] + sum(e.dropped_source for e in live),
                        "created": self.totals["created"]}
            if op == "ping":
                return {"ok": True}
            return {"ok": False, "error": f"unknown command {op!r}"}
        except KeyError as exc:
            return {"ok": False, "error": f"unknown {exc.args[0]!r}"}
        except OSError as exc:
            return {"ok": False, "error": str(exc)}

    # -- the 20 ms tick: decode what we listen to, detect in-band DTMF, all channels at once -------
    def _listen(self, ep: Endpoint) -> None:
        if ep.jitter is None:
            ep.jitter = JitterBuffer()
            self._listening.append(ep)
            self._detector.resize(len(self._listening))
        if self._tick is None:
            loop = asyncio.get_running_loop()
            self._tick = loop.call_at(loop.time() + TICK, self._on_tick, loop.time() + TICK)

    def _unlisten(self, ep: Endpoint) -> None:
        if ep.jitter is not None:
            ep.jitter = None
            self._listening.remove(ep)
            self._detector.resize(len(self._listening))

    def _on_tick(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        if not self._listening:
            self._tick = None
            return
        now = time.monotonic()
        rows = []
        for ep in self._listening:
            frame = ep.jitter.get(now) if ep.jitter is not None else None
            rows.append(frame.payload if frame is not None and frame.kind is FrameKind.AUDIO else b"\x08" + SILENT_FRAME)
        raw = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 161)
        ulaw = raw[:, 0] == 0
        pcm = np.where(ulaw[:, None], ULAW_TO_PCM[raw[:, 1:]], ALAW_TO_PCM[raw[:, 1:]])
        for channel, digit in self._detector.feed(pcm):
            ep = self._listening[channel]
            self.emit({"event": "dtmf", "endpoint": ep.id, "call": ep.call, "digit": digit,
                       "duration_ms": 0, "method": "inband"})
        nxt = due + TICK  # a steady cadence, not drifting with the callback's own delay
        self._tick = loop.call_at(max(nxt, loop.time()), self._on_tick, nxt)

    def _retire(self, ep: Endpoint) -> None:
        self._unlisten(ep)
        for key, value in (("rx", ep.rx), ("tx", ep.tx), ("lost", ep.stats.lost), ("dropped_source", ep.dropped_source)):
            self.totals[key] += value
        if ep.peer is not None and ep.peer.peer is ep:
            ep.peer.peer = None
        ep.close()

    async def _create(self, call: str) -> Endpoint:
        loop = asyncio.get_running_loop()
        span = self.port_high - self.port_low
        for _ in range(max(1, span // 2)):
            port = self._next_port
            self._next_port += 2
            if self._next_port + 1 > self.port_high:
                self._next_port = self.port_low
            if any(e.port == port for e in self.endpoints.values()):
                continue
            ep = Endpoint(self, f"{port}-{next(self._ids)}", self.bind_ip, port, call)
            try:
                _, rtp = await loop.create_datagram_endpoint(lambda ep=ep: _Port(ep, False), local_addr=(self.bind_ip, port))
            except OSError:
                continue
            try:
                _, rtcp = await loop.create_datagram_endpoint(lambda ep=ep: _Port(ep, True), local_addr=(self.bind_ip, port + 1))
            except OSError:
                rtp.transport.close()  # type: ignore[union-attr]
                continue
            ep.rtp, ep.rtcp = rtp, rtcp  # type: ignore[assignment]
            self.endpoints[ep.id] = ep
            self.totals["created"] += 1
            return ep
        raise OSError("no free RTP port in the worker's range")

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for ep in list(self.endpoints.values()):
            ep.close()
        self.endpoints.clear()
