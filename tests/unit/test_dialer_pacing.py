"""The pacers in simulated time (no sockets, no sleeps): what each mode places for a snapshot,
what the predictive pacer learns and how its abandonment budget makes it fall back, the ledger's
windows, and the simulation that measures them (a short run)."""

from __future__ import annotations

import math

import pytest
from centralino.bench import dialer_sim
from centralino.dialer.pacing import (
    DAY,
    AbandonLedger,
    BroadcastPacer,
    Estimates,
    Outcome,
    PowerPacer,
    PredictivePacer,
    PreviewPacer,
    ProgressivePacer,
    Snapshot,
    VicidialPacer,
    pacer_for,
)


def snap(now: float = 1000.0, ready: int = 0, **kw) -> Snapshot:
    return Snapshot(now=now, ready=ready, **kw)


def test_preview_never_dials_by_itself():
    assert PreviewPacer().calls_to_place(snap(ready=10)) == 0


def test_progressive_places_one_call_per_free_agent_counting_calls_in_flight_and_people_waiting():
    p = ProgressivePacer()
    assert p.calls_to_place(snap(ready=5)) == 5
    assert p.calls_to_place(snap(ready=5, dialing=(3.0, 1.0))) == 3
    assert p.calls_to_place(snap(ready=5, dialing=(3.0,), connecting=2)) == 2
    assert p.calls_to_place(snap(ready=1, dialing=(3.0, 4.0))) == 0


def test_power_places_ratio_calls_per_free_agent():
    p = PowerPacer(2.5)
    assert p.calls_to_place(snap(ready=2)) == 5
    assert p.calls_to_place(snap(ready=2, dialing=(1.0,) * 4)) == 1
    assert p.calls_to_place(snap(ready=2, connecting=1)) == 2  # a person waits: one agent is taken


def test_broadcast_is_bounded_by_max_concurrent_and_the_trunks_channels():
    p = BroadcastPacer(max_concurrent=10)
    assert p.calls_to_place(snap()) == 10
    assert p.calls_to_place(snap(dialing=(1.0,) * 3, active=4)) == 3
    assert p.calls_to_place(snap(channels_free=2)) == 2


def test_pacer_for_builds_each_mode():
    assert isinstance(pacer_for("preview"), PreviewPacer)
    assert isinstance(pacer_for("power", ratio=3.0), PowerPacer)
    p = pacer_for("predictive", target=0.02, limit=0.03, ring_timeout=30)
    assert isinstance(p, PredictivePacer) and p.target == 0.02 and p.est.ring_timeout == 30


# -- the ledger ------------------------------------------------------------------------------------------
def test_the_ledger_keeps_both_windows_and_forgets_what_left_them():
    ledger = AbandonLedger()
    for i in range(100):
        ledger.record(i * 60.0, abandoned=(i % 25 == 0))  # 4 abandoned of 100, over 100 minutes
    assert ledger.counts(100 * 60.0, DAY) == (100, 4)
    assert ledger.rate(100 * 60.0, 30 * DAY) == pytest.approx(0.04)
    later = 98 * 60.0 + DAY + 30.0  # a day after the last one but one: only the last is left in 24 h
    assert ledger.counts(later, DAY) == (1, 0)
    assert ledger.counts(later, 30 * DAY) == (100, 4)
    assert ledger.counts(99 * 60.0 + 31 * DAY, 30 * DAY) == (0, 0)
    assert len(ledger.events) == 0  # nothing older than the longest window is kept


def test_the_ledger_counts_only_live_answers():
    ledger = AbandonLedger()
    for outcome in (Outcome.HUMAN, Outcome.ABANDONED, Outcome.MACHINE, Outcome.BUSY, Outcome.NO_ANSWER):
        ledger.observe(outcome, 10.0)
    assert ledger.counts(11.0, DAY) == (2, 1)


# -- what the predictive pacer learns -----------------------------------------------------------------
def test_shares_are_learnt_in_the_order_calls_were_placed_not_the_order_they_ended():
    """Busy signals come back in 2 s, people answer in 8: a campaign's first seconds of outcomes are
    all busy. Learning them as they come would say nobody answers and multiply the calls placed."""
    est = Estimates(human=0.3, ring_timeout=25.0, settle=15.0)
    for i in range(200):  # 200 calls placed at t=0..199, every other one a person
        placed = float(i)
        human = i % 2 == 0
        est.observe(Outcome.HUMAN if human else Outcome.BUSY, 8.0 if human else 2.0, placed + (8.0 if human else 2.0))
        if i == 30:
            # at t≈32 the busy calls placed up to t=30 are in, the people placed after t=24 are not:
            # nothing is learnt yet (every call placed by then has not surely resolved)
            assert est.human == pytest.approx(0.3)
    est.release(1000.0)
    assert est.human == pytest.approx(0.5, abs=0.05)


def test_answer_times_are_fitted_as_a_lognormal():
    est = Estimates()
    for i in range(200):
        est.observe(Outcome.HUMAN, 12.0 * math.exp(0.3 * ((i % 7) - 3) / 3), float(i))
    est.release(10_000.0)
    assert math.exp(est.answer_mu) == pytest.approx(12.0, rel=0.05)
    assert 0.15 <= est.answer_sigma < 0.3


def test_a_call_that_has_rung_long_is_less_likely_to_become_a_person():
    est = Estimates(human=0.3, machine=0.1, quick=0.1, answer_mu=math.log(8.0), answer_sigma=0.4)
    assert est.human_given_unresolved(0.0) == pytest.approx(0.3)
    assert est.human_given_unresolved(20.0) < 0.05


