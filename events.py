"""The event bus and every typed event: what a dashboard, a CRM or a report wants to know.

Publishers (the B2BUA, the ACD, the registrar, the trunks, the security guard, voicemail) create
frozen dataclasses and ``publish`` them; the bus stamps each with a monotonically increasing
sequence number and hands it to the subscribers of its type (or of a base type, or of all).
There is no I/O here. Subscribers are isolated: one that raises is logged and the others still
get the event; an async subscriber gets its events through its own bounded queue and task, so a
slow one never holds up the SIP path. ``publish_durable`` additionally awaits the *durable*
subscribers — the CDR writer — so that a call's records are committed before its state is
dropped. ``to_json`` turns any event into the JSON-ready dict the WebSocket stream and webhooks
send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar

log = logging.getLogger("centralino.events")

Handler = Callable[["Event"], Awaitable[None] | None]
Spawn = Callable[[Coroutine[Any, Any, Any]], Any]
QUEUE_LIMIT = 10_000  # events an async subscriber may fall behind by before the oldest are dropped


# == the events ========================================================================================
@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: when it happened (wall clock) and its place in the stream."""

    type: ClassVar[str] = "event"
    at: float = field(default_factory=time.time)
    seq: int = 0  # set once by the bus when published


# -- rows carried by events (what storage persists) ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class CdrRecord:
    """One call detail record: the call (leg 'call') or one of its legs ('a' caller, 'b' callee)."""

    call_id: str
    leg: str
    start: float
    end: float
    disposition: str
    leg_call_id: str = ""
    answer: float | None = None
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    caller: str = ""
    called: str = ""
    source: str = ""  # "extension:1001" or "trunk:provider"
    did: str = ""
    destination: str = ""
    sip_status: int | None = None
    q850_cause: int | None = None
    hangup_by: str = ""
    recording: str | None = None
    rtp_rx: int | None = None
    rtp_lost: int | None = None
    rtp_jitter_ms: float | None = None
    campaign: str = ""  # the dialer's calls: their campaign and lead
    lead_id: int | None = None
    customer_e164: str = ""  # the customer's number in E.164 ("" for internal calls, anonymous callers)
    ivr_digits: str = ""  # what the caller keyed in the IVR: menu keys and collected entries, comma-separated


# The call variable the IVR keeps the caller's keys in (menu choices and collected entries, in order).
IVR_DIGITS = "ivr_digits"


@dataclass(frozen=True, slots=True)
class QueueLogRow:
    """One row of the queue log (the source of every queue and agent statistic)."""

    at: float
    event: str  # ENTER RING RINGNOANSWER CONNECT ABANDON COMPLETE TIMEOUT FULL EMPTY CALLBACK CALLBACKFAIL AGENT DISPOSITION
    call_id: str = ""
    queue: str = ""
    agent: str = ""
    caller: str = ""
    did: str = ""
    position: int | None = None
    wait: float | None = None
    talk: float | None = None
    reason: str = ""  # COMPLETE: agent/caller hung up; ABANDON: original position; AGENT: pause reason
    state: str = ""  # AGENT: the new state
    prev: str = ""  # AGENT: the state left
    seconds: float | None = None  # AGENT: time spent in ``prev``
    notes: str = ""  # DISPOSITION: the agent's notes (``reason`` holds the disposition)
    ivr: str = ""  # ENTER, RING, CONNECT: the caller's IVR keys before the queue (the agent's call card)


# -- calls ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallEvent(Event):
    type: ClassVar[str] = "call"
    call_id: str


@dataclass(frozen=True, slots=True)
class CallTrying(CallEvent):
    type: ClassVar[str] = "call.trying"
    caller: str
    called: str
    source: str


@dataclass(frozen=True, slots=True)
class CallOriginated(CallEvent):
    """A call the switch placed itself (a queue callback, the dialer), with no incoming leg."""

    type: ClassVar[str] = "call.originated"
    caller: str
    destination: str
    source: str


@dataclass(frozen=True, slots=True)
class CallRinging(CallEvent):
    type: ClassVar[str] = "call.ringing"
    destination: str


