"""The protocol between the control process and the media workers: every command and event as a
TypedDict, a builder per command, and ``MediaClient`` — the control side's handle on one worker,
one method per command. No other module writes a ``{"cmd": …}`` dict: the B2BUA calls these
methods (or batches what the builders return), the worker's dispatcher (``engine.MediaEngine``)
reads them. Frames are msgpack over a Unix socket (``ipc.py``) or direct calls in-process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, cast


# == values ============================================================================================
@dataclass(frozen=True, slots=True)
class EndpointRef:
    """A media endpoint as the control process knows it: its id and where it listens."""

    endpoint: str
    ip: str
    port: int

    @staticmethod
    def from_reply(reply: Mapping[str, Any]) -> EndpointRef:
        return EndpointRef(str(reply["endpoint"]), str(reply["ip"]), int(reply["port"]))


class EndpointStats(TypedDict, total=False):
    """What an endpoint counted (its party's packets since it was last re-pointed)."""

    endpoint: str
    call: str
    rx: int
    tx: int
    lost: int
    expected: int
    jitter_ms: float
    dropped_source: int
    rx_rtcp: int
    tx_rtcp: int


# == commands ==========================================================================================
class PairCreate(TypedDict):
    cmd: Literal["pair.create"]
    call: str
    first: NotRequired[EndpointUpdate]  # applied to side a once made (its endpoint field is ignored)


class EndpointCreate(TypedDict):
    cmd: Literal["endpoint.create"]
    call: str


class EndpointUpdate(TypedDict):
    cmd: Literal["endpoint.update"]
    endpoint: str
    ip: NotRequired[str]  # where this side's SDP says its media is
    port: NotRequired[int]
    rtcp_port: NotRequired[int]
    latch_ip: NotRequired[str]  # a first packet from this host may latch (NAT: the signalling host)
    codec: NotRequired[str]
    pt: NotRequired[int]
    codecs: NotRequired[dict[int, str]]  # payload type → codec name of the side's SDP
    dtmf_pt: NotRequired[int | None]  # the telephone-event sent to this side
    dtmf_pts: NotRequired[dict[int, int]]  # telephone-events accepted → clock rate
    inband_dtmf: NotRequired[bool]


class EndpointDestroy(TypedDict):
    cmd: Literal["endpoint.destroy"]
    endpoint: str


class EndpointStatsCommand(TypedDict):
    cmd: Literal["endpoint.stats"]
    endpoint: str


class Bridge(TypedDict):
    cmd: Literal["bridge"]
    a: str
    b: str


class Unbridge(TypedDict):
    cmd: Literal["unbridge"]
    endpoint: str
    terminate: bool  # the switch is now that side's far end (comfort noise when idle)


class Timeout(TypedDict):
    cmd: Literal["timeout"]
    endpoints: list[str]
    seconds: float  # 0: no RTP inactivity timeout (a call on hold)


class Detect(TypedDict):
    cmd: Literal["detect"]
    endpoint: str
    inband_dtmf: NotRequired[bool]
    amd: NotRequired[dict[str, Any] | Literal[False]]  # app_amd parameters
    beep: NotRequired[bool]


class Play(TypedDict):
    cmd: Literal["play"]
    endpoint: str
    items: list[str]
    barge_in: bool
    loop: bool
    playback: str


class Stop(TypedDict):
    cmd: Literal["stop"]
    endpoint: str


class DtmfSend(TypedDict):
    cmd: Literal["dtmf.send"]
    endpoint: str
    digits: str
    duration_ms: int


class RecordStart(TypedDict):
    cmd: Literal["record.start"]
    a: str
    b: str | None
    path: str
    recording: str
    layout: NotRequired[str]  # stereo | mono | left
    encode: NotRequired[str | None]  # opus | mp3 after the call
    meta: NotRequired[dict[str, Any]]
    max_seconds: NotRequired[float]
    silence_seconds: NotRequired[float]


class RecordUpdate(TypedDict):
    cmd: Literal["record.update"]
    recording: str
    b: str
    meta: dict[str, Any]


class RecordPause(TypedDict):
    cmd: Literal["record.pause"]
    recording: str
    paused: bool


class RecordStop(TypedDict):
    cmd: Literal["record.stop"]
    recording: str


class MixJoin(TypedDict):
    cmd: Literal["mix.join"]
    room: str
    endpoint: str
    talks: NotRequired[bool]
    hears: NotRequired[bool]


class MixUpdate(TypedDict):
    cmd: Literal["mix.update"]
    room: str
    endpoint: str
    talks: NotRequired[bool]
    hears: NotRequired[bool]


class MixLeave(TypedDict):
    cmd: Literal["mix.leave"]
    room: str
    endpoint: str


class Monitor(TypedDict):
    cmd: Literal["monitor"]
    mode: str  # listen | whisper | barge
    supervisor: str
    caller: str
    agent: str


class Stats(TypedDict):
    cmd: Literal["stats"]


class Ping(TypedDict):
    cmd: Literal["ping"]


Command = (PairCreate | EndpointCreate | EndpointUpdate | EndpointDestroy | EndpointStatsCommand | Bridge
           | Unbridge | Timeout | Detect | Play | Stop | DtmfSend | RecordStart | RecordUpdate | RecordPause
           | RecordStop | MixJoin | MixUpdate | MixLeave | Monitor | Stats | Ping)


class Batch(TypedDict):
    cmd: Literal["batch"]
    commands: list[Command]


# == events (worker → control) =========================================================================
class DtmfEvent(TypedDict):
    event: Literal["dtmf"]
    endpoint: str
    call: str
    digit: str
    duration_ms: int
    method: str  # rfc4733 | inband


class PlayDone(TypedDict):
    event: Literal["play.done"]
    endpoint: str
    call: str
    playback: str
    reason: str  # finished | barge-in | stopped | replaced | hangup
    played_ms: int
    digit: NotRequired[str]


class RecordDone(TypedDict, total=False):
    event: Literal["record.done"]
    recording: str
    path: str
    started: float
    seconds: float
    paused_seconds: float
    channels: int
    encode: str | None
    reason: str
    call_id: str
    caller: str
    called: str
    agent: str


class RecordEncoded(TypedDict):
    event: Literal["record.encoded"]
    recording: str
    path: str


class AmdEvent(TypedDict):
    event: Literal["amd"]
    endpoint: str
    call: str
    result: str
    cause: str
    ms: int


class BeepEvent(TypedDict):
    event: Literal["beep"]
    endpoint: str
    call: str
    hz: float
    tone_ms: int
    at_ms: int


class RtpTimeout(TypedDict):
    event: Literal["rtp.timeout"]
    endpoint: str
    call: str
    idle: float


class DtmfSent(TypedDict):
    event: Literal["dtmf.sent"]
    endpoint: str
    call: str


MediaEvent = DtmfEvent | PlayDone | RecordDone | RecordEncoded | AmdEvent | BeepEvent | RtpTimeout | DtmfSent


# == builders (for batches) ============================================================================
def endpoint_update(endpoint: str, **fields: Any) -> EndpointUpdate:
    return cast(EndpointUpdate, {"cmd": "endpoint.update", "endpoint": endpoint, **fields})


def timeout(endpoints: Sequence[str], seconds: float) -> Timeout:
    return {"cmd": "timeout", "endpoints": list(endpoints), "seconds": seconds}


def destroy(endpoint: str) -> EndpointDestroy:
    return {"cmd": "endpoint.destroy", "endpoint": endpoint}


# == the control side's handle on a worker =============================================================
class MediaClient:
    """One worker, as the control process drives it: a method per command. Subclasses say how a
    frame gets there (``request``): in-process (``rtp.workers: 0``) or over the Unix socket."""

    index: int = 0
    endpoints: int = 0  # endpoints placed on it (the pool picks the least loaded)

    async def request(self, cmd: Command | Batch) -> dict[str, Any]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    # -- endpoints -------------------------------------------------------------------------------
    async def pair_create(self, call: str, first: EndpointUpdate | None = None) -> tuple[EndpointRef, EndpointRef] | None:
        """A call's two endpoints, bridged (None: no port free); ``first``: side a's first
        ``endpoint.update``, applied in the same round trip."""
        command: PairCreate = {"cmd": "pair.create", "call": call}
        if first is not None:
            command["first"] = first
        reply = await self.request(command)
        if not reply.get("ok"):
            return None
        return EndpointRef.from_reply(reply["a"]), EndpointRef.from_reply(reply["b"])

    async def endpoint_create(self, call: str) -> EndpointRef:
        reply = await self.request({"cmd": "endpoint.create", "call": call})
        return EndpointRef.from_reply(reply)

    async def update(self, command: EndpointUpdate) -> dict[str, Any]:
        """Point an endpoint at its side (and set its codec); ``previous`` in the reply: the
        counters of the party it had before, when it moved."""
        return await self.request(command)

    async def destroy_pair(self, a: str, b: str) -> tuple[EndpointStats, EndpointStats] | None:
        reply = await self.request({"cmd": "batch", "commands": [destroy(a), destroy(b)]})
        results = reply.get("results") or []
        if len(results) != 2:
            return None
        return cast(EndpointStats, results[0]), cast(EndpointStats, results[1])

    async def endpoint_stats(self, endpoint: str) -> EndpointStats:
        return cast(EndpointStats, await self.request({"cmd": "endpoint.stats", "endpoint": endpoint}))

    async def bridge(self, a: str, b: str) -> None:
        await self.request({"cmd": "bridge", "a": a, "b": b})

    async def unbridge(self, endpoint: str, *, terminate: bool = True) -> None:
        await self.request({"cmd": "unbridge", "endpoint": endpoint, "terminate": terminate})

    async def set_timeout(self, endpoints: Sequence[str], seconds: float) -> None:
        await self.request(timeout(endpoints, seconds))

    async def batch(self, commands: Sequence[Command]) -> list[dict[str, Any]]:
        if not commands:
            return []
        reply = await self.request({"cmd": "batch", "commands": list(commands)})
        return list(reply.get("results") or [])

    # -- what the switch says and hears ------------------------------------------------------------
    async def play(self, endpoint: str, items: list[str], *, playback: str, barge_in: bool = False,
                   loop: bool = False) -> dict[str, Any]:
        return await self.request({"cmd": "play", "endpoint": endpoint, "items": items, "barge_in": barge_in,
                                   "loop": loop, "playback": playback})

    async def stop(self, endpoint: str) -> None:
        await self.request({"cmd": "stop", "endpoint": endpoint})

    async def send_dtmf(self, endpoint: str, digits: str, duration_ms: int = 100) -> dict[str, Any]:
        return await self.request({"cmd": "dtmf.send", "endpoint": endpoint, "digits": digits,
                                   "duration_ms": duration_ms})

    async def detect(self, endpoint: str, *, inband_dtmf: bool | None = None,
                     amd: dict[str, Any] | None = None, beep: bool | None = None) -> dict[str, Any]:
        command: Detect = {"cmd": "detect", "endpoint": endpoint}
        if inband_dtmf is not None:
            command["inband_dtmf"] = inband_dtmf
        if amd is not None:
            command["amd"] = amd
        if beep is not None:
            command["beep"] = beep
        return await self.request(command)

    # -- recording ---------------------------------------------------------------------------------
    async def record_start(self, a: str, b: str | None, *, path: str, recording: str, layout: str = "stereo",
                           encode: str | None = None, meta: dict[str, Any] | None = None,
                           max_seconds: float | None = None, silence_seconds: float | None = None) -> dict[str, Any]:
        """Record ``a`` (left) and ``b`` (right; None: what ``a`` heard, or ``layout: left`` alone)."""
        command: RecordStart = {"cmd": "record.start", "a": a, "b": b, "path": path, "recording": recording,
                                "layout": layout, "encode": encode, "meta": dict(meta or {})}
        if max_seconds is not None:
            command["max_seconds"] = max_seconds
        if silence_seconds is not None:
            command["silence_seconds"] = silence_seconds
        return await self.request(command)

    async def record_update(self, recording: str, b: str, meta: dict[str, Any]) -> None:
        await self.request({"cmd": "record.update", "recording": recording, "b": b, "meta": meta})

    async def record_pause(self, recording: str, paused: bool) -> dict[str, Any]:
        return await self.request({"cmd": "record.pause", "recording": recording, "paused": paused})

    async def record_stop(self, recording: str) -> dict[str, Any]:
        return await self.request({"cmd": "record.stop", "recording": recording})

    # -- mixing -----------------------------------------------------------------------------------
    async def mix_join(self, room: str, endpoint: str, *, talks: bool = True, hears: bool = True) -> None:
        await self.request({"cmd": "mix.join", "room": room, "endpoint": endpoint, "talks": talks, "hears": hears})

    async def mix_update(self, room: str, endpoint: str, *, talks: bool | None = None,
                         hears: bool | None = None) -> dict[str, Any]:
        command: MixUpdate = {"cmd": "mix.update", "room": room, "endpoint": endpoint}
        if talks is not None:
            command["talks"] = talks
        if hears is not None:
            command["hears"] = hears
        return await self.request(command)

    async def mix_leave(self, room: str, endpoint: str) -> None:
        await self.request({"cmd": "mix.leave", "room": room, "endpoint": endpoint})

    async def monitor(self, mode: str, *, supervisor: str, caller: str, agent: str) -> dict[str, Any]:
        return await self.request({"cmd": "monitor", "mode": mode, "supervisor": supervisor, "caller": caller,
                                   "agent": agent})

    async def stats(self) -> dict[str, Any]:
        return await self.request({"cmd": "stats"})