def learnt(contact: float) -> PredictivePacer:
    p = PredictivePacer(estimates=Estimates(human=contact, machine=0.1, quick=0.1))
    return p


def test_predictive_places_more_calls_when_fewer_people_answer():
    low, high = learnt(0.1), learnt(0.4)
    s = snap(ready=5)
    assert low.calls_to_place(s) > high.calls_to_place(s) >= ProgressivePacer().calls_to_place(s)
    # the expected people in flight are the same: gain × agents
    assert low.calls_to_place(s) * 0.1 == pytest.approx(high.calls_to_place(s) * 0.4, abs=0.5)


def test_predictive_counts_agents_whose_wrap_up_ends_before_answers_come():
    p = learnt(0.3)
    none = p.calls_to_place(snap(ready=0, wrapping=(60.0, 50.0)))
    soon = p.calls_to_place(snap(ready=0, wrapping=(2.0, 3.0)))
    assert none == 0 and soon > 2
    # talking agents are not counted: a person cannot wait for them
    assert p.calls_to_place(snap(ready=0, busy=(170.0,) * 10)) == 0


def test_predictive_is_capped_per_free_agent_whatever_it_learnt():
    p = PredictivePacer(estimates=Estimates(human=0.001))
    assert p.calls_to_place(snap(ready=3)) <= p.max_lines * 3


def test_predictive_steers_its_gain_towards_the_target():
    p, ledger, now = learnt(0.3), None, 0.0
    ledger = p.ledger
    start = p.gain
    for _i in range(300):  # every answer connected: room to dial harder
        now += 10.0
        ledger.observe(Outcome.HUMAN, now)
        p.observe(Outcome.HUMAN, 8.0, now)
    assert p.gain > start
    high = p.gain
    for _i in range(30):  # a run of abandons: it backs off, and brakes once the last answers run over the limit
        now += 10.0
        ledger.observe(Outcome.ABANDONED, now)
        p.observe(Outcome.ABANDONED, 8.0, now)
    assert p.gain < high * 0.6


def test_predictive_falls_back_to_progressive_when_a_window_budget_is_nearly_spent_and_says_why():
    p = learnt(0.3)
    now = 40 * DAY
    for i in range(1000):  # the last two weeks: 1,000 people connected, none abandoned
        p.ledger.record(now - 14 * DAY + i * 600, abandoned=False)
    for i in range(90):  # today: 90 live answers, 2 abandoned (2.2 %); target 2.5 % → 0.25 left
        p.ledger.record(now - 3600 + i, abandoned=i < 2)
    assert p.calls_to_place(snap(now=now, ready=4)) == 4
    assert p.fallback_reason.startswith("abandonment budget nearly spent")
    # the 24-hour window moves on: tomorrow the budget is back (the 30 days have plenty)
    assert p.calls_to_place(snap(now=now + DAY, ready=4)) > 4 and p.fallback_reason == ""


def test_the_30_day_budget_holds_the_pacer_back_for_as_long_as_it_is_spent():
    p = learnt(0.3)
    now = 40 * DAY
    for i in range(90):  # one bad day: 2 of 90 abandoned, 2.2 % of the 30-day window
        p.ledger.record(now - 3600 + i, abandoned=i < 2)
    assert p.calls_to_place(snap(now=now + 2 * DAY, ready=4)) == 4 and p.fallback_reason
    assert p.calls_to_place(snap(now=now + 30 * DAY, ready=4)) > 4 and not p.fallback_reason


def test_while_falling_back_the_gain_does_not_wind_up():
    p = learnt(0.3)
    now = 40 * DAY
    for i in range(100):
        p.ledger.record(now - 3600 + i, abandoned=i < 3)
    p.calls_to_place(snap(now=now, ready=4))
    gain = p.gain
    for i in range(200):
        p.ledger.observe(Outcome.HUMAN, now + i)
        p.observe(Outcome.HUMAN, 8.0, now + i)
    assert p.gain == gain


def test_the_vicidial_style_baseline_raises_its_level_while_agents_wait_and_clamps_on_drops():
    p = VicidialPacer(limit=0.03)
    t = 0.0
    for _ in range(20):  # agents wait and nothing drops: the level climbs
        t += 15.0
        p.calls_to_place(snap(now=t, ready=4))
    assert p.level > 2.0
    for i in range(30):
        p.observe(Outcome.ABANDONED if i < 2 else Outcome.HUMAN, 8.0, t)
    t += 15.0
    p.calls_to_place(snap(now=t, ready=4))
    assert p.level == 1.0  # 2 of 30 since midnight is over 3 %


# -- the simulation (a short run: the README's table comes from `centralino bench dialer`) --------------
def test_a_short_simulation_runs_every_pacer_on_the_same_draws():
    sc = dialer_sim.Scenario("5 agents, 30% live", 5, 0.30, hours=1.0)
    results = dialer_sim.run_scenario(sc, shifts=2, seed=7, pacers=list(dialer_sim.PACERS))
    assert set(results) == {"progressive", "power 2.0", "VICIdial-style", "predictive"}
    prog, pred = results["progressive"], results["predictive"]
    assert prog["abandon_mean"] == 0.0  # one call per free agent cannot abandon (AMD decides in time)
    assert pred["attempts"] > prog["attempts"]
    for m in results.values():
        assert 0.0 < m["occupancy"] < 1.0 and m["talk_min_per_agent_hour"] < 60 * m["occupancy"] + 1e-9
    again = dialer_sim.run_scenario(sc, shifts=2, seed=7, pacers=["progressive"])
    assert again["progressive"]["attempts"] == prog["attempts"]  # deterministic for a seed
    table = dialer_sim.table({sc.name: results})
    assert table.count("\n") == 5 and "predictive" in table
