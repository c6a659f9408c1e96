"""The resources of ``/api/v1`` (what `centralino status|reload|schedule|security`, the pages and
the CRMs talk to). Routes read services through their own methods and drive calls through
``CallControl``; each is registered with the roles that may call it, and scoped further by the
principal: an agent acts only on itself, a supervisor only on its queues, an admin on all.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Query, Request, Response, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from ..acd.service import AcdService
from ..acd.stats import local_midnight, to_csv
from ..acd.supervision import Supervision
from ..config.schema import Plan, mailbox_for
from ..config.users import Role
from ..dialer.service import DialerService
from ..events import CallEvent, CampaignStateChanged, DialerAttempt, DispositionSet, Event, EventBus
from ..ivr.voicemail import VoicemailService
from ..media.worker import MediaPool
from ..storage.database import Database
from ..storage.queue_log import agent_calls
from ..storage.recordings import list_recordings
from ..storage.recordings import recording as recording_row
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import CallControl
from ..switch.security import SecurityGuard
from . import links
from .auth import ApiAuth, Principal
from .clicktocall import click_to_call
from .events import EventTail, Match
from .http import ALL_ROLES, COOKIE, ROUTE_ROLES, ApiError, route, ws_principal
from .metrics import CONTENT_TYPE, CallOutcomes, families, render
from .webhooks import WebhookSender

V1 = "/api/v1"
ADMIN = (Role.ADMIN,)
STAFF = (Role.ADMIN, Role.SUPERVISOR)


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
    webhooks: WebhookSender
    db: Database | None

    @property
    def api_base_url(self) -> str:
        """Where others reach the API (server.api.public_url, else its address): for links."""
        ...

    def status(self) -> dict[str, Any]: ...

    def security_state(self, now: float) -> dict[str, Any]: ...

    def schedule_states(self) -> dict[str, Any]: ...

    def call_summary(self) -> dict[str, Any]: ...

    def sip_received(self) -> dict[str, dict[Any, int]]:
        """SIP messages received: {"requests": by method, "responses": by status code}."""
        ...

    async def reload(self) -> list[str]: ...

    async def force_schedule(self, name: str, mode: str) -> None: ...


# -- request bodies ---------------------------------------------------------------------------------
class Login(BaseModel):
    user: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    role: Role | None = None  # a role token (admin integrations), or
    user: str | None = None  # a token acting as that plan user
    days: float | None = Field(365.0, gt=0)  # None: never expires


class ClickToCall(BaseModel):
    number: str = Field(min_length=1, max_length=32, pattern=r"^\+?[0-9A-Za-z*#._-]+$")
    agent: str | None = None  # whose phone rings first (default: the caller's own extension)


class AgentState(BaseModel):
    action: Literal["login", "logout", "pause", "unpause", "ready"]
    reason: str = Field("", max_length=64)


class ScheduleMode(BaseModel):
    mode: Literal["open", "closed", "auto"]


class MonitorMode(BaseModel):
    mode: Literal["listen", "whisper", "barge"]


class MonitorStart(BaseModel):
    mode: Literal["listen", "whisper", "barge"] = "listen"
    supervisor: str | None = None  # whose phone rings (default: the caller's own extension)


class RecordingChange(BaseModel):
    paused: bool | None = None
    start: bool = False


class PlayRequest(BaseModel):
    prompts: list[str] = Field(min_length=1, max_length=32)


class MuteRequest(BaseModel):
    call: str
    muted: bool = True


class CampaignAction(BaseModel):
    action: Literal["start", "pause", "stop", "status"]


class Disposition(BaseModel):
    agent: str | None = None  # default: the calling agent
    disposition: str = Field(min_length=1, max_length=64)
    notes: str = Field("", max_length=2000)  # a queue call's notes (into the queue log)
    lead: int | None = None
    campaign: str | None = None
    callback_at: float | None = None  # call the customer back then (a queue call: through its queue)
    callback_agent: str = ""
    callback_number: str = Field("", max_length=32)  # a queue call's callback: another number than the caller's


class TransferRequest(BaseModel):
    to: str = Field(min_length=1, max_length=64)  # an extension, or a number the plan routes to extensions


class QueueMove(BaseModel):
    queue: str = Field(min_length=1, max_length=64)


class Unban(BaseModel):
    address: str


class Unlock(BaseModel):
    user: str


def principal_of(request: Request) -> Principal:
    return request.state.principal  # type: ignore[no-any-return]


def _calls_of(call: Call) -> set[str]:
    """The extensions taking part in a call."""
    parties = {call.caller} if call.source == "extension" else set()
    if call.answered is not None and call.answered.destination.startswith("extension:"):
        parties.add(call.answered.destination.partition(":")[2])
    return parties


def call_card(call: Call) -> dict[str, Any]:
    return {"id": call.id, "state": call.state.value, "caller": call.caller, "called": call.called,
            "source": call.source, "did": call.did, "destination": call.destination,
            "started": call.started, "answered": call.answered_at, "recording": call.recording,
            "held": call.held, "extensions": sorted(_calls_of(call))}


def install_routes(app: Any, sw: ControlledSwitch, auth: ApiAuth) -> EventTail:
    """Every /api/v1 route on ``app``; returns the event tail the stream and long polls read."""
    r = APIRouter(prefix=V1)

    def members(principal: Principal) -> set[str]:
        """The agents a principal may see and act on."""
        if principal.is_admin:
            return set(sw.plan.agents)
        if principal.role is Role.AGENT:
            return {principal.extension} if principal.extension else set()
        return {m for q in principal.queues if q in sw.plan.queues for m in sw.plan.queues[q].members}

    def may_touch_call(principal: Principal, call: Call) -> bool:
        if principal.is_admin:
            return True
        if principal.role is Role.SUPERVISOR and sw.acd.queue_of(call.id) in principal.queues:
            return True  # a caller waiting in one of its queues
        return bool(_calls_of(call) & members(principal))

    def live_call(principal: Principal, call_id: str) -> Call:
        call = sw.calls.find(call_id)
        if call is None or not may_touch_call(principal, call):
            raise ApiError(404, f"no such call {call_id!r}")
        return call

    # -- auth -------------------------------------------------------------------------------------
    @route(r, "POST", "/auth/login", (), V1)
    async def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
        source = request.client.host if request.client else "?"
        try:
            got = await auth.login(body.user, body.password, source)
        except PermissionError as exc:
            raise ApiError(401, str(exc)) from None
        if isinstance(got, float):
            raise ApiError(429, "too many failed logins; try again later",
                           headers={"Retry-After": str(max(1, round(got)))})
        token, record = got
        response.set_cookie(COOKIE, token, max_age=int(auth.config.session_hours * 3600), httponly=True,
                            samesite="strict", path="/")
        return {"token": token, "csrf": auth.csrf_for(record.token_id), "expires": record.expires,
                **auth.user_card(body.user)}

    @route(r, "POST", "/auth/logout", ALL_ROLES, V1)
    async def logout(request: Request, response: Response) -> dict[str, Any]:
        await auth.revoke(principal_of(request).token_id)
        response.delete_cookie(COOKIE, path="/")
        return {"ok": True}

    @route(r, "GET", "/auth/me", ALL_ROLES, V1)
    async def me(request: Request) -> dict[str, Any]:
        p = principal_of(request)
        card = auth.user_card(p.user) if p.user in sw.plan.users else {
            "user": p.user, "name": p.user, "role": p.role.value, "extension": None, "queues": sorted(p.queues)}
        return {**card, "csrf": auth.csrf_for(p.token_id), "via": p.via.value, "crm_url": auth.config.crm_url}

    @route(r, "GET", "/tokens", ADMIN, V1)
    async def tokens() -> dict[str, Any]:
        return {"tokens": auth.listing()}

    @route(r, "POST", "/tokens", ADMIN, V1)
    async def create_token(body: TokenRequest) -> dict[str, Any]:
        if (body.role is None) == (body.user is None):
            raise ApiError(400, "give a role or a user, not both")
        if body.user is not None and body.user not in sw.plan.users:
            raise ApiError(404, f"no user {body.user!r}")
        role = body.role or sw.plan.users[str(body.user)].role
        if body.role is not None and body.role is not Role.ADMIN:
            raise ApiError(400, "a role token is an admin's; for a supervisor or an agent, give its user")
        expires = time.time() + body.days * 86400 if body.days is not None else None
        token, record = await auth.issue("api", body.user or "", role, body.name, expires)
        return {"token": token, "name": record.name, "role": role.value, "user": record.user, "expires": expires}

    @route(r, "DELETE", "/tokens/{name}", ADMIN, V1)
    async def delete_token(name: str) -> dict[str, Any]:
        if not await auth.revoke_named(name):
            raise ApiError(404, f"no token named {name!r}")
        return {"ok": True}

    @route(r, "POST", "/users/{name}/password", ADMIN, V1)
    async def reset_password(name: str) -> dict[str, Any]:
        return {"user": name, "password": await auth.reset_password(name)}

    # -- the switch ---------------------------------------------------------------------------------
    @route(r, "GET", "/status", ADMIN, V1)
    async def status() -> dict[str, Any]:
        return sw.status()

    @route(r, "GET", "/media", ADMIN, V1)
    async def media() -> dict[str, Any]:
        return {"workers": await sw.media.stats(), "calls": sw.call_summary()}

    @route(r, "POST", "/reload", ADMIN, V1)
    async def reload() -> Any:
        errors = await sw.reload()
        if errors:
            return JSONResponse({"ok": False, "errors": errors, "error": "the plan was not loaded", "status": 422}, 422)
        return {"ok": True, "plan": sw.plan_source}

    @route(r, "GET", "/security", ADMIN, V1)
    async def security() -> dict[str, Any]:
        return sw.security_state(time.time())

    @route(r, "POST", "/security/unban", ADMIN, V1)
    async def unban(body: Unban) -> dict[str, Any]:
        if not sw.security.unban(body.address, time.time()):
            raise ApiError(404, f"{body.address} is not banned")
        return sw.security_state(time.time())

    @route(r, "POST", "/security/unlock", ADMIN, V1)
    async def unlock(body: Unlock) -> dict[str, Any]:
        if not sw.security.unlock(body.user, time.time()):
            raise ApiError(404, f"user {body.user} is not locked")
        return sw.security_state(time.time())

    @route(r, "GET", "/schedules", STAFF, V1)
    async def schedules() -> dict[str, Any]:
        return sw.schedule_states()

    @route(r, "PUT", "/schedules/{name}", STAFF, V1)
    async def force_schedule(name: str, body: ScheduleMode) -> dict[str, Any]:
        if name not in sw.plan.schedules:
            raise ApiError(404, f"no schedule {name!r}")
        await sw.force_schedule(name, body.mode)
        return sw.schedule_states()

    # -- queues and agents --------------------------------------------------------------------------
    def visible_snapshot(principal: Principal) -> dict[str, Any]:
        snap = sw.acd.snapshot()
        seen = members(principal)
        queues = principal.queues if principal.role is not Role.AGENT else {
            q for q, rules in sw.plan.queues.items() if principal.extension in rules.members}
        return {"queues": {n: v for n, v in snap["queues"].items() if principal.is_admin or n in queues},
                "agents": {e: v for e, v in snap["agents"].items() if principal.is_admin or e in seen}}

    @route(r, "GET", "/queues", ALL_ROLES, V1)
    async def queues(request: Request) -> dict[str, Any]:
        return visible_snapshot(principal_of(request))

    @route(r, "GET", "/queues/{name}", ALL_ROLES, V1)
    async def queue(name: str, request: Request) -> dict[str, Any]:
        found = visible_snapshot(principal_of(request))["queues"].get(name)
        if found is None:
            raise ApiError(404, f"no queue {name!r}")
        return {"queue": name, **found}

    @route(r, "GET", "/agents", ALL_ROLES, V1)
    async def agents(request: Request) -> dict[str, Any]:
        return {"agents": visible_snapshot(principal_of(request))["agents"]}

    @route(r, "POST", "/agents/{ext}/state", ALL_ROLES, V1)
    async def agent_state(ext: str, body: AgentState, request: Request) -> dict[str, Any]:
        if ext not in members(principal_of(request)):
            raise ApiError(403 if ext in sw.plan.agents else 404, f"you may not change agent {ext}")
        action = body.action
        if action == "ready":
            current = sw.acd.snapshot()["agents"].get(ext, {}).get("state")
            action = "unpause" if current == "paused" else "login"
        try:
            a = sw.acd.agent_action(ext, action, body.reason)
        except ValueError as exc:
            raise ApiError(409, str(exc)) from None
        return {"ok": True, "agent": a.extension, "state": a.state.value, "reason": a.pause_reason}

    @route(r, "GET", "/agents/{ext}/calls", ALL_ROLES, V1)
    async def agent_calls_today(ext: str, request: Request, since: float | None = None) -> dict[str, Any]:
        """The calls the agent took today (or since ``since``), with dispositions and recordings."""
        if ext not in members(principal_of(request)):
            raise ApiError(403 if ext in sw.plan.agents else 404, f"you may not see agent {ext}'s calls")
        start = since if since is not None else local_midnight()
        calls = await agent_calls(database(), ext, start)
        for c in calls:
            c["recordings"] = [{"id": i, "audio": f"{V1}/recordings/{i}/audio"} for i in c["recordings"]]
        return {"agent": ext, "since": start, "calls": calls}

    @route(r, "GET", "/desktop", ALL_ROLES, V1)
    async def desktop() -> dict[str, Any]:
        """What the agent desktop takes from the plan: the call scripts, each queue's and
        campaign's script and dispositions, the CRM link template."""
        plan = sw.plan
        return {
            "scripts": {n: s.model_dump() for n, s in plan.scripts.items()},
            "queues": {n: {"script": q.script, "dispositions": q.dispositions} for n, q in plan.queues.items()},
            "campaigns": {n: {"script": c.script, "dispositions": c.dispositions, "queue": c.queue}
                          for n, c in plan.campaigns.items()},
            "crm_url": plan.server.api.crm_url,
        }

    # -- calls ------------------------------------------------------------------------------------
    @route(r, "GET", "/calls", ALL_ROLES, V1)
    async def calls(request: Request) -> dict[str, Any]:
        p = principal_of(request)
        return {"calls": [{**call_card(c), "queue": sw.acd.queue_of(c.id)} for c in sw.calls.live_calls()
                          if may_touch_call(p, c)]}

    @route(r, "POST", "/calls", ALL_ROLES, V1, status_code=202)
    async def place_call(body: ClickToCall, request: Request) -> dict[str, Any]:
        """Click-to-call: ring the agent's phone, then dial the number (api/clicktocall.py)."""
        p = principal_of(request)
        agent = body.agent or p.extension
        if not agent:
            raise ApiError(400, "whose phone should ring? give agent")
        if not (p.is_admin and agent in sw.plan.extensions) and agent not in members(p) and agent != p.extension:
            raise ApiError(403, f"you may not place calls for {agent}")
        try:
            call = await click_to_call(sw.calls, sw.plan, agent, body.number)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        return {"call": call.id, "agent": agent, "number": body.number}

    @route(r, "GET", "/calls/{call_id}", ALL_ROLES, V1)
    async def one_call(call_id: str, request: Request) -> dict[str, Any]:
        return call_card(live_call(principal_of(request), call_id))

    @route(r, "POST", "/calls/{call_id}/hangup", ALL_ROLES, V1)
    async def hangup(call_id: str, request: Request) -> dict[str, Any]:
        call = live_call(principal_of(request), call_id)
        if call.state is not CallState.ANSWERED:
            raise ApiError(409, f"the call is {call.state.value}, not answered")
        await sw.calls.hangup(call, by="api")
        return {"ok": True}

    @route(r, "POST", "/calls/{call_id}/transfer", ALL_ROLES, V1, status_code=202)
    async def transfer(call_id: str, body: TransferRequest, request: Request) -> dict[str, Any]:
        """Blind transfer of a connected call's caller to what the plan routes ``to`` to."""
        call = live_call(principal_of(request), call_id)
        status = await sw.calls.transfer(call, body.to)
        if status == 409:
            raise ApiError(409, "only a connected call that is not already being transferred can be transferred")
        if status == 480:
            raise ApiError(404, f"nobody to ring at {body.to!r} (not an extension of the plan, or not registered)")
        return {"ok": True, "call": call.id, "to": body.to, "ringing": True}

    @route(r, "POST", "/calls/{call_id}/queue", STAFF, V1)
    async def move_to_queue(call_id: str, body: QueueMove, request: Request) -> dict[str, Any]:
        """Move a waiting caller to another queue; it keeps the time it has waited."""
        p = principal_of(request)
        call = live_call(p, call_id)
        if not p.is_admin and body.queue not in p.queues:
            raise ApiError(403, f"queue {body.queue!r} is not one of yours")
        before = sw.acd.queue_of(call.id)
        why = sw.acd.move(call.id, body.queue)
        if why is not None:
            raise ApiError(409, why)
        return {"ok": True, "call": call.id, "from": before, "queue": body.queue}

    @route(r, "POST", "/calls/{call_id}/recording", ALL_ROLES, V1)
    async def recording(call_id: str, body: RecordingChange, request: Request) -> dict[str, Any]:
        call = live_call(principal_of(request), call_id)
        if body.start:
            path = await sw.calls.start_recording(call)
            if not path:
                raise ApiError(409, "this call cannot be recorded now")
            return {"ok": True, "path": path}
        reply = await sw.calls.pause_recording(call, body.paused)
        if not reply.get("ok"):
            raise ApiError(409, str(reply.get("error", "not recording")))
        return reply

    @route(r, "POST", "/calls/{call_id}/play", ADMIN, V1)
    async def play(call_id: str, body: PlayRequest, request: Request) -> dict[str, Any]:
        call = live_call(principal_of(request), call_id)
        done = await sw.calls.play(call, body.prompts, wait=False)
        if done.get("reason") != "started":
            raise ApiError(409, f"not played: {done.get('reason')}")
        return done

    @route(r, "POST", "/conferences/{room}/mute", STAFF, V1)
    async def mute(room: str, body: MuteRequest) -> dict[str, Any]:
        if not await sw.calls.set_muted(room, body.call, body.muted):
            raise ApiError(404, "no such member")
        return {"ok": True}

    # -- supervision --------------------------------------------------------------------------------
    @route(r, "GET", "/monitor", STAFF, V1)
    async def monitor(request: Request) -> dict[str, Any]:
        p = principal_of(request)
        seen = members(p)
        return {"sessions": [s for s in sw.supervision.snapshot() if p.is_admin or s["agent"] in seen]}

    @route(r, "PUT", "/monitor/{supervisor}", STAFF, V1)
    async def monitor_mode(supervisor: str, body: MonitorMode, request: Request) -> dict[str, Any]:
        p = principal_of(request)
        session = sw.supervision.find(supervisor)
        if session is None or not (p.is_admin or p.extension == session.supervisor_ext):
            raise ApiError(404, f"{supervisor} is not monitoring a call")
        await sw.supervision.set_mode(session, body.mode)
        return {"sessions": sw.supervision.snapshot()}

    async def ring_supervisor(p: Principal, agent: str, body: MonitorStart) -> dict[str, Any]:
        supervisor = body.supervisor if p.is_admin and body.supervisor else p.extension
        if not supervisor:
            raise ApiError(400, "whose phone should ring? (a user with an extension, or supervisor: EXT as admin)")
        if agent not in members(p):
            raise ApiError(404, f"no agent {agent!r} in your queues")
        try:
            session = await sw.supervision.ring_in(supervisor, agent, body.mode)
        except PermissionError as exc:
            raise ApiError(403, str(exc)) from None
        except LookupError as exc:
            raise ApiError(409, str(exc)) from None
        return {"ok": True, "supervisor": supervisor, "agent": agent, "call": session.supervisor.id,
                "agent_call": session.target.id, "mode": session.mode}

    @route(r, "POST", "/agents/{ext}/monitor", STAFF, V1)
    async def monitor_agent(ext: str, body: MonitorStart, request: Request) -> dict[str, Any]:
        """Ring the supervisor's phone; when it answers it joins the agent's live call."""
        return await ring_supervisor(principal_of(request), ext, body)

    @route(r, "POST", "/calls/{call_id}/monitor", STAFF, V1)
    async def monitor_call(call_id: str, body: MonitorStart, request: Request) -> dict[str, Any]:
        p = principal_of(request)
        call = live_call(p, call_id)
        agents = sorted(_calls_of(call) & set(sw.plan.agents))
        if not agents:
            raise ApiError(409, "no agent on that call")
        return await ring_supervisor(p, agents[0], body)

    # -- voicemail --------------------------------------------------------------------------------
    def box_of(principal: Principal, box: str) -> str:
        mailbox = mailbox_for(sw.plan, box)
        if mailbox is None:
            raise ApiError(404, f"no mailbox {box!r}")
        if not (principal.is_admin or (principal.extension and (
                principal.extension == box or principal.extension in mailbox.notify))):
            raise ApiError(403, f"mailbox {box} is not yours")
        return box

    @route(r, "GET", "/voicemail/{box}", ALL_ROLES, V1)
    async def voicemail(box: str, request: Request) -> dict[str, Any]:
        box = box_of(principal_of(request), box)
        return {"mailbox": box, "messages": await sw.voicemail.messages(box)}

    async def change_message(box: str, ident: int, request: Request,
                             change: Callable[[str, int], Awaitable[bool]]) -> dict[str, Any]:
        box = box_of(principal_of(request), box)
        if not await change(box, ident):
            raise ApiError(404, f"no message {ident} in {box}")
        return {"mailbox": box, "messages": await sw.voicemail.messages(box)}

    @route(r, "DELETE", "/voicemail/{box}/{ident}", ALL_ROLES, V1)
    async def delete_message(box: str, ident: int, request: Request) -> dict[str, Any]:
        return await change_message(box, ident, request, sw.voicemail.delete)

    @route(r, "POST", "/voicemail/{box}/{ident}/heard", ALL_ROLES, V1)
    async def heard(box: str, ident: int, request: Request) -> dict[str, Any]:
        return await change_message(box, ident, request, sw.voicemail.mark_heard)

    # -- campaigns ----------------------------------------------------------------------------------
    def campaign_visible(p: Principal, name: str) -> bool:
        camp = sw.plan.campaigns.get(name)
        return camp is not None and (p.is_admin or camp.queue in p.queues)

    @route(r, "GET", "/campaigns", STAFF, V1)
    async def campaigns(request: Request) -> dict[str, Any]:
        p = principal_of(request)
        return {"campaigns": [await run.status() for name, run in sw.dialer.runners.items()
                              if campaign_visible(p, name)]}

    @route(r, "POST", "/campaigns/{name}", STAFF, V1)
    async def campaign(name: str, body: CampaignAction, request: Request) -> dict[str, Any]:
        if not campaign_visible(principal_of(request), name):
            raise ApiError(404, f"no campaign {name!r}")
        return await sw.dialer.action(name, body.action)

    @route(r, "POST", "/dispositions", ALL_ROLES, V1)
    async def disposition(body: Disposition, request: Request) -> dict[str, Any]:
        p = principal_of(request)
        agent = body.agent or p.extension or ""
        if agent not in members(p):
            raise ApiError(403, f"you may not set {agent or 'that'} agent's dispositions")
        if body.lead is None and sw.dialer.lead_of_agent(agent) is None:
            row = sw.acd.set_disposition(agent, body.disposition, body.notes)  # a queue call's
            reply: dict[str, Any] = {"ok": True, "call": row.call_id, "queue": row.queue, "disposition": row.reason}
            if body.callback_at is not None:
                if body.callback_at < time.time() - 60:
                    raise ApiError(422, "callback_at is in the past")
                try:
                    reply["callback"] = await sw.acd.schedule_callback(agent, body.callback_at, body.callback_number)
                except (ValueError, RuntimeError) as exc:
                    raise ApiError(409, str(exc)) from None
            return reply
        return await sw.dialer.disposition(agent, body.disposition, lead=body.lead, campaign=body.campaign,
                                           callback_at=body.callback_at, callback_agent=body.callback_agent)

    @route(r, "GET", "/callbacks", ALL_ROLES, V1)
    async def callbacks(request: Request) -> dict[str, Any]:
        """Scheduled callbacks still to happen: an agent its own, a supervisor its queues'."""
        p = principal_of(request)
        if p.role is Role.AGENT:
            rows = [x for x in await sw.acd.scheduled_callbacks() if x["agent"] == p.extension]
        else:
            rows = await sw.acd.scheduled_callbacks(None if p.is_admin else set(p.queues))
        return {"callbacks": rows}

    @route(r, "DELETE", "/callbacks/{ident}", ALL_ROLES, V1)
    async def cancel_callback(ident: int, request: Request) -> dict[str, Any]:
        p = principal_of(request)
        visible = {x["id"] for x in (await callbacks(request))["callbacks"]}
        if ident not in visible or not await sw.acd.cancel_callback(ident):
            raise ApiError(404, f"no pending callback {ident}")
        await sw.acd.arm_callbacks()
        return {"ok": True, "id": ident, "by": p.user}

    # -- recordings -------------------------------------------------------------------------------
    LINK_SECONDS = 900  # a signed link for a CRM lives 15 minutes

    def database() -> Database:
        if sw.db is None:
            raise ApiError(503, "no database")
        return sw.db

    def recording_card(rec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in rec.items() if k != "path"} | {
            "audio": f"{V1}/recordings/{rec['id']}/audio", "call": rec["call_id"]}

    async def visible_recording(p: Principal, ident: str) -> dict[str, Any]:
        rec = await recording_row(database(), ident)
        if rec is None or not (p.is_admin or rec["agent"] in members(p)):
            raise ApiError(404, f"no recording {ident!r}")
        return rec

    def audio_response(rec: dict[str, Any]) -> FileResponse:
        path = Path(rec["path"])
        if not path.is_file():
            raise ApiError(410, "the recording's file is gone")
        kind = {"wav": "audio/wav", "opus": "audio/ogg", "ogg": "audio/ogg", "mp3": "audio/mpeg"}.get(
            path.suffix.lstrip(".").lower(), "application/octet-stream")
        return FileResponse(path, media_type=kind, filename=f"{rec['id']}{path.suffix}")

    @route(r, "GET", "/recordings", ALL_ROLES, V1)
    async def recordings(request: Request, since: float | None = None, until: float | None = None,
                         call: str | None = None, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Recordings, newest first, with their call (the CDR's call_id) and where to fetch them."""
        p = principal_of(request)
        rows = await list_recordings(database(), since=since, until=until, call_id=call, limit=limit,
                                     agents=None if p.is_admin else members(p))
        return {"recordings": [recording_card(x) for x in rows]}

    @route(r, "GET", "/recordings/{ident}/audio", ALL_ROLES, V1)
    async def recording_audio(ident: str, request: Request) -> FileResponse:
        return audio_response(await visible_recording(principal_of(request), ident))

    @route(r, "POST", "/recordings/{ident}/link", ALL_ROLES, V1)
    async def recording_link(ident: str, request: Request) -> dict[str, Any]:
        """A short-lived URL that needs no token (for a CRM's player)."""
        rec = await visible_recording(principal_of(request), ident)
        expires = int(time.time()) + LINK_SECONDS
        return {"url": sw.api_base_url + links.recording_path(rec["id"], expires, auth.secret), "expires": expires}

    @route(r, "GET", "/recordings/{ident}/signed", (), V1)
    async def signed_audio(ident: str, expires: int, sig: str) -> FileResponse:
        if not links.valid(auth.secret, f"recording:{ident}", expires, sig):
            raise ApiError(403, "the link has expired or is not valid")
        rec = await recording_row(database(), ident)
        if rec is None:
            raise ApiError(404, f"no recording {ident!r}")
        return audio_response(rec)

    @route(r, "GET", "/cdr/{call_id}/recording", (), V1)
    async def signed_call_recording(call_id: str, expires: int, sig: str) -> FileResponse:
        """A call's recording through the signed link its webhook delivery carried."""
        if not links.valid(auth.secret, f"call:{call_id}", expires, sig):
            raise ApiError(403, "the link has expired or is not valid")
        rows = await list_recordings(database(), call_id=call_id, limit=1)
        if not rows:
            raise ApiError(404, f"call {call_id!r} has no recording")
        return audio_response(rows[0])

    # -- webhooks ---------------------------------------------------------------------------------
    @route(r, "GET", "/webhooks", ADMIN, V1)
    async def webhooks() -> dict[str, Any]:
        return await sw.webhooks.status()

    @route(r, "GET", "/webhooks/dead", ADMIN, V1)
    async def dead_letters() -> dict[str, Any]:
        return {"dead": await sw.webhooks.dead_letters()}

    @route(r, "POST", "/webhooks/dead/{ident}/replay", ADMIN, V1)
    async def replay(ident: int) -> dict[str, Any]:
        if not await sw.webhooks.replay(ident):
            raise ApiError(404, f"no dead letter {ident}")
        return {"ok": True}

    @route(r, "POST", "/webhooks/{name}/enable", ADMIN, V1)
    async def enable_webhook(name: str) -> dict[str, Any]:
        if not await sw.webhooks.enable(name):
            raise ApiError(404, f"webhook {name!r} is not disabled")
        return {"ok": True}

    # -- reports ----------------------------------------------------------------------------------
    @route(r, "GET", "/reports/today", STAFF, V1)
    async def today(request: Request, by: Literal["queue", "agent", "interval", "did", "source", "disposition"] = "queue",
                    interval: int = Query(60, ge=5, le=1440), format: Literal["json", "csv"] = "json") -> Any:
        """Today's queue and agent figures (the `centralino report` tables): JSON or CSV."""
        p = principal_of(request)
        rows = sw.acd.today(by, interval * 60.0, None if p.is_admin else p.queues)
        if format == "csv":
            return Response(to_csv(rows), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="today-by-{by}.csv"'})
        return {"by": by, "rows": rows}

    # -- events and metrics -------------------------------------------------------------------------
    tail = EventTail(sw.bus)

    @route(r, "GET", "/events/poll", ALL_ROLES, V1)
    async def poll(request: Request, since: int = 0, wait: float = Query(0.0, ge=0, le=25),
                   types: str = "") -> dict[str, Any]:
        """Long poll: the events after ``since`` (type prefixes, comma-separated), waiting up to
        ``wait`` seconds for one; ``next`` is the ``since`` of the following poll."""
        prefixes = tuple(t for t in types.split(",") if t)
        found, last = await tail.wait(since, prefixes, wait, match=event_scope(principal_of(request)))
        return {"events": found, "next": last}

    def event_scope(p: Principal, prefixes: tuple[str, ...] = (), queue: str = "", agent: str = "") -> Match:
        """What a principal may see of the stream, narrowed by the client's filters: an admin
        everything; a supervisor calls, dialer events and its queues' and agents' rows; an agent
        the rows and dialer events that name it."""
        seen = members(p)

        def match(event: Event) -> bool:
            if prefixes and not event.type.startswith(prefixes):
                return False
            row = getattr(event, "row", None)
            who = row.agent if row is not None else getattr(event, "agent", "")
            if queue and (row is None or row.queue != queue):
                return False
            if agent and who != agent:
                return False
            if p.is_admin:
                return True
            if row is not None:
                return who in seen if row.event == "AGENT" or p.role is Role.AGENT else row.queue in p.queues
            if p.role is Role.AGENT:
                return bool(who) and who in seen
            return isinstance(event, (CallEvent, DialerAttempt, DispositionSet, CampaignStateChanged))

        return match

    ROUTE_ROLES[("WS", V1 + "/events")] = ALL_ROLES

    @app.websocket(V1 + "/events")
    async def events(ws: WebSocket, since: int | None = None, types: str = "", queue: str = "",
                     agent: str = "") -> None:
        """Every bus event the principal may see, as JSON with its sequence number."""
        try:
            p = ws_principal(ws)
        except ApiError as exc:
            await ws.close(4401 if exc.status_code == 401 else 4403, str(exc.detail)[:120])
            return
        await ws.accept()
        prefixes = tuple(t for t in types.split(",") if t)
        await tail.stream(ws, since, event_scope(p, prefixes, queue, agent))

    outcomes = CallOutcomes(sw.bus)

    async def metrics_body() -> Response:
        reading = families(sw.status(), await sw.media.stats(), sw.acd.snapshot(), outcomes, sw.sip_received(),
                           (await sw.webhooks.status())["webhooks"])
        return Response(render(reading), media_type=CONTENT_TYPE)

    @route(r, "GET", "/metrics", ADMIN, V1)
    async def metrics() -> Response:
        return await metrics_body()

    @route(app, "GET", "/metrics", ADMIN, include_in_schema=False)
    async def root_metrics() -> Response:  # where Prometheus looks by default
        return await metrics_body()

    app.include_router(r)
    return tail
