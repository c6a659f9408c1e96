"""The location service: bindings of addresses of record to contacts (RFC 3261 §10).

The registrar talks to it only through this API. Memory is the working copy; SQLite is written
through (``apply`` returns once the change is committed), so a restart or a kill -9 loses no
binding. Expiry is one timer on the earliest binding, not a scan.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from dataclasses import dataclass, field, replace

from ..events import EventBus, RegistrationChanged
from ..storage.database import Database, Statement
from .transport.base import Flow

log = logging.getLogger("centralino.location")


@dataclass(frozen=True, slots=True)
class Binding:
    aor: str  # the extension (user part): this is a single-domain PBX
    contact_uri: str  # the URI as registered: the binding's identity
    contact: str  # the Contact value to hand back (URI in <>, contact params, no expires)
    expires_at: float
    q: float
    call_id: str
    cseq: int
    flow: Flow  # where the REGISTER came from: how to reach a phone behind NAT
    user_agent: str = ""
    instance: str | None = None
    registered_at: float = 0.0

    def expires_in(self, now: float) -> int:
        return max(0, round(self.expires_at - now))

    def target(self) -> Flow:
        """How to reach the phone. Over UDP, a Contact on the very address the REGISTER came
        from is used as written (several UAs may share a host); a Contact elsewhere means NAT, so
        the REGISTER's source flow is used. Streams reuse their connection."""
        if self.flow.transport != "udp":
            return self.flow
        from .sip.headers import parse_name_addr  # local: the location API stays message-free

        try:
            uri = parse_name_addr(self.contact).uri
        except Exception:
            return self.flow
        host = uri.host.strip("[]")
        if host == self.flow.remote[0] and uri.port is not None and uri.param("transport") in (None, "udp", "UDP"):
            return Flow("udp", (host, uri.port), self.flow.local)
        return self.flow


@dataclass(slots=True)
class Reachability:
    reachable: bool | None = None  # None: not qualified yet
    rtt: float | None = None
    last_checked: float | None = None
    failures: int = 0


