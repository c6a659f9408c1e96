"""Message waiting (RFC 3842 over RFC 6665): a desk phone SUBSCRIBEs to ``Event:
message-summary`` for its own account; the switch answers 200, keeps the subscription as a
dialog and NOTIFYs the voicemail counts at once and on every change, so the phone's lamp follows
the mailboxes. An extension's counts are its own box plus every shared box whose ``notify``
lists it. A subscription lives for its Expires (refreshed by the phone), and ends with a
terminated NOTIFY when it lapses or the phone unsubscribes (Expires: 0).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..config.schema import Plan
from .core import IncomingRequest, SipCore
from .sip.dialog import Dialog
from .sip.message import Response
from .sip.uri import URI
from .transport.base import Flow

log = logging.getLogger("centralino.mwi")

EVENT = "message-summary"
MIN_EXPIRES, MAX_EXPIRES = 60, 3600


def message_summary(new: int, old: int, account: str) -> bytes:
    """The application/simple-message-summary body (RFC 3842 §5.2)."""
    return (f"Messages-Waiting: {'yes' if new else 'no'}\r\nMessage-Account: {account}\r\n"
            f"Voice-Message: {new}/{old} (0/0)\r\n").encode()


@dataclass(eq=False)
class Subscription:
    extension: str
    dialog: Dialog
    flow: Flow
    account: str
    expires_at: float
    timer: asyncio.TimerHandle | None = None


class MwiNotifier:
    def __init__(self, core: SipCore, auth: Any, plan_of: Callable[[], Plan],
                 counts_for: Callable[[str], Awaitable[tuple[int, int]]]) -> None:
        self.core, self.auth, self.plan_of, self.counts_for = core, auth, plan_of, counts_for
        self.subscriptions: dict[tuple[str, str], Subscription] = {}  # (Call-ID, phone's tag) →
        core.on("SUBSCRIBE", self.on_subscribe)

    async def on_subscribe(self, inc: IncomingRequest) -> Response | None:
        req = inc.request
        event = (req.header("Event") or "").split(";")[0].strip().lower()
        if event != EVENT:
            return self.core.make_response(inc, 489, headers=[("Allow-Events", EVENT)])
        outcome = self.auth.check(req, inc.source_ip, time.time())
        if outcome.user is None:
            return self.core.make_response(inc, outcome.status, headers=outcome.headers)
        user = outcome.user
        key = (req.call_id, req.from_.tag or "")
        sub = self.subscriptions.get(key)
        if req.to.tag is not None and sub is None:
            return self.core.make_response(inc, 481)
        target = req.uri.user if isinstance(req.uri, URI) and req.uri.user else user
        if target != user:  # a phone watches its own account; shared boxes come through notify
            return self.core.make_response(inc, 403, "Subscribe to your own account")
        try:
            expires = int(req.header("Expires") or MAX_EXPIRES)
        except ValueError:
            return self.core.make_response(inc, 400, "Bad Expires")
        if 0 < expires < MIN_EXPIRES:
            return self.core.make_response(inc, 423, headers=[("Min-Expires", str(MIN_EXPIRES))])
        expires = min(expires, MAX_EXPIRES)
        if sub is None:  # (Expires: 0 on a new one is a fetch: one NOTIFY, then it ends)
            dialog = Dialog.from_uas(req, inc.to_tag)
            domain = self.plan_of().server.sip.domain
            sub = Subscription(user, dialog, inc.flow, f"sip:{user}@{domain}", 0.0)
            self.subscriptions[key] = sub
            self.core.track_call_id(req.call_id)  # its refreshes are solicited (not rate-limited)
        else:
            inc.to_tag = sub.dialog.local_tag
            sub.dialog.remote_seq = req.cseq.seq
            sub.flow = inc.flow
        self._arm(key, sub, expires)
        response = self.core.make_response(inc, 200, headers=[
            ("Expires", str(expires)), ("Contact", self.core.contact_for(inc.flow))])
        self.core.spawn(self._notify(key, sub, terminated=expires == 0, reason="timeout" if expires == 0 else ""))
        log.info("MWI: %s %s", user, "unsubscribed" if expires == 0 else f"subscribed for {expires}s")
        return response

    def _arm(self, key: tuple[str, str], sub: Subscription, expires: int) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
        sub.expires_at = time.time() + expires
        if expires:
            sub.timer = asyncio.get_running_loop().call_later(
                expires, lambda: self.core.spawn(self._notify(key, sub, terminated=True, reason="timeout")))

    async def _notify(self, key: tuple[str, str], sub: Subscription, *, terminated: bool = False,
                      reason: str = "") -> None:
        new, old = await self.counts_for(sub.extension)
        if terminated:
            self._drop(key)
            if sub.timer is not None:
                sub.timer.cancel()
            state = f"terminated;reason={reason or 'noresource'}"
        else:
            state = f"active;expires={max(0, int(sub.expires_at - time.time()))}"
        req = sub.dialog.create_request(
            "NOTIFY", self.core.via_for(sub.flow), contact=self.core.contact_for(sub.flow),
            body=message_summary(new, old, sub.account),
            extra=[("Event", EVENT), ("Subscription-State", state),
                   ("Content-Type", "application/simple-message-summary"), ("User-Agent", self.core.user_agent)])
        resp = await self.core.send_and_wait(req, sub.flow)
        if resp.status in (404, 408, 481) or resp.status >= 500:
            log.info("MWI: %s's phone answered %d to NOTIFY: subscription dropped", sub.extension, resp.status)
            self._drop(key)
            if sub.timer is not None:
                sub.timer.cancel()

    def _drop(self, key: tuple[str, str]) -> None:
        if self.subscriptions.pop(key, None) is not None:
            self.core.untrack_call_id(key[0])

    async def changed(self, extensions: list[str]) -> None:
        """A mailbox changed: NOTIFY every subscription of the extensions it lights up."""
        for key, sub in list(self.subscriptions.items()):
            if sub.extension in extensions:
                await self._notify(key, sub)

    def close(self) -> None:
        for sub in self.subscriptions.values():
            if sub.timer is not None:
                sub.timer.cancel()
        for key in list(self.subscriptions):
            self._drop(key)