@dataclass(frozen=True, slots=True)
class CallEarlyMedia(CallEvent):
    type: ClassVar[str] = "call.early_media"
    destination: str


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    type: ClassVar[str] = "call.answered"
    destination: str


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    """A call the switch had answered (IVR, queue) is now bridged to ``destination``."""

    type: ClassVar[str] = "call.connected"
    destination: str


@dataclass(frozen=True, slots=True)
class CallUpdated(CallEvent):
    type: ClassVar[str] = "call.updated"
    method: str
    held: bool


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    type: ClassVar[str] = "call.transferred"
    destination: str
    attended: bool


@dataclass(frozen=True, slots=True)
class CallDisconnected(CallEvent):
    type: ClassVar[str] = "call.disconnected"
    by: str
    cause: int


@dataclass(frozen=True, slots=True)
class CallFailed(CallEvent):
    type: ClassVar[str] = "call.failed"
    status: int
    cause: int


@dataclass(frozen=True, slots=True)
class CallDtmf(CallEvent):
    """A digit pressed on either side (RFC 4733 telephone-event, INFO or in-band)."""

    type: ClassVar[str] = "call.dtmf"
    digit: str
    side: str  # "caller" or "callee"
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """The call is over and forgotten: its CDR fields (the call row first, then its legs)."""

    type: ClassVar[str] = "call.ended"
    records: tuple[CdrRecord, ...]

    @property
    def summary(self) -> CdrRecord:
        return self.records[0]


@dataclass(frozen=True, slots=True)
class AmdResult(CallEvent):
    """Answering-machine detection on a call's side: HUMAN, MACHINE, NOTSURE or HANGUP."""

    type: ClassVar[str] = "call.amd"
    side: str
    result: str
    cause: str
    ms: int


@dataclass(frozen=True, slots=True)
class BeepDetected(CallEvent):
    type: ClassVar[str] = "call.beep"
    side: str
    hz: float
    tone_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class RecordingReady(CallEvent):
    """A call recording is complete on disk (``encoded``: re-encoded after the call to ``path``)."""

    type: ClassVar[str] = "recording.ready"
    recording: str
    path: str
    started: float
    seconds: float
    paused_seconds: float
    channels: int
    format: str
    caller: str = ""
    called: str = ""
    agent: str = ""
    encoded: bool = False


@dataclass(frozen=True, slots=True)
class VoicemailLeft(CallEvent):
    type: ClassVar[str] = "voicemail.left"
    mailbox: str
    caller: str
    seconds: float
    path: str


# -- queues and agents ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueEventBase(Event):
    """Every queue-log row is published as one of these; ``row`` is what the queue log stores."""

    type: ClassVar[str] = "queue"
    row: QueueLogRow


@dataclass(frozen=True, slots=True)
class QueueEntered(QueueEventBase):
    type: ClassVar[str] = "queue.entered"


@dataclass(frozen=True, slots=True)
class QueueAgentRung(QueueEventBase):
    """An agent's phone rang for a caller (RING), or was not answered (RINGNOANSWER)."""

    type: ClassVar[str] = "queue.agent_rung"


@dataclass(frozen=True, slots=True)
class QueueConnected(QueueEventBase):
    type: ClassVar[str] = "queue.connected"


@dataclass(frozen=True, slots=True)
class QueueAbandoned(QueueEventBase):
    type: ClassVar[str] = "queue.abandoned"


@dataclass(frozen=True, slots=True)
class QueueLeft(QueueEventBase):
    """The caller's time in the queue ended otherwise: COMPLETE (after talking), TIMEOUT, FULL,
    EMPTY, CALLBACKFAIL, MOVED (to the queue in ``reason``, where it enters next)."""

    type: ClassVar[str] = "queue.left"


@dataclass(frozen=True, slots=True)
class CallbackRequested(QueueEventBase):
    type: ClassVar[str] = "queue.callback_requested"


@dataclass(frozen=True, slots=True)
class QueueDisposition(QueueEventBase):
    """The agent set the outcome of a queue call (DISPOSITION: ``reason`` and ``notes``)."""

    type: ClassVar[str] = "queue.disposition"