@dataclass
class LocationService:
    db: Database | None = None
    _bindings: dict[str, dict[str, Binding]] = field(default_factory=dict)
    _heap: list[tuple[float, str, str]] = field(default_factory=list)
    reachability: dict[tuple[str, str], Reachability] = field(default_factory=dict)
    _changed: asyncio.Event | None = None
    bus: EventBus | None = None  # RegistrationChanged for every binding added, refreshed or gone

    # -- queries -------------------------------------------------------------------------------
    def binding(self, aor: str, contact_uri: str) -> Binding | None:
        """One binding by its key, whatever its expiry."""
        return self._bindings.get(aor, {}).get(contact_uri)

    def lookup(self, aor: str, now: float | None = None) -> list[Binding]:
        """Live bindings, highest q first, most recent first among equals."""
        items = self._bindings.get(aor, {}).values()
        if now is not None:
            items = [b for b in items if b.expires_at > now]
        return sorted(items, key=lambda b: (-b.q, -b.registered_at))

    def holds_source(self, ip: str, now: float) -> bool:
        """Whether a live binding was registered from ``ip`` (such an address is never banned for
        unauthenticated traffic, which could be forged). A scan: asked only when a ban is due."""
        return any(b.flow.remote[0] == ip and b.expires_at > now for b in self.all())

    def all(self) -> list[Binding]:
        return [b for bs in self._bindings.values() for b in bs.values()]

    def __len__(self) -> int:
        return sum(len(v) for v in self._bindings.values())

    def aors(self) -> list[str]:
        return sorted(self._bindings)

    # -- changes (write-through) -----------------------------------------------------------------
    async def apply(self, aor: str, upserts: list[Binding], removals: list[str], reason: str = "") -> None:
        if self.db is not None:
            stmts: list[Statement] = [
                ("DELETE FROM locations WHERE aor = ? AND contact_uri = ?", (aor, uri)) for uri in removals
            ]
            stmts += [(_UPSERT, _row(b)) for b in upserts]
            if stmts:
                await self.db.write(stmts, urgent=True)  # the REGISTER's 200 waits for this commit
        current = self._bindings.setdefault(aor, {})
        bus = self.bus
        for uri in removals:
            old = current.pop(uri, None)
            self.reachability.pop((aor, uri), None)
            if bus is not None and old is not None:
                bus.publish(RegistrationChanged(aor=aor, contact=uri, source=str(old.flow), user_agent=old.user_agent,
                                                expires_at=None, reason=reason or "unregistered"))
        for b in upserts:
            known = b.contact_uri in current
            current[b.contact_uri] = b
            heapq.heappush(self._heap, (b.expires_at, aor, b.contact_uri))
            if bus is not None:
                bus.publish(RegistrationChanged(aor=aor, contact=b.contact_uri, source=str(b.flow),
                                                user_agent=b.user_agent, expires_at=b.expires_at,
                                                reason="refreshed" if known else "registered"))
        if not current:
            del self._bindings[aor]
        self._wake()

    async def remove_aor(self, aor: str) -> None:
        uris = list(self._bindings.get(aor, {}))
        if uris:
            await self.apply(aor, [], uris, reason="removed")

    async def load(self, now: float) -> int:
        """Read the bindings back after a restart (dropping those that expired meanwhile)."""
        if self.db is None:
            return 0
        await self.db.write([("DELETE FROM locations WHERE expires_at <= ?", (now,))])
        rows = await self.db.fetchall("SELECT * FROM locations")
        for r in rows:
            b = Binding(
                aor=r["aor"], contact_uri=r["contact_uri"], contact=r["contact"],
                expires_at=r["expires_at"], q=r["q"], call_id=r["call_id"], cseq=r["cseq"],
                flow=Flow(r["transport"], (r["source_ip"], r["source_port"]), (r["local_ip"], r["local_port"])),
                user_agent=r["user_agent"], instance=r["instance"], registered_at=r["registered_at"],
            )
            self._bindings.setdefault(b.aor, {})[b.contact_uri] = b
            heapq.heappush(self._heap, (b.expires_at, b.aor, b.contact_uri))
        return len(rows)

    # -- expiry ----------------------------------------------------------------------------------
    def next_expiry(self) -> float | None:
        while self._heap:
            at, aor, uri = self._heap[0]
            b = self._bindings.get(aor, {}).get(uri)
            if b is not None and b.expires_at == at:
                return at
            heapq.heappop(self._heap)  # refreshed or removed since
        return None

    async def expire(self, now: float) -> list[Binding]:
        gone: dict[str, list[str]] = {}
        expired: list[Binding] = []
        while (at := self.next_expiry()) is not None and at <= now:
            _, aor, uri = heapq.heappop(self._heap)
            b = self._bindings[aor][uri]
            expired.append(b)
            gone.setdefault(aor, []).append(uri)
        for aor, uris in gone.items():
            await self.apply(aor, [], uris, reason="expired")
        for b in expired:
            log.info("binding expired: %s → %s", b.aor, b.contact_uri)
        return expired

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def run_expiry(self, clock) -> None:  # type: ignore[no-untyped-def]
        """Sleep until the earliest binding expires (or a change makes it earlier)."""
        self._changed = asyncio.Event()
        while True:
            self._changed.clear()
            at = self.next_expiry()
            timeout = None if at is None else max(0.0, at - clock())
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                await self.expire(clock())

    def set_reachability(self, b: Binding, reachable: bool, rtt: float | None, now: float) -> None:
        r = self.reachability.setdefault((b.aor, b.contact_uri), Reachability())
        r.reachable = reachable
        r.rtt = rtt
        r.last_checked = now
        r.failures = 0 if reachable else r.failures + 1

    def refreshed(self, b: Binding, **changes: object) -> Binding:
        return replace(b, **changes)  # type: ignore[arg-type]


_UPSERT = """
INSERT INTO locations (aor, contact_uri, contact, expires_at, q, call_id, cseq, transport,
    source_ip, source_port, local_ip, local_port, user_agent, instance, registered_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (aor, contact_uri) DO UPDATE SET contact = excluded.contact,
    expires_at = excluded.expires_at, q = excluded.q, call_id = excluded.call_id,
    cseq = excluded.cseq, transport = excluded.transport, source_ip = excluded.source_ip,
    source_port = excluded.source_port, local_ip = excluded.local_ip,
    local_port = excluded.local_port, user_agent = excluded.user_agent,
    instance = excluded.instance, registered_at = excluded.registered_at
"""


def _row(b: Binding) -> tuple:
    return (
        b.aor, b.contact_uri, b.contact, b.expires_at, b.q, b.call_id, b.cseq, b.flow.transport,
        b.flow.remote[0], b.flow.remote[1], b.flow.local[0], b.flow.local[1], b.user_agent,
        b.instance, b.registered_at,
    )
