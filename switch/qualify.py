"""OPTIONS qualify of registered contacts: is each phone reachable, and how far away (RTT)?

One task sleeps until the next contact is due — a heap of due times, so a wake costs the contacts
due, not a pass over every binding (with 10,000 phones spread over the interval the old pass ran
hundreds of times a second) — and each ping is its own short task. New bindings are found by one
pass over the location per interval: a phone that has just registered is reachable by definition.
"""

from __future__ import annotations

import asyncio
import heapq
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
        self._due: dict[tuple[str, str], float] = {}  # contact → when its next ping is due
        self._heap: list[tuple[float, tuple[str, str]]] = []  # (due, contact); stale entries skipped

    def plan_changed(self, plan: Plan) -> None:
        self.interval = plan.server.registrar.qualify_interval

    async def run(self) -> None:
        if self.interval <= 0:
            return
        async with asyncio.TaskGroup() as tg:
            next_scan = 0.0
            while True:
                now = time.time()
                if self.interval <= 0:  # turned off by a reload
                    await asyncio.sleep(1.0)
                    continue
                if now >= next_scan:
                    self._discover(now)
                    next_scan = now + self.interval
                for b in self._take_due(now):
                    tg.create_task(guarded(self.ping(b)))
                wake = min(next_scan, self._heap[0][0]) if self._heap else next_scan
                await asyncio.sleep(max(0.05, wake - time.time()))

    def _discover(self, now: float) -> None:
        """Bindings not seen before are due now; forgotten ones are dropped."""
        live = set()
        for b in self.location.all():
            key = (b.aor, b.contact_uri)
            live.add(key)
            if key not in self._due:
                self._due[key] = now
                heapq.heappush(self._heap, (now, key))
        for key in [k for k in self._due if k not in live]:
            del self._due[key]  # its heap entry is skipped as stale

    def _take_due(self, now: float) -> list[Binding]:
        out = []
        heap, due_of = self._heap, self._due
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if due_of.get(key) != due:
                continue  # re-scheduled or forgotten since
            b = self.location.binding(*key)
            if b is None or b.expires_at <= now:
                del due_of[key]
                continue
            due_of[key] = now + self.interval
            heapq.heappush(heap, (due_of[key], key))
            out.append(b)
        return out

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
