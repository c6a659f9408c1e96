"""A running campaign: places calls through ``CallControl`` as its pacer says, runs AMD on
answer, hands people to the campaign queue's agents through the ACD (within 2 s, else the
safe-harbour message: abandoned), leaves messages after machines' beeps, and records every
outcome (the lead's life cycle, the abandonment ledger, a ``DialerAttempt`` event, the CDR's
campaign and lead columns).

Preview: a free agent of the queue is rung first with the next lead reserved for them (its fields
in a ``LeadConnected`` event as the agent answers), then the lead is dialled and bridged.
Broadcast: agentless — the message, and keys (``press``) that hand the callee to a plan action.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..acd.service import AcdService
from ..config.schema import Campaign, Plan, prompt_list
from ..events import CampaignStateChanged, DialerAttempt, DispositionSet, EventBus, LeadConnected
from ..storage.database import Database
from ..switch.b2bua.call import Call, CallState
from ..switch.b2bua.control import CallControl
from .compliance import Window, read_dnc
from .leads import DIALABLE, Lead, LeadState, after_attempt, import_statements, read_leads_file
from .pacing import DAY, AbandonLedger, Mode, Outcome, Pacer, Snapshot, pacer_for

log = logging.getLogger("centralino.dialer")

CONNECT_WITHIN = 2.0  # seconds from the callee's first words (AMD's decision) to an agent
PREVIEW_SECONDS = 5.0  # the agent sees the lead this long before it is dialled


class CampaignState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"  # no dialable lead left


def outcome_for_status(status: int) -> Outcome:
    if status in (486, 600):
        return Outcome.BUSY
    if status in (408, 480, 487):
        return Outcome.NO_ANSWER
    if status in (404, 484, 485, 604):
        return Outcome.INVALID
    if status in (502, 503):
        return Outcome.CONGESTION
    return Outcome.FAILED


class CampaignRunner:
    def __init__(self, name: str, plan_of: Callable[[], Plan], control: CallControl, acd: AcdService | None,
                 bus: EventBus, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.name, self.plan_of, self.control, self.acd, self.bus, self.db = name, plan_of, control, acd, bus, db
        self.clock = clock
        self.state = CampaignState.STOPPED
        self.ledger = AbandonLedger()
        self.pacer: Pacer = self._make_pacer()
        self.in_flight: dict[int, float] = {}  # lead → placed at (ringing)
        self.deciding = 0  # answered, AMD listening (may need an agent)
        self.connecting = 0  # people waiting for an agent right now
        self.active = 0  # agentless calls under way (broadcast)
        self.reserved: set[str] = set()  # agents rung for a preview lead
        self.last_lead_of: dict[str, tuple[int, float]] = {}  # agent → (lead, when connected): dispositions
        self.dnc: set[str] = set()
        self._dnc_stamps: list[tuple[str, int, int]] = []
        self.counters: dict[str, int] = {o.value: 0 for o in Outcome}
        self.placed = 0
        self.amd_machine = 0
        self.talk_seconds = 0.0
        self.started_at: float | None = None
        self.last_reason = ""
        self._task: asyncio.Task[Any] | None = None
        self._wake = asyncio.Event()

    @property
    def campaign(self) -> Campaign:
        return self.plan_of().campaigns[self.name]

    def _make_pacer(self) -> Pacer:
        c = self.plan_of().campaigns[self.name]
        return pacer_for(c.mode, ratio=c.ratio, max_concurrent=c.max_concurrent, target=c.target_abandon_rate,
                         limit=c.max_abandon_rate, ledger=self.ledger, ring_timeout=c.ring_timeout)

    # -- control ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.state is CampaignState.RUNNING:
            return
        await self._restore_ledger()
        c = self.campaign
        self._refresh_dnc(force=True)
        # attempts a stop or a restart interrupted: dialled again, no attempt spent
        await self.db.write([("UPDATE leads SET state = 'retry', next_at = ? WHERE campaign = ? AND state = 'dialing'",
                              (self.clock(), self.name))])
        if c.leads:
            await self.import_file(c.leads)
        if self.dnc:
            await self.db.write([("UPDATE leads SET state = 'dnc' WHERE campaign = ? AND phone = ?", (self.name, p))
                                 for p in self.dnc])
        self.started_at = self.started_at or self.clock()
        self._set_state(CampaignState.RUNNING, "started")
        if self._task is None or self._task.done():
            self._task = self.control.spawn(self._loop())

    def pause(self) -> None:
        self._set_state(CampaignState.PAUSED, "paused")

    def stop(self) -> None:
        self._set_state(CampaignState.STOPPED, "stopped")
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _refresh_dnc(self, force: bool = False) -> None:
        """Re-read the do-not-call lists when a file changed: a number added while the campaign
        runs is not dialled from its next attempt on."""
        c = self.campaign
        stamps = []
        for path in c.dnc:
            try:
                st = os.stat(path)
                stamps.append((path, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((path, 0, 0))
        if force or stamps != self._dnc_stamps:
            try:
                self.dnc = read_dnc(c.dnc, c.region) if c.dnc else set()
            except OSError as exc:  # keep the list we had: never dial more because a file went away
                log.error("campaign %s: cannot read a do-not-call list: %s", self.name, exc)
                return
            self._dnc_stamps = stamps

    def _set_state(self, state: CampaignState, reason: str) -> None:
        if state is not self.state or reason != self.last_reason:
            log.info("campaign %s: %s (%s)", self.name, state.value, reason)
            self.bus.publish(CampaignStateChanged(campaign=self.name, state=state.value, reason=reason))
        self.state, self.last_reason = state, reason
        self._wake.set()

    async def import_file(self, path: str) -> tuple[int, list[tuple[int, str]]]:
        c = self.campaign
        report = read_leads_file(path, c.region)
        dnc = self.dnc or (read_dnc(c.dnc, c.region) if c.dnc else set())
        if report.rows:
            await self.db.write(import_statements(self.name, report.rows, dnc, str(path)))
        for line, why in report.errors:
            log.warning("campaign %s: %s:%d skipped: %s", self.name, path, line, why)
        return len(report.rows), report.errors

    async def _restore_ledger(self) -> None:
        rows = await self.db.fetchall("SELECT at, abandoned FROM dialer_ledger WHERE campaign = ? AND at >= ? ORDER BY at",
                                      (self.name, self.clock() - 30 * DAY))
        self.ledger = AbandonLedger()
        for row in rows:
            self.ledger.record(float(row["at"]), bool(row["abandoned"]))
        self.pacer = self._make_pacer()

    # -- the loop -----------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while self.state is not CampaignState.STOPPED:
            if self.state is CampaignState.RUNNING:
                try:
                    await self.step()
                except Exception:
                    log.exception("campaign %s: pacing step failed", self.name)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def wake(self) -> None:
        self._wake.set()

    def snapshot(self, now: float) -> Snapshot:
        c = self.campaign
        ready: int = 0
        busy: tuple[float, ...] = ()
        wrapping: tuple[float, ...] = ()
        if self.acd is not None and c.queue:
            ready, busy, wrapping = self.acd.pacing_view(c.queue, now)
        ready = max(0, ready - len(self.reserved))
        return Snapshot(now, ready, busy, wrapping, tuple(now - t for t in self.in_flight.values()),
                        self.connecting + self.deciding, self.active)

    async def step(self) -> None:
        c = self.campaign
        now = self.clock()
        self._refresh_dnc()
        await self._agent_callbacks(now)
        if c.mode == Mode.PREVIEW.value:
            await self._preview_step(now)
            return
        wanted = self.pacer.calls_to_place(self.snapshot(now))
        reason = getattr(self.pacer, "fallback_reason", "")
        if reason and reason != self.last_reason:
            self._set_state(CampaignState.RUNNING, reason)
        if wanted <= 0:
            return
        leads = await self.next_leads(wanted, now)
        if not leads and not self.in_flight and not self.active:
            if not await self._any_dialable():
                self._set_state(CampaignState.FINISHED, "no lead left to dial")
            return
        for lead in leads:
            self.in_flight[lead.id] = now
            self.control.spawn(self.attempt(lead))

    async def _any_dialable(self) -> bool:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM leads WHERE campaign = ? AND state IN ('new','retry','callback','dialing')",
                                     (self.name,))
        return bool(row and row["n"])

    async def next_leads(self, n: int, now: float) -> list[Lead]:
        """Up to ``n`` leads due now that compliance lets us call (callbacks first), marked dialing."""
        c = self.campaign
        window = Window(c.calling_hours, c.days)
        rows = await self.db.fetchall(
            "SELECT * FROM leads WHERE campaign = ? AND state IN (?, ?, ?) AND next_at <= ?"
            " ORDER BY state = 'callback' DESC, next_at, id LIMIT ?",
            (self.name, *[s.value for s in DIALABLE], now, max(50, 5 * n)))
        at = datetime.fromtimestamp(now, UTC)
        chosen: list[Lead] = []
        writes: list[tuple[str, tuple[Any, ...]]] = []
        for row in rows:
            lead = Lead.from_row(row)
            if lead.id in self.in_flight or (lead.state is LeadState.CALLBACK and lead.callback_agent):
                continue  # an appointment with one agent waits for that agent (``_agent_callbacks``)
            if lead.phone in self.dnc:  # checked at import and again before each attempt
                writes.append(("UPDATE leads SET state = 'dnc' WHERE id = ?", (lead.id,)))
                continue
            ok, _why = window.may_call(lead.phone, lead.timezone, at)
            if not ok:
                continue
            chosen.append(lead)
            writes.append(("UPDATE leads SET state = 'dialing' WHERE id = ?", (lead.id,)))
            if len(chosen) >= n:
                break
        if writes:
            await self.db.write(writes)
        return chosen

    # -- one attempt --------------------------------------------------------------------------------
    async def _originate(self, lead: Lead) -> Call:
        c = self.campaign
        # the agents' phones show the lead; the lead is shown the campaign's caller ID
        call = await self.control.originate(caller=lead.phone, source=c.trunks[0], did=lead.phone,
                                            destination=f"campaign:{self.name}", presented=c.caller_id)
        call.vars.update(campaign=self.name, lead=str(lead.id))
        call.record = c.record
        return call

    async def attempt(self, lead: Lead) -> None:
        c = self.campaign
        placed = self.clock()
        self.placed += 1
        outcome, status, amd, agent, message_left = Outcome.FAILED, None, "", "", False
        call: Call | None = None
        ring: float | None = None  # placed → answered or refused: what the pacer learns answer times from
        try:
            call = await self._originate(lead)
            leg = await self.control.ring_partner(call, lead.phone.lstrip("+"), c.ring_timeout, trunks=c.trunks,
                                                  ringback=False)
            self.in_flight.pop(lead.id, None)
            ring = self.clock() - placed
            if isinstance(leg, int):
                status, outcome = leg, outcome_for_status(leg)
            else:
                status = 200
                if c.record:  # from the answer: what the callee said and heard (then the agent)
                    await self.control.start_recording(call)
                outcome, amd, agent, message_left = await self._answered(call, lead, ring)
        except Exception:
            log.exception("campaign %s: attempt on lead %d failed", self.name, lead.id)
            outcome = Outcome.FAILED
        finally:
            self.in_flight.pop(lead.id, None)
            if call is not None and call.state is CallState.ANSWERED:
                await self.control.hangup(call, by="switch")
        if ring is None:
            ring = self.clock() - placed
        await self._record(lead, outcome, ring, status, amd, agent, call.id if call is not None else "", message_left)

    async def _answered(self, call: Call, lead: Lead, ring: float) -> tuple[Outcome, str, str, bool]:
        """A callee answered: AMD, then an agent, a message or the keys. (outcome, amd, agent, message left)"""
        c = self.campaign
        self.deciding += 1
        try:
            amd = ""
            cfg = c.amd_config
            if cfg is not None:
                result = await self.control.detect(call, "amd", cfg.params, side="a", timeout=8.0)
                amd = str((result or {}).get("result", "NOTSURE"))
                if amd == "MACHINE":
                    self.amd_machine += 1
                    return Outcome.MACHINE, amd, "", await self._leave_message(call)
                if amd == "HANGUP" or call.state is not CallState.ANSWERED:
                    return Outcome.FAILED, amd, "", False
        finally:
            self.deciding -= 1
        if c.mode == Mode.BROADCAST.value:
            await self._broadcast(call)
            return Outcome.HUMAN, amd, "", False
        assert self.acd is not None and c.queue is not None
        connected_to: list[str] = []
        talk_started: list[float] = []

        def connected(ext: str) -> None:
            connected_to.append(ext)
            talk_started.append(self.clock())
            self.last_lead_of[ext] = (lead.id, self.clock())
            self.bus.publish(LeadConnected(call.id, campaign=self.name, lead_id=lead.id, agent=ext, phone=lead.phone,
                                           name=lead.name, fields={k: str(v) for k, v in lead.fields.items()}))

        self.connecting += 1
        started = self.clock()
        try:
            ok = await self.acd.connect_within(call, c.queue, CONNECT_WITHIN, on_connected=connected)
        finally:
            self.connecting -= 1
        if ok:
            talk = max(0.0, self.clock() - (talk_started[0] if talk_started else started))
            self.talk_seconds += talk
            self.pacer.observe_handled(talk, float(self.plan_of().queues[c.queue].wrapup))
            return Outcome.HUMAN, amd, connected_to[0] if connected_to else "", False
        if call.state is CallState.ANSWERED and c.safe_harbour:
            await self.control.play(call, prompt_list(c.safe_harbour))
        return Outcome.ABANDONED, amd, "", False

    async def _leave_message(self, call: Call) -> bool:
        on = self.campaign.on_machine
        if on is None or on.hangup or not on.play or call.state is not CallState.ANSWERED:
            return False
        await self.control.detect(call, "beep", side="a", timeout=float(on.beep_timeout))
        if call.state is not CallState.ANSWERED:
            return False
        done = await self.control.play(call, prompt_list(on.play))
        return done.get("reason") == "finished"

    async def _broadcast(self, call: Call) -> None:
        c = self.campaign
        self.active += 1
        try:
            done = await self.control.play(call, prompt_list(c.message), barge_in=bool(c.press))
            key = done.get("digit") if done.get("reason") == "barge-in" else None
            if key is None and c.press:
                key = await self.control.next_digit(call, 5.0)
            action = c.press.get(key or "")
            if action is not None and call.state is CallState.ANSWERED:
                await self.control.execute(call, action)
                await call.ended.wait()
        finally:
            self.active -= 1

    async def _record(self, lead: Lead, outcome: Outcome, ring: float, status: int | None, amd: str, agent: str,
                      call_id: str, message_left: bool) -> None:
        now = self.clock()
        self.counters[outcome.value] += 1
        self.ledger.observe(outcome, now)
        self.pacer.observe(outcome, ring, now)
        move = after_attempt(outcome, lead.attempts, now, self.campaign, message_left=message_left,
                             callback=lead.state is LeadState.CALLBACK)
        writes: list[tuple[str, tuple[Any, ...]]] = [
            ("UPDATE leads SET state = ?, attempts = ?, next_at = ?, last_outcome = ?, last_at = ? WHERE id = ?",
             (move.state.value, move.attempts, move.next_at, outcome.value, now, lead.id)),
            ("INSERT INTO lead_attempts (lead_id, campaign, at, outcome, ring_seconds, call_id, agent, sip_status, amd)"
             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (lead.id, self.name, now, outcome.value, round(ring, 3), call_id, agent, status, amd)),
        ]
        if outcome in (Outcome.HUMAN, Outcome.ABANDONED):
            writes.append(("INSERT INTO dialer_ledger (campaign, at, abandoned) VALUES (?, ?, ?)",
                           (self.name, now, int(outcome is Outcome.ABANDONED))))
        await self.db.write(writes)
        log.info("campaign %s: lead %d (%s) %s after %.1fs%s", self.name, lead.id, lead.phone, outcome.value, ring,
                 f", agent {agent}" if agent else "")
        self.bus.publish(DialerAttempt(campaign=self.name, lead_id=lead.id, phone=lead.phone, outcome=outcome.value,
                                       call_id=call_id, ring_seconds=round(ring, 3), sip_status=status, amd=amd,
                                       agent=agent))
        self.wake()

    async def _agent_callbacks(self, now: float) -> None:
        """Appointments an agent made for themself ("call me back tomorrow at ten"): when one is
        due, inside calling hours, and that agent is free, their phone rings with the lead's card
        and the lead is dialled as in preview."""
        c = self.campaign
        if self.acd is None or not c.queue:
            return
        rows = await self.db.fetchall(
            "SELECT * FROM leads WHERE campaign = ? AND state = 'callback' AND callback_agent != '' AND next_at <= ?"
            " ORDER BY next_at LIMIT 50", (self.name, now))
        if not rows:
            return
        free = set(self.acd.free_agents(c.queue)) - self.reserved
        window = Window(c.calling_hours, c.days)
        at = datetime.fromtimestamp(now, UTC)
        for row in rows:
            lead = Lead.from_row(row)
            if lead.id in self.in_flight or lead.callback_agent not in free or lead.phone in self.dnc:
                continue
            if not window.may_call(lead.phone, lead.timezone, at)[0]:
                continue
            free.discard(lead.callback_agent)
            self.reserved.add(lead.callback_agent)
            self.in_flight[lead.id] = now
            await self.db.write([("UPDATE leads SET state = 'dialing' WHERE id = ?", (lead.id,))])
            self.control.spawn(self.preview(lead, lead.callback_agent))

    # -- preview ---------------------------------------------------------------------------------------
    async def _preview_step(self, now: float) -> None:
        c = self.campaign
        if self.acd is None or not c.queue:
            return
        free = [ext for ext in self.acd.free_agents(c.queue) if ext not in self.reserved]
        for ext in free:
            leads = await self.next_leads(1, now)
            if not leads:
                return
            self.reserved.add(ext)
            self.in_flight[leads[0].id] = now
            self.control.spawn(self.preview(leads[0], ext))

    async def preview(self, lead: Lead, agent: str) -> None:
        """The agent's phone rings with the lead's card; once answered (and the preview time
        passed) the lead is dialled and the two are connected."""
        c = self.campaign
        placed = self.clock()
        outcome, status, call = Outcome.FAILED, None, None
        try:
            call = await self._originate(lead)
            first = await self.control.ring(call, [agent], 20.0)
            if isinstance(first, int):
                outcome, status = Outcome.CONGESTION, first  # the agent did not answer: not the lead's attempt
                return
            await self.control.hold_first_leg(call, first)
            self.last_lead_of[agent] = (lead.id, self.clock())
            self.bus.publish(LeadConnected(call.id, campaign=self.name, lead_id=lead.id, agent=agent, phone=lead.phone,
                                           name=lead.name, fields={k: str(v) for k, v in lead.fields.items()}))
            await asyncio.sleep(PREVIEW_SECONDS)
            placed = self.clock()
            leg = await self.control.ring_partner(call, lead.phone.lstrip("+"), c.ring_timeout, trunks=c.trunks)
            if isinstance(leg, int):
                status, outcome = leg, outcome_for_status(leg)
                return
            status, outcome = 200, Outcome.HUMAN
            started = self.clock()
            if c.record:
                await self.control.start_recording(call)
            if await self.control.bridge(call, first):
                await call.ended.wait()
                self.talk_seconds += self.clock() - started
        finally:
            self.reserved.discard(agent)
            self.in_flight.pop(lead.id, None)
            if call is not None and call.state is CallState.ANSWERED:
                await self.control.hangup(call, by="switch")
            await self._record(lead, outcome, self.clock() - placed, status, "", agent,
                               call.id if call is not None else "", False)

    # -- dispositions ------------------------------------------------------------------------------------
    async def set_disposition(self, lead_id: int, agent: str, disposition: str, *, callback_at: float | None = None,
                              callback_agent: str = "") -> None:
        c = self.campaign
        if disposition not in c.dispositions:
            raise ValueError(f"unknown disposition {disposition!r} (one of {', '.join(c.dispositions)})")
        if disposition == "callback":
            when = callback_at or self.clock() + 3600
            await self.db.write([("UPDATE leads SET disposition = ?, state = 'callback', next_at = ?, callback_agent = ?"
                                  " WHERE id = ? AND campaign = ?", (disposition, when, callback_agent, lead_id, self.name))])
        else:
            await self.db.write([("UPDATE leads SET disposition = ?, state = 'done' WHERE id = ? AND campaign = ?",
                                  (disposition, lead_id, self.name))])
        log.info("campaign %s: lead %d disposition %s by %s", self.name, lead_id, disposition, agent or "the API")
        self.bus.publish(DispositionSet(campaign=self.name, lead_id=lead_id, agent=agent, disposition=disposition,
                                        callback_at=callback_at))

    # -- status -------------------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        now = self.clock()
        rows = await self.db.fetchall("SELECT state, COUNT(*) AS n FROM leads WHERE campaign = ? GROUP BY state",
                                      (self.name,))
        outcomes = await self.db.fetchall(
            "SELECT outcome, COUNT(*) AS n FROM lead_attempts WHERE campaign = ? GROUP BY outcome", (self.name,))
        windows = {}
        for label, window in (("30d", 30 * DAY), ("24h", DAY)):
            answered, abandoned = self.ledger.counts(now, window)
            windows[label] = {"answered": answered, "abandoned": abandoned,
                              "rate": round(abandoned / answered, 4) if answered else 0.0}
        c = self.campaign
        agents = 0
        if self.acd is not None and c.queue:
            ready, busy, wrapping = self.acd.pacing_view(c.queue, now)
            agents = ready + len(busy) + len(wrapping)
        hours = max(1e-9, (now - (self.started_at or now)) / 3600)
        by_outcome = {r["outcome"]: r["n"] for r in outcomes}
        answered_calls = sum(by_outcome.get(o, 0) for o in ("answered-human", "machine", "abandoned"))
        return {
            "campaign": self.name, "mode": c.mode, "state": self.state.value, "reason": self.last_reason,
            "leads": {r["state"]: r["n"] for r in rows}, "outcomes": by_outcome,
            "dialled": sum(by_outcome.values()), "answered": answered_calls,
            "abandoned": by_outcome.get("abandoned", 0), "abandonment": windows,
            "rule": {"window": c.abandon_window, "limit": c.max_abandon_rate,
                     "rate": windows[c.abandon_window]["rate"],
                     "within": windows[c.abandon_window]["rate"] <= c.max_abandon_rate},
            "amd_machine_share": round(by_outcome.get("machine", 0) / answered_calls, 3) if answered_calls else 0.0,
            "in_flight": len(self.in_flight), "agents": agents,
            "talk_minutes_per_agent_hour": round(self.talk_seconds / 60 / (max(1, agents) * hours), 1) if self.started_at else 0.0,
            "pacer": {"mode": self.pacer.mode.value, **({"gain": round(self.pacer.gain, 3)} if hasattr(self.pacer, "gain") else {})},
        }


def lead_json(row: Any) -> dict[str, Any]:
    return {**dict(row), "fields": json.loads(row["fields"] or "{}")}


def is_final(state: str) -> bool:
    return state in (LeadState.DONE.value, LeadState.INVALID.value, LeadState.DNC.value)


__all__ = ["CampaignRunner", "CampaignState", "is_final", "lead_json", "outcome_for_status"]
