"""The ACD in the running switch: the ``queue`` application (a caller waits with music and
announcements until the distributor hands it an agent, then is bridged to the agent's phone),
agent feature codes (*45 login, *46 logout, *47 pause, *48 unpause), the queue log, and the
real-time figures. Decisions are the Distributor's (acd/distributor.py); this module only turns
them into SIP legs, prompts and rows, and keeps one timer for the distributor's next deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import Action, Plan, Queue, QueueCallback
from ..events import IVR_DIGITS, EventBus, QueueLogRow, queue_event
from ..ivr.engine import CallPort, number_prompts, read_digits
from ..storage.database import Database
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import RINGBACK, CallControl
from .distributor import Distributor, QueueRejected
from .models import Agent, AgentState, Caller, Offer
from .stats import local_midnight, summarize

log = logging.getLogger("centralino.acd")


@dataclass(eq=False)
class Waiting:
    """A caller's session in a queue: the distributor's entry plus what wakes the session."""

    call: Call | None  # None: a callback an agent scheduled (nobody is on the line)
    caller: Caller
    signals: asyncio.Queue[Offer | str] = field(default_factory=asyncio.Queue)  # offers, "timeout", "empty"
    hold: asyncio.Future[None] | None = None  # music and announcements
    keys: asyncio.Future[None] | None = None  # waits for the callback key
    callback: str | None = None  # the caller hung up to be called back on this number
    ringing: bool = False  # agents are being rung for this caller now
    source: str = ""  # a scheduled callback's: the source of the call it is for (its trunk)


class AcdService:
    def __init__(self, control: CallControl, plan_of: Callable[[], Plan], db: Database | None, bus: EventBus) -> None:
        self.control = control
        self.plan_of = plan_of
        self.db = db  # read at start: agents' last states from the queue log
        self.bus = bus  # every queue-log row is published (storage persists it)
        self.waiting: dict[str, Waiting] = {}  # call id → session
        self.events: list[QueueLogRow] = []  # since start, for the real-time view
        self.last_connected: dict[str, QueueLogRow] = {}  # agent → its latest CONNECT (dispositions)
        self.last_source: dict[str, str] = {}  # agent → the source of that call
        self._callback_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._aht: dict[str, float] = {}  # queue → moving average handling time (wait estimates)
        self.distributor = self._build(plan_of())
        control.register_application("queue", self.queue_app)
        self.install_features()

    # -- plan ------------------------------------------------------------------------------------------
    def _build(self, plan: Plan, previous: Distributor | None = None) -> Distributor:
        members: dict[str, set[str]] = {}
        for qname, q in plan.queues.items():
            for ext in q.members:
                members.setdefault(ext, set()).add(qname)
        agents = []
        now = time.time()
        for ext, queues in members.items():
            cfg = plan.agents.get(ext)
            old = previous.agents.get(ext) if previous is not None else None
            agent = old or Agent(ext)
            agent.queues, agent.skills = queues, dict(cfg.skills) if cfg else {}
            agents.append(agent)
        dist = Distributor(plan.queues, agents, reachable=self._reachable)
        if previous is not None:
            for name, line in previous.waiting.items():
                if name in dist.waiting:
                    dist.waiting[name] = line
            dist._rr_last = previous._rr_last
        else:
            for agent in agents:
                cfg = plan.agents.get(agent.extension)
                if cfg is not None and cfg.logged_in:
                    dist.login(agent.extension, now)
        return dist

    async def restore_agents(self) -> None:
        """Logins and pauses survive a restart: each agent's last AGENT row in the queue log
        (a call in progress died with the old process, so ringing/on-call/wrap-up is available)."""
        if self.db is None:
            return
        rows = await self.db.fetchall(
            "SELECT agent, state, reason FROM queue_log WHERE id IN"
            " (SELECT MAX(id) FROM queue_log WHERE event = 'AGENT' GROUP BY agent)")
        d, now = self.distributor, time.time()
        for row in rows:
            agent = d.agents.get(row["agent"])
            if agent is None:
                continue
            if row["state"] == AgentState.LOGGED_OUT.value:
                if agent.state is not AgentState.LOGGED_OUT:
                    d.logout(agent.extension, now)
                continue
            if agent.state is AgentState.LOGGED_OUT:
                d.login(agent.extension, now)
            if row["state"] == AgentState.PAUSED.value and agent.state is not AgentState.PAUSED:
                d.pause(agent.extension, row["reason"], now)
        self._flush_changes()
        log.info("agents restored: %s", ", ".join(f"{a.extension} {a.state.value}" for a in d.agents.values()) or "none")

    def plan_changed(self, plan: Plan) -> None:
        self.distributor = self._build(plan, self.distributor)
        self.install_features()
        self.kick()

    def install_features(self) -> None:
        codes = self.plan_of().server.features
        for attr, handler in (("agent_login", self._login_code), ("agent_logout", self._logout_code),
                              ("agent_pause", self._pause_code), ("agent_unpause", self._unpause_code)):
            self.control.unregister_feature(handler)
            if getattr(codes, attr):
                self.control.register_feature(getattr(codes, attr), handler)

    def _reachable(self, ext: str) -> bool:
        return self.control.is_registered(ext)

    # -- the queue application -----------------------------------------------------------------------
    async def queue_app(self, call: Call, action: Action) -> None:
        moved_to = await self._queue(call, str(action.queue), action, None)
        while moved_to is not None and call.state is CallState.ANSWERED:
            moved_to = await self._queue(call, moved_to[0], Action(queue=moved_to[0]), moved_to[1])

    async def _queue(self, call: Call, name: str, action: Action, entered: float | None) -> tuple[str, float] | None:
        """One stay in queue ``name``; returns (queue, entered) when the caller was moved to
        another queue (it keeps its place in time there: ``entered`` is its first arrival)."""
        plan = self.plan_of()
        rules = plan.queues[name]
        if call.state is not CallState.ANSWERED:
            call.record = call.record or rules.record
            await self.control.answer_locally(call, destination=f"queue:{name}")
        elif rules.record and call.recording_id is None:
            call.record = True  # recorded from the agent's answer (see B2BUA.bridge)
        if call.state is not CallState.ANSWERED:
            return None
        now = time.time()
        caller = Caller(call.id, name, entered or now, caller=call.caller, did=call.did,
                        ivr=call.vars.get(IVR_DIGITS, ""), priority=int(call.vars.get("priority", 0) or 0),
                        requires={k.removeprefix("skill."): int(v) for k, v in call.vars.items()
                                  if k.startswith("skill.") and str(v).isdigit()})
        try:
            position = self.distributor.enqueue(caller, now)
        except QueueRejected as exc:
            self._log(QueueLogRow(now, exc.reason.upper(), call.id, name, caller=call.caller, did=call.did))
            log.info("call %s: queue %s is %s", call.id, name, exc.reason)
            await self._leave(call, rules.overflow or rules.timeout)
            return None
        self._log(QueueLogRow(now, "ENTER", call.id, name, caller=call.caller, did=call.did, position=position,
                              ivr=caller.ivr))
        log.info("call %s entered queue %s at position %d", call.id, name, position)
        session = Waiting(call, caller)
        self.waiting[call.id] = session
        if action.callback is not None:  # the IVR took a number: a callback request, nobody waits on the line
            await self._request_callback(session, action.callback or call.caller)
        else:
            session.hold = asyncio.ensure_future(self._entertain(session, rules))
            if rules.callback is not None:
                session.keys = asyncio.ensure_future(self._watch_callback_key(session, rules))
        try:
            moved_to = await self._wait_for_agent(session, rules)
        finally:
            for task in (session.hold, session.keys):
                if task is not None:
                    task.cancel()
            self.waiting.pop(call.id, None)
            self.distributor.remove(caller, time.time())
            self.kick()
        if moved_to is None:
            return None
        await self.control.stop_playing(call)
        return moved_to, caller.entered

    def move(self, call_id: str, queue: str) -> str | None:
        """Move a waiting caller to another queue, keeping the time it has waited (its place
        there is by its first arrival); None when done, else why not."""
        session = self.waiting.get(call_id)
        if session is None:
            return "the call is not waiting in a queue"
        if queue not in self.plan_of().queues:
            return f"no queue {queue!r}"
        if queue == session.caller.queue:
            return f"the call already waits in {queue}"
        if session.callback is not None:
            return "the caller hung up for a callback; it keeps its place"
        if session.ringing:
            return "agents are ringing for this call; try again when it is back waiting"
        session.signals.put_nowait(f"move:{queue}")
        return None

    async def _wait_for_agent(self, session: Waiting, rules: Queue) -> str | None:
        """Wait until the caller is connected, leaves or hangs up (None), or is moved: the queue."""
        call, caller = session.call, session.caller
        name = caller.queue
        self.kick()
        while True:
            signal = await self._next_signal(session)
            now = time.time()
            if signal is None:  # the caller hung up while waiting
                self._abandoned(caller, now)
                return None
            if isinstance(signal, str) and signal.startswith("move:"):
                target = signal.partition(":")[2]
                pos = self.distributor.position(caller)
                self._log(QueueLogRow(now, "MOVED", caller.call_id, name, caller=caller.caller, did=caller.did,
                                      position=pos, wait=round(now - caller.entered, 3), reason=target))
                log.info("call %s moved from queue %s to %s after %.1fs", caller.call_id, name, target,
                         now - caller.entered)
                return target
            if isinstance(signal, str) and session.callback is not None:
                continue  # a callback request keeps its place until an agent takes it
            if isinstance(signal, str):  # timeout or empty
                assert call is not None  # (a callback's session has skipped them above)
                self._log(QueueLogRow(now, signal.upper(), call.id, name, caller=caller.caller, did=caller.did,
                                     position=caller.entry_position, wait=round(now - caller.entered, 3)))
                await self._leave(call, rules.timeout if signal == "timeout" else (rules.overflow or rules.timeout))
                return None
            if await self._offer(session, signal, rules):
                return None

    async def _next_signal(self, session: Waiting) -> Offer | str | None:
        """The next offer or rule for this caller; None when they hung up (not for a callback)."""
        while True:
            getter = asyncio.ensure_future(session.signals.get())
            waits: set[asyncio.Future[Any]] = {getter}
            ended = None
            if session.callback is None:
                assert session.call is not None
                ended = asyncio.ensure_future(session.call.ended.wait())
                waits.add(ended)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if ended is not None:
                    ended.cancel()
                if not getter.done():
                    getter.cancel()
            if session.callback is None and session.call is not None and session.call.state is CallState.ENDED:
                return None
            if getter.done() and not getter.cancelled():
                return getter.result()
            # the caller hung up after asking for a callback: go on waiting for offers

    async def _offer(self, session: Waiting, offer: Offer, rules: Queue) -> bool:
        """Ring the offered agents; True when the caller was connected (and the call is over)."""
        if session.callback is not None:
            return await self._offer_callback(session, offer, rules)
        call, caller = session.call, session.caller
        assert call is not None  # (a callback went to _offer_callback)
        rung = self._ringing(caller, offer)
        session.ringing = True
        try:
            result = await self.control.ring(call, list(offer.agents), rules.ring_timeout)
        finally:
            session.ringing = False
        now = time.time()
        if call.state is CallState.ENDED:  # the caller hung up while agents rang: not their miss
            self._abandoned(caller, now)
            self._flush_changes()
            return True
        if isinstance(result, int):
            self._missed(caller, offer, result, rules, now)
            return False
        ext = result.destination.removeprefix("extension:")
        self.distributor.answered(caller, ext, now)  # agents rung with it (ringall) are free again
        self.waiting.pop(call.id, None)
        if session.hold is not None:
            session.hold.cancel()
        if session.keys is not None:
            session.keys.cancel()
        await self._talk(call, caller, ext, result, rung, now)
        return True

    async def _offer_callback(self, session: Waiting, offer: Offer, rules: Queue) -> bool:
        """A callback's turn: the switch calls the agent first, then the customer's number, and
        connects them. A customer who does not answer ends the request (CALLBACKFAIL)."""
        caller = session.caller
        assert session.callback is not None
        settings = rules.callback or QueueCallback()  # a scheduled callback needs no key in the queue
        source = session.call.source if session.call is not None else session.source
        call = await self.control.originate(caller=session.callback, source=source, did=caller.did,
                                          destination=f"callback:{caller.queue}")
        call.record = rules.record
        rung = self._ringing(caller, offer)
        result = await self.control.ring(call, list(offer.agents), rules.ring_timeout)
        now = time.time()
        if isinstance(result, int):
            await self.control.hangup(call, by="switch")
            self._missed(caller, offer, result, rules, now)
            return False
        ext = result.destination.removeprefix("extension:")
        self.distributor.answered(caller, ext, now)
        self.kick()
        await self.control.hold_first_leg(call, result)
        trunk = settings.trunk or (source if source not in ("extension", "") else None)
        log.info("callback %s: agent %s answered, calling %s", caller.call_id, ext, session.callback)
        partner = await self.control.ring_partner(call, session.callback, settings.ring_timeout, trunk=trunk)
        if isinstance(partner, int) or call.state is not CallState.ANSWERED:
            end = time.time()
            status = partner if isinstance(partner, int) else 487
            self._log(QueueLogRow(end, "CALLBACKFAIL", caller.call_id, caller.queue, ext, caller.caller, caller.did,
                                 wait=round(end - caller.entered, 3), reason=str(status)))
            log.info("callback %s: %s did not answer (%d)", caller.call_id, session.callback, status)
            if call.state is CallState.ANSWERED:
                await self.control.play(call, ["goodbye"], side="b")
                await self.control.hangup(call, by="switch")
            self.distributor.call_ended(ext, end)
            self._flush_changes()
            self.kick()
            return True
        await self._talk(call, caller, ext, result, rung, now)
        return True

    def _ringing(self, caller: Caller, offer: Offer) -> float:
        rung = time.time()
        for ext in offer.agents:
            self._log(QueueLogRow(rung, "RING", caller.call_id, caller.queue, ext, caller.caller, caller.did,
                                 position=self.distributor.position(caller), ivr=caller.ivr))
        return rung

    def _missed(self, caller: Caller, offer: Offer, status: int, rules: Queue, now: float) -> None:
        for ext in offer.agents:
            paused = self.distributor.missed(caller, ext, now)
            self._log(QueueLogRow(now, "RINGNOANSWER", caller.call_id, caller.queue, ext, caller.caller, caller.did,
                                 reason=str(status)))
            if paused:
                log.info("agent %s auto-paused after %d missed rings", ext, rules.max_no_answer)
        self._flush_changes()
        self.kick()

    async def _talk(self, call: Call, caller: Caller, ext: str, leg: Any, rung: float, answered: float) -> None:
        """Bridge the agent's answered leg, log CONNECT, wait for the end, log COMPLETE, wrap up."""
        name = caller.queue
        wait = answered - caller.entered
        self.last_source[ext] = call.source  # a callback the agent schedules goes out the same way
        self._log(QueueLogRow(answered, "CONNECT", caller.call_id, name, ext, caller.caller, caller.did,
                             position=caller.entry_position, wait=round(wait, 3),
                             reason=f"{answered - rung:.3f}", ivr=caller.ivr))
        self.kick()
        if not await self.control.bridge(call, leg):
            self.distributor.call_ended(ext, time.time())
            self._flush_changes()
            return
        log.info("call %s from queue %s connected to agent %s after %.1fs", caller.call_id, name, ext, wait)
        await call.ended.wait()
        end = time.time()
        talk = end - answered
        self._aht[name] = talk if name not in self._aht else 0.8 * self._aht[name] + 0.2 * talk
        self._log(QueueLogRow(end, "COMPLETE", caller.call_id, name, ext, caller.caller, caller.did,
                             wait=round(wait, 3), talk=round(talk, 3),
                             reason="agent" if call.hangup_by == "callee" else call.hangup_by or "caller"))
        self.distributor.call_ended(ext, end)
        self._flush_changes()
        self.kick()

    # -- calls placed by the dialer ----------------------------------------------------------------------
    async def connect_within(self, call: Call, queue: str, within: float, *, priority: int = 100,
                             on_connected: Callable[[str], None] | None = None) -> bool:
        """A call answered elsewhere — the dialer's, a person has just spoken — needs an agent of
        ``queue`` now: the strategy's pick is rung and bridged if that happens within ``within``
        seconds. False when it did not (the dialer plays the safe-harbour message: abandoned);
        True once the call has ended after talking to the agent (``on_connected(agent)`` at the
        moment they were bridged)."""
        now = time.time()
        deadline = now + within
        caller = Caller(call.id, queue, now, caller=call.caller, did=call.did, priority=priority)
        try:
            position = self.distributor.enqueue(caller, now)
        except QueueRejected:
            return False
        self._log(QueueLogRow(now, "ENTER", call.id, queue, caller=call.caller, did=call.did, position=position))
        session = Waiting(call, caller)
        self.waiting[call.id] = session
        rules = self.plan_of().queues[queue]
        try:
            self.kick()
            while call.state is CallState.ANSWERED:
                remaining = deadline - time.time()
                if remaining <= 0:
                    break
                try:
                    signal = await asyncio.wait_for(session.signals.get(), remaining)
                except TimeoutError:
                    break
                if not isinstance(signal, Offer):
                    break  # the queue emptied
                rung = self._ringing(caller, signal)
                result = await self.control.ring(call, list(signal.agents), max(1.0, deadline - time.time()))
                now = time.time()
                if call.state is CallState.ENDED:
                    self._abandoned(caller, now)
                    return False
                if isinstance(result, int):
                    self._missed(caller, signal, result, rules, now)
                    continue
                ext = result.destination.removeprefix("extension:")
                self.distributor.answered(caller, ext, now)
                self.waiting.pop(call.id, None)
                if on_connected is not None:
                    on_connected(ext)
                await self._talk(call, caller, ext, result, rung, now)
                return True
            now = time.time()
            pos = self.distributor.remove(caller, now)
            self._log(QueueLogRow(now, "ABANDON", call.id, queue, caller=call.caller, did=call.did, position=pos,
                                 wait=round(now - caller.entered, 3), reason="no agent in time"))
            return False
        finally:
            self.waiting.pop(call.id, None)
            self.distributor.remove(caller, time.time())
            self.kick()

    def free_agents(self, queue: str) -> list[str]:
        """Extensions of ``queue``'s agents that are available and reachable, longest idle first
        (the dialer's preview mode offers each of them a lead)."""
        free = [a for a in self.distributor.agents.values()
                if queue in a.queues and a.state is AgentState.AVAILABLE and self._reachable(a.extension)]
        return [a.extension for a in sorted(free, key=lambda a: a.idle_since)]

    def pacing_view(self, queue: str, now: float) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        """For the dialer's pacer: agents of ``queue`` free and reachable, how long each talking
        one has talked, how much wrap-up each one in wrap-up has left."""
        ready, busy, wrapping = 0, [], []
        for agent in self.distributor.agents.values():
            if queue not in agent.queues:
                continue
            if agent.state is AgentState.AVAILABLE and self._reachable(agent.extension):
                ready += 1
            elif agent.state in (AgentState.ON_CALL, AgentState.RINGING):
                busy.append(max(0.0, now - agent.since))
            elif agent.state is AgentState.WRAPUP:
                wrapping.append(max(0.0, agent.wrapup_until - now))
        return ready, tuple(busy), tuple(wrapping)

    # -- callback in queue ------------------------------------------------------------------------------
    async def _watch_callback_key(self, session: Waiting, rules: Queue) -> None:
        """The caller may press the callback key once it has been offered (after offer_after)."""
        assert rules.callback is not None
        call = session.call
        assert call is not None
        while call.state is CallState.ANSWERED:
            key = await self.control.next_digit(call, 3600.0)
            if key == rules.callback.key and time.time() - session.caller.entered >= rules.callback.offer_after:
                if session.hold is not None:
                    session.hold.cancel()
                await self.control.stop_playing(call)
                port = CallPort(self.control, call)
                await port.play(["callback-number"], barge_in=True)
                digits = await read_digits(port, 15, "#", 8.0)
                if port.gone():
                    return
                await self._request_callback(session, digits or call.caller)
                return

    async def _request_callback(self, session: Waiting, number: str) -> None:
        """The caller keeps their place and hangs up; the switch calls ``number`` back when an
        agent takes the request."""
        call, caller = session.call, session.caller
        assert call is not None
        session.callback = caller.callback = number
        now = time.time()
        self._log(QueueLogRow(now, "CALLBACK", call.id, caller.queue, caller=caller.caller, did=caller.did,
                             position=self.distributor.position(caller), wait=round(now - caller.entered, 3),
                             reason=number))
        log.info("call %s: callback requested to %s at position %d in %s", call.id, number,
                 self.distributor.position(caller), caller.queue)
        if session.hold is not None:
            session.hold.cancel()
        await self.control.stop_playing(call)
        await self.control.play(call, ["callback-confirm"])
        await self.control.hangup(call, by="switch")

    def _abandoned(self, caller: Caller, now: float) -> None:
        pos = self.distributor.remove(caller, now)
        self._log(QueueLogRow(now, "ABANDON", caller.call_id, caller.queue, caller=caller.caller, did=caller.did,
                             position=pos, wait=round(now - caller.entered, 3), reason=str(caller.entry_position)))
        log.info("call %s abandoned queue %s at position %d after %.1fs", caller.call_id, caller.queue, pos,
                 now - caller.entered)

    async def _leave(self, call: Call, action: Action | None) -> None:
        if call.state is not CallState.ANSWERED:
            return
        await self.control.stop_playing(call)
        if action is not None:
            await self.control.execute(call, action)
        else:
            await self.control.play(call, ["goodbye"])
            await self.control.hangup(call, by="switch")

    # -- what the caller hears while waiting ------------------------------------------------------------
    async def _entertain(self, session: Waiting, rules: Queue) -> None:
        """Music on hold, interrupted by position / estimated-wait and periodic announcements."""
        call, caller = session.call, session.caller
        assert call is not None
        ann = rules.announce
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_position = start + ann.first_after if ann.position_every else None
        periodic = [ann.periodic] if isinstance(ann.periodic, str) else list(ann.periodic or [])
        next_periodic = start + ann.periodic_every if periodic else None
        cb = rules.callback
        next_offer = start + cb.offer_after if cb is not None else None
        while call.state is CallState.ANSWERED:
            await self._hold_music(call, rules)
            due = [t for t in (next_position, next_periodic, next_offer) if t is not None]
            if not due:
                await call.ended.wait()
                return
            await asyncio.sleep(max(0.0, min(due) - loop.time()))
            now = loop.time()
            prompts: list[str] = []
            if next_position is not None and now >= next_position - 0.01:
                prompts += self.position_prompts(caller, rules)
                next_position = now + float(ann.position_every or 0)
            if next_periodic is not None and now >= next_periodic - 0.01:
                prompts += periodic
                next_periodic = now + ann.periodic_every
            if next_offer is not None and cb is not None and now >= next_offer - 0.01:
                prompts.append("callback-offer")
                next_offer = now + cb.offer_every
            if prompts:
                await self.control.play(call, prompts)

    async def _hold_music(self, call: Call, rules: Queue) -> None:
        items = [rules.moh] if rules.moh else RINGBACK
        await self.control.play(call, items, loop=True, wait=False)

    def position_prompts(self, caller: Caller, rules: Queue) -> list[str]:
        position = self.distributor.position(caller)
        if not position:
            return []
        out = ["position", *number_prompts(position), "in-queue"] if position <= 20 else []
        if rules.announce.estimated_wait and caller.queue in self._aht:
            staffed = [a for a in self.distributor.logged_in(caller.queue) if a.state is not AgentState.PAUSED]
            minutes = round(position * self._aht[caller.queue] / max(1, len(staffed)) / 60)
            out += ["wait-minutes", *number_prompts(minutes), "minutes"] if 0 < minutes <= 20 else (
                ["wait-minutes", "less-than-a-minute"] if minutes == 0 else [])
        return out

    # -- the distributor's decisions and timer ----------------------------------------------------------
    def kick(self) -> None:
        """Let the distributor match free agents and waiting callers, then re-arm its timer."""
        now = time.time()
        for caller in self.distributor.leave_when_empty():
            session = self.waiting.get(caller.call_id)
            if session is not None:
                self.distributor.remove(caller, now)
                session.signals.put_nowait("empty")
        for offer in self.distributor.assign(now):
            session = self.waiting.get(offer.caller.call_id)
            if session is None:
                self.distributor.remove(offer.caller, now)
                continue
            session.signals.put_nowait(offer)
        self._flush_changes()
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.distributor.get_timer()
        if at is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, at - time.time()) + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for caller in self.distributor.handle_timer(time.time()):
            session = self.waiting.get(caller.call_id)
            if session is not None:
                session.signals.put_nowait("timeout")
        self.kick()

    # -- agents ------------------------------------------------------------------------------------------
    def agent_action(self, ext: str, action: str, reason: str = "") -> Agent:
        """login / logout / pause / unpause, from a feature code or the API."""
        if ext not in self.distributor.agents:
            raise KeyError(f"{ext} is not a member of any queue")
        now = time.time()
        d = self.distributor
        handler = {"login": lambda: d.login(ext, now), "logout": lambda: d.logout(ext, now),
                   "pause": lambda: d.pause(ext, reason, now), "unpause": lambda: d.unpause(ext, now)}.get(action)
        if handler is None:
            raise ValueError(f"unknown agent action {action!r}")
        agent = handler()
        log.info("agent %s: %s%s → %s", ext, action, f" ({reason})" if reason else "", agent.state.value)
        self._flush_changes()
        self.kick()
        return agent

    async def _agent_code(self, call: Call, action: str, reason: str, prompt: str) -> None:
        await self.control.answer_locally(call, destination=f"feature:agent-{action}")
        try:
            self.agent_action(call.caller, action, reason)
        except (KeyError, ValueError) as exc:
            log.info("agent code from %s refused: %s", call.caller, exc)
            prompt = "invalid"
        await self.control.play(call, [prompt])
        await self.control.hangup(call, by="switch")

    async def _login_code(self, call: Call, rest: str) -> None:
        await self._agent_code(call, "login", "", "agent-logged-in")

    async def _logout_code(self, call: Call, rest: str) -> None:
        await self._agent_code(call, "logout", "", "agent-logged-out")

    async def _pause_code(self, call: Call, rest: str) -> None:
        reasons = self.plan_of().server.features.pause_reasons
        await self._agent_code(call, "pause", reasons.get(rest, rest or "break"), "agent-paused")

    async def _unpause_code(self, call: Call, rest: str) -> None:
        await self._agent_code(call, "unpause", "", "agent-unpaused")

    # -- log and figures -----------------------------------------------------------------------------------
    def _flush_changes(self) -> None:
        for ch in self.distributor.drain_changes():
            self._log(QueueLogRow(ch.at, "AGENT", agent=ch.agent, state=ch.state.value, prev=ch.previous.value,
                                 seconds=round(ch.seconds, 3), reason=ch.reason if ch.state is AgentState.PAUSED else ""))

    def _log(self, row: QueueLogRow) -> None:
        self.events.append(row)
        if row.event == "CONNECT" and row.agent:
            self.last_connected[row.agent] = row
        self.bus.publish(queue_event(row))  # storage writes the row; dashboards and CRMs hear it

    def set_disposition(self, agent: str, disposition: str, notes: str = "") -> QueueLogRow:
        """The agent's outcome of its latest queue call (from the agent desktop), as a
        DISPOSITION row of the queue log next to the call's other rows."""
        last = self.last_connected.get(agent)
        if last is None:
            raise KeyError(f"agent {agent} has no recent queue call")
        row = QueueLogRow(at=time.time(), event="DISPOSITION", call_id=last.call_id, queue=last.queue, agent=agent,
                          caller=last.caller, did=last.did, reason=disposition, notes=notes)
        self._log(row)
        log.info("call %s: agent %s set disposition %s", last.call_id, agent, disposition)
        return row

    # -- callbacks agents schedule ------------------------------------------------------------------
    async def schedule_callback(self, agent: str, at: float, number: str = "") -> dict[str, Any]:
        """The agent's latest queue call is to be called back at ``at`` (epoch seconds), on
        ``number`` or the caller's: then it joins its queue as a callback request (the next free
        agent is rung first, then the customer). Kept in SQLite: it survives a restart."""
        last = self.last_connected.get(agent)
        if last is None:
            raise KeyError(f"agent {agent} has no recent queue call")
        if self.db is None:
            raise RuntimeError("scheduled callbacks need the database")
        number = number or last.caller
        if not number:
            raise ValueError("the call has no caller number to call back")
        source = self.last_source.get(agent, "")
        created = time.time()
        await self.db.write([(
            "INSERT INTO scheduled_callbacks (queue, number, at, did, source, call_id, agent, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (last.queue, number, at, last.did, source, last.call_id, agent, created))])
        found = await self.db.fetchone("SELECT id FROM scheduled_callbacks WHERE agent = ? AND created = ? "
                                       "ORDER BY id DESC LIMIT 1", (agent, created))
        ident = int(found["id"]) if found is not None else 0
        log.info("call %s: agent %s scheduled a callback to %s at %s in %s", last.call_id, agent, number,
                 time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)), last.queue)
        await self.arm_callbacks()
        return {"id": ident, "queue": last.queue, "number": number, "at": at, "call_id": last.call_id}

    async def scheduled_callbacks(self, queues: set[str] | None = None) -> list[dict[str, Any]]:
        if self.db is None:
            return []
        rows = [dict(r) for r in await self.db.fetchall(
            "SELECT id, queue, number, at, did, call_id, agent, state, created FROM scheduled_callbacks "
            "WHERE state IN ('pending', 'queued') ORDER BY at")]
        return [r for r in rows if queues is None or r["queue"] in queues]

    async def cancel_callback(self, ident: int) -> bool:
        if self.db is None:
            return False
        row = await self.db.fetchone("SELECT state FROM scheduled_callbacks WHERE id = ?", (ident,))
        if row is None or row["state"] != "pending":
            return False
        await self.db.write([("UPDATE scheduled_callbacks SET state = 'cancelled' WHERE id = ?", (ident,))])
        return True

    async def arm_callbacks(self) -> None:
        """(Re)arm the timer for the soonest pending callback (at start and after each change)."""
        if self.db is None:
            return
        row = await self.db.fetchone("SELECT MIN(at) AS at FROM scheduled_callbacks WHERE state = 'pending'")
        if self._callback_timer is not None:
            self._callback_timer.cancel()
            self._callback_timer = None
        if row is None or row["at"] is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, min(3600.0, row["at"] - time.time()))  # re-checked at least hourly
        self._callback_timer = loop.call_later(delay, lambda: self.control.spawn(self._due_callbacks()))

    async def _due_callbacks(self) -> None:
        assert self.db is not None
        rows = await self.db.fetchall("SELECT * FROM scheduled_callbacks WHERE state = 'pending' AND at <= ?",
                                      (time.time(),))
        for row in rows:
            await self.db.write([("UPDATE scheduled_callbacks SET state = 'queued' WHERE id = ?", (row["id"],))])
            self.control.spawn(self._run_scheduled(dict(row)))
        await self.arm_callbacks()

    async def _run_scheduled(self, row: dict[str, Any]) -> None:
        assert self.db is not None
        rules = self.plan_of().queues.get(row["queue"])
        state = "done"
        if rules is None:
            log.warning("scheduled callback %d: queue %s is no longer in the plan", row["id"], row["queue"])
            state = "failed"
        else:
            now = time.time()
            caller = Caller(f"{row['call_id'] or 'callback'}#cb{row['id']}", row["queue"], now,
                            caller=row["number"], did=row["did"], callback=row["number"])
            try:
                position = self.distributor.enqueue(caller, now)
            except QueueRejected as exc:
                log.warning("scheduled callback %d: queue %s is %s", row["id"], row["queue"], exc.reason)
                state = "failed"
            else:
                self._log(QueueLogRow(now, "CALLBACK", caller.call_id, row["queue"], caller=row["number"],
                                      did=row["did"], position=position, wait=0.0, reason=row["number"]))
                session = Waiting(None, caller, callback=row["number"], source=row["source"])
                self.waiting[caller.call_id] = session
                try:
                    await self._wait_for_agent(session, rules)
                finally:
                    self.waiting.pop(caller.call_id, None)
                    self.distributor.remove(caller, time.time())
                    self.kick()
        await self.db.write([("UPDATE scheduled_callbacks SET state = ? WHERE id = ?", (state, row["id"]))])

    def queue_of(self, call_id: str) -> str | None:
        """The queue a call waits in now, or None."""
        for name, line in self.distributor.waiting.items():
            if any(c.call_id == call_id for c in line):
                return name
        return None

    def today(self, by: str, interval: float = 3600.0, queues: frozenset[str] | None = None) -> list[dict[str, object]]:
        """Today's figures from the queue log kept in memory, grouped ``by`` (queue, agent,
        interval, did, source, disposition), optionally for some queues only."""
        plan = self.plan_of()
        thresholds = {n: q.service_level for n, q in plan.queues.items()}
        rows = [e for e in self.events if queues is None or e.queue in queues or (e.event == "AGENT" and not e.queue)]
        return summarize(rows, by, interval=interval, thresholds=thresholds)

    def snapshot(self) -> dict[str, Any]:
        """Real-time figures per queue and agent (what a wallboard shows)."""
        now = time.time()
        plan = self.plan_of()
        midnight = local_midnight(now)
        self.events = today = [e for e in self.events if e.at >= midnight]  # older days are in SQLite
        thresholds = {n: q.service_level for n, q in plan.queues.items()}
        by_queue = {r["queue"]: r for r in summarize(today, "queue", thresholds=thresholds)}
        queues = {}
        for name in plan.queues:
            queues[name] = {**self.distributor.queue_snapshot(name, now),
                            **{k: v for k, v in by_queue.get(name, {}).items() if k != "queue"}}
        agents = {}
        for ext, a in self.distributor.agents.items():
            agents[ext] = {
                "state": a.state.value, "since": round(now - a.since, 1) if a.since else 0.0, "pause_reason": a.pause_reason,
                "queues": sorted(a.queues), "calls": a.answered, "missed_rings": a.missed,
                "talk": round(a.time_in(AgentState.ON_CALL, now), 1),
                "wrapup": round(a.time_in(AgentState.WRAPUP, now), 1),
                "paused": round(a.time_in(AgentState.PAUSED, now), 1),
                "ready": round(a.time_in(AgentState.AVAILABLE, now), 1),
            }
        return {"queues": queues, "agents": agents}
