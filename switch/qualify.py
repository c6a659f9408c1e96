"""OPTIONS qualify of registered contacts: is each phone reachable, and how far away (RTT)?

One task sleeps until the next contact is due; each ping is its own short task.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..config.schema import Plan
from .core import SipCore, guarded
from .location import Binding, LocationService
from .sip.headers import parse_name_addr
from .sip.uri import URI

log = logging.getLogger("centralino.qualify")


class Qualifier:
    def __init__(self, core: SipCore, location: LocationService, interval: float) -> None:
        self.core = core
        self.location = location
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}

    def plan_changed(self, plan: Plan) -> None:
        self.interval = plan.server.registrar.qualify_interval

    async def run(self) -> None:
        if self.interval <= 0:
            return
        async with asyncio.TaskGroup() as tg:
            while True:
                now = time.time()
                due_next = now + self.interval
                for b in self.location.all():
                    key = (b.aor, b.contact_uri)
                    last = self._last.get(key)
                    due = (last + self.interval) if last is not None else now
                    if due <= now:
                        self._last[key] = now
                        tg.create_task(guarded(self.ping(b)))
                    else:
                        due_next = min(due_next, due)
                live = {(b.aor, b.contact_uri) for b in self.location.all()}
                for key in [k for k in self._last if k not in live]:
                    del self._last[key]
                await asyncio.sleep(max(0.05, due_next - time.time()))

    async def ping(self, b: Binding) -> bool:
        try:
            uri = parse_name_addr(b.contact).uri
        except Exception:
            return False
        if not isinstance(uri, URI):
            return False
        start = time.monotonic()
        resp = await self.core.request("OPTIONS", uri, b.target())
        rtt = time.monotonic() - start
        # any answer but our own timeout shows the phone is there (many answer 404 or 501)
        ok = resp.status != 408 or resp.header("Via") is not None
        self.location.set_reachability(b, ok, rtt if ok else None, time.time())
        if not ok:
            log.info("contact %s of %s is unreachable", b.contact_uri, b.aor)
        return ok
