"""What one event becomes in each webhook ``format`` — pure functions of the event and the
endpoint's settings, written to the outbox once (storage/outbox.py) and sent as they are
(api/webhooks.py). ``None``: this endpoint is not told about this event.

- ``standard``: Standard Webhooks' envelope ``{"type", "timestamp", "data"}`` of our own JSON.
- ``bitrix24``: ``{"steps": [{"method", "params"}, …]}``, the REST calls to make in order. The
  call's Bitrix24 ``CALL_ID`` is only known once ``telephony.externalcall.register`` has answered,
  so the finish and attach steps carry no CALL_ID: the sender fills it in from what register
  returned (kept in ``crm_calls``), and the attach step names the recording the sender reads at
  delivery time (the file may still be re-encoded when the call ends).
- ``amocrm``: the body of ``POST /api/v4/calls``: a list with the one call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config.webhooks import Webhook
from ..events import CallEnded, CdrRecord, Event, QueueConnected, QueueEventBase, to_json

# (call_id, seconds the link works) → an absolute signed URL of the call's recording
RecordingLink = Callable[[str, float], str]

BITRIX_INBOUND, BITRIX_OUTBOUND = 2, 1
# amoCRM call_status: 4 talked, 6 no answer, 7 busy, 5 wrong number
AMO_TALKED, AMO_NO_ANSWER, AMO_BUSY, AMO_WRONG_NUMBER = 4, 6, 7, 5


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def direction(source: str, destination: str) -> str:
    if source.startswith("trunk:"):
        return "inbound"
    if destination.startswith("trunk:") or source.startswith("campaign"):
        return "outbound"
    return "internal"


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a CRM wants of an ended call: who talked to the customer, for how long, how it ended."""

    call_id: str
    direction: str
    customer: str  # the customer's number: the caller of an inbound call, the callee of an outbound one
    line: str  # our number: the DID it came in on, or the caller id it went out with
    user: str | None  # the extension that talked to the customer (None: nobody did)
    start: float
    talk_seconds: float
    sip_status: int | None
    disposition: str
    recording: bool


def call_facts(event: CallEnded) -> CallFacts:
    c = event.summary
    way = direction(c.source, c.destination)
    answered = [r for r in event.records[1:] if r.leg == "b" and r.answer is not None
                and r.destination.startswith("extension:")]
    leg: CdrRecord | None = answered[-1] if answered else None
    user = leg.destination.partition(":")[2] if leg is not None else None
    talk = leg.talk_seconds if leg is not None else 0.0
    if way == "outbound":
        user = c.source.partition(":")[2] if c.source.startswith("extension:") else user
        talk = c.talk_seconds
    return CallFacts(
        call_id=c.call_id, direction=way, customer=c.customer_e164 or (c.called if way == "outbound" else c.caller),
        line=c.did or (c.caller if way == "outbound" else c.called), user=user, start=c.start,
        talk_seconds=talk, sip_status=c.sip_status, disposition=c.disposition, recording=bool(c.recording))


def talked(f: CallFacts) -> bool:
    return f.talk_seconds > 0 and f.user is not None


# -- standard ---------------------------------------------------------------------------------------
def standard_data(event: Event, agents_of_plan: frozenset[str] | set[str] = frozenset(),
                  recording_url: str | None = None) -> dict[str, Any]:
    """The ``data`` of a standard delivery: a call summary for call.ended (``agent``: the last
    agent of the plan who answered it), the row for queue events, the event's own fields otherwise."""
    if isinstance(event, CallEnded):
        c = event.summary
        agents = [r.destination.partition(":")[2] for r in event.records[1:]
                  if r.leg == "b" and r.answer is not None and r.destination.startswith("extension:")
                  and r.destination.partition(":")[2] in agents_of_plan]
        queue = c.destination.partition(":")[2] if c.destination.startswith("queue:") else None
        answered = [r.answer for r in event.records[1:] if r.leg == "b" and r.answer is not None]
        # a queue call's wait: from the queue taking it to an agent's answer (or to the caller leaving)
        wait = round((answered[0] if answered else c.end) - (c.answer or c.start), 3) if queue else None
        return {
            "call_id": c.call_id, "seq": event.seq, "direction": direction(c.source, c.destination),
            "queue": queue, "wait_seconds": wait,
            "caller": c.caller, "called": c.called, "customer_e164": c.customer_e164 or None,
            "did": c.did, "source": c.source, "ivr_digits": c.ivr_digits or None,
            "destination": c.destination, "agent": agents[-1] if agents else None,
            "start": _iso(c.start), "answer": _iso(c.answer), "end": _iso(c.end),
            "ring_seconds": round(c.ring_seconds, 3), "talk_seconds": round(c.talk_seconds, 3),
            "result": c.disposition, "hangup_by": c.hangup_by, "sip_status": c.sip_status,
            "q850_cause": c.q850_cause, "recording": c.recording, "recording_url": recording_url,
            "campaign": c.campaign or None, "lead_id": c.lead_id,
        }
    if isinstance(event, QueueEventBase):
        r = event.row
        return {"seq": event.seq, "call_id": r.call_id, "event": r.event, "queue": r.queue, "agent": r.agent,
                "caller": r.caller, "did": r.did, "ivr_digits": r.ivr or None, "position": r.position,
                "wait_seconds": r.wait,
                "talk_seconds": r.talk, "reason": r.reason, "state": r.state, "notes": r.notes, "at": _iso(r.at)}
    data = to_json(event)
    data.pop("type", None)
    return data


