"""Requests inside an answered call's dialogs: re-INVITE, UPDATE and INFO relayed to the
other leg (hold, unhold, codec changes, DTMF), and RFC 4028 session timers."""

from __future__ import annotations

import functools
import ipaddress
import logging
from typing import Any

from ...events import CallDtmf, CallUpdated
from ...media.protocol import EndpointUpdate, endpoint_update
from ..core import IncomingRequest
from ..sip.errors import RemoteProtocolError
from ..sip.message import Response
from ..transport.base import Flow
from .call import Call, CallState, Fork, SessionTimer
from .sdp_anchor import anchor, answer_with

log = logging.getLogger("centralino.b2bua")


class InDialogMixin:
    """Part of the B2BUA: see engine.B2BUA for the attributes used here."""

    async def _reinvite(self, inc: IncomingRequest) -> Response:
        return await self._relay_in_dialog(inc)

    async def on_update(self, inc: IncomingRequest) -> Response:
        """UPDATE and INFO (e.g. DTMF as application/dtmf-relay) are relayed to the other leg."""
        return await self._relay_in_dialog(inc)

    async def _relay_in_dialog(self, inc: IncomingRequest) -> Response:
        """A re-INVITE or UPDATE (hold, unhold, codec change) goes to the other leg with its SDP
        pointed at that leg's endpoint; the other leg's answer comes back the same way."""
        req = inc.request
        found = self._find(req)
        if found is None:
            return self.core.make_response(inc, 481)
        call, fork = found
        from_dialog = call.a_dialog if fork is None else fork.dialog
        if from_dialog is not None:
            try:
                from_dialog.check_request(req)
            except RemoteProtocolError as exc:
                return self.core.make_response(inc, exc.status or 500, exc.reason)
        other = call.answered if fork is None else None
        if fork is None and other is None and call.state is CallState.ANSWERED:
            return await self._local_in_dialog(inc, call)  # the switch itself is the far end
        to_dialog = other.dialog if other is not None else call.a_dialog
        to_flow = other.flow if other is not None else call.a_flow
        if to_dialog is None or call.media is None or call.state is not CallState.ANSWERED:
            return self.core.make_response(inc, 491 if call.state is CallState.RINGING else 481)
        from_side, to_side = ("a", "b") if fork is None else ("b", "a")
        if req.method == "INFO":
            digit = dtmf_from_info(req)
            if digit is not None:
                self.on_digit(call, digit[0], "caller" if fork is None else "callee", digit[1])
        body = req.body
        is_sdp = req.content_type is not None and req.content_type.mime == "application/sdp"
        if body and is_sdp and fork is None:
            call.caller_sdp = req.body
        if body and is_sdp:
            body, target = anchor(req.body, self.media_ip(to_flow), getattr(call.media, to_side).port,
                                  session_id=str(abs(hash(call.id)) % 10**9))
            await self._point(call, from_side, target)
        headers = [("Contact", self.core.contact_for(to_flow)), ("User-Agent", self.core.user_agent)]
        if body:
            headers.append(("Content-Type", req.header("Content-Type") or "application/sdp"))
        out = to_dialog.create_request(req.method, self.core.via_for(to_flow), body=body, extra=headers)
        resp = await self.core.send_and_wait(out, to_flow)
        if req.method == "INVITE" and 200 <= resp.status < 300:
            ack = to_dialog.create_request("ACK", self.core.via_for(to_flow))
            ack.set_header("CSeq", f"{out.cseq.seq} ACK")
            self.core.send_stateless(ack, to_flow)
        if resp.status >= 300:
            return self.core.make_response(inc, resp.status, resp.reason)
        answer = b""
        if resp.body and resp.content_type is not None and resp.content_type.mime == "application/sdp":
            answer, target = anchor(resp.body, self.media_ip(inc.flow), getattr(call.media, from_side).port,
                                    session_id=str(abs(hash(call.id)) % 10**9))
            await self._point(call, to_side, target)
        # on hold no RTP may flow: the inactivity timeout waits for the call to be resumed
        directions = {t.direction for t in (audio_target_of(req.body if is_sdp else b""), audio_target_of(answer))
                      if t is not None}
        held = bool(directions & {"sendonly", "recvonly", "inactive"})
        await call.media.worker.set_timeout([call.media.a.endpoint, call.media.b.endpoint],
                                            0 if held else self.rtp_timeout)
        call.held = held
        log.info("call %s: %s relayed (%s)", call.id, req.method, "hold" if held else "active")
        self._emit(CallUpdated(call.id, method=req.method, held=held))
        out_headers = [("Contact", self.core.contact_for(inc.flow))]
        timer = call.a_timer if fork is None else fork.timer
        if timer is not None and req.method in ("INVITE", "UPDATE"):
            self._arm_timer(call, fork)  # the refresh arrived
            out_headers += [("Session-Expires", f"{timer.interval};refresher={'uas' if timer.we_refresh else 'uac'}"),
                            ("Require", "timer")]
        if answer:
            out_headers.append(("Content-Type", "application/sdp"))
        return self.core.make_response(inc, resp.status, resp.reason, headers=out_headers, body=answer)

    def on_digit(self, call: Call, digit: str, side: str, duration_ms: int = 0) -> None:
        """A key from either side, whatever carried it: an event for listeners, feature codes,
        and the caller's keys for the application answering the call."""
        self._emit(CallDtmf(call.id, digit=digit, side=side, duration_ms=duration_ms))
        self._feature_digit(call, digit)
        if side == "caller":
            call.keys().put_nowait(digit)

    async def _local_in_dialog(self, inc: IncomingRequest, call: Call) -> Response:
        """INFO, UPDATE or re-INVITE on a call the switch answered itself (IVR, conference)."""
        req = inc.request
        if req.method == "INFO":
            digit = dtmf_from_info(req)
            if digit is not None:
                self.on_digit(call, digit[0], "caller", digit[1])
            return self.core.make_response(inc, 200)
        if not req.body or call.media is None:
            return self.core.make_response(inc, 200)
        call.caller_sdp = req.body
        body, chosen = answer_with(req.body, self.media_ip(call.a_flow), call.media.a.port,
                                   session_id=str(abs(hash(call.id)) % 10**9))
        await self._point(call, "a", audio_target_of(req.body), chosen)
        return self.core.make_response(inc, 200, headers=[("Contact", self.core.contact_for(call.a_flow)),
                                                          ("Content-Type", "application/sdp")], body=body)

    async def _point(self, call: Call, side: str, target: Any, chosen: Any = None, *,
                     signalling: Flow | None = None) -> dict[str, Any]:
        """Send ``side``'s endpoint's audio to where that side's SDP now says; ``chosen`` (a
        sdp_anchor.Chosen) sets the codec that side speaks. The worker's reply carries, under
        ``previous``, the counters of the party the side had before when it moved."""
        media = call.media  # the call may end (and drop its media) while we await the worker
        update = self._point_command(call, side, target, chosen, signalling=signalling)
        if media is not None and update is not None:
            return await media.worker.update(update)
        return {}

    def _point_command(self, call: Call, side: str, target: Any, chosen: Any = None, *,
                       signalling: Flow | None = None) -> EndpointUpdate | None:
        """The worker command of ``_point`` (None when there is nothing to change), to send on
        its own or in a batch with others. ``signalling``: the flow of the side's dialog (default:
        the caller's for ``a``, the answered leg's for ``b``), for NAT-aware latching."""
        media = call.media
        if media is None or (target is None and chosen is None):
            return None
        update = self._point_fields(call, side, target, chosen, signalling, getattr(media, side).endpoint)
        if chosen is not None:
            media.codecs[side] = chosen.codec
        return update

    def _point_fields(self, call: Call, side: str, target: Any, chosen: Any, signalling: Flow | None,
                      endpoint: str) -> EndpointUpdate:
        """The fields of ``_point_command`` for ``endpoint`` (also for an endpoint not created
        yet: ``pair.create`` applies the caller side's first update in the same round trip)."""
        update = endpoint_update(endpoint)
        if chosen is not None:
            update.update(codec=chosen.codec, pt=chosen.pt, codecs=chosen.codecs)
            if chosen.dtmf_pt is not None:
                update["dtmf_pt"] = chosen.dtmf_pt  # the event we answered with: what we send it
        if target is not None:
            # a side that offers no telephone-event sends its keys as tones: listen for them
            inband = target.dtmf_pt is None and self.plan_of().server.rtp.inband_dtmf
            update.update(ip=target.ip, port=target.port, rtcp_port=target.rtcp_port,
                          dtmf_pts=dict(target.dtmf_rates), inband_dtmf=inband,
                          latch_ip=latch_host(target.ip, self._side_flow(call, side, signalling)))
            if "dtmf_pt" not in update:
                update["dtmf_pt"] = target.dtmf_pt
        return update

    def _side_flow(self, call: Call, side: str, given: Flow | None) -> Flow | None:
        if given is not None:
            return given
        if side == "a":
            return call.inc.flow if call.inc is not None else (call.partner.flow if call.partner else None)
        return call.answered.flow if call.answered is not None else None

    # -- session timers (RFC 4028) ---------------------------------------------------------------
    def _caller_session_timer(self, call: Call) -> list[tuple[str, str]]:
        """Headers for our 2xx to the caller; arms the caller leg's timer when it supports one."""
        req = call.inc.request
        cfg = self.plan_of().server.sip
        if not cfg.session_expires or "timer" not in [t.lower() for t in req.option_tags("Supported")]:
            return []
        se = _session_expires(req)
        interval = min(se[0], cfg.session_expires) if se else cfg.session_expires
        interval = max(interval, cfg.min_se)
        # the caller refreshes unless it asked us to (refresher=uas)
        we_refresh = se is not None and se[1] == "uas"
        call.a_timer = SessionTimer(interval, we_refresh)
        self._arm_timer(call, None)
        return [("Session-Expires", f"{interval};refresher={'uas' if we_refresh else 'uac'}"), ("Require", "timer")]

    def _arm_timer(self, call: Call, fork: Fork | None) -> None:
        timer = call.a_timer if fork is None else fork.timer
        if timer is None or call.state is CallState.ENDED:
            return
        timer.cancel()
        if timer.we_refresh:
            timer.handle = self.clock.call_later(timer.interval / 2, lambda: self.core.spawn(self._refresh(call, fork)))
        else:
            grace = timer.interval - min(32, timer.interval / 3)
            timer.handle = self.clock.call_later(grace, self._session_expired, call, fork)

    def _session_expired(self, call: Call, fork: Fork | None) -> None:
        if call.state is CallState.ANSWERED:
            log.info("call %s: session timer expired on the %s leg", call.id, "caller" if fork is None else "callee")
            call.hangup_by = "session-timer"
            self.core.spawn(self.hangup(call, by="session-timer", cause=102))

    async def _refresh(self, call: Call, fork: Fork | None) -> None:
        """We are the refresher: an UPDATE without SDP (or a re-INVITE if the peer lacks UPDATE)."""
        dialog = call.a_dialog if fork is None else fork.dialog
        flow = call.a_flow if fork is None else fork.flow
        timer = call.a_timer if fork is None else fork.timer
        if dialog is None or timer is None or call.state is not CallState.ANSWERED:
            return
        extra = [("Session-Expires", f"{timer.interval};refresher=uac"), ("Supported", "timer"),
                 ("Contact", self.core.contact_for(flow))]
        req = dialog.create_request("UPDATE", self.core.via_for(flow), extra=extra)
        resp = await self.core.send_and_wait(req, flow)
        if resp.status in (408, 481):
            self._session_expired(call, fork)
            return
        self._arm_timer(call, fork)



