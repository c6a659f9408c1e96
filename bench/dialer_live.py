"""`centralino bench dialer-live`: the predictive dialer for real, beside its simulation.

The switch runs with its default settings and a predictive campaign; a SIPp callee farm behind a
trunk answers as the leads' last digits say (a person 30 %, a machine 15 %, busy 8 %, nobody
47 %, answering after a log-normal delay, people hanging up after ``--talk`` seconds); one SIPp
UAS plays every agent's phone (``--agents`` extensions registered to it and logged in). After
``--minutes`` the campaign stops and the figures come from the switch's own records — the
attempts (``lead_attempts``) and the CDRs (talk time of the agents' legs) — beside the
simulation of the same parameters (``bench/dialer_sim.py``: 30 runs of the same length, each
pacer starting from nothing as the live campaign does, talk counted within the run).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..api.server import call_api
from .dialer_sim import Scenario, run_scenario
from .pcap import write_pcm_pcap
from .peers import start_centralino
from .runner import _free_port
from .sipp import register_contact, scenario_copy, sipp_binary, start_sipp

SHARES = {"1": 0.30, "2": 0.15, "3": 0.08, "4": 0.47}  # last digit → person, machine, busy, nobody
ANSWER_MEDIAN_S, ANSWER_SIGMA = 8.0, 0.5


def _word(seconds: float, f0: float = 140.0) -> np.ndarray:
    """A voiced burst (a fundamental and its harmonics, shaped like a syllable): what AMD counts as a word."""
    t = np.arange(int(8000 * seconds)) / 8000
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = np.sin(np.pi * t / seconds) ** 0.5
    return (0.3 * 32767 * voice * envelope / 2.6).astype(np.int16)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(8000 * seconds), np.int16)


def _tone(hz: float, seconds: float, level: float = 0.2) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (level * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _write_peers(work: Path, talk: float) -> tuple[Path, Path]:
    person = np.concatenate([_silence(0.3), _word(0.5), _silence(1.5), _tone(900, talk)])
    greeting = [_silence(0.3)]
    for i in range(7):  # "Hello, you have reached ..." — more words than a person says
        greeting += [_word(0.35 + 0.05 * (i % 3), 120 + 10 * i), _silence(0.18)]
    machine = np.concatenate([*greeting, _silence(0.4), _tone(1400, 0.5, 0.3), _silence(12)])
    farm = scenario_copy("callee_farm.xml", work, HUMAN_PCAP=write_pcm_pcap(work / "person.pcap", person),
                         MACHINE_PCAP=write_pcm_pcap(work / "machine.pcap", machine), TALK_MS=str(int(talk * 1000)))
    text = farm.read_text()
    fixed = '<pause milliseconds="300"/>'
    assert fixed in text
    farm.write_text(text.replace(fixed, f'<pause distribution="lognormal" mean="{math.log(ANSWER_MEDIAN_S * 1000):.4f}"'
                                        f' stdev="{ANSWER_SIGMA}"/>'))
    (work / "agent").mkdir()
    agent = scenario_copy("uas_agent.xml", work / "agent",
                          AGENT_PCAP=write_pcm_pcap(work / "agent.pcap", _tone(600, talk + 5)))
    return farm, agent


def _leads(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    digits, weights = list(SHARES), list(SHARES.values())
    lines = ["phone,name,timezone"]
    for i in range(n):
        lines.append(f"+7495{i:06d}{rng.choices(digits, weights)[0]},Lead {i},Europe/Moscow")
    path.write_text("\n".join(lines) + "\n")
    return path


def _plan(work: Path, sip_port: int, api_port: int, farm_port: int, agents: list[tuple[str, str]],
          wrapup: int, leads: Path) -> Path:
    exts = "".join(f'  "{u}": {{password: "{p}"}}\n' for u, p in agents)
    members = ", ".join(f'"{u}"' for u, _ in agents)
    logged = "".join(f'  "{u}": {{logged_in: true}}\n' for u, _ in agents)
    plan = work / "dialer-plan.yaml"
    plan.write_text(
        "server:\n"  # the defaults otherwise: security on, info logging, qualify on
        f'  sip: {{listen: ["udp:127.0.0.1:{sip_port}"], domain: bench.local}}\n'
        f'  api: {{listen: "127.0.0.1:{api_port}"}}\n'
        f'  storage: "sqlite:{work / "bench.db"}"\n'
        '  rtp: {ports: "40000-59999"}\n'
        "extensions:\n" + exts
        + f'trunks:\n  farm: {{host: "127.0.0.1:{farm_port}"}}\n'
        + f"queues:\n  live: {{strategy: longest-idle, members: [{members}], ring_timeout: 5, wrapup: {wrapup}}}\n"
        + "agents:\n" + logged
        + "campaigns:\n  live:\n    mode: predictive\n    queue: live\n    trunk: farm\n"
          '    caller_id: "+74951230000"\n'
          f'    leads: "{leads}"\n'
          '    calling_hours: "00:00-24:00"\n    ring_timeout: 25\n'
          "    amd: {enabled: true, maximum_number_of_words: 3}\n"
          "    on_machine: {hangup: true}\n"
          '    safe_harbour: "tone:700/800"\n'
    )
    return plan


def _figures(db: Path, agents: int, start: float, stop: float) -> dict[str, Any]:
    """From the switch's records, within the campaign's run [start, stop] (wall clock): the
    attempts placed in it by outcome, and the agents' talk in it (their CDR legs, clipped)."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        outcomes = {r["outcome"]: r["n"] for r in conn.execute(
            "SELECT outcome, COUNT(*) AS n FROM lead_attempts WHERE campaign = 'live' AND at - ring_seconds <= ?"
            " GROUP BY outcome", (stop,))}
        legs = conn.execute(
            "SELECT leg.answer, leg.end FROM cdr leg JOIN cdr c ON c.call_id = leg.call_id AND c.leg = 'call'"
            " AND c.campaign = 'live' WHERE leg.leg != 'call' AND leg.destination LIKE 'extension:%'"
            " AND leg.answer IS NOT NULL").fetchall()
    finally:
        conn.close()
    talk = sum(max(0.0, min(stop, r["end"]) - max(start, r["answer"])) for r in legs)
    attempts = sum(outcomes.values())
    live = outcomes.get("answered-human", 0) + outcomes.get("abandoned", 0)
    agent_hours = agents * (stop - start) / 3600
    return {
        "attempts": attempts, "outcomes": outcomes, "live_answers": live,
        "abandoned": outcomes.get("abandoned", 0),
        "abandon_rate": outcomes.get("abandoned", 0) / live if live else 0.0,
        "attempts_per_agent_hour": attempts / agent_hours,
        "talk_min_per_agent_hour": talk / 60 / agent_hours,
        "connected_legs": len(legs),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    agents = [(f"{2001 + i}", f"pw{2001 + i}") for i in range(args.live_agents)]
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="centralino-dialer-live-") as tmp:
        work = Path(tmp)
        farm_xml, agent_xml = _write_peers(work, args.talk)
        farm_port, agent_port = _free_port(2), _free_port(2)
        farm = start_sipp(farm_xml, local_ip="127.0.0.1", port=farm_port, media_port=_free_port(2),
                          count=10_000_000, log_dir=work)
        phones = start_sipp(agent_xml, local_ip="127.0.0.1", port=agent_port, media_port=_free_port(2),
                            count=10_000_000, log_dir=work)
        sip_port, api_port = _free_port(2), _free_port(1)
        leads = _leads(work / "leads.csv", int(args.live_agents * args.minutes * 12) + 200, args.seed)
        plan = _plan(work, sip_port, api_port, farm_port, agents, args.wrapup, leads)
        target = start_centralino(work, plan, api_port, sip_port, [])
        api = f"127.0.0.1:{api_port}"
        try:
            for user, password in agents:
                status = register_contact(("127.0.0.1", sip_port), user, password, ("127.0.0.1", agent_port),
                                          "bench.local")
                if status != 200:
                    raise RuntimeError(f"agent {user} could not register: {status}")
            status, reply = call_api(api, "POST", "/api/v1/campaigns/live", json.dumps({"action": "start"}).encode())
            if status != 200:
                raise RuntimeError(f"the campaign did not start: {reply}")
            started, wall_start = time.monotonic(), time.time()
            samples: list[float] = []
            while time.monotonic() - started < seconds:
                time.sleep(min(10.0, max(0.1, seconds - (time.monotonic() - started))))
                _, st = call_api(api, "POST", "/api/v1/campaigns/live", json.dumps({"action": "status"}).encode())
                samples.append(float(st.get("pacer", {}).get("gain", 0.0)))
                print(f"  {time.monotonic() - started:5.0f} s: dialled {st['dialled']}, answered {st['answered']}, "
                      f"abandoned {st['abandoned']}, in flight {st['in_flight']}, gain {samples[-1]:.2f}", flush=True)
            call_api(api, "POST", "/api/v1/campaigns/live", json.dumps({"action": "stop"}).encode())
            wall_stop = time.time()
            time.sleep(args.talk + 30)  # the calls under way end (the callees hang up), CDRs are written
            live = _figures(work / "bench.db", args.live_agents, wall_start, wall_stop)
            live["gain_mean"] = statistics.fmean(samples) if samples else 0.0
        finally:
            target.stop()
            farm.kill()
            phones.kill()
    sc = Scenario(f"{args.live_agents} agents, live-run parameters", args.live_agents, SHARES["1"],
                  machine=SHARES["2"], busy=SHARES["3"], answer_median=ANSWER_MEDIAN_S, answer_sigma=ANSWER_SIGMA,
                  talk_mean=max(1.0, args.talk - 3.0), talk_sigma=0.05, wrap_mean=max(0.1, float(args.wrapup)),
                  wrap_sigma=0.05, hours=args.minutes / 60, wind_down=False)
    sim = run_scenario(sc, 30, args.seed, ["progressive", "predictive"], cold=True)
    return {"live": live, "simulation": sim, "minutes": args.minutes, "agents": args.live_agents,
            "talk_seconds": args.talk, "wrapup_seconds": args.wrapup}


