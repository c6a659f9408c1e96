"""Connecting a call the switch already answered (IVR, queue, callback) to an extension: ring
its registered contacts as new callee legs, and on an answer bridge the caller's endpoint to
the answering leg. The caller hears whatever the application plays meanwhile (music on hold);
a leg that answers after the attempt gave up is hung up at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...events import CallConnected
from ..sip.dialog import Dialog
from ..sip.errors import RemoteProtocolError
from ..sip.headers import parse_name_addr
from ..sip.message import Response
from ..sip.uri import URI
from .call import Call, CallState, Fork, ForkState, SessionTimer, q850_for
from .control import RINGBACK
from .indialog import _session_expires, audio_target_of
from .sdp_anchor import chosen_codec

log = logging.getLogger("centralino.b2bua")


@dataclass(eq=False)
class RingAttempt:
    """One try to reach ``target`` for ``call``: its forks and how it ended."""

    call: Call
    targets: tuple[str, ...]
    forks: list[Fork] = field(default_factory=list)
    result: asyncio.Future[Fork | int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    answer: Response | None = None


def dial_targets(action: Any) -> list[str]:
    """The extensions of ``dial: "1001,1002"`` (``&`` works too)."""
    return [t.strip() for t in (action.dial or "").replace("&", ",").split(",") if t.strip()]


class ConnectMixin:
    """Part of the B2BUA: see engine.B2BUA for the attributes used here."""

    async def ring(self, call: Call, extensions: Sequence[str], timeout: float, *, side: str = "b") -> Fork | int:
        """Ring every contact of ``extensions`` at once for up to ``timeout`` s. Returns the
        answered leg (not yet bridged: see ``bridge``; its ``destination`` names the extension)
        or the final status (408 no answer, 480 not registered, 486 busy, 487 caller gone)."""
        now = time.time()
        bindings = [(ext, b) for ext in extensions for b in self.location.lookup(ext, now)]
        if not bindings:
            return 480
        await self._ensure_media(call)
        if call.state is CallState.ENDED:
            return 487
        attempt = RingAttempt(call, tuple(extensions))
        for ext, b in bindings:
            uri = parse_name_addr(b.contact).uri
            assert isinstance(uri, URI)
            fork = self._fork(call, uri, b.target(), destination=f"extension:{ext}", to_user=ext, side=side)
            fork.attempt = attempt
            attempt.forks.append(fork)
        return await self._await_attempt(attempt, timeout)

    async def _await_attempt(self, attempt: RingAttempt, timeout: float) -> Fork | int:
        """The answering leg of ``attempt``, or its status once all failed, the time is up (408)
        or the call ended (487); the legs still ringing are cancelled."""
        call = attempt.call
        ended = asyncio.ensure_future(call.ended.wait())
        try:
            await asyncio.wait({attempt.result, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if not attempt.result.done():
            status = 487 if call.state is CallState.ENDED else 408
            attempt.result.set_result(status)
            for fork in attempt.forks:
                if fork.state in (ForkState.CALLING, ForkState.EARLY):
                    fork.status = status
                    self._cancel_fork(fork)
        return attempt.result.result()

    def _attempt_progress(self, fork: Fork, resp: Response) -> None:
        attempt = fork.attempt
        assert attempt is not None
        status = resp.status
        if status < 200:
            if status > 100:
                self._fork_provisional(fork)
            return
        if status >= 300:
            self._attempt_leg_failed(fork, status)
            return
        try:
            dialog = Dialog.from_uac(fork.request, resp)
        except RemoteProtocolError:
            return
        if fork.dialog is not None:
            self._send_ack(fork)  # a retransmitted 2xx
            return
        fork.dialog, fork.status = dialog, status
        self._send_ack(fork)
        if attempt.result.done() or attempt.call.state is not CallState.ANSWERED:
            fork.state = ForkState.DONE  # too late: the attempt gave up or the caller left
            self._bye(dialog, fork.flow)
            return
        fork.state, fork.answered_at = ForkState.ANSWERED, time.time()
        for other in attempt.forks:
            if other is not fork and other.state in (ForkState.CALLING, ForkState.EARLY):
                other.status = 200
                self._cancel_fork(other)
        attempt.answer = resp
        attempt.result.set_result(fork)

    async def bridge(self, call: Call, fork: Fork) -> bool:
        """Connect the caller to the leg ``ring`` returned: stop what the caller hears, point the
        callee-facing endpoint at the answering phone and bridge the two endpoints."""
        attempt = fork.attempt
        media = call.media
        if media is None or call.state is not CallState.ANSWERED or fork.dialog is None or attempt is None:
            if fork.dialog is not None and fork.state is ForkState.ANSWERED:
                fork.state = ForkState.DONE
                self._bye(fork.dialog, fork.flow)
            return False
        call.answered = fork
        call.destination = fork.destination
        self._register_dialog(call, fork.dialog.id, fork)
        await self.stop_playing(call)
        body = attempt.answer.body if attempt.answer is not None else b""
        if body:
            await self._point(call, "b", audio_target_of(body), chosen_codec(body))
        await media.worker.bridge(media.a.endpoint, media.b.endpoint)
        await media.worker.set_timeout([media.a.endpoint, media.b.endpoint], self.rtp_timeout)
        se = _session_expires(attempt.answer) if attempt.answer is not None else None
        if se is not None:
            fork.timer = SessionTimer(se[0], we_refresh=se[1] != "uas")
            self._arm_timer(call, fork)
        agent = fork.destination.removeprefix("extension:")
        if call.recording_id is not None:
            await media.worker.record_update(call.recording_id, media.b.endpoint, {"agent": agent})
            call.recording_agent = agent
        elif call.record:
            await self.start_recording(call, agent=agent)
        log.info("call %s connected to %s", call.id, fork.destination)
        self._emit(CallConnected(call.id, destination=fork.destination))
        return True

    def _attempt_leg_failed(self, fork: Fork, status: int) -> None:
        attempt = fork.attempt
        assert attempt is not None
        fork.state, fork.status = ForkState.DONE, fork.status or status
        live = [f for f in attempt.forks if f.state in (ForkState.CALLING, ForkState.EARLY)]
        if not live and not attempt.result.done():
            statuses = [f.status or 480 for f in attempt.forks]
            attempt.result.set_result(min(statuses, key=lambda s: (s != 486, s)))  # busy wins

    async def connect_answered(self, call: Call, action: Any) -> None:
        """``dial`` or ``trunk`` from a call the switch answered (IVR exit, ``play`` then
        ``dial``): the caller hears ringback while the extensions (or the number through the
        trunks) ring; no answer takes the ``else`` action."""
        await self.play(call, RINGBACK, loop=True, wait=False)
        if action.trunk is not None:
            trunks = action.trunk if isinstance(action.trunk, list) else [action.trunk]
            result = await self.ring_out(call, action.number or call.called, action.timeout or 60,  # type: ignore[attr-defined]
                                         trunks=trunks)
        else:
            known = [t for t in dial_targets(action) if t in self.plan_of().extensions]
            result = await self.ring(call, known, action.timeout or 30) if known else 404
        if call.state is not CallState.ANSWERED:
            return
        if not isinstance(result, int):
            await self.bridge(call, result)
            return
        await self.stop_playing(call)
        if action.else_ is not None:
            await self._execute(call, action.else_)
        else:
            await self.play(call, ["goodbye"])
            await self.hangup(call, by="switch", cause=q850_for(result))
