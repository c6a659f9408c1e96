"""The ACD core with simulated time: strategies, fairness across queues, skills escalation,
wrap-up, auto-pause, join/leave rules; the statistics; Erlang C against published values."""

from __future__ import annotations

import random

import pytest
from centralino.acd.distributor import Distributor, QueueRejected
from centralino.acd.erlang import agents_needed, erlang_c, parse_target, staffing
from centralino.acd.models import Agent, AgentState, Caller
from centralino.acd.stats import summarize
from centralino.config.schema import Escalation, Queue
from centralino.storage.queue_log import QueueLogRow


def make(strategy="longest-idle", members=("a", "b", "c"), **rules) -> Distributor:
    rules.setdefault("wrapup", 0)
    q = Queue(strategy=strategy, members=list(members), **rules)
    d = Distributor({"q": q}, [Agent(m, queues={"q"}) for m in members], rng=random.Random(7))
    for i, m in enumerate(members):
        d.login(m, float(i))  # a has been idle longest
    return d


def serve(d: Distributor, call: str, now: float, queue: str = "q", **kw) -> tuple[str, ...]:
    """One caller arrives; whoever is offered answers (first of them) and hangs up at once."""
    c = Caller(call, queue, now, **kw)
    d.enqueue(c, now)
    offers = d.assign(now)
    assert len(offers) == 1 and offers[0].caller is c
    agents = offers[0].agents
    d.answered(c, agents[0], now)
    d.call_ended(agents[0], now + 1)
    return agents


def test_longest_idle_picks_the_agent_free_the_longest():
    d = make("longest-idle")
    assert serve(d, "1", 10) == ("a",)
    assert serve(d, "2", 20) == ("b",)  # a became free at 11, b at 1
    assert serve(d, "3", 30) == ("c",)
    assert serve(d, "4", 40) == ("a",)


def test_round_robin_remembers_where_it_stopped():
    d = make("round-robin")
    assert [serve(d, str(i), 10 + i)[0] for i in range(5)] == ["a", "b", "c", "a", "b"]


def test_ringall_rings_every_free_member_and_frees_the_losers():
    d = make("ringall")
    c = Caller("1", "q", 5)
    d.enqueue(c, 5)
    (offer,) = d.assign(5)
    assert offer.agents == ("a", "b", "c")
    d.answered(c, "b", 6)
    assert d.agents["b"].state is AgentState.ON_CALL
    assert d.agents["a"].state is AgentState.AVAILABLE and d.agents["c"].state is AgentState.AVAILABLE


def test_fewest_calls_and_random():
    d = make("fewest-calls")
    d.agents["a"].calls["q"] = 5
    d.agents["b"].calls["q"] = 1
    d.agents["c"].calls["q"] = 3
    assert serve(d, "1", 10) == ("b",)
    d = make("random")
    picked = {serve(d, str(i), 10 + i)[0] for i in range(30)}
    assert picked == {"a", "b", "c"}


def test_skills_best_match_and_escalation_widens_with_waiting():
    q = Queue(strategy="skills", members=["a", "b"], requires={"italian": 8}, escalate=Escalation(every=30, step=2))
    d = Distributor({"q": q}, [Agent("a", {"italian": 5}, {"q"}), Agent("b", {"italian": 9}, {"q"})])
    d.login("a", 0)
    d.login("b", 0)
    d.pause("b", "lunch", 1)
    c = Caller("1", "q", 10)
    d.enqueue(c, 10)
    assert d.assign(10) == []  # only b speaks italian at 8, and b is at lunch
    assert d.get_timer() == 40  # the first escalation step
    d.handle_timer(40)
    assert d.required(c, 40) == {"italian": 6} and d.assign(40) == []  # a has 5
    assert d.get_timer() == 70
    d.handle_timer(70)
    (offer,) = d.assign(70)
    assert offer.agents == ("a",) and d.required(c, 70) == {"italian": 4}
    # with both free, the better match wins
    d2 = Distributor({"q": q}, [Agent("a", {"italian": 9}, {"q"}), Agent("b", {"italian": 10}, {"q"})])
    d2.login("a", 0)
    d2.login("b", 5)
    d2.enqueue(Caller("2", "q", 10), 10)
    assert d2.assign(10)[0].agents == ("b",)


def test_an_agent_in_two_queues_takes_the_caller_who_waited_longest_across_them():
    queues = {"sales": Queue(members=["x"]), "support": Queue(members=["x"])}
    d = Distributor(queues, [Agent("x", queues={"sales", "support"})])
    old = Caller("old", "support", 100)
    new = Caller("new", "sales", 150)
    d.enqueue(new, 150)
    d.enqueue(old, 100)
    d.login("x", 160)
    (offer,) = d.assign(160)
    assert offer.caller is old  # sales is listed first, but support's caller waited longer
    # priority weighs in: one level is worth 60 s of waiting
    d2 = Distributor({"sales": Queue(members=["x"], priority=1), "support": Queue(members=["x"])},
                     [Agent("x", queues={"sales", "support"})])
    d2.enqueue(Caller("old", "support", 100), 100)
    d2.enqueue(Caller("new", "sales", 150), 150)
    d2.login("x", 160)
    assert d2.assign(160)[0].caller.call_id == "new"


def test_wrapup_keeps_the_agent_away_until_it_ends():
    d = make("longest-idle", members=("a",), wrapup=10)
    c = Caller("1", "q", 0)
    d.enqueue(c, 0)
    d.assign(0)
    d.answered(c, "a", 0)
    d.call_ended("a", 100)
    assert d.agents["a"].state is AgentState.WRAPUP
    d.enqueue(Caller("2", "q", 101), 101)
    assert d.assign(101) == [] and d.get_timer() == 110
    d.handle_timer(110)
    assert d.agents["a"].state is AgentState.AVAILABLE and len(d.assign(110)) == 1
    assert d.agents["a"].time_in(AgentState.WRAPUP, 120) == 10