def table(result: dict[str, Any]) -> str:
    live, sim = result["live"], result["simulation"]
    pred = sim["predictive"]
    hours = result["minutes"] / 60
    lines = [
        "| | attempts / agent-hour | live answers | abandoned | talk min / agent-hour |",
        "|---|---:|---:|---:|---:|",
        f"| live run (CDRs, lead_attempts) | {live['attempts_per_agent_hour']:.0f} | {live['live_answers']} | "
        f"{100 * live['abandon_rate']:.2f} % ({live['abandoned']}) | {live['talk_min_per_agent_hour']:.1f} |",
        f"| simulation, predictive (30 runs, same parameters) | "
        f"{pred['attempts'] / pred['shifts'] / (result['agents'] * hours):.0f} | — | "
        f"{100 * pred['abandon_mean']:.2f} % ± {100 * pred['abandon_ci95']:.2f} | {pred['talk_min_per_agent_hour']:.1f} |",
        f"| simulation, progressive | "
        f"{sim['progressive']['attempts'] / sim['progressive']['shifts'] / (result['agents'] * hours):.0f} | — | "
        f"0.00 % | {sim['progressive']['talk_min_per_agent_hour']:.1f} |",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if sipp_binary() is None:
        print("centralino bench dialer-live needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    print(f"## predictive campaign, {args.live_agents} agents, {args.minutes:g} minutes, talk {args.talk:g} s, "
          f"wrap-up {args.wrapup} s", flush=True)
    result = run(args)
    print()
    print(table(result))
    print(f"\noutcomes: {json.dumps(result['live']['outcomes'])}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"dialer-live-{stamp}.json").write_text(json.dumps(result, indent=2))
    (out / f"dialer-live-{stamp}.md").write_text(table(result) + "\n")
    return 0
