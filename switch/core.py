"""The SIP core: the glue between transports, the sans-I/O transaction layer and the
request handlers (registrar, and later the B2BUA).

It validates requests in RFC 3261 §8.2 order (method, URI scheme, Require, Content-Type,
Accept) before any handler sees them, answers malformed requests from what the parser could
read, and drops malformed or stray responses. One loop timer follows the transaction layer's
earliest deadline.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import Plan
from .clock import Clock, LoopClock, TimerHandle
from .security import SecurityGuard
from .sip.dialog import new_branch, new_call_id, new_tag
from .sip.errors import RemoteProtocolError
from .sip.message import Message, Request, Response, make_response
from .sip.parser import Partial, parse_datagram
from .sip.transaction import (
    ResponseReceived,
    ServerTransaction,
    State,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)
from .sip.uri import URI, AbsoluteURI
from .transport.base import Flow

log = logging.getLogger("centralino.sip")

KNOWN_METHODS = frozenset(
    ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
     "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE")
)
ACCEPTED_BODY_TYPES = frozenset(("application/sdp", "multipart/mixed", "multipart/alternative"))
BODY_METHODS = frozenset(("INVITE", "UPDATE", "PRACK", "ACK"))


@dataclass(slots=True)
class IncomingRequest:
    request: Request
    flow: Flow  # where it came from
    txn: ServerTransaction
    response_flow: Flow  # where responses go (§18.2.2 with rport / force_rport)
    to_tag: str = field(default_factory=new_tag)
    on_cancel: Callable[[IncomingRequest], None] | None = None  # set by whoever owns an INVITE
    on_timeout: Callable[[], None] | None = None  # our final answer was never ACKed (Timer H/L)
    setting_up: bool = False  # a new call with nothing sent yet beyond 100 (counts against max_setups)

    @property
    def source_ip(self) -> str:
        return self.flow.remote[0]


Handler = Callable[[IncomingRequest], Awaitable[Response | None]]
# Cheap looks into an unparsed datagram, to tell solicited traffic from new requests (rate limit).
_TOP_BRANCH = re.compile(rb"\n(?:via|v)[ \t]*:[^\r\n,]*?;[ \t]*branch[ \t]*=[ \t]*([^;,\s]+)", re.IGNORECASE)
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n", re.IGNORECASE)
OVERLOAD_PERSISTENCE = 1.0  # seconds new INVITEs must keep arriving later than max_queue_delay before 503s


class SipCore:
    def __init__(
        self,
        *,
        security: SecurityGuard,
        domain: str,
        user_agent: str = "Centralino",
        force_rport: bool = True,
        t1: float = 0.5,
        max_setups: int = 300,
        max_queue_delay: float = 0.2,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or LoopClock()  # the transaction layer's timers run on it
        self.security = security
        self.domain = domain
        self.user_agent = user_agent
        self.force_rport = force_rport
        self.layer = TransactionLayer(t1=t1, t2=8 * t1, t4=10 * t1)
        self.transports: Any = None  # TransportManager, attached by the app
        self.handlers: dict[str, Handler] = {}
        self.supported: set[str] = {"timer", "replaces"}
        self._spawn = spawn or asyncio.ensure_future
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self.accepting = True
        self._inflight: set[asyncio.Task[Any]] = set()  # requests whose handler has not answered yet
        self.setups = 0  # new calls not yet ringing, answered or refused (the switch still has work on them)
        self.max_setups = max_setups  # new INVITEs beyond this many calls in setup get 503
        self.max_queue_delay = max_queue_delay  # ... and those that waited longer than this to be read
        self._late_since: float | None = None  # since when new calls' INVITEs keep arriving late
        # Call-IDs of the calls, dialogs and subscriptions the switch is part of: requests with
        # them are solicited (never rate-limited), like responses to our own transactions.
        self.known_call_ids: dict[str, int] = {}
        self._response_peers: set[str] = set()  # addresses we send requests to (trunks)
        self.counters: dict[str, int] = {
            "requests": 0, "responses": 0, "rejected": 0, "shed": 0, "dropped_responses": 0, "stray_responses": 0,
        }
        self.received_requests: dict[str, int] = {}  # by method (KNOWN_METHODS, else "other")
        self.received_responses: dict[int, int] = {}  # by status code

    # -- tasks ------------------------------------------------------------------------------------
    def set_task_group(self, spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]) -> None:
        self._spawn = spawn

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a coroutine in the switch's task group. A failure is logged, never allowed to
        take the task group — and so the whole switch — down with it."""
        return self._spawn(guarded(coro))

    # -- configuration -------------------------------------------------------------------------
    def plan_changed(self, plan: Plan) -> None:
        self.max_setups = plan.server.sip.max_setups
        self.max_queue_delay = plan.server.sip.max_queue_delay

    def on(self, method: str, handler: Handler) -> None:
        self.handlers[method] = handler

    @property
    def allow(self) -> str:
        methods = ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"]
        methods += [m for m in self.handlers if m not in methods]
        return ", ".join(methods)

    # -- solicited traffic ---------------------------------------------------------------------
    def track_call_id(self, call_id: str) -> None:
        """The switch takes part in a dialog (or call) with this Call-ID until ``untrack``."""
        self.known_call_ids[call_id] = self.known_call_ids.get(call_id, 0) + 1

    def untrack_call_id(self, call_id: str) -> None:
        left = self.known_call_ids.get(call_id, 1) - 1
        if left > 0:
            self.known_call_ids[call_id] = left
        else:
            self.known_call_ids.pop(call_id, None)

    def trust_responses_from(self, ip: str) -> None:
        """A peer the switch sends requests to (a trunk's resolved address): its responses are
        never rate-limited, even the ones that match no transaction any more."""
        if len(self._response_peers) < 10_000:
            self._response_peers.add(ip)

    def _solicited(self, data: bytes, ip: str) -> bool:
        """A response to one of our transactions or a request inside a dialog or call we are
        part of, told from the raw bytes (a regex over the head, no parse): such traffic is not
        a new request and is not counted by the per-source rate limit (Kamailio's pike is used
        the same way, on initial requests only)."""
        head_end = data.find(b"\r\n\r\n")
        end = head_end if head_end >= 0 else len(data)
        if data.startswith(b"SIP/2.0 "):
            if ip in self._response_peers:
                return True
            m = _TOP_BRANCH.search(data, 0, end)
            return m is not None and self.layer.has_client_branch(m.group(1).decode("ascii", "replace"))
        m = _CALL_ID.search(data, 0, end + 2)
        return m is not None and m.group(1).decode("utf-8", "replace") in self.known_call_ids

    def _solicited_message(self, msg: Message, ip: str) -> bool:
        """The same decision for a message a stream transport has parsed already."""
        try:
            if isinstance(msg, Response):
                return ip in self._response_peers or self.layer.has_client_branch(msg.top_via.branch or "")
            return msg.call_id in self.known_call_ids
        except RemoteProtocolError:
            return False

    # -- input from the transports -------------------------------------------------------------
    def receive_datagram(self, data: bytes, flow: Flow, received_at: float | None = None) -> None:
        now_wall = time.time()
        ip = flow.remote[0]
        if not self.security.admit(ip, now_wall, counted=not self._solicited(data, ip)):
            return
        try:
            msg = parse_datagram(data)
        except RemoteProtocolError as exc:
            self._reject(exc, flow)
            self._flush()
            return
        except Exception:  # the parser must not raise anything else; never let it kill a transport
            log.exception("parser failure on a datagram from %s", flow)
            return
        if msg is not None:
            self._dispatch(msg, flow, now_wall - received_at if received_at is not None else 0.0)

    def receive_stream_item(self, item: Message | RemoteProtocolError, flow: Flow) -> None:
        ip = flow.remote[0]
        counted = isinstance(item, RemoteProtocolError) or not self._solicited_message(item, ip)
        if not self.security.admit(ip, time.time(), counted=counted):
            if self.transports is not None:
                self.transports.close_flow(flow)
            return
        if isinstance(item, RemoteProtocolError):
            self._reject(item, flow)
            self._flush()
            return
        self._dispatch(item, flow)

    def _dispatch(self, msg: Message, flow: Flow, queued: float = 0.0) -> None:
        try:
            if isinstance(msg, Response):
                self.counters["responses"] += 1
                by_code = self.received_responses
                by_code[msg.status] = by_code.get(msg.status, 0) + 1
                if self.layer.receive_response(msg, self._now()) is None:
                    self.counters["stray_responses"] += 1
            else:
                self.counters["requests"] += 1
                method = msg.method if msg.method in KNOWN_METHODS else "other"  # a client cannot add labels
                by_method = self.received_requests
                by_method[method] = by_method.get(method, 0) + 1
                self._on_request(msg, flow, queued)  # type: ignore[arg-type]
        except RemoteProtocolError as exc:
            # a lazily parsed header turned out malformed
            if isinstance(msg, Request) and msg.method != "ACK" and exc.status:
                self._reply_stateless(msg.headers, exc.status, exc.reason, flow)
            else:
                self.counters["dropped_responses"] += 1
        except Exception:
            log.exception("failure handling a message from %s", flow)
        finally:
            self._flush()

    def _reject(self, exc: RemoteProtocolError, flow: Flow) -> None:
        """A message the parser refused: answer a request if we can, drop a response."""
        partial = exc.partial
        if exc.status is None or not isinstance(partial, Partial) or partial.method in (None, "ACK"):
            self.counters["dropped_responses" if exc.status is None else "rejected"] += 1
            log.debug("dropped malformed message from %s: %s", flow, exc.reason)
            return
        self.counters["rejected"] += 1
        log.info("rejected request from %s: %d %s", flow, exc.status, exc.reason)
        self._reply_stateless(partial.headers, exc.status, exc.reason, flow)

    def _reply_stateless(self, headers: list[tuple[str, str]], status: int, reason: str, flow: Flow) -> None:
        copied = [(n, v) for n, v in headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
        if not any(n == "Via" for n, _ in copied):
            return  # nowhere to send it
        out = []
        for n, v in copied:
            if n == "To" and ";tag=" not in v.replace(" ", ""):
                v = f"{v};tag={new_tag()}"
            out.append((n, v))
        phrase = "Bad Request" if status == 400 else None
        resp = Response(status, phrase, out)
        resp.headers.append(("Server", self.user_agent))
        resp.headers.append(("Warning", f'399 {self.domain} "{reason[:120]}"'.replace("\n", " ")))
        if status in (405, 501):
            resp.headers.append(("Allow", self.allow))
        self._send(resp.serialize(), flow)

    # -- requests --------------------------------------------------------------------------------
    def _on_request(self, req: Request, flow: Flow, queued: float) -> None:
        now_wall = time.time()
        if self.security.user_agent_denied(flow.remote[0], req.header("User-Agent"), now_wall):
            return
        response_flow = self._fix_via(req, flow)
        txn, is_new = self.layer.receive_request(req, response_flow, reliable=flow.reliable, now=self._now())
        if not is_new:
            if txn is None and req.method == "ACK":
                self._on_2xx_ack(req, flow)
            return
        assert txn is not None
        inc = IncomingRequest(req, flow, txn, response_flow)
        txn.user_data = inc
        if req.method == "CANCEL":
            self._on_cancel(inc)
            return
        error = self._precheck(req)
        if error is not None:
            status, reason, headers = error
            self.respond(inc, status, reason, headers=headers)
            return
        if req.method == "INVITE":
            if not self.accepting:
                self.respond(inc, 503, headers=[("Retry-After", "30")])
                return
            if req.to.tag is None:
                if self.setups >= self.max_setups or self._falling_behind(queued):
                    # overload: new calls are turned away at once, so that the calls being set up
                    # finish instead of every call timing out in a retransmission storm
                    self.counters["shed"] += 1
                    self.respond(inc, 503, "Overloaded", headers=[("Retry-After", "1")])
                    return
                inc.setting_up = True
                self.setups += 1
            self.respond(inc, 100)
        handler = self.handlers.get(req.method)
        if handler is None:
            status = 405 if req.method in KNOWN_METHODS else 501
            if req.method == "BYE":
                status = 481
            self.respond(inc, status, headers=[("Allow", self.allow)])
            return
        task = self.spawn(self._run_handler(handler, inc))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        if inc.setting_up:
            task.add_done_callback(lambda _: self._setup_over(inc))

    def _falling_behind(self, queued: float) -> bool:
        """Whether new calls have waited too long in the socket for long enough: a single stall
        (a collector pass, a slow disk) is caught up with, not answered by refusing calls."""
        if queued <= self.max_queue_delay:
            self._late_since = None
            return False
        now = self._now()
        if self._late_since is None:
            self._late_since = now
        return now - self._late_since >= OVERLOAD_PERSISTENCE

    def _setup_over(self, inc: IncomingRequest) -> None:
        """A new call rings, is answered or refused (or its handler ended): ringing for minutes
        or waiting in a queue is not load, so it no longer counts against ``max_setups``."""
        if inc.setting_up:
            inc.setting_up = False
            self.setups -= 1

    async def _run_handler(self, handler: Handler, inc: IncomingRequest) -> None:
        try:
            response = await handler(inc)
        except RemoteProtocolError as exc:
            response = self.make_response(inc, exc.status or 400, exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler for %s failed", inc.request.method)
            response = self.make_response(inc, 500)
        if response is not None:
            self.send_response(inc, response)

    def _precheck(self, req: Request) -> tuple[int, str | None, list[tuple[str, str]]] | None:
        """RFC 3261 §8.2.1-8.2.3 in order; returns (status, reason, headers) to refuse with."""
        if req.method not in KNOWN_METHODS and req.method not in self.handlers:
            return 501, None, [("Allow", self.allow)]
        if isinstance(req.uri, AbsoluteURI) or (isinstance(req.uri, URI) and req.uri.scheme not in ("sip", "sips", "tel")):
            return 416, None, []
        if req.method != "ACK":
            unsupported = [t for t in req.option_tags("Require") if t not in self.supported]
            if unsupported:
                return 420, None, [("Unsupported", ", ".join(unsupported))]
        if req.body and req.method in BODY_METHODS:
            ctype = req.content_type
            if ctype is None or ctype.mime not in ACCEPTED_BODY_TYPES:
                return 415, None, [("Accept", "application/sdp")]
        if req.method == "INVITE" and req.has_header("Accept"):
            accepted = {a.split(";")[0].strip().lower() for a in req.header_list("Accept")}
            if accepted and not accepted & {"application/sdp", "application/*", "*/*"}:
                return 406, None, [("Accept", "application/sdp")]
        return None

    def _fix_via(self, req: Request, flow: Flow) -> Flow:
        """Add received/rport (RFC 3261 §18.2.1, RFC 3581) and pick where responses go."""
        via = req.top_via
        ip, port = flow.remote
        new = via
        if via.host != ip:
            new = new.with_param("received", ip)
        has_rport = via.rport is not None
        if has_rport:
            new = new.with_param("rport", str(port))
        if new is not via:
            req.set_top_via(new)
        if flow.reliable or has_rport or self.force_rport:
            return flow
        return Flow("udp", (ip, via.port or 5060), flow.local)

    def _on_cancel(self, inc: IncomingRequest) -> None:
        invite = self.layer.find_invite_for_cancel(inc.request, inc.response_flow)
        if invite is None:
            self.respond(inc, 481)
            return
        self.respond(inc, 200)
        owner = invite.user_data
        if invite.state is State.PROCEEDING and isinstance(owner, IncomingRequest):
            if owner.on_cancel is not None:
                owner.on_cancel(inc)
            else:
                self.respond(owner, 487)

    def _on_2xx_ack(self, ack: Request, flow: Flow) -> None:
        self.layer.match_2xx_ack(ack, self._now())
        hook = self.handlers.get("ACK")
        if hook is not None:
            self.spawn(hook(IncomingRequest(ack, flow, None, flow)))  # type: ignore[arg-type]

    # -- responses -------------------------------------------------------------------------------
    def make_response(
        self, inc: IncomingRequest, status: int, reason: str | None = None, *,
        headers: list[tuple[str, str]] | None = None, body: bytes = b"",
    ) -> Response:
        resp = make_response(inc.request, status, reason, to_tag=inc.to_tag, headers=headers or (), body=body)
        resp.headers.append(("Server", self.user_agent))
        return resp

    def respond(
        self, inc: IncomingRequest, status: int, reason: str | None = None, *,
        headers: list[tuple[str, str]] | None = None, body: bytes = b"",
    ) -> None:
        self.send_response(inc, self.make_response(inc, status, reason, headers=headers, body=body))

    def send_response(self, inc: IncomingRequest, response: Response) -> None:
        if inc.setting_up and response.status >= 180:
            self._setup_over(inc)
        if inc.txn.state is State.TERMINATED:
            return
        self.layer.send_response(inc.txn, response, self._now())
        self._flush()

    # -- requests we originate -------------------------------------------------------------------
    def via_for(self, flow: Flow) -> str:
        host, port = self.transports.local_for(flow) if self.transports else flow.local
        return f"SIP/2.0/{flow.transport.upper()} {host}:{port};branch={new_branch()};rport"

    async def request(
        self, method: str, uri: URI, flow: Flow, *, to: str | None = None,
        headers: list[tuple[str, str]] | None = None, body: bytes = b"",
    ) -> Response:
        """Send an out-of-dialog request and wait for its final response (408 on timeout)."""
        hdrs = [
            ("Via", self.via_for(flow)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:centralino@{self.domain}>;tag={new_tag()}"),
            ("To", to or f"<{uri.serialize()}>"),
            ("Call-ID", new_call_id(self.domain)),
            ("CSeq", f"1 {method}"),
            ("User-Agent", self.user_agent),
        ]
        hdrs += headers or []
        req = Request(method, uri, hdrs, body)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        txn = self.layer.send_request(req, flow, reliable=flow.reliable, now=self._now())
        txn.user_data = fut
        self._flush()
        return await fut

    # -- sans-I/O plumbing -----------------------------------------------------------------------
    def _now(self) -> float:
        return self.clock.time()

    def _send(self, data: bytes, flow: Flow) -> None:
        if self.transports is not None:
            self.transports.send(data, flow)

    def _flush(self) -> None:
        layer = self.layer
        for data, dest in layer.datagrams_to_send():
            self._send(data, dest)
        while (event := layer.next_event()) is not None:
            owner = event.transaction.user_data
            if isinstance(event, ResponseReceived):
                if isinstance(owner, asyncio.Future):
                    if event.response.status >= 200 and not owner.done():
                        owner.set_result(event.response)
                elif owner is not None and hasattr(owner, "on_response"):
                    self._guard(owner.on_response, event.transaction, event.response)
            elif isinstance(event, TransactionTimeout):
                if isinstance(owner, asyncio.Future):
                    if not owner.done():
                        owner.set_result(Response(408, "Request Timeout"))
                elif isinstance(owner, IncomingRequest):
                    if owner.on_timeout is not None:
                        self._guard(owner.on_timeout)
                elif owner is not None and hasattr(owner, "on_timeout"):
                    self._guard(owner.on_timeout, event.transaction)
            elif isinstance(event, TransactionTerminated):
                # owner and transaction point at each other: unlinked here, the pair is freed by
                # reference counting at once instead of waiting for a garbage collector pass
                event.transaction.user_data = None
        for data, dest in layer.datagrams_to_send():
            self._send(data, dest)
        self._arm_timer()

    @staticmethod
    def _guard(fn: Callable[..., Any], *args: Any) -> None:
        """Run a transaction user's callback; its bug must not take the SIP core down."""
        try:
            fn(*args)
        except Exception:
            log.exception("transaction user callback %r failed", fn)

    def start_transaction(self, request: Request, flow: Flow, owner: Any) -> Any:
        """Send a request in a client transaction whose responses go to ``owner.on_response``."""
        txn = self.layer.send_request(request, flow, reliable=flow.reliable, now=self._now())
        txn.user_data = owner
        self._flush()
        return txn

    async def send_and_wait(self, request: Request, flow: Flow) -> Response:
        """Send a request we built in a client transaction; its final response (408 on timeout)."""
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.start_transaction(request, flow, fut)
        return await fut

    def send_stateless(self, message: Message, flow: Flow) -> None:
        """An ACK for a 2xx, or a retransmitted 2xx: outside any transaction (§13.2.2.4)."""
        self._send(message.serialize(), flow)

    def contact_for(self, flow: Flow, user: str = "centralino") -> str:
        host, port = self.transports.local_for(flow) if self.transports else flow.local
        return f"<sip:{user}@{host}:{port};transport={flow.transport}>"

    def _arm_timer(self) -> None:
        deadline = self.layer.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(self._now())
        self._flush()

    async def drain(self, timeout: float) -> bool:
        """Wait until every request being handled has its answer (or the timeout passes)."""
        if not self._inflight:
            return True
        _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
        return not pending

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def transaction_summary(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for table in (self.layer.clients, self.layer.servers):
            for txn in table.values():
                k = f"{txn.kind}:{txn.state.value}"
                by_kind[k] = by_kind.get(k, 0) + 1
        return {"total": len(self.layer), "by_state": by_kind}


async def guarded(coro: Coroutine[Any, Any, Any]) -> Any:
    """Await a background coroutine; log its failure instead of letting it cancel its task group."""
    try:
        return await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task %s failed", getattr(coro, "__qualname__", coro))
        return None

