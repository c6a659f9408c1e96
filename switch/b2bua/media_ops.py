"""What the switch does with a call's media itself: answer it (IVR, prompts, conferences),
play prompts and wait for them or for keys, record it, put it in a conference room, let a
supervisor monitor it. Each is a worker command; completions come back as worker events
(``play.done``, ``record.done``, ``dtmf``) and resolve the futures the applications await.

This is the API the IVR, the ACD and the dialer build on (``B2BUA.applications``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from ...config.schema import Action
from ...events import CallAnswered, RecordingReady
from ...media.player import PromptCache, synth
from ..sip.dialog import Dialog
from ..sip.errors import RemoteProtocolError
from .call import Call, CallState
from .indialog import audio_target_of
from .sdp_anchor import answer_with

log = logging.getLogger("centralino.b2bua")

JOIN_TONE = "tone:1000/120"
LEAVE_TONE = "tone:500/120"


class MediaOpsMixin:
    # provided by the B2BUA
    core: Any
    media: Any
    db: Any
    plan_of: Any
    dialogs: dict
    rtp_timeout: float

    def _init_media_ops(self) -> None:
        self.prompt_cache = PromptCache()
        self._waiters: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}  # id → (call, future)
        self.conferences: dict[str, dict[str, Call]] = {}  # room → endpoint id → call
        self._messages: dict[str, asyncio.Future[dict[str, Any]]] = {}  # voice recordings awaited
        self._detections: dict[tuple[str, str, str], asyncio.Future[dict[str, Any]]] = {}  # (call, kind, side)

    # -- answering: the switch is the far end ---------------------------------------------------
    async def answer_locally(self, call: Call, *, beside: Call | None = None, destination: str = "") -> None:
        """200 OK to the caller with our own SDP: one codec from its offer, media terminated
        at the caller-facing endpoint (comfort noise until something plays). ``beside``: on the
        media worker of that call, to be mixed with it (supervision)."""
        worker = beside.media.worker if beside is not None and beside.media is not None else None
        await self._answer_on(call, worker, destination)

    async def _answer_on(self, call: Call, worker: Any, destination: str) -> None:
        if call.state is CallState.ANSWERED:
            return
        await self._ensure_media(call, worker=worker)
        assert call.media is not None
        offer = call.inc.request.body
        if not offer:
            raise RemoteProtocolError("an INVITE without SDP cannot reach an application", 488)
        body, chosen = answer_with(offer, self.media_ip(call.a_flow), call.media.a.port,
                                   session_id=str(abs(hash(call.id)) % 10**9))
        await call.media.worker.unbridge(call.media.a.endpoint, terminate=True)
        await self._point(call, "a", audio_target_of(offer), chosen)
        if call.state is CallState.ENDED:
            return
        inc = call.inc
        call.a_dialog = Dialog.from_uas(inc.request, inc.to_tag)
        self._register_dialog(call, call.a_dialog.id, None)
        headers = [("Contact", self.core.contact_for(call.a_flow)), ("Allow", self.core.allow),
                   ("Content-Type", "application/sdp")]
        headers[2:2] = self._caller_session_timer(call)
        self.core.respond(inc, 200, headers=headers, body=body)
        call.state = CallState.ANSWERED
        call.answered_at = time.time()
        call.destination = call.destination or destination
        await call.media.worker.set_timeout([call.media.a.endpoint], self.rtp_timeout)
        self._emit(CallAnswered(call.id, destination=call.destination))
        if call.record:
            await self.start_recording(call)

    # -- prompts and keys ---------------------------------------------------------------------------
    def resolve_prompts(self, names: list[str]) -> list[str]:
        plan = self.plan_of()
        self.prompt_cache.directories = [Path(d) for d in plan.server.prompts]
        return [n if synth(n) is not None else str(self.prompt_cache.resolve(n)) for n in names]

    async def play(self, call: Call, names: list[str], *, barge_in: bool = False, loop: bool = False,
                   side: str = "a", wait: bool = True) -> dict[str, Any]:
        """Play prompts to one side; returns the ``play.done`` event (reason finished, barge-in
        with the digit, stopped, replaced or hangup)."""
        media = call.media
        if media is None or call.state is CallState.ENDED:
            return {"reason": "hangup"}
        ident = f"play-{uuid.uuid4().hex[:12]}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[ident] = (call.id, fut)
        reply = await media.worker.play(getattr(media, side).endpoint, self.resolve_prompts(names),
                                        playback=ident, barge_in=barge_in, loop=loop)
        if not reply.get("ok"):
            self._waiters.pop(ident, None)
            log.warning("call %s: cannot play %s: %s", call.id, names, reply.get("error"))
            return {"reason": "error", "error": reply.get("error")}
        if not wait:
            self._waiters.pop(ident, None)  # nobody awaits its end
            return {"reason": "started", "playback": ident}
        try:
            return await fut
        finally:
            self._waiters.pop(ident, None)

    async def stop_playing(self, call: Call, side: str = "a") -> None:
        if call.media is not None:
            await call.media.worker.stop(getattr(call.media, side).endpoint)

    async def detect(self, call: Call, what: str, params: dict[str, Any] | None = None, *,
                     side: str = "a", timeout: float = 30.0) -> dict[str, Any] | None:
        """Run a detector on a side and wait for its result (see control.CallControl.detect)."""
        media = call.media
        if media is None or call.state is CallState.ENDED:
            return None
        endpoint = getattr(media, side).endpoint
        if what == "dtmf":
            await media.worker.detect(endpoint, inband_dtmf=True)
            return {"detecting": "dtmf"}
        if what not in ("amd", "beep"):
            raise ValueError(f"unknown detector {what!r}")
        key = (call.id, what, "caller" if side == "a" else "callee")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._detections[key] = fut
        if what == "amd":
            reply = await media.worker.detect(endpoint, amd=dict(params or {}))
        else:
            reply = await media.worker.detect(endpoint, beep=True)
        if not reply.get("ok"):
            self._detections.pop(key, None)
            raise ValueError(f"cannot detect {what}: {reply.get('error')}")
        ended = asyncio.ensure_future(call.ended.wait())
        try:
            await asyncio.wait({fut, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            self._detections.pop(key, None)
        return fut.result() if fut.done() else None

    def _detected(self, call: Call, kind: str, side: str, event: dict[str, Any]) -> None:
        fut = self._detections.get((call.id, kind, side))
        if fut is not None and not fut.done():
            fut.set_result({k: v for k, v in event.items() if k not in ("event", "endpoint", "call")})

    async def monitor(self, call: Call, supervisor: Call, mode: str, agent_side: str,
                      supervisor_side: str = "a") -> None:
        """Supervision: ``supervisor`` (answered beside ``call``) joins it in the worker's mixer."""
        media, own = call.media, supervisor.media
        if media is None or own is None:
            raise ValueError("both calls need their media")
        other = "b" if agent_side == "a" else "a"
        if own.worker is not media.worker:
            raise ValueError("the supervisor's call is on another media worker")
        reply = await media.worker.monitor(mode, supervisor=getattr(own, supervisor_side).endpoint, agent=getattr(media, agent_side).endpoint,
                                           caller=getattr(media, other).endpoint)
        if not reply.get("ok"):
            raise ValueError(str(reply.get("error")))

    async def next_digit(self, call: Call, timeout: float) -> str | None:
        """The caller's next key (from any method), or None after ``timeout`` or a hang-up."""
        try:
            digit = await asyncio.wait_for(call.keys().get(), timeout)
        except TimeoutError:
            return None
        return digit or None  # "" is put there when the call ends

    def _media_done(self, event: dict[str, Any]) -> None:
        waiter = self._waiters.get(str(event.get("playback") or event.get("recording") or ""))
        if waiter is not None and not waiter[1].done():
            waiter[1].set_result(event)

    def _release_waiters(self, call: Call) -> None:
        for call_id, fut in list(self._waiters.values()):
            if call_id == call.id and not fut.done():
                fut.set_result({"reason": "hangup"})
        call.keys().put_nowait("")
        for room, members in list(self.conferences.items()):
            for ep, member in list(members.items()):
                if member is call:
                    del members[ep]
            if not members:
                del self.conferences[room]

    # -- recording --------------------------------------------------------------------------------------
    async def start_recording(self, call: Call, *, agent: str = "") -> str | None:
        """Dual-channel recording of the call from now on (caller left; the callee — or what the
        caller hears from the switch — right), indexed in SQLite and linked to the CDR."""
        media = call.media
        if media is None or call.recording_id is not None:
            return None
        cfg = self.plan_of().server
        when = datetime.now()
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", call.id)[:80]
        path = Path(cfg.recordings) / when.strftime("%Y/%m/%d") / f"{when:%H%M%S}-{safe}.wav"
        bridged = call.answered is not None
        agent = agent or call.destination
        agent = agent.removeprefix("extension:")
        reply = await media.worker.record_start(
            media.a.endpoint, media.b.endpoint if bridged else None, path=str(path.resolve()),
            layout=cfg.recording.layout, encode=None if cfg.recording.format == "wav" else cfg.recording.format,
            recording=f"rec-{uuid.uuid4().hex[:12]}",
            meta={"call_id": call.id, "caller": call.caller, "called": call.called, "agent": agent})
        if not reply.get("ok"):
            log.warning("call %s: cannot record: %s", call.id, reply.get("error"))
            return None
        call.recording_id = reply["recording"]
        call.recording = reply["path"]
        call.recording_agent = agent
        log.info("call %s: recording to %s", call.id, call.recording)
        return call.recording

    async def pause_recording(self, call: Call, paused: bool | None = None) -> dict[str, Any]:
        """Pause (card numbers) or resume; ``None`` toggles. The paused span is silence."""
        if call.media is None or call.recording_id is None:
            return {"ok": False, "error": "the call is not being recorded"}
        target = (not call.recording_paused) if paused is None else paused
        reply = await call.media.worker.record_pause(call.recording_id, target)
        if reply.get("ok"):
            call.recording_paused = target
            log.info("call %s: recording %s", call.id, "paused" if target else "resumed")
        return reply

    def _feature_digit(self, call: Call, digit: str) -> None:
        """Feature codes typed during a call (recording pause/resume)."""
        code = self.plan_of().server.recording.pause_code
        if not code or call.recording_id is None:
            return
        now = time.monotonic()
        recent = [(d, t) for d, t in call.typed if now - t < 3.0]  # a code is typed within 3 s
        call.typed = [*recent[len(recent) - len(code) + 1:], (digit, now)] if len(code) > 1 else [(digit, now)]
        if "".join(d for d, _ in call.typed).endswith(code):
            call.typed = []
            self.core.spawn(self.pause_recording(call))

    async def record_message(self, call: Call, path: Path, *, max_seconds: float, silence_seconds: float,
                             stop_key: str = "#") -> dict[str, Any]:
        """Record the caller's voice alone (a voicemail message) until ``max_seconds``, a run of
        ``silence_seconds`` after they spoke (trimmed off), ``stop_key`` or a hang-up. Returns
        the worker's summary: path, seconds, reason (max-length, silence, stopped)."""
        media = call.media
        if media is None:
            return {"seconds": 0.0, "reason": "hangup"}
        ident = f"msg-{uuid.uuid4().hex[:12]}"
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._messages[ident] = done
        reply = await media.worker.record_start(
            media.a.endpoint, None, path=str(path.resolve()), layout="left", recording=ident,
            max_seconds=max_seconds, silence_seconds=silence_seconds, meta={"call_id": call.id})
        if not reply.get("ok"):
            self._messages.pop(ident, None)
            raise RuntimeError(f"cannot record a message: {reply.get('error')}")
        key_task = asyncio.ensure_future(self._wait_key(call, stop_key))
        try:
            await asyncio.wait([done, key_task], return_when=asyncio.FIRST_COMPLETED)
            if not done.done() and call.media is not None:
                await call.media.worker.record_stop(ident)
            return await done
        finally:
            key_task.cancel()
            self._messages.pop(ident, None)

    async def _wait_key(self, call: Call, key: str) -> None:
        while call.state is CallState.ANSWERED:
            if await self.next_digit(call, 1.0) == key:
                return

    def _recording_done(self, event: dict[str, Any]) -> None:
        """The worker closed a recording: hand a voice message to who waits for it, index the rest."""
        waiting = self._messages.pop(str(event.get("recording", "")), None)
        if waiting is not None:
            if not waiting.done():
                waiting.set_result(event)
            return
        fmt = "wav" if not event.get("encode") else str(event["encode"])
        self._emit(RecordingReady(
            str(event.get("call_id", "")), recording=str(event["recording"]), path=str(event["path"]),
            started=float(event["started"]), seconds=float(event["seconds"]),
            paused_seconds=float(event["paused_seconds"]), channels=int(event["channels"]), format=fmt,
            caller=str(event.get("caller", "")), called=str(event.get("called", "")),
            agent=str(event.get("agent", ""))))

    def _recording_encoded(self, event: dict[str, Any]) -> None:
        """The recording was re-encoded after the call (Opus, MP3): its new file."""
        path = str(event["path"])
        self._emit(RecordingReady(
            "", recording=str(event["recording"]), path=path, started=0.0, seconds=0.0, paused_seconds=0.0,
            channels=0, format=Path(path).suffix.lstrip(".") or "wav", encoded=True))

    # -- conference rooms -------------------------------------------------------------------------------
    def conference_worker(self, room: str) -> Any:
        """Every member of a room must be mixed by one worker: the room's first member's."""
        members = self.conferences.get(room)
        if members:
            first = next(iter(members.values()))
            if first.media is not None:
                return first.media.worker
        return None

    async def conference(self, call: Call, action: Action) -> None:
        room = str(action.conference)
        cfg = self.plan_of().conferences.get(room)
        members = self.conferences.get(room, {})
        if cfg is not None and len(members) >= cfg.max_members:
            await self._fail(call, 486, "conference full")
            return
        await self._answer_on(call, self.conference_worker(room), f"conference:{room}")
        media = call.media
        if media is None or call.state is not CallState.ANSWERED:
            return
        announce = cfg.announce if cfg is not None else "conference-join"
        if announce:
            await self.play(call, [announce])
        if call.state is not CallState.ANSWERED or call.media is None:
            return
        join_tones = cfg.join_tones if cfg is not None else True
        members = self.conferences.setdefault(room, {})
        ep = media.a.endpoint
        await media.worker.mix_join(f"conf:{room}", ep)
        members[ep] = call
        if join_tones:
            for other in list(members.values()):
                if other is not call and other.media is not None:
                    self.core.spawn(self.play(other, [JOIN_TONE], wait=False))
        log.info("call %s joined conference %s (%d members)", call.id, room, len(members))
        await call.ended.wait()
        if join_tones:
            for other in list(self.conferences.get(room, {}).values()):
                if other is not call and other.media is not None:
                    self.core.spawn(self.play(other, [LEAVE_TONE], wait=False))

    async def set_muted(self, room: str, call_id: str, muted: bool) -> bool:
        for ep, call in self.conferences.get(room, {}).items():
            if call.id == call_id and call.media is not None:
                reply = await call.media.worker.mix_update(f"conf:{room}", ep, talks=not muted)
                return bool(reply.get("ok"))
        return False

    # -- prompts as a routing action -------------------------------------------------------------------
    async def play_action(self, call: Call, action: Action) -> None:
        """``{play: "welcome, goodbye", then: …}``: answer, play, then the next action (or hang up)."""
        await self.answer_locally(call, destination=f"play:{','.join(action.prompts)}")
        if call.state is not CallState.ANSWERED:
            return
        await self.play(call, action.prompts)
        if call.state is not CallState.ANSWERED:
            return
        if action.then is not None:
            await self._execute(call, action.then)
        else:
            await self.hangup(call, by="switch")
