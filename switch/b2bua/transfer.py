"""Transfers from desk phones: blind (REFER) and attended (REFER with Replaces), with NOTIFY
message/sipfrag progress. The transferred caller keeps its media endpoint and its CDR."""

from __future__ import annotations

import logging
import time
from typing import Any

from ...config.schema import Action
from ...events import CallTransferred
from ..core import IncomingRequest
from ..router import CallContext, Router
from ..sip.dialog import Dialog
from ..sip.errors import RemoteProtocolError
from ..sip.headers import parse_name_addr
from ..sip.message import Response
from ..sip.uri import URI, parse_uri, unescape
from .call import Call, CallState, Fork, ForkState
from .indialog import audio_target_of
from .sdp_anchor import anchor

log = logging.getLogger("centralino.b2bua")


class TransferMixin:
    """Part of the B2BUA: see engine.B2BUA for the attributes used here."""

    # -- transfer (REFER) -------------------------------------------------------------------------------
    async def on_refer(self, inc: IncomingRequest) -> Response | None:
        """Blind transfer from the callee's phone: the caller stays on the same media endpoint,
        a new leg rings the Refer-To target, NOTIFYs (message/sipfrag) report its progress, and
        on success the transferor's leg is released. The call keeps its CDR (one row)."""
        req = inc.request
        found = self._find(req)
        if found is None:
            return self.core.make_response(inc, 481)
        call, fork = found
        if fork is None:
            return self.core.make_response(inc, 501, "Transfer by the caller is not supported yet")
        if call.state is not CallState.ANSWERED or fork is not call.answered or call.media is None:
            return self.core.make_response(inc, 491)
        refer_to = req.header("Refer-To")
        try:
            target_uri = parse_name_addr(refer_to or "").uri
        except RemoteProtocolError:
            return self.core.make_response(inc, 400, "Bad Refer-To")
        if not isinstance(target_uri, URI) or not target_uri.user:
            return self.core.make_response(inc, 400, "Bad Refer-To")
        replaces = next((unescape(v) for k, v in target_uri.headers if k.lower() == "replaces"), None)
        if replaces is not None:
            return await self._attended_transfer(inc, call, fork, replaces)
        target = unescape(target_uri.user)
        self.core.send_response(inc, self.core.make_response(inc, 202))  # before the first NOTIFY
        fork.refer = req
        self._notify(fork, "SIP/2.0 100 Trying", terminated=False)
        if not await self._ring_transfer_target(call, fork, target):
            self._notify(fork, "SIP/2.0 480 Temporarily Unavailable", terminated=True)
        return None

    async def transfer(self, call: Call, target: str) -> int:
        """A blind transfer the switch is asked for (the API, for an agent or a supervisor): as a
        REFER from the answered leg's phone would, without the NOTIFYs. 202: ``target`` rings and
        replaces the leg when it answers (``call.transferred``), else the caller stays; 409: the
        call is not connected or is being transferred; 480: nobody to ring there."""
        fork = call.answered
        if call.state is not CallState.ANSWERED or fork is None or call.media is None:
            return 409
        if any(f.transfer_of is fork for f in call.live_forks()):
            return 409
        return 202 if await self._ring_transfer_target(call, fork, target) else 480

    async def _ring_transfer_target(self, call: Call, fork: Fork, target: str) -> bool:
        """Ring what the plan routes ``target`` to on behalf of ``fork``: its extensions'
        contacts, or an outside number through the route's trunk (the first of its list that is
        up and has a free channel). False when there is nobody to ring."""
        plan = self.plan_of()
        # routed as the transferor would dial it: an agent may transfer to what the agent may call
        # (a leg that is no extension transfers with the call's own source)
        kind, _, ext = fork.destination.partition(":")
        who = CallContext(to=target, caller=ext, source="extension") if kind == "extension" and ext in plan.extensions \
            else CallContext(to=target, caller=call.caller, source=call.source)
        action = Router(plan, self.overrides.forced).route(who).action
        dial = action.dial
        if not dial and target in plan.extensions:
            dial = target  # an extension's own number reaches it even where no route dials it
        if not dial and action.trunk:
            return await self._transfer_out(call, fork, action, target)
        bindings = [(t, b) for t in (dial or "").split(",") if t in plan.extensions
                    for b in self.location.lookup(t, time.time())]
        if not bindings:
            return False
        call.transfers += 1
        log.info("call %s: %s transfers the caller to %s", call.id, fork.destination, target)
        for ext, b in bindings:
            uri = parse_name_addr(b.contact).uri
            assert isinstance(uri, URI)
            self._fork(call, uri, b.target(), destination=f"extension:{ext}", to_user=ext, transfer_of=fork)
        return True

    async def _transfer_out(self, call: Call, fork: Fork, action: Action, target: str) -> bool:
        """A transfer to an outside number: one leg through the route's first usable trunk (the
        call's channel count and the trunk's credentials apply as for any outgoing leg)."""
        plan = self.plan_of()
        number = action.number or target
        for name in action.trunk if isinstance(action.trunk, list) else [action.trunk]:
            if not name or name not in plan.trunks:
                continue
            flow = await self._trunk_channel(call, name)
            if flow is None:
                continue
            if call.state is not CallState.ANSWERED or call.answered is not fork:
                return False  # the call ended or changed while the trunk was looked up
            t = plan.trunks[name]
            uri = parse_uri(f"sip:{number}@{t.host}:{t.port}")
            assert isinstance(uri, URI)
            call.transfers += 1
            log.info("call %s: %s transfers the caller to %s via trunk %s", call.id, fork.destination, number, name)
            self._fork(call, uri, flow, destination=f"trunk:{name}:{number}", to_user=number, trunk=name,
                       transfer_of=fork)
            return True
        return False

    async def _attended_transfer(self, inc: IncomingRequest, call: Call, transferor: Fork,
                                 replaces: str) -> Response | None:
        """REFER with Replaces: the transferor (callee of this call) has a second call to the
        target; the target's leg is moved into this call, re-pointed (re-INVITE) at this call's
        callee-facing endpoint, the caller is taken off hold, and both legs of the transferor end."""
        call_id, _, rest = replaces.partition(";")
        params = dict(p.split("=", 1) for p in rest.split(";") if "=" in p)
        # Replaces names the dialog as the transferor sees it: to-tag is ours, from-tag is theirs
        found = self.dialogs.get((call_id.strip(), params.get("to-tag", ""), params.get("from-tag", "")))
        if found is None:
            return self.core.make_response(inc, 481, "Replaced dialog not found")
        other, other_fork = found
        target = other.answered if other_fork is None else None
        if other is call or target is None or target.dialog is None or call.media is None:
            return self.core.make_response(inc, 481, "Replaced dialog is not the transferor's call")
        self.core.send_response(inc, self.core.make_response(inc, 202))
        transferor.refer = inc.request
        self._notify(transferor, "SIP/2.0 100 Trying", terminated=False)
        # 1. the target now sends to and receives from this call's callee-facing endpoint
        offer, _ = anchor(call.caller_sdp or call.inc.request.body, self.media_ip(target.flow), call.media.b.port,
                          session_id=str(abs(hash(call.id)) % 10**9))
        reinvite = target.dialog.create_request(
            "INVITE", self.core.via_for(target.flow), body=offer, contact=self.core.contact_for(target.flow),
            extra=[("Content-Type", "application/sdp")])
        resp = await self.core.send_and_wait(reinvite, target.flow)
        if resp.status >= 300:
            self._notify(transferor, f"SIP/2.0 {resp.status} {resp.reason}", terminated=True)
            return None
        ack = target.dialog.create_request("ACK", self.core.via_for(target.flow))
        ack.set_header("CSeq", f"{reinvite.cseq.seq} ACK")
        self.core.send_stateless(ack, target.flow)
        moved = await self._point(call, "b", audio_target_of(resp.body) if resp.body else None,
                                  signalling=target.flow)
        transferor.rtp = moved.get("previous") or transferor.rtp
        # 2. move the target's leg into this call; the other call ends without touching it
        other.forks.remove(target)
        other.answered = None
        target.call = call
        call.forks.append(target)
        call.answered, call.destination = target, target.destination
        self._register_dialog(call, target.dialog.id, target)
        transferor.state = ForkState.DONE
        self._notify(transferor, "SIP/2.0 200 OK", terminated=True)
        if transferor.dialog is not None:
            self._bye(transferor.dialog, transferor.flow)
        other.hangup_by = "transfer"
        self.core.spawn(self.hangup(other, by="transfer"))
        # 3. take the caller off hold: offer our caller-facing endpoint again, sendrecv
        if call.held and call.a_dialog is not None:
            self.core.spawn(self._resume_caller(call))
        log.info("call %s: attended transfer to %s", call.id, target.destination)
        self._emit(CallTransferred(call.id, destination=target.destination, attended=True))
        return None

    async def _resume_caller(self, call: Call) -> None:
        assert call.a_dialog is not None and call.media is not None
        body, _ = anchor(call.caller_sdp or call.inc.request.body, self.media_ip(call.a_flow), call.media.a.port,
                         session_id=str(abs(hash(call.id)) % 10**9))
        body = body.replace(b"a=sendonly", b"a=sendrecv").replace(b"a=recvonly", b"a=sendrecv").replace(
            b"a=inactive", b"a=sendrecv")
        reinvite = call.a_dialog.create_request(
            "INVITE", self.core.via_for(call.a_flow), body=body, contact=self.core.contact_for(call.a_flow),
            extra=[("Content-Type", "application/sdp")])
        resp = await self.core.send_and_wait(reinvite, call.a_flow)
        if 200 <= resp.status < 300:
            ack = call.a_dialog.create_request("ACK", self.core.via_for(call.a_flow))
            ack.set_header("CSeq", f"{reinvite.cseq.seq} ACK")
            self.core.send_stateless(ack, call.a_flow)
            await self._point(call, "a", audio_target_of(resp.body) if resp.body else None)
            call.held = False
            await call.media.worker.set_timeout([call.media.a.endpoint, call.media.b.endpoint], self.rtp_timeout)

    async def _repoint_to(self, call: Call, transferor: Fork, new: Fork, target: Any) -> None:
        """The callee-facing endpoint now talks to the transfer target; the transferor's leg
        keeps the packet counts of its own party (its CDR row)."""
        moved = await self._point(call, "b", target, signalling=new.flow)
        if moved.get("previous"):
            transferor.rtp = moved["previous"]

    async def on_notify(self, inc: IncomingRequest) -> Response:
        # NOTIFYs of subscriptions we did not make (e.g. a phone's unsolicited MWI) are refused
        return self.core.make_response(inc, 481 if self._find(inc.request) is None else 200)

    def _notify(self, fork: Fork, sipfrag: str, *, terminated: bool) -> None:
        if fork.dialog is None or fork.refer is None:
            return  # no REFER, no subscription to report to (a transfer the API asked for)
        state = "terminated;reason=noresource" if terminated else "active;expires=60"
        notify = fork.dialog.create_request(
            "NOTIFY", self.core.via_for(fork.flow), body=(sipfrag + "\r\n").encode(),
            contact=self.core.contact_for(fork.flow),
            extra=[("Event", "refer"), ("Subscription-State", state),
                   ("Content-Type", "message/sipfrag;version=2.0")])
        self.core.start_transaction(notify, fork.flow, None)

    def _transfer_progress(self, new: Fork, resp: Response) -> None:
        call, transferor = new.call, new.transfer_of
        assert transferor is not None
        status = resp.status
        if status < 200:
            if status > 100 and self._fork_provisional(new):
                self._notify(transferor, f"SIP/2.0 {status} {resp.reason}", terminated=False)
            return
        if (status in (401, 407) and new.trunk and new.auth_attempts < 2
                and new.state is not ForkState.DONE and self._retry_with_credentials(new, resp)):
            return  # the trunk asked for its credentials: the same leg again, authorised
        if status >= 300:
            new.state, new.status = ForkState.DONE, status
            if not [f for f in call.live_forks() if f.transfer_of is transferor]:
                self._notify(transferor, f"SIP/2.0 {status} {resp.reason}", terminated=True)
                log.info("call %s: transfer failed (%d), the caller stays with %s", call.id, status,
                         transferor.destination)
            return
        try:
            dialog = Dialog.from_uac(new.request, resp)
        except RemoteProtocolError:
            return
        if new.dialog is not None:
            self._send_ack(new)
            return
        new.dialog, new.status = dialog, status
        self._send_ack(new)
        if call.answered is not transferor or call.state is not CallState.ANSWERED:
            new.state = ForkState.DONE
            self._bye(dialog, new.flow)
            return
        new.state, new.answered_at = ForkState.ANSWERED, time.time()
        for other in call.live_forks():
            if other.transfer_of is transferor:
                other.status = 487
                self._cancel_fork(other)
        self._register_dialog(call, dialog.id, new)
        call.answered = new
        call.destination = new.destination
        if resp.body and call.media is not None:
            self.core.spawn(self._repoint_to(call, transferor, new, audio_target_of(resp.body)))
        self._notify(transferor, "SIP/2.0 200 OK", terminated=True)
        transferor.state = ForkState.DONE
        if transferor.dialog is not None:
            self._bye(transferor.dialog, transferor.flow)
        log.info("call %s transferred to %s", call.id, new.destination)
        self._emit(CallTransferred(call.id, destination=new.destination, attended=False))

