"""The control process: wires storage, the SIP core, transports, registrar, security and API
together, and runs them under one TaskGroup with phased shutdown and hot reload."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .acd.service import AcdService
from .acd.supervision import Supervision
from .api.app import build_app
from .api.auth import ApiAuth
from .api.links import call_recording_path
from .api.server import ApiServer
from .api.webhooks import WebhookSender
from .config.loader import LoadedPlan, PlanInvalid, load_plan
from .config.reloadable import Reloadable
from .config.schema import Plan
from .dialer.service import DialerService
from .events import EventBus
from .ivr.engine import IvrService
from .ivr.voicemail import VoicemailService
from .media.worker import MediaPool
from .storage.database import Database, storage_path
from .storage.outbox import Outbox
from .storage.overrides import load_overrides, save_override
from .storage.subscribers import Persistence
from .switch.authentication import Authenticator
from .switch.b2bua.control import CallControl
from .switch.b2bua.engine import B2BUA
from .switch.core import IncomingRequest, SipCore
from .switch.location import LocationService
from .switch.mwi import MwiNotifier
from .switch.qualify import Qualifier
from .switch.registrar import Registrar
from .switch.security import SecurityGuard
from .switch.sip.message import Response
from .switch.transport.base import Flow
from .switch.transport.manager import (
    TransportManager,
    make_client_ssl_context,
    make_server_ssl_context,
)
from .switch.trunks import TrunkManager

log = logging.getLogger("centralino")


@dataclass
class RunOptions:
    plan_path: str | None = None
    sip_trace: bool = False
    drain_seconds: float = 10.0


class Switch:
    def __init__(self, loaded: LoadedPlan, options: RunOptions | None = None) -> None:
        self.loaded = loaded
        self.options = options or RunOptions()
        self.passwords: dict[str, str] = {}
        self.generated: dict[str, str] = {}  # extensions whose password the switch generated
        self.new_passwords: dict[str, str] = {}  # ... at this start (printed once)
        self.started_at = time.time()
        self.plan_loaded_at = self.started_at
        self.db: Database | None = None
        self.core: SipCore | None = None
        self.transports: TransportManager | None = None
        self.api = ApiServer()
        self.location = LocationService()
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None

    @property
    def plan(self) -> Plan:
        return self.loaded.plan

    @property
    def data_dir(self) -> Path | None:
        """The folder of the database: the API credential goes there too."""
        path = storage_path(self.plan.server.storage)
        return None if path == ":memory:" else Path(path).resolve().parent

    # -- start-up ----------------------------------------------------------------------------
    async def run(self) -> None:
        plan = self.plan
        self.db = Database(storage_path(plan.server.storage))
        await self.db.open()
        self.location.db = self.db
        restored = await self.location.load(time.time())
        secret = await self._meta_secret("nonce-secret")
        await self._resolve_passwords()

        self.bus = EventBus()
        api_secret = await self._meta_secret("api-secret")
        self.outbox = Outbox(lambda: self.plan, self.db, self.bus, self._recording_link(api_secret))
        self.persistence = Persistence(self.db, self.bus, self.outbox)
        self.webhooks = WebhookSender(self.db, lambda: self.plan)
        self.outbox.on_enqueued = self.webhooks.wake
        await self.webhooks.load()
        sec = plan.server.security
        self.security = SecurityGuard(sec, on_event=self.bus.publish)
        self.security.protected = self._holds_live_session
        self.security.trust([n for t in plan.trunks.values() for n in t.allow_from])
        sip = plan.server.sip
        self.core = SipCore(
            security=self.security, domain=sip.domain, user_agent=sip.user_agent,
            force_rport=sip.force_rport, t1=sip.t1, max_setups=sip.max_setups,
            max_queue_delay=sip.max_queue_delay,
        )
        self.auth = Authenticator(
            sip.realm or sip.domain, self.passwords.get, self.security,
            algorithms=tuple(sec.auth_algorithms), nonce_lifetime=sec.nonce_lifetime, secret=secret,
        )
        self.registrar = Registrar(self.core, self.location, self.auth, plan.server.registrar, self._max_contacts)
        self.core.on("OPTIONS", self._options)
        ssl_server = make_server_ssl_context(sip.tls.cert, sip.tls.key) if sip.tls else None
        self.transports = TransportManager(
            self.core, idle_timeout=sip.tcp_idle_timeout, trace=self.options.sip_trace,
            ssl_server=ssl_server, ssl_client=make_client_ssl_context(), security=self.security,
            max_connections=sip.tcp_max_connections, max_per_source=sip.tcp_max_per_source,
            message_timeout=sip.tcp_message_timeout,
        )
        self.core.transports = self.transports
        rtp = plan.server.rtp
        self.rtp_bind = rtp.address if rtp.address != "auto" else sip.listen_addresses[0].host
        workers = rtp.workers if rtp.workers != "auto" else max(1, (os.cpu_count() or 2) - 1)
        self.media = MediaPool(self.rtp_bind, rtp.port_range, workers, self._media_event)
        self.trunks = TrunkManager(self.core, lambda: self.plan, self.bus)
        self.location.bus = self.bus
        self.overrides = await load_overrides(self.db, set(plan.schedules))
        self.b2bua = B2BUA(
            self.core, lambda: self.plan, self.location, self.auth, self.media, self.bus,
            self.trunks.trunk_of, self._media_ip, rtp_timeout=rtp.timeout, trunks=self.trunks,
            overrides=self.overrides,
        )
        self.ivr = IvrService(self.b2bua, lambda: self.plan, self.overrides)
        self.acd = AcdService(self.b2bua, lambda: self.plan, self.db, self.bus)
        self.supervision = Supervision(self.b2bua, lambda: self.plan)
        self.mwi = MwiNotifier(self.core, self.auth, lambda: self.plan, lambda ext: self.voicemail.counts_for(ext))
        self.voicemail = VoicemailService(self.b2bua, lambda: self.plan, self.db, self.mwi, self.bus)
        self.dialer = DialerService(self.b2bua, lambda: self.plan, self.acd, self.bus, self.db)
        await self.acd.restore_agents()
        self.reloadables: list[Reloadable] = [  # every service that follows the plan, in one place
            self.security, self.auth, self.core, self.transports, self.registrar, self.trunks, self.overrides,
            self.acd, self.supervision, self.voicemail, self.dialer,
        ]
        try:
            # Bind first, so that a busy port is a plain error rather than a task-group failure.
            await self.transports.start(sip.listen_addresses)
            await self.media.start()
            self.api_auth = ApiAuth(plan, self.db, self.bus, self.api.token, api_secret)
            await self.api_auth.start()
            app, self.event_tail = build_app(self, self.api_auth, self._version())
            self.api.set_names(plan.server.api.hosts, plan.server.api.public_url)
            await self.api.start(plan.server.api.listen, app)
            # No await from here to the announcement: `centralino status` (which needs the token) cannot
            # answer before the start-up lines, generated passwords included, are printed.
            self.api.write_token(self.data_dir)
        except BaseException:
            await self.transports.close()
            await self.media.close()
            await self.db.close()
            raise
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.core.set_task_group(tg.create_task)
                self.bus.set_spawn(self.core.spawn)
                self._install_signals()
                tg.create_task(self.acd.arm_callbacks(), name="callbacks")  # those scheduled before a restart
                tg.create_task(self.location.run_expiry(time.time), name="expiry")
                self.qualifier = Qualifier(self.core, self.location, plan.server.registrar.qualify_interval)
                self.reloadables.append(self.qualifier)
                tg.create_task(self.qualifier.run(), name="qualify")
                tg.create_task(self.trunks.run(), name="trunks")
                tg.create_task(self.webhooks.run(), name="webhooks")
                self._announce(restored)
                _tune_gc()
                self.ready.set()
                await self._stop.wait()
                await self._shutdown()
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            if self.core is not None:
                self.core.close()
            if self.db is not None:
                await self.db.close()

    def _recording_link(self, secret: bytes) -> Callable[[str, float], str]:
        def link(call_id: str, seconds: float) -> str:
            return self.api.base_url + call_recording_path(call_id, int(time.time() + seconds), secret)
        return link

    async def _meta_secret(self, key: str) -> bytes:
        assert self.db is not None
        row = await self.db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        if row is not None:
            return bytes.fromhex(row["value"])
        value = os.urandom(32)
        await self.db.write([("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value.hex()))])
        return value

    async def _resolve_passwords(self) -> None:
        """Extensions without a password get one generated once and kept in the database (0600);
        it is printed at the start that generated it, and later by `centralino passwords --show`."""
        assert self.db is not None
        passwords: dict[str, str] = {}
        generated: dict[str, str] = {}
        for name, ext in self.plan.extensions.items():
            if ext.password is not None:
                passwords[name] = ext.password
                continue
            key = f"password:{name}"
            row = await self.db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
            if row is None:
                value = secrets.token_urlsafe(9)
                await self.db.write([("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))])
                self.new_passwords[name] = value
            else:
                value = row["value"]
            passwords[name] = generated[name] = value
        self.passwords.clear()
        self.passwords.update(passwords)
        self.generated = generated

    def _announce(self, restored: int) -> None:
        assert self.transports is not None
        where = ", ".join(f"{t}:{h}:{p}" for t, (h, p) in self.transports.listening)
        print(f"Centralino {self._version()} running the plan {self.loaded.source}", flush=True)
        print(f"  SIP on {where}; domain {self.plan.server.sip.domain}", flush=True)
        if self.api.address:
            base = f"http://{self.api.address[0]}:{self.api.address[1]}"
            print(f"  API on {base}/api/v1 (docs {base}/api/v1/docs); wallboard {base}/wallboard, "
                  f"agent desktop {base}/agent", flush=True)
        print(f"  data: database {self.db.path if self.db else '-'}, recordings in "
              f"{self.plan.server.recordings}", flush=True)
        print(f"  {restored} registration(s) restored", flush=True)
        for name, pw in self.new_passwords.items():
            ext = self.plan.extensions[name]
            label = f" ({ext.name})" if ext.name else ""
            print(f"  extension {name}{label}: user {name}, password {pw} (generated now; shown once)", flush=True)
        kept = len(self.generated) - len(self.new_passwords)
        if kept:
            config = f" --config {self.options.plan_path}" if self.options.plan_path else ""
            print(f"  {kept} extension(s) use passwords generated earlier: centralino passwords{config} --show",
                  flush=True)
        self.new_passwords = {}
        for name, pw in self.api_auth.new_passwords.items():
            user = self.plan.users[name]
            print(f"  web/API user {name} ({user.role.value}): password {pw} (generated now; shown once; "
                  f"a new one: centralino user reset {name})", flush=True)
        self.api_auth.new_passwords = {}

    @staticmethod
    def _version() -> str:
        from . import __version__

        return __version__

    def _max_contacts(self, user: str) -> int | None:
        ext = self.plan.extensions.get(user)
        return ext.max_contacts if ext is not None else None

    def _holds_live_session(self, ip: str) -> bool:
        """An address with a live registration or an answered call: unauthenticated traffic
        (which UDP lets anyone forge) never gets it banned."""
        return self.location.holds_source(ip, time.time()) or self.b2bua.has_call_from(ip)

    # -- request handlers owned by the app until the B2BUA exists --------------------------------
    async def _options(self, inc: IncomingRequest) -> Response:
        assert self.core is not None
        return self.core.make_response(inc, 200, headers=[
            ("Allow", self.core.allow),
            ("Accept", "application/sdp"),
            ("Accept-Encoding", "identity"),
            ("Accept-Language", "en"),
            *([("Supported", ", ".join(sorted(self.core.supported)))] if self.core.supported else []),
        ])

    def _media_ip(self, flow: Flow) -> str:
        """The RTP address a leg's SDP advertises: the external address if configured, the bind
        address if specific, else the local address the leg's signalling uses."""
        ext = self.plan.server.sip.external_ip
        if ext not in ("auto", ""):
            return ext
        if self.rtp_bind not in ("0.0.0.0", "::"):
            return self.rtp_bind
        assert self.transports is not None
        return self.transports.local_for(flow)[0]

    def _media_event(self, event: dict[str, Any]) -> None:
        self.b2bua.on_media_event(event)

    # -- what the control API reads (api/control.py) --------------------------------------------
    @property
    def plan_source(self) -> str:
        return self.loaded.source

    @property
    def calls(self) -> CallControl:
        return self.b2bua

    @property
    def api_base_url(self) -> str:
        return self.api.base_url

    def sip_received(self) -> dict[str, dict[Any, int]]:
        assert self.core is not None
        return {"requests": dict(self.core.received_requests), "responses": dict(self.core.received_responses)}

    def call_summary(self) -> dict[str, Any]:
        return self.b2bua.summary()

    async def force_schedule(self, name: str, mode: str) -> None:
        """A day/night override survives restarts: kept in the database's meta table."""
        assert self.db is not None
        await save_override(self.db, name, self.overrides.force(name, mode))
        log.info("schedule %s: %s", name, mode)

    def schedule_states(self) -> dict[str, Any]:
        now = datetime.now().astimezone()
        out = {}
        for name in self.plan.schedules:
            opened, why = self.overrides.state(self.plan.schedules, name, now)
            out[name] = {"open": opened, "mode": self.overrides.mode(name).value, "why": why}
        return {"schedules": out}

    def status(self) -> dict[str, Any]:
        now = time.time()
        regs = []
        for b in sorted(self.location.all(), key=lambda b: (b.aor, b.registered_at)):
            r = self.location.reachability.get((b.aor, b.contact_uri))
            regs.append({
                "aor": b.aor, "contact": b.contact_uri, "expires_in": b.expires_in(now), "q": b.q,
                "source": str(b.flow), "user_agent": b.user_agent,
                "reachable": None if r is None else r.reachable,
                "rtt_ms": None if r is None or r.rtt is None else round(r.rtt * 1000, 1),
            })
        assert self.core is not None and self.transports is not None
        return {
            "version": self._version(),
            "plan": self.loaded.source,
            "plan_loaded_at": self.plan_loaded_at,
            "uptime": round(now - self.started_at, 1),
            "listening": [f"{t}:{h}:{p}" for t, (h, p) in self.transports.listening],
            "registrations": regs,
            "transactions": self.core.transaction_summary(),
            "connections": self.transports.connection_count,
            "calls": self.b2bua.summary(),
            "trunks": self.trunks.summary(),
            "counters": {**self.core.counters, "udp_send_drops": self.transports.udp_send_drops,
                         "udp_backlog_drops": self.transports.udp_backlog_drops,
                         "tcp_refused": self.transports.refused_connections,
                         "tcp_closed_slow": self.transports.slow_closed},
            "security": self.security_state(now),
        }

    def security_state(self, now: float) -> dict[str, Any]:
        sec = self.security
        return {
            "bans": sec.bans(now), "locked_users": sec.locks(now),
            "dropped_rate_limited": sec.dropped_rate, "dropped_banned": sec.dropped_banned,
            "dropped_user_agent": sec.dropped_user_agent, "refused_locked": sec.refused_locked,
            "api_refused": self.api.refused + self.api_auth.refused,
        }

    # -- reload and shutdown -----------------------------------------------------------------------
    async def reload(self) -> list[str]:
        """Re-read the plan; a valid one replaces the old, an invalid one changes nothing."""
        try:
            new = load_plan(self.options.plan_path)
        except PlanInvalid as exc:
            for e in exc.errors:
                log.error("reload refused: %s", e)
            return [str(e) for e in exc.errors]
        old = self.loaded
        self.loaded = new
        self.plan_loaded_at = time.time()
        plan = new.plan
        await self._resolve_passwords()
        for service in self.reloadables:
            service.plan_changed(plan)
        await self.api_auth.reload(plan)
        self.api.set_names(plan.server.api.hosts, plan.server.api.public_url)
        sip = plan.server.sip
        for aor in self.location.aors():
            if aor not in plan.extensions:
                log.info("extension %s left the plan: dropping its bindings", aor)
                await self.location.remove_aor(aor)
        if old.plan.server.sip.listen != sip.listen or old.plan.server.api != plan.server.api:
            log.warning("listen addresses changed: they take effect at the next restart")
        log.info("plan reloaded from %s", new.source)
        return []

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread (tests)

    def stop(self) -> None:
        self._stop.set()

    async def _shutdown(self) -> None:
        """Phases: stop listening, refuse new calls, drain transactions, then cancel."""
        log.info("shutting down")
        assert self.core is not None and self.transports is not None
        self.transports.stop_listening()
        self.core.accepting = False  # new INVITEs get 503 + Retry-After
        deadline = time.monotonic() + self.options.drain_seconds
        await self.b2bua.drain(deadline)
        self.mwi.close()
        self.dialer.stop_all()
        if not await self.core.drain(max(0.1, deadline - time.monotonic())):
            log.warning("shutdown: requests still unanswered after %.0fs", self.options.drain_seconds)
        await asyncio.sleep(0.05)  # let the last BYEs leave
        await self.api.close()
        await self.transports.close()
        await self.media.close()


class _Stopped(Exception):
    pass


def _tune_gc() -> None:
    """Tens of thousands of transactions live for 32 s each under load; with the default
    thresholds full collections walk them all several times a second and stall the loop for
    hundreds of ms. Start-up objects are frozen out of collection; young generations are
    collected less often. (Measured with `centralino bench register`.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


async def serve(loaded: LoadedPlan, options: RunOptions) -> None:
    await Switch(loaded, options).run()
