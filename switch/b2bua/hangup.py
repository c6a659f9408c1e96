"""Hanging a call up and forgetting it: BYE to the answered sides, CANCEL to the ringing ones,
media released, the CDR written durably, then every reference dropped (a mixin of the B2BUA)."""

from __future__ import annotations

import logging
import time
from typing import Any

from ...events import CallDisconnected, CallEnded
from ..sip.dialog import Dialog
from ..transport.base import Flow
from .call import NORMAL_CLEARING, Call, CallState, FinishedLeg, Fork, ForkState

log = logging.getLogger("centralino.b2bua")


class HangupMixin:
    # provided by the B2BUA
    calls: dict[str, Call]
    dialogs: dict[Any, Any]
    by_endpoint_call: dict[str, Call]
    core: Any
    bus: Any
    trunks: Any
    completed: int
    _idle: Any

    # -- hanging up --------------------------------------------------------------------------------------
    async def hangup(self, call: Call, *, by: str, cause: int = NORMAL_CLEARING, skip_a: bool = False,
                     skip_fork: Fork | None = None) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.hangup_by = call.hangup_by or by
        call.cause = call.cause or cause
        call.final_status = call.final_status or 200
        self._emit(CallDisconnected(call.id, by=call.hangup_by, cause=call.cause))
        if not skip_a and call.a_dialog is not None:
            self._bye(call.a_dialog, call.a_flow)
        for fork in call.forks:
            if fork is skip_fork:
                fork.state = ForkState.DONE
                continue
            if fork.state is ForkState.ANSWERED and fork.dialog is not None:
                fork.state = ForkState.DONE
                self._bye(fork.dialog, fork.flow)
            elif fork.state in (ForkState.CALLING, ForkState.EARLY):
                self._cancel_fork(fork)
        await self._finish(call)

    def _bye(self, dialog: Dialog, flow: Flow) -> None:
        bye = dialog.create_request("BYE", self.core.via_for(flow),
                                    extra=[("Reason", "Q.850;cause=16"), ("User-Agent", self.core.user_agent)])
        self.core.start_transaction(bye, flow, None)

    async def _finish(self, call: Call) -> None:
        """Release media, write the CDR rows durably, then forget the call."""
        if call.id not in self.calls:
            return
        call.state = CallState.ENDED
        call.ended_at = call.ended_at or time.time()
        if call.ring_timer is not None:
            call.ring_timer.cancel()
        self._release_channels(call)
        for timer in [call.a_timer, *(f.timer for f in call.forks)]:
            if timer is not None:
                timer.cancel()
        call.ended.set()
        self._release_waiters(call)
        if call.media is not None:
            media, call.media = call.media, None
            media.worker.endpoints -= 2
            try:
                done = await media.worker.destroy_pair(media.a.endpoint, media.b.endpoint)
                if done is not None:
                    call.rtp["a"], call.rtp["b"] = done
            except (TimeoutError, ConnectionError):
                pass
            self.by_endpoint_call.pop(call.id, None)
        # durable: the CDR writer (storage/subscribers.py) commits before the call is forgotten
        await self.bus.publish_durable(CallEnded(call.id, records=tuple(call.records())))
        for key in call.dialog_ids:
            if self.dialogs.get(key, (None,))[0] is call:
                del self.dialogs[key]
        del self.calls[call.id]
        self.core.untrack_call_id(call.id)
        for fork in call.forks:
            self.core.untrack_call_id(fork.request.call_id)
        self.completed += 1
        if not self.calls:
            self._idle.set()
        log.info("call %s ended (%s, status %s, cause %s, by %s)", call.id,
                 "answered" if call.answered_at else "unanswered", call.final_status, call.cause, call.hangup_by)
        # A finished call's parts point at each other (the INVITE's callbacks and the legs'
        # ring attempts hold the call): unlinked, reference counting frees them as soon as the
        # transactions let go, instead of piling up for the garbage collector's long passes.
        if call.inc is not None:
            call.inc.on_cancel = call.inc.on_timeout = None
        for fork in call.forks:
            fork.attempt = None
            if fork.txn is not None and fork.txn.user_data is fork:
                fork.txn.user_data = FinishedLeg(self, fork.request, fork.flow, fork.dialog)
        call.forks, call.answered, call.partner = [], None, None

    def _release_channels(self, call: Call) -> None:
        if self.trunks is not None:
            for name in call.channels:
                self.trunks.release(name)
        call.channels.clear()
