"""RTP/RTCP endpoints on UDP port pairs and the relay between bridged pairs (the hot path).

Symmetric RTP: an endpoint latches on to the address of the first acceptable packet and from
then on drops (and counts) packets from anywhere else. Acceptable is the address the side's SDP
declared, or another port of the host the control process names (``latch_ip``: the SDP's host,
or the signalling source of a phone behind NAT whose SDP address is private) — never an address
of the party the side had before a re-point (a transferor still sending until it has processed
its BYE). Each packet is relayed out of the bridged endpoint's own socket, to that side's
learned address (or the one its SDP declared). An RTP inactivity timer per endpoint is re-armed
lazily on expiry, never polled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .dtmf import DtmfReceiver
from .jitter import JitterBuffer
from .rtp import ReceiveStats, read_header

if TYPE_CHECKING:
    from .amd import AnsweringMachineDetector, BeepDetector
    from .codecs import Decoder, Encoder
    from .player import Playback

_RTP_HEADER = struct.Struct("!BBHII")

log = logging.getLogger("centralino.media")

Address = tuple[str, int]
EventSink = Callable[[dict[str, Any]], None]


class UdpPort:
    """One UDP socket of an endpoint (RTP or RTCP), read by hand from the event loop: opening
    one is a few synchronous calls, so a worker busy relaying answers ``pair.create`` at once
    instead of after the loop iterations an asyncio transport needs to come up."""

    __slots__ = ("_loop", "endpoint", "is_rtcp", "sock")

    def __init__(self, endpoint: Endpoint, is_rtcp: bool, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self.is_rtcp = is_rtcp
        self.sock = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        # One datagram per readiness: a phone sends one packet per 20 ms, so reading on until
        # EAGAIN cost a second, failing system call (and an exception) for almost every packet.
        # The loop polls level-triggered: a socket with more queued is reported again on its
        # next turn, after the other sockets have had theirs.
        try:
            data, addr = self.sock.recvfrom(2048)
        except OSError:  # EAGAIN (a spurious wake-up), or the port is closing
            return
        if self.is_rtcp:
            self.endpoint.on_rtcp(data, addr)
        else:
            self.endpoint.on_rtp(data, addr)

    def sendto(self, data: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass  # a full buffer or a closed port drops the packet, as the network would

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
            self.sock.close()


class EndpointSink(Protocol):
    """What an endpoint reports to: digits it decoded from telephone-events, and events."""

    def digit(self, ep: Endpoint, digit: str, duration_ms: int, method: str) -> None: ...

    def emit(self, event: dict[str, Any]) -> None: ...


class Endpoint:
    @classmethod
    def open(cls, sink: EndpointSink, ident: str, ip: str, port: int, call: str,
             rtp_sock: socket.socket, rtcp_sock: socket.socket) -> Endpoint:
        """An endpoint on an already bound RTP/RTCP socket pair, read from the running loop."""
        ep = cls(sink, ident, ip, port, call)
        ep.rtp, ep.rtcp = UdpPort(ep, False, rtp_sock), UdpPort(ep, True, rtcp_sock)
        return ep

    def __init__(self, sink: EndpointSink, ident: str, ip: str, port: int, call: str) -> None:
        self.sink = sink  # who hears its keys and events (the engine)
        self.id = ident
        self.call = call
        self.ip = ip
        self.port = port
        self.rtp: UdpPort | None = None
        self.rtcp: UdpPort | None = None
        self.peer: Endpoint | None = None
        self.expected: Address | None = None  # from the SDP
        self.expected_rtcp: Address | None = None
        self.learned: Address | None = None
        self.learned_rtcp: Address | None = None
        self.latch_ip: str | None = None  # a first packet from this host may latch (any port)
        self.former: set[Address] = set()  # addresses of the side's previous parties: never latched
        self.stats = ReceiveStats()
        self.dtmf_pt: int | None = None  # the telephone-event payload type we send this side
        self.dtmf_pts: dict[int, int] = {}  # telephone-event payload types we accept → clock rate
        self.clocks: dict[int, int] = {0: 8000, 8: 8000}  # payload type → RTP clock (statistics)
        self.dtmf = DtmfReceiver()
        # -- what the worker's tick does with this side (engine.py) --
        self.jitter: JitterBuffer | None = None  # set while the worker listens to this side
        self.listen_for: set[str] = set()  # why: "dtmf", "record", "mix", "transcode", "amd"
        self.codec = "PCMU"  # what this side's SDP chose (we send and expect it)
        self.negotiated = False  # its SDP has set the codec (a callee still ringing has none yet)
        self.pt = 0  # its payload type
        self.decodable: dict[int, str] = {0: "PCMU", 8: "PCMA"}  # payload type → codec we decode
        self.decoders: dict[str, Decoder] = {}
        self.encoder: Encoder | None = None
        self.bridged: Endpoint | None = None  # the logical partner (relayed or transcoded)
        self.playback: Playback | None = None
        self.in_rooms: set[str] = set()
        self.amd: AnsweringMachineDetector | None = None
        self.beep: BeepDetector | None = None
        self.inband = False
        self.terminated = False  # answered by the switch itself: comfort noise when idle
        self.dtmf_out: list[tuple[int, int]] = []  # telephone-events to send: (event, frames)
        self.dtmf_sending: list[Any] | None = None  # the digit being sent: [head, start ts, packets]
        self.ssrc = random.getrandbits(32)
        self.out_seq = random.getrandbits(16)
        self.out_ts = random.getrandbits(32)
        self.out_marker = True
        self.last_out: Any = None  # the last generated frame (what this side heard; recordings)
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
            if not self.may_latch(addr):
                self.dropped_source += 1
                return
            self.learned = learned = (addr[0], addr[1])
            log.debug("endpoint %s learned %s:%d", self.id, addr[0], addr[1])
        elif addr[0] != learned[0] or addr[1] != learned[1]:
            self.dropped_source += 1
            return
        self.rx += 1
        now = time.monotonic()
        self.last_rx = now
        head = read_header(data)
        if head is not None:
            pt, seq, ts, start, end = head
            self.stats.update(seq, ts, now, self.clocks.get(pt, 8000))
            if self.jitter is not None and pt in self.decodable:
                # what the worker listens to: payload type in the first byte, then the payload
                self.jitter.put(seq, ts, bytes((pt,)) + data[start:end], now)
            rate = self.dtmf_pts.get(pt)
            if rate is not None:
                digit = self.dtmf.feed(ts, data[start:end], rate)
                if digit is not None:
                    self.sink.digit(self, digit[0], digit[1], "rfc4733")
        peer = self.peer
        if peer is not None and peer.rtp is not None:
            dest = peer.learned or peer.expected
            if dest is not None:
                peer.rtp.sendto(data, dest)
                peer.tx += 1

    def may_latch(self, addr: tuple) -> bool:
        """Whether a first packet from ``addr`` is this side's party (see the module doc)."""
        source = (addr[0], addr[1])
        if self.former and source in self.former:
            return False
        expected = self.expected
        if expected is None or source == expected:
            return True
        return addr[0] == (self.latch_ip or expected[0])

    def repoint(self, expected: Address, rtcp: Address, latch_ip: str | None) -> dict[str, Any] | None:
        """The side's SDP now names another address (a transfer target, a re-INVITE): latch
        anew, but never on the party before it; returns that party's counters, which are reset
        so that each party (each CDR leg) counts only its own packets."""
        previous = None
        if self.expected is not None and expected != self.expected:
            self.former.update(a for a in (self.learned, self.expected, self.learned_rtcp) if a is not None)
            if len(self.former) > 16:  # many moves: keep the latest parties only
                self.former = set(list(self.former)[-16:])
            previous = {"rx": self.rx, "lost": self.stats.lost, "jitter_ms": round(self.stats.jitter_ms, 2),
                        "expected": self.stats.expected, "dropped_source": self.dropped_source}
            self.learned = self.learned_rtcp = None
            self.rx = 0
            self.dropped_source = 0
            self.stats = ReceiveStats()
            self.former.discard(expected)
        self.expected, self.expected_rtcp = expected, rtcp
        if latch_ip is not None:
            self.latch_ip = latch_ip
        return previous

    def on_rtcp(self, data: bytes, addr: tuple) -> None:
        learned = self.learned_rtcp
        if learned is None:
            # RTCP must come from the same host as the learned RTP (or the SDP's), any port
            host = self.learned[0] if self.learned else (self.expected[0] if self.expected else addr[0])
            if addr[0] != host or (self.former and (addr[0], addr[1]) in self.former):
                self.dropped_source += 1
                return
            self.learned_rtcp = learned = (addr[0], addr[1])
        elif addr[0] != learned[0] or addr[1] != learned[1]:
            self.dropped_source += 1
            return
        self.rx_rtcp += 1
        peer = self.peer
        if peer is not None and peer.rtcp is not None:
            dest = peer.learned_rtcp or peer.expected_rtcp
            if dest is not None:
                peer.rtcp.sendto(data, dest)
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
            self.sink.emit({"event": "rtp.timeout", "endpoint": self.id, "call": self.call,
                              "idle": round(time.monotonic() - self.last_rx, 1)})
        else:
            self._schedule()

    # -- what the tick generates -------------------------------------------------------------
    def send_payload(self, pt: int, payload: bytes, timestamp_step: int, *, marker: bool = False,
                     advance: bool = True, timestamp: int | None = None) -> None:
        if self.rtp is None:
            return
        dest = self.learned or self.expected
        if dest is None:
            return
        ts = self.out_ts if timestamp is None else timestamp
        first = 0x80
        second = pt | (0x80 if (marker or self.out_marker) else 0)
        self.out_marker = False
        self.rtp.sendto(_RTP_HEADER.pack(first, second, self.out_seq, ts, self.ssrc) + payload, dest)
        self.out_seq = (self.out_seq + 1) & 0xFFFF
        if advance:
            self.out_ts = (self.out_ts + timestamp_step) & 0xFFFFFFFF
        self.tx += 1

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
            if port is not None:
                port.close()