def envelope(event: Event, agents_of_plan: frozenset[str] | set[str] = frozenset(),
             recording_url: str | None = None) -> dict[str, Any]:
    return {"type": event.type, "timestamp": _iso(event.at),
            "data": standard_data(event, agents_of_plan, recording_url)}


# -- Bitrix24 ---------------------------------------------------------------------------------------
def _bitrix_user(hook: Webhook, ext: str | None) -> dict[str, Any]:
    """Bitrix24 finds the user by id, or by the inner phone number set on their profile."""
    if ext is None:
        return {"USER_ID": hook.default_user}
    uid = hook.user_of(ext)
    return {"USER_ID": uid} if uid is not None else {"USER_PHONE_INNER": ext}


def bitrix_status(f: CallFacts) -> str:
    """Bitrix24's call code: 200 talked, 304 missed, else the SIP failure (486 busy, 404 …)."""
    if talked(f):
        return "200"
    if f.sip_status in (403, 404, 480, 484, 486, 503, 603):
        return str(f.sip_status)
    return "304"


def _register(hook: Webhook, call_id: str, way: str, customer: str, line: str, user: str | None,
              start: float) -> dict[str, Any]:
    return {"method": "telephony.externalcall.register", "call": call_id, "params": {
        **_bitrix_user(hook, user), "PHONE_NUMBER": customer, "LINE_NUMBER": line,
        "TYPE": BITRIX_OUTBOUND if way == "outbound" else BITRIX_INBOUND,
        "CALL_START_DATE": _iso(start), "CRM_CREATE": 1, "SHOW": 1 if user is not None else 0}}


def bitrix24(event: Event, hook: Webhook) -> dict[str, Any] | None:
    if isinstance(event, QueueConnected):  # an agent answered: the call is theirs, their card pops up
        r = event.row
        return {"steps": [_register(hook, r.call_id, "inbound", r.caller, r.did, r.agent, r.at - (r.wait or 0.0))]}
    if not isinstance(event, CallEnded):
        return None
    f = call_facts(event)
    if f.direction == "internal":
        return None  # calls between extensions are not the CRM's
    steps = [_register(hook, f.call_id, f.direction, f.customer, f.line, f.user, f.start),  # unless done already
             {"method": "telephony.externalcall.finish", "call": f.call_id, "params": {
                 **_bitrix_user(hook, f.user if talked(f) else None), "DURATION": round(f.talk_seconds),
                 "STATUS_CODE": bitrix_status(f), "ADD_TO_CHAT": 0}}]
    if f.recording and talked(f):
        steps.append({"method": "telephony.externalCall.attachRecord", "call": f.call_id, "recording": True,
                      "params": {}})
    return {"steps": steps}


# -- amoCRM -----------------------------------------------------------------------------------------
def amo_status(f: CallFacts) -> int:
    if talked(f):
        return AMO_TALKED
    return {486: AMO_BUSY, 600: AMO_BUSY, 404: AMO_WRONG_NUMBER, 484: AMO_WRONG_NUMBER}.get(f.sip_status or 0,
                                                                                           AMO_NO_ANSWER)


def amocrm(event: Event, hook: Webhook, recording_link: RecordingLink | None) -> list[dict[str, Any]] | None:
    if not isinstance(event, CallEnded):
        return None
    f = call_facts(event)
    if f.direction == "internal":
        return None
    entry: dict[str, Any] = {
        "direction": f.direction, "uniq": f.call_id, "duration": round(f.talk_seconds), "source": hook.source,
        "phone": f.customer, "call_status": amo_status(f), "created_at": int(f.start),
    }
    uid = hook.user_of(f.user) if talked(f) else None
    uid = uid if uid is not None else hook.default_user
    if uid is not None:
        entry["responsible_user_id"] = uid
        entry["created_by"] = uid
    if f.recording and talked(f) and recording_link is not None:
        entry["link"] = recording_link(f.call_id, hook.recording_link_hours * 3600)
    return [entry]


def body_for(event: Event, hook: Webhook, agents_of_plan: frozenset[str] | set[str],
             recording_link: RecordingLink | None) -> str | None:
    """The stored body of ``event`` for ``hook``, or None when that endpoint is not told of it."""
    payload: Any
    if hook.format == "bitrix24":
        payload = bitrix24(event, hook)
    elif hook.format == "amocrm":
        payload = amocrm(event, hook, recording_link)
    else:
        url = None
        if isinstance(event, CallEnded) and event.summary.recording and recording_link is not None:
            url = recording_link(event.summary.call_id, hook.recording_link_hours * 3600)
        payload = envelope(event, agents_of_plan, url)
    return None if payload is None else json.dumps(payload, separators=(",", ":"), default=str)
