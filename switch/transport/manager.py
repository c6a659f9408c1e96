"""Thin asyncio transports (uvicorn style): protocol callbacks hand bytes to the SIP core and
write what it returns. UDP, TCP and TLS listeners; outgoing stream connections on demand;
idle stream connections reaped without polling (one lazily re-armed timer per connection)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from typing import Protocol

from ...config.schema import ListenAddress, Plan
from ..security import SecurityGuard
from ..sip.errors import RemoteProtocolError
from ..sip.message import Message
from ..sip.parser import StreamParser
from .base import Address, Flow
from .udp import UDPListener

log = logging.getLogger("centralino.transport")
trace_log = logging.getLogger("centralino.sip.trace")

CLOSE_GRACE = 1.0  # seconds a dying connection stays open for answers already under way


class Receiver(Protocol):
    def receive_datagram(self, data: bytes, flow: Flow, received_at: float) -> None: ...
    def receive_stream_item(self, item: Message | RemoteProtocolError, flow: Flow) -> None: ...


class _StreamConnection(asyncio.Protocol):
    def __init__(self, manager: TransportManager, transport_name: str, inbound: bool = False) -> None:
        self.manager = manager
        self.name = transport_name
        self.inbound = inbound  # accepted by our listener (a client may be hostile)
        self._deadline: asyncio.TimerHandle | None = None  # a whole message must arrive before it
        self.parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.last_activity = time.monotonic()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if self.inbound and not self.manager.admit_connection(peer[0]):
            transport.abort()  # type: ignore[attr-defined]  # banned, or over a cap: no descriptor kept
            return
        conn_id = next(self.manager._conn_ids)
        self.flow = Flow(self.name, (peer[0], peer[1]), (local[0], local[1]), conn_id)
        self.manager._connections[conn_id] = self
        self.manager._by_remote[(self.name, self.flow.remote)] = self
        self.manager._per_source[peer[0]] = self.manager._per_source.get(peer[0], 0) + 1
        self._arm_idle()
        if self.inbound:
            self._arm_deadline()
        if not self.connected.done():
            self.connected.set_result(None)

    def _arm_idle(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = self.last_activity + self.manager.idle_timeout
        self._idle_handle = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), self._check_idle)

    def _check_idle(self) -> None:
        if time.monotonic() - self.last_activity >= self.manager.idle_timeout:
            log.debug("closing idle connection %s", self.flow)
            self.close()
        else:
            self._arm_idle()

    def _arm_deadline(self) -> None:
        """Slowloris: a client that opened a connection (or began a message) must finish a
        message within ``message_timeout``; idle connections between messages are the idle
        timer's business (phones keep theirs open for minutes)."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(self.manager.message_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        log.info("closing %s: no whole SIP message within %.0f s", self.flow, self.manager.message_timeout)
        self.manager.slow_closed += 1
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        assert self.flow is not None
        items = self.parser.feed(data)
        if self.inbound:
            if items and self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            if self.parser.buffered and data.strip():
                self._arm_deadline()  # a message has begun: it must end in time
        for item in items:
            if self.manager.trace and isinstance(item, Message):
                self.manager.trace_message("in", item.serialize(), self.flow)
            self.manager.receiver.receive_stream_item(item, self.flow)
        if self.parser.broken:
            # Framing is lost: read no more, let answers already under way go out, then close.
            assert self.transport is not None
            self.transport.pause_reading()
            self._close_soon()

    def eof_received(self) -> bool:
        item = self.parser.eof()
        if item is not None and self.flow is not None:
            self.manager.receiver.receive_stream_item(item, self.flow)
        self._close_soon()
        return True  # half-closed: we may still answer what the peer sent before its FIN

    def _close_soon(self) -> None:
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self.close)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.last_activity = time.monotonic()
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.flow is not None:
            ip = self.flow.remote[0]
            left = self.manager._per_source.get(ip, 1) - 1
            if left > 0:
                self.manager._per_source[ip] = left
            else:
                self.manager._per_source.pop(ip, None)
            self.manager._connections.pop(self.flow.conn_id, None)
            key = (self.name, self.flow.remote)
            if self.manager._by_remote.get(key) is self:
                del self.manager._by_remote[key]
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed"))


