"""Call flows through the real SIP core and B2BUA on a fake clock: no sockets, no sleeps. The
datagrams the switch sends are captured, time moves only when the test says, so a ring timeout
or a session-timer refresh is checked at its exact moment."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from centralino.config.loader import parse_plan_text
from centralino.config.schema import SecurityConfig
from centralino.events import CallEnded, CallEvent, CallFailed, EventBus
from centralino.media.protocol import MediaClient
from centralino.switch.authentication import Authenticator
from centralino.switch.b2bua.engine import B2BUA
from centralino.switch.core import SipCore
from centralino.switch.location import Binding, LocationService
from centralino.switch.security import SecurityGuard
from centralino.switch.sip.message import Request, Response, make_response
from centralino.switch.sip.parser import parse_datagram
from centralino.switch.transport.base import Flow

PLAN = """\
server: {sip: {domain: example.com, session_expires: 90, min_se: 90}}
extensions: {"1002": {password: pw}}
trunks: {carrier: {host: 10.0.0.1, allow_from: ["10.0.0.1/32"], qualify: 0}}
routes:
  - {match: {to: "1002"}, action: {dial: "1002", timeout: 5}}
"""
LOCAL = ("127.0.0.1", 5060)
CARRIER = Flow("udp", ("10.0.0.1", 5060), LOCAL)
PHONE = ("10.0.0.2", 5062)


class FakeClock:
    """Time stands still until ``advance``; timers fire in order, as the loop would fire them."""

    class Handle:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self) -> None:
        self.now = 1000.0
        self._heap: list[tuple[float, int, FakeClock.Handle, Callable[..., Any], tuple[Any, ...]]] = []
        self._ids = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> FakeClock.Handle:
        handle = FakeClock.Handle()
        heapq.heappush(self._heap, (when, next(self._ids), handle, callback, args))
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeClock.Handle:
        return self.call_at(self.now + delay, callback, *args)

    async def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, handle, callback, args = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not handle.cancelled:
                callback(*args)
            await settle()
        self.now = end
        await settle()


async def settle() -> None:
    """Let the tasks the switch spawned run to their next wait (no wall-clock time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Wire:
    """Stands where the transports are: keeps what the switch sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[Request | Response, Flow]] = []

    def send(self, data: bytes, flow: Flow) -> None:
        msg = parse_datagram(data)
        assert msg is not None
        self.sent.append((msg, flow))

    def local_for(self, flow: Flow) -> tuple[str, int]:
        return LOCAL

    def local_address(self, transport: str) -> tuple[str, int]:
        return LOCAL

    def requests(self, method: str) -> list[Request]:
        return [m for m, _ in self.sent if isinstance(m, Request) and m.method == method]

    def responses(self, status: int) -> list[Response]:
        return [m for m, _ in self.sent if isinstance(m, Response) and m.status == status]


class Worker(MediaClient):
    """The media worker's side of the protocol, answered at once (no RTP flows in these flows)."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self._ports = itertools.count(30000, 2)

    async def request(self, cmd: Any) -> dict[str, Any]:
        self.commands.append(dict(cmd))
        if cmd["cmd"] == "pair.create":
            a, b = next(self._ports), next(self._ports)
            return {"ok": True, "a": {"endpoint": f"{a}-1", "ip": "127.0.0.1", "port": a},
                    "b": {"endpoint": f"{b}-2", "ip": "127.0.0.1", "port": b}}
        if cmd["cmd"] == "batch":
            return {"ok": True, "results": [await self.request(c) for c in cmd["commands"]]}
        if cmd["cmd"] == "endpoint.destroy":
            return {"ok": True, "endpoint": cmd["endpoint"], "rx": 0, "lost": 0, "jitter_ms": 0.0}
        return {"ok": True}

    async def close(self) -> None:
        pass


class Pool:
    def __init__(self) -> None:
        self.worker = Worker()

    def pick(self) -> Worker:
        return self.worker


def switch(clock: FakeClock) -> tuple[SipCore, B2BUA, Wire, list[CallEvent]]:
    plan = parse_plan_text(PLAN, "plan.yaml").plan
    security = SecurityGuard(SecurityConfig(rate_limit=0))
    core = SipCore(security=security, domain="example.com", clock=clock)
    wire = Wire()
    core.transports = wire
    location = LocationService()
    location._bindings["1002"] = {"sip:1002@10.0.0.2:5062": Binding(
        aor="1002", contact_uri="sip:1002@10.0.0.2:5062", contact="<sip:1002@10.0.0.2:5062>",
        expires_at=time.time() + 3600, q=1.0, call_id="reg", cseq=1, flow=Flow("udp", PHONE, LOCAL),
        user_agent="phone", instance=None, registered_at=time.time())}
    auth = Authenticator("example.com", {"1002": "pw"}.get, security)
    bus = EventBus()
    events: list[CallEvent] = []
    bus.subscribe(events.append, CallEvent)
    b2bua = B2BUA(core, lambda: plan, location, auth, Pool(), bus, lambda ip: "carrier" if ip == "10.0.0.1" else None,
                  lambda flow: "127.0.0.1", clock=clock)
    return core, b2bua, wire, events


def invite(call_id: str = "call-1") -> bytes:
    sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    return (f"INVITE sip:1002@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:5551234@10.0.0.1>;tag=c1\r\nTo: <sip:1002@example.com>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:5551234@10.0.0.1:5060>\r\nMax-Forwards: 70\r\nSupported: timer\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n").encode() + sdp


def test_no_answer_fails_the_call_exactly_at_the_ring_timeout():
    async def main():
        clock = FakeClock()
        core, b2bua, wire, events = switch(clock)
        core.receive_datagram(invite(), CARRIER, received_at=time.time())
        await settle()
        out = wire.requests("INVITE")
        assert len(out) == 1 and out[0].uri.user == "1002"  # the callee's phone is rung
        await clock.advance(4.9)
        assert not wire.responses(408) and not any(isinstance(e, CallFailed) for e in events)
        assert len(wire.requests("INVITE")) > 1  # Timer A retransmitted it meanwhile (0.5, 1, 2 s)
        await clock.advance(0.2)  # the route's timeout: 5 s
        assert len(wire.responses(408)) == 1  # the phone never answered at all (no 180): 408
        failed = [e for e in events if isinstance(e, CallFailed)]
        assert [(e.status, e.cause) for e in failed] == [(408, 102)]  # recovery on timer expiry
        ended = [e for e in events if isinstance(e, CallEnded)]
        assert ended and ended[0].summary.disposition == "NO ANSWER"
        assert not b2bua.calls

    asyncio.run(main())


def test_the_switch_refreshes_a_session_timer_at_half_its_interval():
    async def main():
        clock = FakeClock()
        core, b2bua, wire, _events = switch(clock)
        core.receive_datagram(invite("call-2"), CARRIER, received_at=time.time())
        await settle()
        out = wire.requests("INVITE")[0]
        sdp = b"v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
        ok = make_response(out, 200, to_tag="callee", body=sdp, headers=[
            ("Contact", "<sip:1002@10.0.0.2:5062>"), ("Content-Type", "application/sdp"),
            ("Session-Expires", "90;refresher=uac"), ("Require", "timer")])
        core.receive_datagram(ok.serialize(), Flow("udp", PHONE, LOCAL), received_at=time.time())
        await settle()
        answer = wire.responses(200)
        assert answer, "the caller gets our 200"
        ack = (f"ACK sip:1002@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack2\r\n"
               f"From: <sip:5551234@10.0.0.1>;tag=c1\r\nTo: {answer[0].header('To')}\r\nCall-ID: call-2\r\n"
               "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        core.receive_datagram(ack.encode(), CARRIER, received_at=time.time())
        await settle()
        await clock.advance(44.0)
        assert not wire.requests("UPDATE")
        await clock.advance(1.5)  # 45 s = 90 / 2: we are the refresher towards the callee
        updates = wire.requests("UPDATE")  # (with its Timer E retransmission)
        assert len({u.top_via.branch for u in updates}) == 1 and updates[0].header("Session-Expires").startswith("90")
        assert updates[0].uri.host == "10.0.0.2"
        assert b2bua.calls and not wire.requests("BYE"), "the call goes on"

    asyncio.run(main())