def latch_host(sdp_ip: str, signalling: Flow | None) -> str:
    """Which host's packets may latch a side: its SDP's, unless that address cannot be where
    the packets come from — a private address while the phone signals from a public one (it is
    behind NAT): then the host its dialog's requests come from."""
    if signalling is None:
        return sdp_ip
    source = signalling.remote[0]
    if sdp_ip == source:
        return sdp_ip
    sdp_kind, source_kind = _address_kind(sdp_ip), _address_kind(source)
    if sdp_kind is None or source_kind is None:
        return sdp_ip
    if sdp_kind in ("private", "unspecified") and source_kind != "private":
        return source
    return sdp_ip


@functools.lru_cache(maxsize=4096)
def _address_kind(text: str) -> str | None:
    """'private', 'unspecified' or 'public' (None: not an IP address); cached, as phones reuse
    the same few addresses and ipaddress parsing showed in the call path's profile."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.is_unspecified:
        return "unspecified"
    return "private" if addr.is_private else "public"


def dtmf_from_info(req: Any) -> tuple[str, int] | None:
    """(digit, duration ms) from an INFO body: application/dtmf-relay ("Signal=5\r\nDuration=160")
    or application/dtmf ("5")."""
    ctype = req.content_type
    if ctype is None or not req.body:
        return None
    text = req.body.decode("utf-8", "replace").strip()
    if ctype.mime == "application/dtmf-relay":
        fields = {}
        for line in text.splitlines():
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip()
        digit, duration = fields.get("signal", ""), fields.get("duration", "0")
    elif ctype.mime == "application/dtmf":
        digit, duration = text, "0"
    else:
        return None
    if len(digit) != 1 or digit.upper() not in "0123456789*#ABCD":
        return None
    return digit.upper(), int(duration) if duration.isdigit() else 0


def _session_expires(msg: Any) -> tuple[int, str | None] | None:
    """(seconds, refresher) from Session-Expires, or None."""
    value = msg.header("Session-Expires")
    if not value:
        return None
    head, *params = [p.strip() for p in value.split(";")]
    if not head.isdigit():
        return None
    refresher = next((p.split("=", 1)[1].lower() for p in params if p.lower().startswith("refresher=")), None)
    return int(head), refresher


def audio_target_of(body: bytes) -> Any:
    from ..sip.sdp import parse_sdp
    from .sdp_anchor import audio_target

    return audio_target(parse_sdp(body)) if body else None