@dataclass(frozen=True, slots=True)
class AgentStateChanged(QueueEventBase):
    type: ClassVar[str] = "agent.state"


QUEUE_EVENT_FOR: dict[str, type[QueueEventBase]] = {
    "ENTER": QueueEntered, "RING": QueueAgentRung, "RINGNOANSWER": QueueAgentRung, "CONNECT": QueueConnected,
    "ABANDON": QueueAbandoned, "COMPLETE": QueueLeft, "TIMEOUT": QueueLeft, "FULL": QueueLeft, "EMPTY": QueueLeft,
    "CALLBACKFAIL": QueueLeft, "CALLBACK": CallbackRequested, "AGENT": AgentStateChanged,
    "DISPOSITION": QueueDisposition,
}


def queue_event(row: QueueLogRow) -> QueueEventBase:
    """The bus event of a queue-log row."""
    return QUEUE_EVENT_FOR.get(row.event, QueueLeft)(row=row, at=row.at)


# -- the dialer -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DialerAttempt(Event):
    """One attempt of a campaign ended: the lead, the number, how (the lead life cycle's outcome)."""

    type: ClassVar[str] = "dialer.attempt"
    campaign: str
    lead_id: int
    phone: str
    outcome: str
    call_id: str
    ring_seconds: float
    sip_status: int | None = None
    amd: str = ""
    agent: str = ""


@dataclass(frozen=True, slots=True)
class LeadConnected(CallEvent):
    """A campaign call reached an agent: the lead's fields go with it (the agent desktop's card)."""

    type: ClassVar[str] = "dialer.connected"
    campaign: str
    lead_id: int
    agent: str
    phone: str
    name: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class DispositionSet(Event):
    type: ClassVar[str] = "dialer.disposition"
    campaign: str
    lead_id: int
    agent: str
    disposition: str
    callback_at: float | None = None


@dataclass(frozen=True, slots=True)
class CampaignStateChanged(Event):
    """A campaign started, paused, stopped, ran out of leads, or its pacer fell back (and why)."""

    type: ClassVar[str] = "dialer.campaign"
    campaign: str
    state: str
    reason: str


# -- registrations, trunks, security --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegistrationChanged(Event):
    type: ClassVar[str] = "registration"
    aor: str
    contact: str
    source: str  # transport:ip:port the REGISTER came from
    user_agent: str
    expires_at: float | None  # None: the binding is gone
    reason: str  # registered, refreshed, unregistered, expired, removed


@dataclass(frozen=True, slots=True)
class TrunkStateChanged(Event):
    type: ClassVar[str] = "trunk"
    trunk: str
    reachable: bool | None
    registered: bool
    reason: str


@dataclass(frozen=True, slots=True)
class SecurityEvent(Event):
    type: ClassVar[str] = "security"
    source: str
    kind: str  # ban, ban-skipped, unban, auth-failure, user-locked, user-unlocked, user-agent
    detail: str
    user: str = ""


# == JSON ==============================================================================================
def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_json(event: Event) -> dict[str, Any]:
    """The JSON-ready form of any event: ``type``, ``seq``, ``at`` and its own fields."""
    out: dict[str, Any] = {"type": event.type, "seq": event.seq, "at": event.at}
    for f in dataclasses.fields(event):
        if f.name not in ("seq", "at"):
            out[f.name] = _plain(getattr(event, f.name))
    return out


def event_types() -> list[type[Event]]:
    """Every concrete event class (the leaves of the hierarchy: what publishers create)."""
    import sys

    def live(cls: type[Event]) -> list[type[Event]]:
        # slots=True makes dataclass build a second class: keep the one the module exports
        return [s for s in cls.__subclasses__() if getattr(sys.modules[s.__module__], s.__name__, None) is s]

    out: list[type[Event]] = []
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        subs = live(cls)
        stack.extend(subs)
        if not subs and cls is not Event:
            out.append(cls)
    return sorted(out, key=lambda c: c.type)


