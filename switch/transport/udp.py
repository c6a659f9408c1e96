"""The UDP listener, read by hand rather than through an asyncio DatagramTransport, for overload
control: each time the socket is readable it is read dry, every datagram with the time the
kernel received it (SO_TIMESTAMPNS), and the batch goes to the SIP core in priority order —
responses and in-dialog requests (which finish calls already under way) before INVITEs opening
new calls. The core turns away a new call whose INVITE waited too long (503), so a flood beyond
capacity costs a cheap refusal instead of a queue in which every call times out.

New INVITEs are handed on at most ``OPENING_PER_TURN`` per loop turn (and for at most
``OPENING_BUDGET`` seconds): the rest wait in order, with their receive times, for the next turn.
Each starts a handler task, and tasks run in the order they were made, so without the cap a flood
of INVITEs filled the loop's queue ahead of everything that needs a few turns to finish — a
REGISTER waiting for its database commit, timers, the media worker's replies: a phone
re-registering during 2,000 INVITEs/s from a trusted address took a second to be answered.
The backlog is bounded (``MAX_OPENING_BACKLOG``): past it the oldest are dropped and counted, as
a full receive buffer would, since by then their senders have retransmitted."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import struct
import time
from collections.abc import Callable

from ..sip.parser import is_new_invite
from .base import Address, Flow

log = logging.getLogger("centralino.transport")

SOCKET_BUFFER = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
MAX_BATCH = 512  # datagrams read per readiness before the batch is handled (the rest wait one round)
OPENING_PER_TURN = 32  # new INVITEs handed to the core per loop turn
OPENING_BUDGET = 0.01  # and at most this long
MAX_OPENING_BACKLOG = 4096  # new INVITEs waiting for a turn
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the cmsg type has the same number
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)

Deliver = Callable[[bytes, Flow, float], None]


class UDPListener:
    def __init__(self, sock: socket.socket, deliver: Deliver) -> None:
        self.sock = sock
        self.deliver = deliver
        self.local: Address = sock.getsockname()[:2]
        self.timestamps = _enable(sock, SO_TIMESTAMPNS)
        self.send_drops = 0
        self.backlog_drops = 0  # new INVITEs dropped unread past MAX_OPENING_BACKLOG
        self._opening: collections.deque[tuple[bytes, Flow, float]] = collections.deque()
        self._serving = False  # a turn to serve the backlog is scheduled
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def bind(cls, host: str, port: int, deliver: Deliver) -> UDPListener:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                _enable(sock, opt, SOCKET_BUFFER)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return cls(sock, deliver)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        self._opening.clear()
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()

    def sendto(self, data: bytes, remote: Address) -> None:
        try:
            self.sock.sendto(data, remote)
        except BlockingIOError:
            self.send_drops += 1  # a full send buffer drops like the network would; retransmissions cover it
        except OSError as exc:
            log.debug("udp send to %s failed: %s", remote, exc)

    def _on_readable(self) -> None:
        recvmsg, local = self.sock.recvmsg, self.local
        urgent: list[tuple[bytes, Flow, float]] = []
        opening: list[tuple[bytes, Flow, float]] = []
        now = time.time()
        for _ in range(MAX_BATCH):
            try:
                data, ancillary, _flags, addr = recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("udp receive: %s", exc)
                break
            received = now
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    received = sec + nsec * 1e-9
            item = (data, Flow("udp", (addr[0], addr[1]), local), received)
            (opening if is_new_invite(data) else urgent).append(item)
        deliver = self.deliver
        for data, flow, received in urgent:
            deliver(data, flow, received)
        if opening:
            backlog = self._opening
            backlog.extend(opening)
            while len(backlog) > MAX_OPENING_BACKLOG:
                backlog.popleft()
                self.backlog_drops += 1
            if not self._serving:
                self._serve_opening()

    def _serve_opening(self) -> None:
        """A turn's share of new INVITEs in arrival order, then the loop's other work."""
        self._serving = False
        backlog, deliver = self._opening, self.deliver
        deadline = time.perf_counter() + OPENING_BUDGET
        for _ in range(OPENING_PER_TURN):
            if not backlog:
                break
            data, flow, received = backlog.popleft()
            deliver(data, flow, received)
            if time.perf_counter() >= deadline:
                break
        if backlog and self._loop is not None:
            self._serving = True
            self._loop.call_soon(self._serve_opening)


def _enable(sock: socket.socket, option: int, value: int = 1) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, value)
        return True
    except OSError:
        return False
