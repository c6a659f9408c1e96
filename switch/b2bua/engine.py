"""The B2BUA: answers the caller's INVITE as a UAS, places one INVITE per target as a UAC
(forking to every registered contact, first 2xx wins), anchors the media in a worker, and
relays the call's life (ringing, early media, answer, BYE, CANCEL) between the two sides.

Each side has its own dialog; requests towards a side go on the flow it came from or was
reached on (NAT-friendly). Every finished call leaves its CDR rows in SQLite before its state
is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ...config.schema import Action, Plan
from ...e164 import customer_e164
from ...events import (
    AmdResult,
    BeepDetected,
    CallAnswered,
    CallEarlyMedia,
    CallEvent,
    CallFailed,
    CallRinging,
    CallTrying,
    EventBus,
)
from ...media import protocol
from ...media.protocol import MediaClient
from ...schedules import ScheduleOverrides
from ..authentication import Authenticator
from ..clock import Clock, LoopClock
from ..core import IncomingRequest, SipCore
from ..location import LocationService
from ..router import CallContext, Router, normalise
from ..sip.auth import DigestClient
from ..sip.dialog import Dialog, new_call_id, new_tag
from ..sip.errors import RemoteProtocolError
from ..sip.headers import parse_name_addr
from ..sip.message import Request, Response
from ..sip.uri import URI, parse_uri, unescape
from ..transport.base import Flow
from .call import (
    NO_ANSWER,
    NORMAL_CLEARING,
    Call,
    CallState,
    FinishedLeg,
    Fork,
    ForkState,
    Media,
    SessionTimer,
    q850_for,
)
from .connect import ConnectMixin, dial_targets
from .control import Application, Feature
from .hangup import HangupMixin
from .indialog import InDialogMixin, _session_expires, audio_target_of
from .media_ops import MediaOpsMixin
from .originate import OriginateMixin
from .sdp_anchor import anchor, answer_with, chosen_codec, offer_for_callee
from .transfer import TransferMixin

log = logging.getLogger("centralino.b2bua")

DEFAULT_RING_TIMEOUT = 60
# When forks fail differently, which answer the caller hears (lower is preferred; RFC 3261 §16.7)
_PREFERENCE = {486: 0, 600: 0, 603: 1, 488: 2, 480: 3, 408: 4, 404: 5}


class B2BUA(InDialogMixin, TransferMixin, MediaOpsMixin, ConnectMixin, OriginateMixin, HangupMixin):
    def __init__(
        self,
        core: SipCore,
        plan_of: Callable[[], Plan],
        location: LocationService,
        auth: Authenticator,
        media: Any,
        bus: EventBus,
        trunk_of: Callable[[str], str | None],
        media_ip: Callable[[Flow], str],
        rtp_timeout: float = 60.0,
        trunks: Any = None,
        overrides: ScheduleOverrides | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or LoopClock()  # ring timeouts, session timers (a fake one in unit tests)
        self.overrides = overrides or ScheduleOverrides()  # day/night switch, read by the router
        self.trunks = trunks  # TrunkManager: channels, up/down
        self.core = core
        self.plan_of = plan_of
        self.location = location
        self.auth = auth
        self.media = media
        self.bus = bus  # every state change of a call is published here (events.py)
        self.trunk_of = trunk_of  # source IP → trunk name (allow_from)
        self.media_ip = media_ip
        self.rtp_timeout = rtp_timeout
        self.calls: dict[str, Call] = {}
        self.dialogs: dict[tuple[str, str, str], tuple[Call, Fork | None]] = {}
        self.by_endpoint_call: dict[str, Call] = {}
        self.applications: dict[str, Application] = {}  # ivr, queue, voicemail, …
        # feature codes dialled from extensions (*45 agent login, ...): code → handler(call, rest)
        self.features: dict[str, Feature] = {}
        self._init_media_ops()
        self.applications["play"] = self.play_action
        self.applications["conference"] = self.conference
        self.completed = 0
        self._idle = asyncio.Event()
        self._idle.set()
        for method, handler in (("INVITE", self.on_invite), ("BYE", self.on_bye), ("ACK", self.on_ack),
                                ("UPDATE", self.on_update), ("INFO", self.on_update), ("REFER", self.on_refer),
                                ("NOTIFY", self.on_notify)):
            core.on(method, handler)

    def _register_dialog(self, call: Call, dialog_id: tuple[str, str, str], fork: Fork | None) -> None:
        """In-dialog requests find ``call`` (and its leg) by this dialog; dropped when it ends."""
        self.dialogs[dialog_id] = (call, fork)
        call.dialog_ids.append(dialog_id)

    # -- CallControl: plugging in and finding calls (control.py) ---------------------------------
    def register_application(self, verb: str, app: Application) -> None:
        self.applications[verb] = app

    def register_feature(self, code: str, handler: Feature) -> None:
        self.features[code] = handler

    def unregister_feature(self, handler: Feature) -> None:
        for code in [c for c, h in self.features.items() if h == handler]:
            del self.features[code]

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.core.spawn(coro)

    def find(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    def live_calls(self) -> list[Call]:
        return list(self.calls.values())

    def live_call_of(self, extension: str) -> tuple[Call, str] | None:
        for call in self.calls.values():
            if call.state is not CallState.ANSWERED or call.media is None or call.answered is None:
                continue  # not bridged to a callee (an IVR, a queue, a feature code)
            if call.answered.destination == f"extension:{extension}":
                return call, "b"
            if call.source == "extension" and call.caller == extension:
                return call, "a"
        return None

    def is_registered(self, extension: str) -> bool:
        return bool(self.location.lookup(extension, time.time()))

    def _add_call(self, call: Call) -> None:
        self.calls[call.id] = call
        self.core.track_call_id(call.id)  # its CANCEL, ACK and in-dialog requests are not rate-limited
        self._idle.clear()

    def _emit(self, event: CallEvent) -> None:
        self.bus.publish(event)

    # -- entry: a new INVITE ------------------------------------------------------------------
    async def on_invite(self, inc: IncomingRequest) -> Response | None:
        req = inc.request
        if req.to.tag is not None:
            return await self._reinvite(inc)
        plan = self.plan_of()
        trunk = self.trunk_of(inc.source_ip)
        if trunk is not None:
            source, caller = trunk, unescape(req.from_.uri.user or "") if isinstance(req.from_.uri, URI) else ""
            caller_name = None
        else:
            outcome = self.auth.check(req, inc.source_ip, time.time(), proxy=True)
            if outcome.user is None:
                return self.core.make_response(inc, outcome.status, headers=outcome.headers)
            source, caller = "extension", outcome.user
            ext = plan.extensions.get(caller)
            caller_name = ext.name if ext else None
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            return self.core.make_response(inc, 483)
        se = _session_expires(req)
        min_se = plan.server.sip.min_se
        if se is not None and se[0] < min_se:
            return self.core.make_response(inc, 422, headers=[("Min-SE", str(min_se))])
        called_raw = unescape(req.uri.user or "") if isinstance(req.uri, URI) else ""
        called = normalise(called_raw, plan.trunks.get(source)) if trunk else called_raw
        decision = Router(plan, self.overrides.forced).route(CallContext(to=called, caller=caller, source=source))
        call = Call(id=req.call_id, inc=inc, caller=caller, called=called, source=source,
                    did=called if trunk else "", caller_name=caller_name, record=decision.record,
                    customer_e164=customer_e164(caller, plan.trunks[source].country_code) if trunk else "")
        if call.id in self.calls:
            return self.core.make_response(inc, 482)  # a loop back to us
        if trunk is not None and self.trunks is not None:
            if not self.trunks.acquire(trunk):
                return self.core.make_response(inc, 503, "Trunk channels exhausted",
                                               headers=[("Reason", "Q.850;cause=34")])
            call.channels.append(trunk)
        self._add_call(call)
        inc.on_cancel = lambda cancel: self._caller_cancelled(call)
        inc.on_timeout = lambda: self._no_ack(call)
        feature = self._feature_for(called) if source == "extension" else None
        log.info("call %s from %s (%s) to %s: %s", call.id, caller, source, called,
                 "feature code" if feature is not None else decision.reasons[-1])
        self._emit(CallTrying(call.id, caller=caller, called=called, source=source))
        try:
            if feature is not None:
                await feature[0](call, feature[1])
            else:
                await self._execute(call, decision.action)
        except RemoteProtocolError as exc:
            await self._fail(call, exc.status or 400, exc.reason)
        except Exception:
            log.exception("call %s failed", call.id)
            await self._fail(call, 500, "internal error")
        return None

    async def execute(self, call: Call, action: Action) -> None:
        """Run a plan action on a call (applications hand calls on with it)."""
        await self._execute(call, action)

    async def refuse(self, call: Call, status: int, why: str) -> None:
        """Applications turn a call down with a final status (or hang up an answered one)."""
        await self._fail(call, status, why)

    def _feature_for(self, called: str) -> tuple[Callable[[Call, str], Any], str] | None:
        """The handler of the longest feature code ``called`` starts with, and the digits after it."""
        for code in sorted(self.features, key=len, reverse=True):
            if code and called.startswith(code):
                return self.features[code], called[len(code):]
        return None

    async def _execute(self, call: Call, action: Action) -> None:
        call.fallback = action.else_
        if action.hangup is not None:
            await self._fail(call, action.hangup, "by the routing plan")
        elif action.dial is not None and call.state is CallState.ANSWERED:
            await self.connect_answered(call, action)  # from an IVR or a prompt: ring, then bridge
        elif action.dial is not None:
            await self._dial_extensions(call, action)
        elif action.trunk is not None and call.state is CallState.ANSWERED:
            await self.connect_answered(call, action)  # an IVR's exit to an outside number
        elif action.trunk is not None:
            await self._dial_trunks(call, action)
        else:
            verb = next(v for v in ("ivr", "queue", "voicemail", "conference", "play") if getattr(action, v))
            app = self.applications.get(verb)
            if app is None:
                await self._fail(call, 480, f"{verb} is not available yet")
            else:
                await app(call, action)

    # -- dialling -------------------------------------------------------------------------------
    async def _dial_extensions(self, call: Call, action: Action) -> None:
        plan = self.plan_of()
        targets = dial_targets(action)
        unknown = [t for t in targets if t not in plan.extensions]
        if unknown and len(unknown) == len(targets):
            await self._fail(call, 404, f"no extension {unknown[0]}")
            return
        bindings = [(t, b) for t in targets if t in plan.extensions for b in self.location.lookup(t, time.time())]
        if not bindings:
            await self._fail(call, 480, "not registered")
            return
        await self._ensure_media(call)
        call.destination = ",".join(targets)
        for ext, b in bindings:
            uri = parse_name_addr(b.contact).uri
            assert isinstance(uri, URI)
            self._fork(call, uri, b.target(), destination=f"extension:{ext}", to_user=ext)
        self._start_ringing(call, action.timeout or DEFAULT_RING_TIMEOUT)

    async def _dial_trunks(self, call: Call, action: Action) -> None:
        names = action.trunk if isinstance(action.trunk, list) else [action.trunk]
        call.trunk_candidates = [n for n in names if n]
        call.trunk_number = action.number or call.called
        if not await self._dial_next_trunk(call, action.timeout or DEFAULT_RING_TIMEOUT):
            await self._fail(call, 503, "no trunk available")

    async def _dial_next_trunk(self, call: Call, timeout: int) -> bool:
        """Place the call on the next usable trunk of the route's list; False if none is left."""
        plan = self.plan_of()
        while call.trunk_candidates:
            name = call.trunk_candidates.pop(0)
            trunk = plan.trunks[name]
            flow = await self._trunk_channel(call, name)
            if flow is None:
                continue
            await self._ensure_media(call)
            number = call.trunk_number
            call.destination = f"trunk:{name}:{number}"
            uri = parse_uri(f"sip:{number}@{trunk.host}:{trunk.port}")
            assert isinstance(uri, URI)
            self._fork(call, uri, flow, destination=call.destination, to_user=number, trunk=name)
            self._start_ringing(call, timeout)
            return True
        return False

    async def _trunk_channel(self, call: Call, name: str) -> Flow | None:
        """Take a channel of trunk ``name`` for the call (released when it ends) and the flow to
        reach it; None when the trunk is down, full or cannot be resolved."""
        if self.trunks is None:
            return None
        if not (self.trunks.available(name) and self.trunks.acquire(name)):
            log.info("call %s: trunk %s is down or full, skipping it", call.id, name)
            return None
        call.channels.append(name)
        try:
            return await self.trunks.flow_for(self.plan_of().trunks[name])
        except OSError:
            log.warning("call %s: cannot resolve trunk %s", call.id, name)
            return None

    def _fork(self, call: Call, uri: URI, flow: Flow, *, destination: str, to_user: str,
              trunk: str | None = None, transfer_of: Fork | None = None, side: str = "b") -> Fork:
        plan = self.plan_of()
        inc = call.inc
        domain = plan.server.sip.domain
        assert call.media is not None
        ip = self.media_ip(flow)
        offer = call.caller_sdp or (inc.request.body if inc is not None else b"")
        # late offer (INVITE without SDP): the callee's 200 will carry the offer, the ACKs the answer
        port = getattr(call.media, side).port  # "a": the second leg of a call the switch placed
        body = offer_for_callee(offer, ip, port, session_id=_session_id(call)) if offer else b""
        mf = inc.request.max_forwards if inc is not None else None
        shown = call.presented or call.caller
        if trunk is not None:
            t = plan.trunks[trunk]
            if not call.customer_e164:  # an outgoing call: the customer is the first number dialled out
                call.customer_e164 = customer_e164(to_user, t.country_code)
            from_user = t.username or shown
            from_host = t.host
            to_uri = f"<sip:{to_user}@{t.host}>"
        else:
            # the partner of a call the switch placed (side "a") sees who it is for (click-to-call: the agent)
            from_user = call.presented if side == "a" and call.presented else call.caller
            from_host, to_uri = domain, f"<sip:{to_user}@{domain}>"
        display = f'"{call.caller_name}" ' if call.caller_name else ""
        headers = [
            ("Via", self.core.via_for(flow)),
            ("Max-Forwards", str((mf if mf is not None else 70) - 1)),
            ("From", f"{display}<sip:{from_user}@{from_host}>;tag={new_tag()}"),
            ("To", to_uri),
            ("Call-ID", new_call_id(domain)),
            ("CSeq", "1 INVITE"),
            ("Contact", self.core.contact_for(flow)),
            ("Allow", self.core.allow),
            ("User-Agent", self.core.user_agent),
            *([("Content-Type", "application/sdp")] if body else []),
            ("Supported", "timer, replaces"),
        ]
        sip_cfg = plan.server.sip
        if sip_cfg.session_expires:
            headers += [("Session-Expires", str(sip_cfg.session_expires)), ("Min-SE", str(sip_cfg.min_se))]
        if trunk is not None:
            headers.append(("P-Asserted-Identity", f"{display}<sip:{shown}@{domain}>"))
        request = Request("INVITE", uri, headers, body)
        fork = Fork(call=call, engine=self, uri=uri, flow=flow, request=request,
                    destination=destination, trunk=trunk, transfer_of=transfer_of, side=side)
        call.forks.append(fork)
        self.core.track_call_id(request.call_id)
        fork.txn = self.core.start_transaction(request, flow, fork)
        return fork

    def _start_ringing(self, call: Call, timeout: int) -> None:
        call.state = CallState.RINGING
        call.ring_started = time.time()
        call.ring_timer = self.clock.call_later(timeout, self._ring_timeout, call)

    def _ring_timeout(self, call: Call) -> None:
        if call.state is not CallState.RINGING:
            return
        log.info("call %s: no answer in time", call.id)
        for fork in call.live_forks():
            fork.status = 408
            self._cancel_fork(fork)
        self.core.spawn(self._dial_failed(call, 480, NO_ANSWER))

    # -- responses from the callee side -----------------------------------------------------------
    def on_fork_response(self, fork: Fork, txn: Any, resp: Response) -> None:
        if fork.transfer_of is not None:
            self._transfer_progress(fork, resp)
            return
        if fork.attempt is not None:
            self._attempt_progress(fork, resp)
            return
        call = fork.call
        status = resp.status
        if status < 200:
            if status == 100:
                return
            fork.provisional = True
            if fork.cancel_pending:
                self._cancel_fork(fork)
                return
            if fork.state is ForkState.CALLING:
                fork.state = ForkState.EARLY
            if call.state is CallState.RINGING:
                self._relay_provisional(call, fork, resp)
            return
        if status < 300:
            self._fork_answered(fork, resp)
            return
        if (status in (401, 407) and fork.trunk and fork.auth_attempts < 2
                and fork.state is not ForkState.DONE and self._retry_with_credentials(fork, resp)):
            return
        fork.state = ForkState.DONE
        fork.status = fork.status or status
        log.info("call %s: %s answered %d", call.id, fork.destination, status)
        if call.state is CallState.RINGING and not call.live_forks():
            self.core.spawn(self._dial_failed(call, fork.status, q850_for(fork.status)))

    def _fork_provisional(self, fork: Fork) -> bool:
        """A 1xx (not 100) on a leg: CANCEL it now if that was pending; True if it just became early."""
        fork.provisional = True
        if fork.cancel_pending:
            self._cancel_fork(fork)
            return False
        if fork.state is ForkState.CALLING:
            fork.state = ForkState.EARLY
            return True
        return False

    def on_fork_timeout(self, fork: Fork, txn: Any) -> None:
        if fork.attempt is not None:
            if fork.state in (ForkState.CALLING, ForkState.EARLY):
                self._attempt_leg_failed(fork, 408)
            return
        if fork.state in (ForkState.CALLING, ForkState.EARLY):
            fork.state = ForkState.DONE
            fork.status = fork.status or 408
            call = fork.call
            if call.state is CallState.RINGING and not call.live_forks():
                self.core.spawn(self._dial_failed(call, 408, q850_for(408)))

    def _relay_provisional(self, call: Call, fork: Fork, resp: Response) -> None:
        assert call.media is not None
        body = b""
        headers: list[tuple[str, str]] = [("Contact", self.core.contact_for(call.a_flow))]
        if resp.body and resp.status == 183 and call.inc.request.body:
            body, media_commands = self._answer_to_caller(call, fork, resp.body)
            self.core.spawn(call.media.worker.batch(media_commands))
            headers.append(("Content-Type", "application/sdp"))
        elif resp.status == 183:
            return
        self.core.respond(call.inc, resp.status, resp.reason, headers=headers, body=body)
        event = CallEarlyMedia if body else CallRinging
        self._emit(event(call.id, destination=fork.destination))

    def _answer_to_caller(self, call: Call, fork: Fork, body: bytes) -> tuple[bytes, list[dict[str, Any]]]:
        """The callee's SDP, pointed at our caller-facing endpoint; and the worker commands that
        point the callee-facing endpoint at the callee (and set the caller's codec)."""
        assert call.media is not None
        callee = chosen_codec(body)
        caller_offer = call.caller_sdp or call.inc.request.body
        commands = []
        if caller_offer and callee is not None:
            # one codec from the caller's offer, the callee's if it has it; else the worker transcodes
            new, caller = answer_with(caller_offer, self.media_ip(call.a_flow), call.media.a.port,
                                      session_id=_session_id(call), prefer=callee.codec)
            commands.append(self._point_command(call, "a", None, caller))
        else:
            new = anchor(body, self.media_ip(call.a_flow), call.media.a.port, session_id=_session_id(call))[0]
        commands.append(self._point_command(call, "b", audio_target_of(body), callee))
        return new, [c for c in commands if c is not None]

    def _fork_answered(self, fork: Fork, resp: Response) -> None:
        call = fork.call
        try:
            dialog = Dialog.from_uac(fork.request, resp)
        except RemoteProtocolError:
            log.info("call %s: 2xx without Contact or tag from %s", call.id, fork.destination)
            return
        if fork.dialog is not None and fork.dialog.remote_tag == dialog.remote_tag:
            if fork.late_ack is not None:
                self.core.send_stateless(fork.late_ack, fork.flow)  # a retransmitted 2xx: ACK again
            elif not fork.awaiting_answer:
                self._send_ack(fork)
            return
        fork.dialog = dialog
        fork.status = resp.status
        late_offer = not call.inc.request.body and bool(resp.body)
        if late_offer and call.state is CallState.RINGING and call.answered is None:
            fork.awaiting_answer = True  # its ACK carries the caller's answer: sent from on_ack
        else:
            self._send_ack(fork)
        if call.state is not CallState.RINGING or call.answered is not None:
            # another fork won, or the caller gave up: this one is hung up at once
            fork.state = ForkState.DONE
            self._bye(fork.dialog, fork.flow)
            return
        fork.state = ForkState.ANSWERED
        fork.answered_at = time.time()
        call.answered = fork
        call.state = CallState.ANSWERED
        call.answered_at = fork.answered_at
        call.destination = fork.destination
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        for other in call.live_forks():
            other.status = 487
            self._cancel_fork(other)
        body, media_commands = self._answer_to_caller(call, fork, resp.body) if resp.body else (b"", [])
        inc = call.inc
        call.a_dialog = Dialog.from_uas(inc.request, inc.to_tag)
        self._register_dialog(call, call.a_dialog.id, None)
        self._register_dialog(call, dialog.id, fork)
        headers = [("Contact", self.core.contact_for(call.a_flow)), ("Allow", self.core.allow)]
        headers += self._caller_session_timer(call)
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.core.respond(inc, 200, headers=headers, body=body)
        se = _session_expires(resp)
        if se is not None:
            # the callee agreed to a timer: refresher=uac means us (we placed that INVITE)
            fork.timer = SessionTimer(se[0], we_refresh=se[1] != "uas")
            self._arm_timer(call, fork)
        assert call.media is not None
        media_commands.append(protocol.timeout([call.media.a.endpoint, call.media.b.endpoint], self.rtp_timeout))
        self.core.spawn(call.media.worker.batch(media_commands))
        log.info("call %s answered by %s", call.id, fork.destination)
        self._emit(CallAnswered(call.id, destination=fork.destination))
        if call.record:
            self.core.spawn(self.start_recording(call, agent=fork.destination))

    def on_late_2xx(self, leg: FinishedLeg, resp: Response) -> None:
        """A 2xx on a leg of a finished call: ACK it again, or ACK and hang up an answer that
        came after the call ended (it crossed our CANCEL)."""
        try:
            dialog = Dialog.from_uac(leg.request, resp)
        except RemoteProtocolError:
            return
        known = leg.dialog is not None and leg.dialog.remote_tag == dialog.remote_tag
        ack = (leg.dialog if known and leg.dialog is not None else dialog).create_request("ACK", self.core.via_for(leg.flow))
        ack.set_header("CSeq", f"{leg.request.cseq.seq} ACK")
        self.core.send_stateless(ack, leg.flow)
        if not known:
            leg.dialog = dialog
            self._bye(dialog, leg.flow)

    def _send_ack(self, fork: Fork) -> None:
        assert fork.dialog is not None
        ack = fork.dialog.create_request("ACK", self.core.via_for(fork.flow))
        ack.set_header("CSeq", f"{fork.request.cseq.seq} ACK")
        self.core.send_stateless(ack, fork.flow)

    def _retry_with_credentials(self, fork: Fork, resp: Response) -> bool:
        trunk = self.plan_of().trunks.get(fork.trunk or "")
        if trunk is None or not trunk.username or not trunk.password:
            return False
        header = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
        challenge = DigestClient.pick(resp.header_values(header))
        if challenge is None:
            return False
        fork.auth_attempts += 1
        req = fork.request
        retry = Request(req.method, req.uri, list(req.headers), req.body)
        retry.set_header("Via", self.core.via_for(fork.flow))
        retry.set_header("CSeq", f"{req.cseq.seq + 1} INVITE")
        retry.remove_header("Authorization")
        retry.remove_header("Proxy-Authorization")
        cred = DigestClient(trunk.username, trunk.password).authorize(challenge, "INVITE", str(req.uri), req.body)
        retry.add_header("Proxy-Authorization" if resp.status == 407 else "Authorization", cred)
        fork.request = retry
        fork.provisional = False
        fork.txn = self.core.start_transaction(retry, fork.flow, fork)
        return True

    # -- failure and cancel ---------------------------------------------------------------------------
    async def _dial_failed(self, call: Call, status: int, cause: int) -> None:
        if call.state is not CallState.RINGING:
            return
        if call.trunk_candidates and status in (408, 500, 502, 503, 504) and not call.cancelled:
            log.info("call %s: trunk failed (%d), failing over", call.id, status)
            self._release_channels(call)
            if await self._dial_next_trunk(call, DEFAULT_RING_TIMEOUT):
                return
        statuses = [f.status for f in call.forks if f.status]
        if statuses:
            status = min(statuses, key=lambda s: (_PREFERENCE.get(s, 9), s))
            cause = NO_ANSWER if status == 480 and cause == NO_ANSWER else q850_for(status)
        if call.fallback is not None and not call.cancelled:
            log.info("call %s: dial failed (%d), taking the route's else", call.id, status)
            call.state = CallState.ROUTING
            fallback, call.fallback = call.fallback, None
            await self._execute(call, fallback)
            return
        await self._fail(call, status, None, cause)

    async def _fail(self, call: Call, status: int, why: str | None, cause: int | None = None) -> None:
        """Answer the caller with a final failure and finish the call (hang up an answered one)."""
        if call.state is CallState.ANSWERED:
            log.info("call %s: %s (%d), hanging up", call.id, why or "failed", status)
            await self.hangup(call, by="switch", cause=cause or q850_for(status))
            return
        call.final_status = status
        call.cause = cause or q850_for(status)
        call.hangup_by = call.hangup_by or "switch"
        text = f';text="{why}"' if why else ""
        if call.inc is not None and call.inc.txn.state.value in ("trying", "proceeding"):
            self.core.respond(call.inc, status, headers=[("Reason", f"Q.850;cause={call.cause}{text}")])
        self._emit(CallFailed(call.id, status=status, cause=call.cause))
        await self._finish(call)

    def _caller_cancelled(self, call: Call) -> None:
        if call.state in (CallState.ANSWERED, CallState.ENDED):
            return
        log.info("call %s cancelled by the caller", call.id)
        call.cancelled = True
        call.hangup_by = "caller"
        for fork in call.live_forks():
            fork.status = 487
            self._cancel_fork(fork)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        call.state = CallState.ENDED
        call.final_status = 487
        call.cause = 16  # the caller hung up before the answer: normal clearing
        self.core.respond(call.inc, 487)
        self._emit(CallFailed(call.id, status=487, cause=16))
        self.core.spawn(self._finish(call))

    def _cancel_fork(self, fork: Fork) -> None:
        if fork.state not in (ForkState.CALLING, ForkState.EARLY):
            return
        if not fork.provisional:
            fork.cancel_pending = True  # RFC 3261 §9.1: CANCEL only after a provisional response
            return
        fork.state = ForkState.DONE
        req = fork.request
        headers = [("Via", req.header_values("Via")[0]), ("Max-Forwards", "70")]
        headers += [("Route", v) for v in req.header_values("Route")]
        headers += [("From", req.header("From") or ""), ("To", req.header("To") or ""),
                    ("Call-ID", req.call_id), ("CSeq", f"{req.cseq.seq} CANCEL"),
                    ("Reason", "SIP;cause=487" if fork.status != 200 else "SIP;cause=200;text=\"Call completed elsewhere\"")]
        self.core.start_transaction(Request("CANCEL", req.uri, headers), fork.flow, None)

    def _no_ack(self, call: Call) -> None:
        if call.state is CallState.ANSWERED:
            log.info("call %s: the caller never ACKed our 200", call.id)
            self.core.spawn(self.hangup(call, by="switch", cause=41))

    # -- in-dialog requests -----------------------------------------------------------------------------
    def _find(self, req: Request) -> tuple[Call, Fork | None] | None:
        return self.dialogs.get((req.call_id, req.to.tag or "", req.from_.tag or ""))

    async def on_bye(self, inc: IncomingRequest) -> Response:
        found = self._find(inc.request)
        if found is None:
            return self.core.make_response(inc, 481)
        call, fork = found
        if fork is not None and fork is not call.answered and fork is not call.partner:
            # a leg already transferred away (or a losing fork): only that leg ends
            fork.state = ForkState.DONE
            self.dialogs.pop((inc.request.call_id, inc.request.to.tag or "", inc.request.from_.tag or ""), None)
            return self.core.make_response(inc, 200)
        side_dialog = call.a_dialog if fork is None else fork.dialog
        if side_dialog is not None:
            try:
                side_dialog.check_request(inc.request)
            except RemoteProtocolError as exc:
                return self.core.make_response(inc, exc.status or 500, exc.reason)
        self.core.spawn(self.hangup(call, by="caller" if fork is None else "callee", cause=NORMAL_CLEARING,
                                    skip_a=fork is None, skip_fork=fork))
        return self.core.make_response(inc, 200)

    async def on_ack(self, inc: IncomingRequest) -> None:
        """The caller's ACK for our 2xx (the transaction layer stopped retransmitting already).
        With a late offer it carries the caller's answer, which the callee gets in our ACK."""
        found = self._find(inc.request)
        if found is None or found[1] is not None:
            return None
        call = found[0]
        fork = call.answered
        if fork is None or not fork.awaiting_answer or fork.dialog is None or call.media is None:
            return None
        fork.awaiting_answer = False
        ack = fork.dialog.create_request("ACK", self.core.via_for(fork.flow))
        ack.set_header("CSeq", f"{fork.request.cseq.seq} ACK")
        answer = inc.request.body
        if answer:
            call.caller_sdp = answer
            body, target = anchor(answer, self.media_ip(fork.flow), call.media.b.port,
                                  session_id=_session_id(call))
            await self._point(call, "a", target)
            ack = fork.dialog.create_request("ACK", self.core.via_for(fork.flow), body=body,
                                             extra=[("Content-Type", "application/sdp")])
            ack.set_header("CSeq", f"{fork.request.cseq.seq} ACK")
        fork.late_ack = ack
        self.core.send_stateless(ack, fork.flow)
        return None

    async def _ensure_media(self, call: Call, worker: MediaClient | None = None) -> None:
        if call.media is not None:
            return
        worker = worker or self.media.pick()
        first, chosen = None, None
        if call.inc is not None:  # a call the switch placed learns its first side from the partner's answer
            offer = call.inc.request.body
            target, chosen = audio_target_of(offer), chosen_codec(offer)
            if target is not None or chosen is not None:
                # the caller side's address and codec go with the pair: one round trip, not two
                first = self._point_fields(call, "a", target, chosen, None, endpoint="")
        worker.endpoints += 2
        pair = await worker.pair_create(call.id, first=first)
        if pair is None:
            worker.endpoints -= 2
            raise RemoteProtocolError("no media port available", 503)
        call.media = Media(worker, *pair)
        if chosen is not None:
            call.media.codecs["a"] = chosen.codec
        self.by_endpoint_call[call.id] = call

    def on_media_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "dtmf":
            call = self.by_endpoint_call.get(str(event.get("call")))
            if call is not None and call.media is not None:
                side = "caller" if event.get("endpoint") == call.media.a.endpoint else "callee"
                self.on_digit(call, str(event["digit"]), side, int(event.get("duration_ms", 0)))
            return
        if kind == "play.done":
            self._media_done(event)
            return
        if kind == "record.done":
            self._recording_done(event)
            return
        if kind == "record.encoded":
            self._recording_encoded(event)
            return
        if kind in ("amd", "beep"):
            call = self.by_endpoint_call.get(str(event.get("call")))
            if call is None or call.media is None:
                return
            side = "caller" if event.get("endpoint") == call.media.a.endpoint else "callee"
            if kind == "amd":
                self._emit(AmdResult(call.id, side=side, result=str(event.get("result")),
                                     cause=str(event.get("cause", "")), ms=int(event.get("ms") or 0)))
            else:
                self._emit(BeepDetected(call.id, side=side, hz=float(event.get("hz") or 0.0),
                                        tone_ms=int(event.get("tone_ms") or 0), at_ms=int(event.get("at_ms") or 0)))
            self._detected(call, kind, side, event)
            return
        if event.get("event") == "rtp.timeout":
            call = self.by_endpoint_call.get(str(event.get("call")))
            if call is not None and call.state is CallState.ANSWERED:
                log.info("call %s: no RTP for %ss, hanging up", call.id, event.get("idle"))
                call.hangup_by = "rtp-timeout"
                self.core.spawn(self.hangup(call, by="rtp-timeout", cause=41))

    # -- shutdown --------------------------------------------------------------------------------------
    async def drain(self, deadline: float) -> None:
        """Let calls finish until the deadline, then hang up what is left."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            for call in list(self.calls.values()):
                if call.state is CallState.ANSWERED:
                    await self.hangup(call, by="shutdown", cause=NORMAL_CLEARING)
                else:
                    await self._fail(call, 503, "shutting down")

    def has_call_from(self, ip: str) -> bool:
        """Whether an answered call has a leg at ``ip`` (asked only when a ban is due)."""
        for call in self.calls.values():
            if call.state is not CallState.ANSWERED:
                continue
            if call.inc is not None and call.inc.flow.remote[0] == ip:
                return True
            if any(f.flow.remote[0] == ip for f in (call.answered, call.partner) if f is not None):
                return True
        return False

    def summary(self) -> dict[str, Any]:
        return {
            "active": len(self.calls),
            "answered": sum(1 for c in self.calls.values() if c.state is CallState.ANSWERED),
            "completed": self.completed,
            "calls": [{"id": c.id, "caller": c.caller, "called": c.called, "state": c.state.value,
                       "destination": c.destination, "since": round(time.time() - c.started, 1)}
                      for c in list(self.calls.values())[:100]],
        }


def _session_id(call: Call) -> str:
    return str(abs(hash(call.id)) % 10**9)
