"""SIP trunks: outbound registration (with digest, refresh and retry after failure), OPTIONS
qualify (up/down and round-trip time), channel accounting against `max_channels`, and which
trunk of a route's list to use (failover)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config.schema import Plan, Trunk
from ..events import EventBus, TrunkStateChanged
from .core import SipCore, guarded
from .sip.auth import DigestClient
from .sip.dialog import new_call_id, new_tag
from .sip.message import Request, Response
from .sip.uri import parse_uri
from .transport.base import Flow

log = logging.getLogger("centralino.trunks")

RETRY_MIN, RETRY_MAX = 5.0, 300.0


@dataclass
class TrunkState:
    registered: bool = False
    registration_expires: float | None = None
    last_error: str = ""  # of the registration
    down_reason: str = ""  # why the last qualify found it unreachable
    reachable: bool | None = None  # None: not qualified yet
    rtt_ms: float | None = None
    channels: int = 0


class TrunkManager:
    def __init__(self, core: SipCore, plan_of: Callable[[], Plan], bus: EventBus | None = None):
        self.core = core
        self.plan_of = plan_of
        self.bus = bus  # TrunkStateChanged when a trunk goes up or down, registers or fails to
        self.states: dict[str, TrunkState] = {}
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._plan_changed = asyncio.Event()

    def plan_changed(self, plan: Plan) -> None:
        """After a reload: start or stop registrations and pings to match the plan."""
        self._plan_changed.set()

    def trunk_of(self, ip: str) -> str | None:
        """The trunk whose allow_from contains this source address (IP authentication)."""
        return _trunk_by_source(self.plan_of().trunks, ip)

    def state(self, name: str) -> TrunkState:
        return self.states.setdefault(name, TrunkState())

    # -- channels and choice ---------------------------------------------------------------------
    def available(self, name: str) -> bool:
        trunk = self.plan_of().trunks.get(name)
        if trunk is None:
            return False
        st = self.state(name)
        if st.reachable is False:
            return False
        return trunk.max_channels is None or st.channels < trunk.max_channels

    def acquire(self, name: str) -> bool:
        trunk = self.plan_of().trunks.get(name)
        st = self.state(name)
        if trunk is not None and trunk.max_channels is not None and st.channels >= trunk.max_channels:
            return False
        st.channels += 1
        return True

    def release(self, name: str) -> None:
        st = self.state(name)
        st.channels = max(0, st.channels - 1)

    async def flow_for(self, trunk: Trunk) -> Flow:
        """Where the trunk is reached (its host resolved now); OSError when it cannot be."""
        infos = await asyncio.get_running_loop().getaddrinfo(trunk.host, trunk.port, type=2)
        ip = infos[0][4][0]
        self.core.trust_responses_from(ip)  # its responses are never rate-limited
        return Flow(trunk.transport, (ip, trunk.port), self.core.transports.local_address(trunk.transport))

    # -- background work ------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep registrations and qualify pings going for the plan's trunks (re-read on reload)."""
        async with asyncio.TaskGroup() as tg:
            while True:
                plan = self.plan_of()
                wanted = {f"register:{n}" for n, t in plan.trunks.items() if t.register_}
                wanted |= {f"qualify:{n}" for n, t in plan.trunks.items() if t.qualify > 0}
                for key in wanted - set(self._tasks):
                    kind, name = key.split(":", 1)
                    coro = self._register_loop(name) if kind == "register" else self._qualify_loop(name)
                    self._tasks[key] = tg.create_task(guarded(coro), name=key)
                for key in set(self._tasks) - wanted:
                    self._tasks.pop(key).cancel()
                await self._plan_changed.wait()
                self._plan_changed.clear()

    async def _register_loop(self, name: str) -> None:
        retry = RETRY_MIN
        client_cseq = 0
        call_id = new_call_id(self.plan_of().server.sip.domain)
        tag = new_tag()
        while (trunk := self.plan_of().trunks.get(name)) is not None:  # gone from the plan: stop
            st = self.state(name)
            try:
                flow = await self.flow_for(trunk)
                resp, client_cseq = await self._register_once(trunk, flow, call_id, tag, client_cseq, 3600)
            except OSError as exc:
                resp, st.last_error = None, f"cannot reach {trunk.host}:{trunk.port}: {exc.strerror or exc}"
            if resp is not None and resp.status == 200:
                expires = _granted_expires(resp, 3600)
                was = st.registered
                st.registered, st.registration_expires, st.last_error = True, time.time() + expires, ""
                retry = RETRY_MIN
                log.info("trunk %s registered for %ds", name, expires)
                if not was:
                    self._publish(name, st, "registered")
                await asyncio.sleep(max(5.0, expires * 0.85))
            else:
                was = st.registered
                st.registered = False
                if resp is not None:
                    st.last_error = f"{resp.status} {resp.reason}"
                if was or retry == RETRY_MIN:
                    self._publish(name, st, f"registration failed: {st.last_error}")
                log.warning("trunk %s registration failed: %s; retrying in %.0fs", name, st.last_error, retry)
                await asyncio.sleep(retry)
                retry = min(RETRY_MAX, retry * 2)

    async def _register_once(self, trunk: Trunk, flow: Flow, call_id: str, tag: str, cseq: int,
                             expires: int) -> tuple[Response, int]:
        user = trunk.username or ""
        uri = parse_uri(f"sip:{trunk.host}:{trunk.port}")
        auth_header: tuple[str, str] | None = None
        client = DigestClient(user, trunk.password or "")
        for _ in range(3):
            cseq += 1
            headers = [
                ("Via", self.core.via_for(flow)), ("Max-Forwards", "70"),
                ("From", f"<sip:{user}@{trunk.host}>;tag={tag}"), ("To", f"<sip:{user}@{trunk.host}>"),
                ("Call-ID", call_id), ("CSeq", f"{cseq} REGISTER"),
                ("Contact", self.core.contact_for(flow, user or "centralino")), ("Expires", str(expires)),
                ("User-Agent", self.core.user_agent),
            ]
            if auth_header:
                headers.append(auth_header)
            resp = await self.core.send_and_wait(Request("REGISTER", uri, headers), flow)  # type: ignore[arg-type]
            if resp.status in (401, 407):
                name = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
                challenge = DigestClient.pick(resp.header_values(name))
                if challenge is None or (auth_header is not None and not challenge.stale):
                    return resp, cseq  # wrong credentials: do not loop
                cred = client.authorize(challenge, "REGISTER", str(uri))
                auth_header = ("Proxy-Authorization" if resp.status == 407 else "Authorization", cred)
                continue
            return resp, cseq
        return resp, cseq

    async def _qualify_loop(self, name: str) -> None:
        while (trunk := self.plan_of().trunks.get(name)) is not None:  # gone from the plan: stop
            st = self.state(name)
            try:
                flow = await self.flow_for(trunk)
                start = time.monotonic()
                uri = parse_uri(f"sip:{trunk.host}:{trunk.port}")
                resp = await self.core.request("OPTIONS", uri, flow)  # type: ignore[arg-type]
                up = resp.status != 408 or resp.header("Via") is not None
                why = "" if up else f"no answer to OPTIONS from {flow.remote[0]}:{flow.remote[1]} ({trunk.transport})"
                st.rtt_ms = round((time.monotonic() - start) * 1000, 1) if up else None
            except OSError as exc:
                up, why = False, f"cannot reach {trunk.host}:{trunk.port}: {exc.strerror or exc}"
            self._set_reachable(name, st, up, why)
            await asyncio.sleep(trunk.qualify)

    def _set_reachable(self, name: str, st: TrunkState, up: bool, why: str) -> None:
        """Every change is logged with its reason (a trunk that is silently down turns every
        call to it into a 503); the reason stays in ``last_error`` for `centralino status`."""
        changed = up != st.reachable
        if changed:
            if up:
                log.info("trunk %s is up", name)
            else:
                log.warning("trunk %s is DOWN: %s", name, why)
        st.reachable = up
        st.down_reason = why
        if changed:
            self._publish(name, st, why or "up")

    def _publish(self, name: str, st: TrunkState, reason: str) -> None:
        if self.bus is not None:
            self.bus.publish(TrunkStateChanged(trunk=name, reachable=st.reachable, registered=st.registered,
                                               reason=reason))

    def summary(self) -> dict[str, Any]:
        out = {}
        for name, trunk in self.plan_of().trunks.items():
            st = self.state(name)
            out[name] = {
                "host": f"{trunk.host}:{trunk.port}", "register": trunk.register_, "registered": st.registered,
                "expires_in": round(st.registration_expires - time.time()) if st.registration_expires else None,
                "reachable": st.reachable, "rtt_ms": st.rtt_ms, "channels": st.channels,
                "max_channels": trunk.max_channels,
                "last_error": st.down_reason or st.last_error,
            }
        return out


def _granted_expires(resp: Response, asked: int) -> int:
    for c in resp.contacts:
        e = c.param("expires")
        if e and e.isdigit():
            return int(e)
    if resp.expires is not None:
        return resp.expires
    return asked


def _networks(trunks: dict[str, Trunk]) -> list[tuple[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]]:
    return [(name, [ipaddress.ip_network(n, strict=False) for n in t.allow_from]) for name, t in trunks.items()]


_source_cache: dict[int, tuple[dict[str, Trunk], list, dict[str, str | None]]] = {}


def _trunk_by_source(trunks: dict[str, Trunk], ip: str) -> str | None:
    """Every new call asks which trunk its source is: the plan's networks are parsed once per plan
    (a reload brings a new trunks dict) and the answer per address is remembered."""
    entry = _source_cache.get(id(trunks))
    if entry is None or entry[0] is not trunks:
        _source_cache.clear()  # one plan in force at a time
        entry = _source_cache[id(trunks)] = (trunks, _networks(trunks), {})
    _, networks, answers = entry
    if ip in answers:
        return answers[ip]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    found = next((name for name, nets in networks if any(addr in n for n in nets)), None)
    if len(answers) < 65536:  # a spoofed-source flood cannot grow it without bound
        answers[ip] = found
    return found
