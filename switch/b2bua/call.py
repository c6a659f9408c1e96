"""A call: one caller leg (the INVITE we answer) and one or more callee legs (forks we send),
with its media endpoints and what its CDR needs. Pure data plus small helpers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ...events import IVR_DIGITS, CdrRecord
from ...media.protocol import EndpointRef, MediaClient
from ..core import IncomingRequest
from ..sip.dialog import Dialog
from ..sip.message import Request
from ..sip.uri import URI
from ..transport.base import Flow

# SIP status → Q.850 cause (RFC 3398 §8.2.6.1, with the usual PBX choices)
Q850 = {400: 41, 401: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22, 480: 18,
        481: 41, 482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 127, 488: 65, 500: 41, 501: 79,
        502: 38, 503: 34, 504: 102, 600: 17, 603: 21, 604: 1, 606: 58}
NORMAL_CLEARING = 16
NO_ANSWER = 19


def q850_for(status: int) -> int:
    return Q850.get(status, 31 if status >= 400 else NORMAL_CLEARING)


def disposition_for(status: int) -> str:
    if 200 <= status < 300:
        return "ANSWERED"
    if status in (486, 600):
        return "BUSY"
    if status == 487:
        return "CANCELLED"
    if status in (408, 480):
        return "NO ANSWER"
    if status in (502, 503, 504):
        return "CONGESTION"
    return "FAILED"


class CallState(Enum):
    ROUTING = "routing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class ForkState(Enum):
    CALLING = "calling"
    EARLY = "early"
    ANSWERED = "answered"
    DONE = "done"  # failed, cancelled or hung up


@dataclass
class Media:
    worker: MediaClient  # the media worker holding both endpoints
    a: EndpointRef  # the endpoint facing the caller
    b: EndpointRef  # the endpoint facing the callee(s)
    codecs: dict[str, str] = field(default_factory=dict)  # side → codec it speaks


@dataclass(eq=False)
class SessionTimer:
    """RFC 4028 on one leg: who refreshes, and the one timer that either refreshes (us) or
    gives up on a silent peer."""

    interval: int
    we_refresh: bool
    handle: Any = None

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


@dataclass(eq=False)
class Fork:
    """One outgoing INVITE (to a registered contact or a trunk)."""

    call: Call
    engine: Any
    uri: URI
    flow: Flow
    request: Request
    destination: str
    trunk: str | None = None
    txn: Any = None
    state: ForkState = ForkState.CALLING
    provisional: bool = False
    cancel_pending: bool = False
    dialog: Dialog | None = None
    auth_attempts: int = 0
    status: int | None = None
    started: float = field(default_factory=time.time)
    answered_at: float | None = None
    timer: SessionTimer | None = None
    awaiting_answer: bool = False  # late offer: our ACK waits for the caller's answer
    late_ack: Any = None  # that ACK once sent (re-sent on a retransmitted 2xx)
    transfer_of: Fork | None = None  # set on the new leg of a transfer: the transferor's leg
    refer: Any = None  # the transferor's REFER, for its NOTIFYs
    attempt: Any = None  # connect.RingAttempt when an application rings an extension
    side: str = "b"  # the endpoint it talks to ("a": the second leg of a call the switch placed)
    rtp: dict[str, Any] | None = None  # its party's packet counters once the endpoint moved on (transfer)

    # the transaction layer reports here
    def on_response(self, txn: Any, response: Any) -> None:
        self.engine.on_fork_response(self, txn, response)

    def on_timeout(self, txn: Any) -> None:
        self.engine.on_fork_timeout(self, txn)


@dataclass(eq=False, slots=True)
class FinishedLeg:
    """Stands in for a leg of a finished call while its INVITE client transaction lingers
    (RFC 6026: 32 s to pass on retransmitted 2xx): answers those without keeping the whole
    call — dialogs, parsed messages, media, CDR fields — alive for the garbage collector."""

    engine: Any
    request: Request
    flow: Flow
    dialog: Dialog | None

    def on_response(self, txn: Any, response: Any) -> None:
        if 200 <= response.status < 300:
            self.engine.on_late_2xx(self, response)

    def on_timeout(self, txn: Any) -> None:
        pass


@dataclass(eq=False)
class Call:
    id: str
    inc: IncomingRequest | None  # None: a call the switch placed (a queue callback)
    caller: str
    called: str
    source: str  # "extension" or a trunk name
    did: str = ""
    caller_name: str | None = None
    presented: str | None = None  # the number trunk legs show instead of the caller (a campaign's caller ID)
    state: CallState = CallState.ROUTING
    forks: list[Fork] = field(default_factory=list)
    answered: Fork | None = None
    a_dialog: Dialog | None = None
    media: Media | None = None
    destination: str = ""
    started: float = field(default_factory=time.time)
    ring_started: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    final_status: int | None = None
    cause: int | None = None
    hangup_by: str = ""
    cancelled: bool = False
    ring_timer: Any = None
    dialog_ids: list[tuple[str, str, str]] = field(default_factory=list)  # its keys in B2BUA.dialogs
    fallback: Any = None  # the route's `else` action, taken when the dial fails
    trunk_candidates: list[str] = field(default_factory=list)  # failover trunks not tried yet
    trunk_number: str = ""
    channels: list[str] = field(default_factory=list)  # trunks whose channels this call holds
    rtp: dict[str, Any] = field(default_factory=dict)
    held: bool = False
    caller_sdp: bytes = b""  # the caller's latest SDP (re-offered to a transfer target)
    a_timer: SessionTimer | None = None
    transfers: int = 0
    record: bool = False  # the route asked for a recording from the answer
    recording: str | None = None  # its file (goes to the CDR)
    recording_id: str | None = None
    recording_agent: str = ""
    recording_paused: bool = False
    vars: dict[str, str] = field(default_factory=dict)  # set by the IVR (priority, skill.X, language, …)
    customer_e164: str = ""  # the customer's number (a trunk call's caller, or the number dialled out first)
    typed: list[tuple[str, float]] = field(default_factory=list)  # recent keys, for feature codes
    partner: Fork | None = None  # a call the switch placed: the leg dialled second, in the caller's place
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _keys: asyncio.Queue[str] | None = None

    def keys(self) -> asyncio.Queue[str]:
        """The keys this call's caller presses, for applications (IVR menus)."""
        if self._keys is None:
            self._keys = asyncio.Queue()
        return self._keys

    @property
    def a_flow(self) -> Flow:
        if self.inc is not None:
            return self.inc.flow
        assert self.partner is not None, "a call the switch placed has no first side before its partner answers"
        return self.partner.flow

    def live_forks(self) -> list[Fork]:
        return [f for f in self.forks if f.state in (ForkState.CALLING, ForkState.EARLY)]

    def records(self) -> list[CdrRecord]:
        end = self.ended_at or time.time()
        status = self.final_status or (200 if self.answered_at else 480)
        disposition = "CANCELLED" if self.cancelled and not self.answered_at else disposition_for(status)
        ring = (self.answered_at or end) - self.started
        talk = end - self.answered_at if self.answered_at else 0.0
        source = f"trunk:{self.source}" if self.source != "extension" else f"extension:{self.caller}"
        campaign, lead = self.vars.get("campaign", ""), self.vars.get("lead")
        lead_id = int(lead) if lead and lead.isdigit() else None
        common = dict(caller=self.caller, called=self.called, source=source, did=self.did,
                      destination=self.destination, disposition=disposition, sip_status=status,
                      q850_cause=self.cause, hangup_by=self.hangup_by, recording=self.recording,
                      campaign=campaign, lead_id=lead_id, customer_e164=self.customer_e164,
                      ivr_digits=self.vars.get(IVR_DIGITS, ""))
        a = self.rtp.get("a", {})
        b = self.rtp.get("b", {})
        out = [CdrRecord(self.id, "call", self.started, end, answer=self.answered_at, ring_seconds=round(ring, 3),
                         talk_seconds=round(talk, 3), rtp_rx=a.get("rx"), rtp_lost=a.get("lost"),
                         rtp_jitter_ms=a.get("jitter_ms"), **common)]
        out.append(CdrRecord(self.id, "a", self.started, end, leg_call_id=self.id, answer=self.answered_at,
                             ring_seconds=round(ring, 3), talk_seconds=round(talk, 3), rtp_rx=a.get("rx"),
                             rtp_lost=a.get("lost"), rtp_jitter_ms=a.get("jitter_ms"), **common))
        for f in self.forks:
            fork_status = f.status or (200 if f.answered_at else 487)
            leg = f.rtp if f.rtp is not None else (b if f is self.answered else {})
            out.append(CdrRecord(
                self.id, "b", f.started, end, leg_call_id=f.request.call_id, answer=f.answered_at,
                ring_seconds=round((f.answered_at or end) - f.started, 3),
                talk_seconds=round(end - f.answered_at, 3) if f.answered_at else 0.0,
                caller=self.caller, called=self.called, source=source, did=self.did,
                destination=f.destination, disposition=disposition_for(fork_status) if f is not self.answered else "ANSWERED",
                sip_status=fork_status, q850_cause=q850_for(fork_status) if fork_status >= 300 else NORMAL_CLEARING,
                hangup_by=self.hangup_by, rtp_rx=leg.get("rx"), rtp_lost=leg.get("lost"),
                rtp_jitter_ms=leg.get("jitter_ms"), campaign=campaign, lead_id=lead_id,
                customer_e164=self.customer_e164, ivr_digits=common["ivr_digits"],
            ))
        return out