class TransportManager:
    def __init__(
        self,
        receiver: Receiver,
        *,
        idle_timeout: float = 600.0,
        trace: bool = False,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        security: SecurityGuard | None = None,
        max_connections: int = 2000,
        max_per_source: int = 50,
        message_timeout: float = 10.0,
    ) -> None:
        self.receiver = receiver
        self.security = security
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        self.message_timeout = message_timeout
        self._per_source: dict[str, int] = {}
        self.refused_connections = 0
        self.slow_closed = 0
        self.idle_timeout = idle_timeout
        self.trace = trace
        self.ssl_server = ssl_server
        self.ssl_client = ssl_client
        self._udp: list[UDPListener] = []
        self._servers: list[tuple[str, asyncio.Server]] = []
        self._connections: dict[int, _StreamConnection] = {}
        self._by_remote: dict[tuple[str, Address], _StreamConnection] = {}
        self._conn_ids = itertools.count(1)
        self._connecting: dict[tuple[str, Address], asyncio.Task[None]] = {}
        self.listening: list[tuple[str, Address]] = []
        self._source_cache: dict[str, str] = {}

    async def start(self, addresses: list[ListenAddress]) -> None:
        loop = asyncio.get_running_loop()
        for addr in addresses:
            if addr.transport == "udp":
                listener = UDPListener.bind(addr.host, addr.port, self._deliver_datagram)
                listener.start()
                self._udp.append(listener)
                self.listening.append(("udp", listener.local))
            else:
                if addr.transport == "tls" and self.ssl_server is None:
                    raise ValueError("a tls listener needs server.sip.tls (cert and key)")
                name = addr.transport
                server = await loop.create_server(
                    lambda name=name: _StreamConnection(self, name, inbound=True),
                    addr.host, addr.port, reuse_address=True,
                    ssl=self.ssl_server if name == "tls" else None,
                )
                self._servers.append((name, server))
                sockname = server.sockets[0].getsockname()
                self.listening.append((name, (sockname[0], sockname[1])))
        for name, local in self.listening:
            log.info("listening on %s:%s:%d", name, local[0], local[1])

    def local_address(self, transport: str) -> Address:
        for name, local in self.listening:
            if name == transport:
                return local
        for _, local in self.listening:
            return local
        raise RuntimeError("not listening")

    def local_for(self, flow: Flow) -> Address:
        """The address of the socket a message on this flow actually leaves from."""
        if flow.transport == "udp":
            listener = self._udp_for(flow.local)
            if listener is not None:
                host, port = listener.local
                if host in ("0.0.0.0", "::"):
                    host = self._source_ip_for(flow.remote[0])
                return host, port
        else:
            conn = self._connections.get(flow.conn_id) if flow.conn_id else None
            conn = conn or self._by_remote.get((flow.transport, flow.remote))
            if conn is not None and conn.flow is not None:
                return conn.flow.local
        return self.local_address(flow.transport)

    def _source_ip_for(self, remote_ip: str) -> str:
        """Which of our addresses the kernel would send from to reach ``remote_ip`` (a wildcard
        listener must not put 0.0.0.0 in a Via or Contact). Connecting a UDP socket sends nothing."""
        cached = self._source_cache.get(remote_ip)
        if cached is None:
            family = socket.AF_INET6 if ":" in remote_ip else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                try:
                    probe.connect((remote_ip, 9))
                    cached = probe.getsockname()[0]
                except OSError:
                    cached = "127.0.0.1"
            if len(self._source_cache) > 10_000:
                self._source_cache.clear()
            self._source_cache[remote_ip] = cached
        return cached

    def plan_changed(self, plan: Plan) -> None:
        sip = plan.server.sip
        self.idle_timeout = sip.tcp_idle_timeout
        self.max_connections, self.max_per_source = sip.tcp_max_connections, sip.tcp_max_per_source
        self.message_timeout = sip.tcp_message_timeout

    def admit_connection(self, ip: str) -> bool:
        """At accept, before anything is read: banned sources, and connections beyond the total
        cap or the per-source cap (trusted sources are not capped per source), are refused."""
        sec = self.security
        why = None
        if sec is not None and sec.is_banned(ip, time.time()):
            why = "banned"
        elif len(self._connections) >= self.max_connections:
            why = f"{self.max_connections} connections open"
        elif self._per_source.get(ip, 0) >= self.max_per_source and not (sec is not None and sec.is_trusted(ip)):
            why = f"{self.max_per_source} connections from it already"
        if why is None:
            return True
        self.refused_connections += 1
        if self.refused_connections <= 10 or self.refused_connections % 1000 == 0:
            log.info("refused a connection from %s: %s (%d refused so far)", ip, why, self.refused_connections)
        return False

    def has_transport(self, transport: str) -> bool:
        return any(name == transport for name, _ in self.listening)

    def send(self, data: bytes, flow: Flow) -> None:
        if self.trace:
            self.trace_message("out", data, Flow(flow.transport, flow.remote, self.local_for(flow), flow.conn_id))
        if flow.transport == "udp":
            listener = self._udp_for(flow.local)
            if listener is None:
                log.warning("no UDP socket to send to %s", flow)
                return
            listener.sendto(data, flow.remote)
            return
        conn = self._connections.get(flow.conn_id) if flow.conn_id else None
        if conn is None:
            conn = self._by_remote.get((flow.transport, flow.remote))
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.write(data)
            return
        self._connect_and_send(data, flow)

    def _deliver_datagram(self, data: bytes, flow: Flow, received_at: float) -> None:
        if self.trace:
            self.trace_message("in", data, flow)
        self.receiver.receive_datagram(data, flow, received_at)

    def _udp_for(self, local: Address) -> UDPListener | None:
        for listener in self._udp:
            if listener.local == local:
                return listener
        return self._udp[0] if self._udp else None

    def _connect_and_send(self, data: bytes, flow: Flow) -> None:
        key = (flow.transport, flow.remote)

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _StreamConnection(self, flow.transport), flow.remote[0], flow.remote[1],
                        ssl=self.ssl_client if flow.transport == "tls" else None,
                    ),
                    timeout=5.0,
                )
                conn.write(data)
            except (TimeoutError, OSError) as exc:
                log.info("cannot connect to %s: %s", flow, exc)
            finally:
                self._connecting.pop(key, None)

        previous = self._connecting.get(key)
        if previous is not None:
            async def after() -> None:
                await asyncio.wait([previous])
                self.send(data, flow)
            asyncio.get_running_loop().create_task(after())
            return
        self._connecting[key] = asyncio.get_running_loop().create_task(connect())

    def close_flow(self, flow: Flow) -> None:
        conn = self._connections.get(flow.conn_id)
        if conn is not None:
            conn.close()

    def stop_listening(self) -> None:
        for _, server in self._servers:
            server.close()

    async def close(self) -> None:
        self.stop_listening()
        for conn in list(self._connections.values()):
            conn.close()
        for listener in self._udp:
            listener.close()
        self._udp.clear()
        for task in list(self._connecting.values()):
            task.cancel()
        for _, server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    @property
    def udp_send_drops(self) -> int:
        """Datagrams dropped because a UDP socket's send buffer was full."""
        return sum(listener.send_drops for listener in self._udp)

    @property
    def udp_backlog_drops(self) -> int:
        """New INVITEs dropped unread because the listener's backlog of them was full."""
        return sum(listener.backlog_drops for listener in self._udp)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def trace_message(self, direction: str, data: bytes, flow: Flow) -> None:
        arrow = "<<<" if direction == "in" else ">>>"
        when = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        local = f"{flow.local[0]}:{flow.local[1]}"
        remote = f"{flow.remote[0]}:{flow.remote[1]}"
        head = f"{when} {arrow} {flow.transport.upper()} {local} {'<-' if direction == 'in' else '->'} {remote} ({len(data)} bytes)"
        trace_log.info("%s\n%s", head, data.decode("utf-8", "replace").rstrip("\r\n"))


def make_client_ssl_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    return ctx


def make_server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


