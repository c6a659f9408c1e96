"""The control API's routes (what `centralino status|reload|schedule|security` and the tests talk
to). They read services through their own methods and drive calls through ``CallControl``; the
app only wires them (``install_routes``). Each route takes the request body and returns
(status, JSON-ready payload).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..acd.service import AcdService
from ..acd.supervision import Supervision
from ..config.schema import Plan, mailbox_for
from ..dialer.service import DialerService
from ..events import EventBus
from ..ivr.voicemail import VoicemailService
from ..media.worker import MediaPool
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import CallControl
from ..switch.security import SecurityGuard
from .events import EventTail
from .metrics import CONTENT_TYPE, CallOutcomes, families, render
from .server import ApiServer, RawBody

Reply = tuple[int, Any]


class ControlledSwitch(Protocol):
    """What the routes need from the running switch (``app.Switch``)."""

    @property
    def plan(self) -> Plan: ...

    @property
    def plan_source(self) -> str: ...

    @property
    def calls(self) -> CallControl: ...

    acd: AcdService
    supervision: Supervision
    voicemail: VoicemailService
    dialer: DialerService
    bus: EventBus
    media: MediaPool
    security: SecurityGuard

    def status(self) -> dict[str, Any]: ...

    def security_state(self, now: float) -> dict[str, Any]: ...

    def schedule_states(self) -> dict[str, Any]: ...

    def call_summary(self) -> dict[str, Any]: ...

    def sip_received(self) -> dict[str, dict[Any, int]]:
        """SIP messages received: {"requests": by method, "responses": by status code}."""
        ...

    async def reload(self) -> list[str]: ...

    async def force_schedule(self, name: str, mode: str) -> None: ...


def _args(body: bytes) -> dict[str, Any]:
    value = json.loads(body or b"{}")
    if not isinstance(value, dict):
        raise ValueError("a JSON object is expected")
    return value


def install_routes(api: ApiServer, sw: ControlledSwitch) -> None:
    def live_call(args: dict[str, Any]) -> Call | None:
        return sw.calls.find(str(args.get("call", "")))

    async def status(_: bytes) -> Reply:
        return 200, sw.status()

    async def media(_: bytes) -> Reply:
        return 200, {"workers": await sw.media.stats(), "calls": sw.call_summary()}

    async def reload(_: bytes) -> Reply:
        errors = await sw.reload()
        return (200, {"ok": True, "plan": sw.plan_source}) if not errors else (422, {"ok": False, "errors": errors})

    async def hangup(body: bytes) -> Reply:
        """{"call": ID}: the switch hangs the call up (both sides)."""
        call = live_call(_args(body))
        if call is None:
            return 404, {"ok": False, "error": "no such call"}
        if call.state is not CallState.ANSWERED:
            return 409, {"ok": False, "error": f"the call is {call.state.value}, not answered"}
        await sw.calls.hangup(call, by="api")
        return 200, {"ok": True}

    async def recording(body: bytes) -> Reply:
        """{"call": ID, "paused": true|false} pauses or resumes; {"call": ID, "start": true} starts."""
        args = _args(body)
        call = live_call(args)
        if call is None:
            return 404, {"ok": False, "error": "no such call"}
        if args.get("start"):
            path = await sw.calls.start_recording(call)
            return (200, {"ok": True, "path": path}) if path else (409, {"ok": False, "error": "not recordable"})
        reply = await sw.calls.pause_recording(call, args.get("paused"))
        return (200 if reply.get("ok") else 409), reply

    async def play(body: bytes) -> Reply:
        args = _args(body)
        call = live_call(args)
        if call is None:
            return 404, {"ok": False, "error": "no such call"}
        done = await sw.calls.play(call, list(args.get("prompts") or []), wait=False)
        return (200 if done.get("reason") == "started" else 409), done

    async def mute(body: bytes) -> Reply:
        args = _args(body)
        ok = await sw.calls.set_muted(str(args.get("room")), str(args.get("call")), bool(args.get("muted", True)))
        return (200, {"ok": True}) if ok else (404, {"ok": False, "error": "no such member"})

    async def queues(_: bytes) -> Reply:
        return 200, sw.acd.snapshot()

    async def agent(body: bytes) -> Reply:
        """{"agent": "1002", "action": "login|logout|pause|unpause", "reason": "lunch"}"""
        args = _args(body)
        try:
            a = sw.acd.agent_action(str(args.get("agent", "")), str(args.get("action", "")), str(args.get("reason", "")))
        except KeyError as exc:
            return 404, {"ok": False, "error": str(exc.args[0])}
        except ValueError as exc:
            return 409, {"ok": False, "error": str(exc)}
        return 200, {"ok": True, "agent": a.extension, "state": a.state.value, "reason": a.pause_reason}

    async def schedules(body: bytes) -> Reply:
        """GET: each schedule's state now; POST {"schedule": "office", "mode": "open|closed|auto"}."""
        if body:
            args = _args(body)
            name, mode = str(args.get("schedule", "")), str(args.get("mode", ""))
            if name not in sw.plan.schedules:
                return 404, {"ok": False, "error": f"no schedule {name!r}"}
            if mode not in ("open", "closed", "auto"):
                return 400, {"ok": False, "error": "mode is open, closed or auto"}
            await sw.force_schedule(name, mode)
        return 200, sw.schedule_states()

    async def monitor(body: bytes) -> Reply:
        """GET: live supervision sessions; POST {"supervisor": "1003", "mode": "listen|whisper|barge"}."""
        if body:
            args = _args(body)
            session = sw.supervision.find(str(args.get("supervisor", "")))
            if session is None:
                return 404, {"ok": False, "error": "that supervisor is not monitoring a call"}
            try:
                await sw.supervision.set_mode(session, str(args.get("mode", "")))
            except ValueError as exc:
                return 400, {"ok": False, "error": str(exc)}
        return 200, {"sessions": sw.supervision.snapshot()}

    async def voicemail(body: bytes) -> Reply:
        """POST {"mailbox": "1002"} lists its messages; with "delete": id or "heard": id, changes one."""
        args = _args(body)
        box = str(args.get("mailbox", ""))
        if mailbox_for(sw.plan, box) is None:
            return 404, {"ok": False, "error": f"no mailbox {box!r}"}
        changes: tuple[tuple[str, Callable[[str, int], Awaitable[bool]]], ...] = (
            ("delete", sw.voicemail.delete), ("heard", sw.voicemail.mark_heard))
        for key, change in changes:
            if key in args and not await change(box, int(args[key])):
                return 404, {"ok": False, "error": f"no message {args[key]} in {box}"}
        return 200, {"mailbox": box, "messages": await sw.voicemail.messages(box)}

    async def security(body: bytes) -> Reply:
        """GET: bans and locked users; POST {"unban": IP} or {"unlock": USER} clears one."""
        now = time.time()
        if body:
            args = _args(body)
            if "unban" in args and not sw.security.unban(str(args["unban"]), now):
                return 404, {"ok": False, "error": f"{args['unban']} is not banned"}
            if "unlock" in args and not sw.security.unlock(str(args["unlock"]), now):
                return 404, {"ok": False, "error": f"user {args['unlock']} is not locked"}
        return 200, sw.security_state(now)

    async def campaigns(body: bytes) -> Reply:
        """GET: every campaign's status; POST {"campaign": NAME, "action": "start|pause|stop|status"}."""
        if not body:
            return 200, {"campaigns": [await r.status() for r in sw.dialer.runners.values()]}
        args = _args(body)
        try:
            return 200, await sw.dialer.action(str(args.get("campaign", "")), str(args.get("action", "status")))
        except KeyError as exc:
            return 404, {"ok": False, "error": str(exc.args[0])}
        except ValueError as exc:
            return 400, {"ok": False, "error": str(exc)}

    async def disposition(body: bytes) -> Reply:
        """{"agent": "1002", "disposition": "paid"} (the agent's latest campaign call), or with
        "campaign" and "lead"; "callback_at" (epoch) and "callback_agent" for a callback."""
        args = _args(body)
        lead = args.get("lead")
        try:
            reply = await sw.dialer.disposition(
                str(args.get("agent", "")), str(args.get("disposition", "")),
                lead=int(lead) if lead is not None else None, campaign=args.get("campaign"),
                callback_at=float(args["callback_at"]) if args.get("callback_at") else None,
                callback_agent=str(args.get("callback_agent", "")))
        except KeyError as exc:
            return 404, {"ok": False, "error": str(exc.args[0])}
        except ValueError as exc:
            return 400, {"ok": False, "error": str(exc)}
        return 200, reply

    tail = EventTail(sw.bus)

    async def events(body: bytes) -> Reply:
        """{"since": SEQ, "wait": SECONDS, "types": ["dialer.", "queue."]}: the events after SEQ
        (type prefixes; all without), waiting up to ``wait`` (≤ 25 s) for one to come; "next"
        is the ``since`` of the following poll."""
        args = _args(body)
        try:
            since = int(args.get("since", 0))
            wait = float(args.get("wait", 0))
            types = tuple(str(t) for t in args.get("types") or ())
        except (TypeError, ValueError) as exc:
            return 400, {"ok": False, "error": f"bad events request: {exc}"}
        found, last = await tail.wait(since, types, wait)
        return 200, {"events": found, "next": last}

    outcomes = CallOutcomes(sw.bus)

    async def metrics(_: bytes) -> Reply:
        """Prometheus text exposition (api/metrics.py)."""
        reading = families(sw.status(), await sw.media.stats(), sw.acd.snapshot(), outcomes, sw.sip_received())
        return 200, RawBody(CONTENT_TYPE, render(reading))

    for method, path, handler in (
        ("GET", "/metrics", metrics),
        ("POST", "/events", events),
        ("GET", "/campaigns", campaigns), ("POST", "/campaigns", campaigns),
        ("POST", "/campaigns/disposition", disposition),
        ("GET", "/status", status), ("GET", "/media", media), ("POST", "/reload", reload),
        ("GET", "/security", security), ("POST", "/security", security), ("POST", "/voicemail", voicemail),
        ("GET", "/monitor", monitor), ("POST", "/monitor", monitor), ("GET", "/schedules", schedules),
        ("POST", "/schedules", schedules), ("GET", "/queues", queues), ("POST", "/agents", agent),
        ("POST", "/calls/recording", recording), ("POST", "/calls/hangup", hangup), ("POST", "/calls/play", play),
        ("POST", "/conferences/mute", mute),
    ):
        api.route(method, path, handler)
