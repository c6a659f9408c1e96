"""Calls the switch places itself (a queue callback: the agent first, then the customer). Such a
call has no incoming leg: it is "answered" by the switch from the start, its first leg is rung
with ``ring`` on the callee-facing endpoint like any agent, and ``ring_partner`` dials the second
leg — an extension, or a number through a trunk — on the caller-facing endpoint. Once both are
up, ``bridge`` connects them as for any call; either side hanging up ends both (the partner is
treated like the caller of an ordinary call).
"""

from __future__ import annotations

import logging
from typing import Any

from ...events import CallOriginated
from ..sip.dialog import new_call_id
from ..sip.uri import URI, parse_uri
from .call import Call, CallState, Fork
from .connect import RingAttempt
from .control import RINGBACK
from .indialog import audio_target_of
from .sdp_anchor import chosen_codec

log = logging.getLogger("centralino.b2bua")

# What we offer the first leg before the partner's codecs are known: G.711 both laws and DTMF.
SWITCH_OFFER = (b"v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                b"m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")


class OriginateMixin:
    """Part of the B2BUA: see engine.B2BUA for the attributes used here."""

    calls: dict[str, Call]
    plan_of: Any
    location: Any
    trunks: Any
    dialogs: dict
    core: Any

    async def originate(self, *, caller: str, source: str, did: str, destination: str,
                        presented: str | None = None, beside: Call | None = None) -> Call:
        """A new call with no incoming leg; ``caller`` is who it is on behalf of (the customer),
        ``presented`` the number its trunk legs show instead (a campaign's caller ID)."""
        domain = self.plan_of().server.sip.domain
        call = Call(id=new_call_id(domain), inc=None, caller=caller, called=caller, source=source, did=did,
                    state=CallState.ANSWERED, destination=destination, presented=presented)
        call.caller_sdp = SWITCH_OFFER
        self._add_call(call)  # type: ignore[attr-defined]
        self._emit(CallOriginated(call.id, caller=caller, destination=destination, source=source))  # type: ignore[attr-defined]
        worker = beside.media.worker if beside is not None and beside.media is not None else None
        await self._ensure_media(call, worker)  # type: ignore[attr-defined]
        return call

    async def ring_out(self, call: Call, number: str, timeout: float, *, trunks: list[str],
                       side: str = "b") -> Fork | int:
        """Ring ``number`` from a call the switch holds: its phones if it is an extension, else
        through the first of ``trunks`` that is up and has a free channel (failing over to the
        next when one refuses). Returns the answered leg or the last final status."""
        plan = self.plan_of()
        if number in plan.extensions:
            return await self.ring(call, [number], timeout, side=side)  # type: ignore[attr-defined]
        status = 404
        for name in [t for t in trunks if t in plan.trunks]:
            flow = await self._trunk_channel(call, name)  # type: ignore[attr-defined]
            if flow is None:
                status = 503
                continue
            t = plan.trunks[name]
            uri = parse_uri(f"sip:{number}@{t.host}:{t.port}")
            assert isinstance(uri, URI)
            attempt = RingAttempt(call, (number,))
            attempt.forks.append(self._fork(call, uri, flow, destination=f"trunk:{name}:{number}",  # type: ignore[attr-defined]
                                            to_user=number, trunk=name, side=side))
            result = await self._ring_attempt(attempt, timeout)
            if not isinstance(result, int) or result in (486, 487, 600, 603) or call.state is not CallState.ANSWERED:
                return result  # answered, busy or the caller left: no other trunk
            status = result
        return status

    async def _ring_attempt(self, attempt: RingAttempt, timeout: float) -> Fork | int:
        for fork in attempt.forks:
            fork.attempt = attempt
        return await self._await_attempt(attempt, timeout)  # type: ignore[attr-defined]

    async def ring_partner(self, call: Call, number: str, timeout: float, *, trunk: str | None = None,
                           trunks: list[str] | None = None, ringback: bool = True) -> Fork | int:
        """Dial the second leg of a call the switch placed — or its first, for the dialer — on the
        caller-facing endpoint: it becomes the call's caller side. With ``ringback`` the leg
        already up (an agent) hears ringback meanwhile. Returns the answered leg or the status."""
        if ringback:
            await self.play(call, RINGBACK, loop=True, wait=False, side="b")  # type: ignore[attr-defined]
        via = list(trunks) if trunks else ([trunk] if trunk else [])
        result = await self.ring_out(call, number, timeout, trunks=via, side="a")
        if ringback:
            await self.stop_playing(call, "b")  # type: ignore[attr-defined]
        if isinstance(result, Fork):
            call.partner = result
            assert result.dialog is not None
            self._register_dialog(call, result.dialog.id, result)
            answer = result.attempt.answer.body if result.attempt is not None and result.attempt.answer else b""
            if answer:
                await self._point(call, "a", audio_target_of(answer), chosen_codec(answer))  # type: ignore[attr-defined]
            # the switch is this side's far end until it is bridged: comfort noise, prompts, AMD
            if call.media is not None:
                await call.media.worker.unbridge(call.media.a.endpoint, terminate=True)
        return result

    async def hold_first_leg(self, call: Call, fork: Fork) -> None:
        """The first leg answered: it is the call's callee from now on (its BYE ends the call),
        and its endpoint points at it so that it hears ringback while the partner is dialled."""
        call.answered = fork
        call.destination = fork.destination
        assert fork.dialog is not None
        self._register_dialog(call, fork.dialog.id, fork)
        attempt = fork.attempt
        answer = attempt.answer.body if attempt is not None and attempt.answer is not None else b""
        if answer:
            await self._point(call, "b", audio_target_of(answer), chosen_codec(answer))  # type: ignore[attr-defined]
        log.info("call %s: %s answered, dialling the partner", call.id, fork.destination)