# == the bus ===========================================================================================
class Subscription:
    def __init__(self, bus: EventBus, handler: Handler, types: tuple[type[Event], ...], durable: bool) -> None:
        self.bus = bus
        self.handler = handler
        self.types = types or (Event,)
        self.durable = durable
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            type(handler).__call__)
        self.queue: asyncio.Queue[Event] | None = None
        self.task: Any = None
        self.dropped = 0

    def close(self) -> None:
        self.bus._remove(self)
        if self.task is not None:
            self.task.cancel()


class EventBus:
    def __init__(self, spawn: Spawn | None = None) -> None:
        self._subs: list[Subscription] = []
        self._route: dict[type[Event], list[Subscription]] = {}
        self._spawn = spawn
        self.last_seq = 0
        self.published = 0

    def set_spawn(self, spawn: Spawn) -> None:
        """Where async subscribers' tasks run (the switch's task group)."""
        self._spawn = spawn

    # -- subscribing ---------------------------------------------------------------------------------
    def subscribe(self, handler: Handler, *types: type[Event], durable: bool = False) -> Subscription:
        """``handler`` gets every event of ``types`` (their subclasses too; none: all events).
        A sync handler runs inline; an async one through its own queue and task; a durable one
        (async) is awaited by ``publish_durable``."""
        sub = Subscription(self, handler, types, durable)
        if durable and not sub.is_async:
            raise ValueError("a durable subscriber is a coroutine function")
        self._subs.append(sub)
        self._route.clear()
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._route.clear()

    def _for(self, kind: type[Event]) -> list[Subscription]:
        subs = self._route.get(kind)
        if subs is None:
            subs = self._route[kind] = [s for s in self._subs if issubclass(kind, s.types)]
        return subs

    def wants(self, kind: type[Event]) -> bool:
        """Whether anyone listens to this type: a publisher may skip building the event."""
        return bool(self._for(kind))

    # -- publishing ----------------------------------------------------------------------------------
    def _stamp(self, event: Event) -> Event:
        self.last_seq += 1
        object.__setattr__(event, "seq", self.last_seq)  # the one write to a frozen event
        self.published += 1
        return event

    def publish(self, event: Event) -> Event:
        """Hand ``event`` to its subscribers; returns it with its sequence number."""
        subs = self._for(type(event))
        self._stamp(event)
        for sub in subs:
            self._deliver(sub, event)
        return event

    async def publish_durable(self, event: Event) -> Event:
        """Like ``publish``, and wait for the durable subscribers (e.g. the CDR committed)."""
        subs = self._for(type(event))
        self._stamp(event)
        waits = []
        for sub in subs:
            if sub.durable:
                waits.append(self._guarded(sub, event))
            else:
                self._deliver(sub, event)
        for coro in waits:
            await coro
        return event

    def _deliver(self, sub: Subscription, event: Event) -> None:
        if not sub.is_async:
            try:
                sub.handler(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", sub.handler, event.type)
            return
        if sub.queue is None:
            sub.queue = asyncio.Queue(QUEUE_LIMIT)
            spawn = self._spawn or asyncio.ensure_future
            sub.task = spawn(self._consume(sub))
        if sub.queue.full():
            sub.queue.get_nowait()  # a subscriber this far behind loses its oldest event, not the switch
            sub.queue.task_done()
            sub.dropped += 1
            if sub.dropped in (1, 100) or sub.dropped % 10_000 == 0:
                log.warning("event subscriber %r is %d events behind: %d dropped", sub.handler, QUEUE_LIMIT,
                            sub.dropped)
        sub.queue.put_nowait(event)

    async def _consume(self, sub: Subscription) -> None:
        assert sub.queue is not None
        while True:
            event = await sub.queue.get()
            try:
                await self._guarded(sub, event)
            finally:
                sub.queue.task_done()

    @staticmethod
    async def _guarded(sub: Subscription, event: Event) -> None:
        try:
            result = sub.handler(event)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event subscriber %r failed on %s", sub.handler, event.type)

    async def drain(self) -> None:
        """Wait until every async subscriber has handled what it was given (shutdown, tests)."""
        for sub in list(self._subs):
            if sub.queue is not None and sub.task is not None and not sub.task.done():
                await sub.queue.join()
