"""Typed call events: the B2BUA publishes every change of a call's state to its listeners
(statistics, the ACD, the API's event stream subscribe here)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CallEvent:
    call_id: str
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True, slots=True)
class CallTrying(CallEvent):
    caller: str
    called: str
    source: str


@dataclass(frozen=True, slots=True)
class CallRinging(CallEvent):
    destination: str


@dataclass(frozen=True, slots=True)
class CallEarlyMedia(CallEvent):
    destination: str


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    destination: str


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    """A call the switch had answered (IVR, queue) is now bridged to ``destination``."""

    destination: str


@dataclass(frozen=True, slots=True)
class CallUpdated(CallEvent):
    method: str
    held: bool


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    destination: str
    attended: bool


@dataclass(frozen=True, slots=True)
class CallDisconnected(CallEvent):
    by: str
    cause: int


@dataclass(frozen=True, slots=True)
class CallFailed(CallEvent):
    status: int
    cause: int


@dataclass(frozen=True, slots=True)
class CallDtmf(CallEvent):
    """A digit pressed on either side (RFC 4733 telephone-event, reported when it ends)."""

    digit: str
    side: str  # "caller" or "callee"
    duration_ms: int