def test_missed_rings_auto_pause_and_retry_delay():
    d = make("longest-idle", members=("a", "b"), max_no_answer=2, retry=5)
    c = Caller("1", "q", 0)
    d.enqueue(c, 0)
    assert d.assign(0)[0].agents == ("a",)
    assert d.missed(c, "a", 15) is False
    assert d.assign(15)[0].agents == ("b",)  # a may not ring for this caller before 20
    d.missed(c, "b", 30)
    assert d.assign(30)[0].agents == ("a",)
    assert d.missed(c, "a", 45) is True  # second miss in a row
    assert d.agents["a"].state is AgentState.PAUSED and d.agents["a"].pause_reason == "no-answer"
    changes = d.drain_changes()
    assert changes[-1].state is AgentState.PAUSED and changes[-1].reason == "no-answer"


def test_max_len_join_empty_leave_when_empty_and_max_wait():
    d = make(members=("a",), max_len=1, join_empty=False, leave_when_empty=True, max_wait=60)
    d.pause("a", "break", 0)
    with pytest.raises(QueueRejected) as exc:
        d.enqueue(Caller("1", "q", 1), 1)
    assert exc.value.reason == "empty"
    d.unpause("a", 2)
    c = Caller("2", "q", 3)
    assert d.enqueue(c, 3) == 1
    with pytest.raises(QueueRejected, match="full"):
        d.enqueue(Caller("3", "q", 4), 4)
    d.pause("a", "break", 5)
    assert d.leave_when_empty() == [c]
    d.unpause("a", 6)
    d.logout("a", 6)
    assert d.get_timer() == 63
    assert d.handle_timer(63) == [c] and d.position(c) == 0


def test_statistics_from_the_queue_log():
    e = [
        QueueLogRow(0, "ENTER", "c1", "q", caller="111", did="800", position=1),
        QueueLogRow(5, "CONNECT", "c1", "q", "a", wait=5),
        QueueLogRow(65, "COMPLETE", "c1", "q", "a", wait=5, talk=60),
        QueueLogRow(10, "ENTER", "c2", "q", caller="222", did="800", position=1),
        QueueLogRow(40, "CONNECT", "c2", "q", "b", wait=30),
        QueueLogRow(160, "COMPLETE", "c2", "q", "b", wait=30, talk=120),
        QueueLogRow(20, "ENTER", "c3", "q", caller="333", did="801", position=2),
        QueueLogRow(50, "ABANDON", "c3", "q", wait=30, position=1),
        QueueLogRow(65, "AGENT", agent="a", state="available", prev="wrap-up", seconds=10),
    ]
    (q,) = summarize(e, "queue", thresholds={"q": 20})
    assert (q["offered"], q["answered"], q["abandoned"]) == (3, 2, 1)
    assert q["service_level"] == round(1 / 3, 4) and q["abandon_rate"] == round(1 / 3, 4)
    assert q["asa"] == 17.5 and q["aht"] == 90.0
    agents = {r["agent"]: r for r in summarize(e, "agent")}
    assert agents["a"]["answered"] == 1 and agents["a"]["talk"] == 60 and agents["a"]["wrapup"] == 10
    assert agents["a"]["aht"] == 70.0
    dids = {r["did"]: r for r in summarize(e, "did")}
    assert dids["800"]["answered"] == 2 and dids["801"]["abandoned"] == 1
    disp = {r["disposition"]: r["offered"] for r in summarize(e, "disposition")}
    assert disp == {"answered": 2, "abandoned": 1}


def test_erlang_c_matches_published_tables():
    # A = 10 Erlangs: the classic table values
    assert erlang_c(11, 10) == pytest.approx(0.6821, abs=1e-4)
    assert erlang_c(12, 10) == pytest.approx(0.4494, abs=1e-4)
    assert erlang_c(13, 10) == pytest.approx(0.2853, abs=1e-4)
    assert erlang_c(10, 10) == 1.0
    # the textbook case: 200 calls/h at 180 s = 10 Erlangs; 13 agents give 79.6% in 20 s, 14 give 88.8%
    assert staffing(13, 200, 180, 20).service_level == pytest.approx(0.7956, abs=1e-3)
    s = agents_needed(200, 180, 0.8, 20)
    assert s.agents == 14 and s.service_level == pytest.approx(0.8884, abs=1e-3)
    assert s.asa == pytest.approx(0.1741 * 180 / 4, abs=0.05)
    assert parse_target("80/20") == (0.8, 20.0)
    with pytest.raises(ValueError):
        parse_target("eighty")


def test_the_simulation_agrees_with_erlang_c():
    from centralino.bench.acd_sim import simulate

    r = simulate(14, 200, 180, 20, calls=30000, seed=5)
    assert abs(r.service_level - r.erlang_service_level) < 0.03
    assert abs(r.wait_probability - r.erlang_wait_probability) < 0.03


def test_erlang_command(capsys):
    from centralino.cli import main

    assert main(["erlang", "--calls-per-hour", "200", "--aht", "180", "--target-sl", "80/20", "--shrinkage", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "10.00 Erlangs" in out and "agents needed for 80/20: 14 on the phones; 20 scheduled" in out
    assert "| 14 ← | 17.4% | 88.8% |" in out
    assert main(["erlang", "--calls-per-hour", "200", "--aht", "180", "--target-sl", "eighty"]) == 2
