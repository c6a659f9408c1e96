"""`centralino bench`: SIPp against a Centralino it starts itself, stepping the rate until
failures pass 0.1 % or the p95 response time passes a bound; JSON + Markdown reports.

Scenarios: ``register`` (REGISTER with digest: 401, authenticated REGISTER, 200) and ``calls``
(calls per second through the B2BUA, no media: a SIPp "trunk" calls an extension answered by a
SIPp UAS; INVITE-200-ACK-BYE; the SDP is still anchored, so each call creates and frees two
RTP endpoints in a media worker). With ``--peer kamailio`` / ``--peer sippy`` the ``calls``
scenario also drives those, with the same SIPp settings, and the report gives the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from . import peers
from .plot import plot
from .sipp import SippResult, merge, run_sipp, sipp_binary, write_users_csv
from .stepping import Criteria, Step, best_rate, next_rate

RESULTS = Path("bench") / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default=None,
                   choices=["register", "calls", "calls-rtp", "relay", "mixer", "amd", "acd", "dialer", "dialer-live",
                            "events", "webhooks", "wallboard"],
                   help="default: calls when a --peer is named, else register")
    p.add_argument("--hold", type=float, default=3.0,
                   help="calls-rtp: seconds each call lasts with audio both ways (concurrent calls ≈ rate × hold)")
    p.add_argument("--agents", type=int, nargs="*", default=[], help="acd: agent counts (default: around Erlang C's)")
    p.add_argument("--calls-per-hour", type=float, default=1500.0, help="acd: arrival rate")
    p.add_argument("--aht", type=float, default=180.0, help="acd: average handling time, seconds")
    p.add_argument("--target-sl", default="80/20", help="acd: service level target, percent/seconds")
    p.add_argument("--calls", type=int, default=500000, help="acd: simulated calls per agent count")
    p.add_argument("--seed", type=int, default=1, help="acd: random seed")
    p.add_argument("--json", action="store_true", help="acd: also print the results as JSON")
    p.add_argument("--shifts", type=int, default=30, help="dialer: simulated shifts per scenario and pacer")
    p.add_argument("--hours", type=float, default=4.0, help="dialer: hours per shift")
    p.add_argument("--dialer-agents", dest="dialer_agents", type=int, nargs="*", default=[],
                   help="dialer: only the scenarios with these agent counts (5, 20, 100)")
    p.add_argument("--pacers", nargs="*", default=[],
                   help="dialer: pacers to compare (progressive, 'power 2.0', VICIdial-style, predictive)")
    p.add_argument("--live-agents", dest="live_agents", type=int, default=20,
                   help="dialer-live: agents (extensions on one SIPp phone)")
    p.add_argument("--minutes", type=float, default=4.0, help="dialer-live: how long the campaign runs")
    p.add_argument("--talk", type=float, default=30.0, help="dialer-live: seconds a person talks before hanging up")
    p.add_argument("--wrapup", type=int, default=5, help="dialer-live: the queue's wrap-up, seconds")
    p.add_argument("--streams", type=int, nargs="+", default=[100, 500, 1000],
                   help="relay: concurrent calls to relay through one media worker")
    p.add_argument("--record", action="store_true", help="relay: also record every call (dual-channel)")
    p.add_argument("--channels", type=int, nargs="+", default=[10, 100, 1000], help="mixer: channels per tick")
    p.add_argument("--samples", type=int, default=240, help="amd: corpus size (half human, half machine)")
    p.add_argument("--subscribers", type=int, default=50, help="events: WebSocket clients following the stream")
    p.add_argument("--rate", type=float, default=20.0, help="events, webhooks: SIPp calls per second into the queue")
    p.add_argument("--event-calls", dest="event_calls", type=int, default=400, help="events: SIPp calls in all; webhooks: per phase")
    p.add_argument("--queue-agents", dest="queue_agents", type=int, default=1000,
                   help="events: agents in the queue (logged out: the /metrics scrape carries them all)")
    p.add_argument("--start", type=float, default=500.0, help="first rate (per second)")
    p.add_argument("--factor", type=float, default=1.5, help="rate growth between steps")
    p.add_argument("--max-rate", type=float, default=20000.0)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    p.add_argument("--max-p95-ms", type=float, default=200.0)
    p.add_argument("--max-failure", type=float, default=0.001, help="failure ratio that ends the run")
    p.add_argument("--users", type=int, default=1000, help="distinct extensions registering")
    p.add_argument("--transport", default="u1", help="SIPp -t (u1, un, t1, tn)")
    p.add_argument("--pairs", type=int, default=1,
                   help="SIPp callers (and answerers) run side by side, each with rate/pairs: "
                        "for rates where one SIPp would be the bottleneck")
    p.add_argument("--out", default=str(RESULTS), help="where the JSON and Markdown reports go")
    p.add_argument("--peer", action="append", choices=["kamailio", "sippy", "rtpengine"], default=[],
                   help="calls: also measure this peer in the same run (repeatable); relay: rtpengine")
    p.add_argument("--split", type=int, default=0, metavar="N",
                   help="calls: also measure N Centralino processes side by side (the multicore prototype of "
                        "docs/multicore.md): each its own SIP port and media worker, one shared database, the "
                        "SIPp pairs divided among them")
    p.add_argument("--tuned", action="store_true",
                   help="run the switch tuned for the bench (rate limits off, warning logging, no qualify) "
                        "instead of its defaults; reported as tuned")


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants (media workers, Kamailio's children)."""
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except (OSError, ValueError):
                pass
    return out


def _udp_rcvbuf_errors() -> int:
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return 0


def _free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def caller_ip(pair: int) -> str:
    """The loopback address SIPp caller number ``pair`` sends from (the bench trunk's sources)."""
    return f"127.0.0.{10 + pair}"


def bench_plan(workdir: Path, sip_port: int, api_port: int, users: list[tuple[str, str]], pairs: int = 1,
               *, tuned: bool = False, storage: Path | None = None) -> Path:
    """The switch as a user runs it: security on (rate limits, bans), info logging, qualify on.
    ``tuned`` (``--tuned``, reported as such) turns those off to show the engine's own ceiling."""
    exts = "".join(f'  "{u}": {{password: "{p}"}}\n' for u, p in users)
    sources = ", ".join(f'"{caller_ip(i)}/32"' for i in range(pairs))
    calls = (
        f"trunks:\n  bench: {{host: 127.0.0.1, port: 9, allow_from: [{sources}], qualify: 0}}\n"
        f'routes:\n  - {{match: {{to: "^answer$"}}, action: {{dial: "{users[0][0]}"}}}}\n'
        '  - {match: {to: "^5\\\\d{6}$"}, action: {dial: "${to}"}}\n'
    )
    plan = workdir / "bench-plan.yaml"
    plan.write_text(
        "server:\n"
        f'  sip: {{listen: ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"], domain: bench.local}}\n'
        f'  api: {{listen: "127.0.0.1:{api_port}"}}\n'
        f'  storage: "sqlite:{storage or workdir / "bench.db"}"\n'
        + ("  registrar: {qualify_interval: 0}\n  security: {rate_limit: 0, trusted_rate_limit: 0}\n"
           "  logging: {level: warning}\n" if tuned else "")
        + '  rtp: {ports: "40000-59999"}\n'
        "extensions:\n" + exts + calls
    )
    return plan


def main(args: argparse.Namespace) -> int:
    if args.scenario is None:  # `centralino bench --peer kamailio` compares call rates
        args.scenario = "calls" if args.peer else "register"
    if args.scenario == "acd":
        from .acd_sim import main as acd_main

        return acd_main(args)
    if args.scenario == "dialer":
        from .dialer_sim import main as dialer_main

        args.agents = args.dialer_agents
        return dialer_main(args)
    if args.scenario == "dialer-live":
        from .dialer_live import main as live_main

        return live_main(args)
    if args.scenario == "events":
        from .events import main as events_main

        args.calls, args.agents = args.event_calls, args.queue_agents
        return events_main(args)
    if args.scenario == "webhooks":
        from .webhooks import main as webhooks_main

        args.calls = args.event_calls
        return webhooks_main(args)
    if args.scenario == "wallboard":
        from .wallboard import main as wallboard_main

        args.calls = args.event_calls
        return wallboard_main(args)
    if args.scenario in ("mixer", "amd"):
        from .media import main as media_main

        return media_main(args)
    if args.scenario == "relay":
        from .relay import main as relay_main

        return relay_main(["--streams", *map(str, args.streams), "--duration", str(args.duration),
                           *(["--record"] if getattr(args, "record", False) else []),
                           *(f"--peer={peer}" for peer in args.peer)])
    if sipp_binary() is None:
        print("centralino bench needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    if "rtpengine" in args.peer or (args.peer and args.scenario not in ("calls", "calls-rtp")):
        print("peers are compared on the calls scenario (centralino bench calls --peer kamailio) and the "
              "relay scenario (centralino bench relay --peer rtpengine)", file=sys.stderr)
        return 2
    for peer in args.peer:
        if (why := peers.missing(peer)) is not None:
            print(f"centralino bench: {why}", file=sys.stderr)
            return 2
    criteria = Criteria(args.max_failure, args.max_p95_ms)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.split and (args.split < 2 or args.scenario != "calls" or args.pairs < args.split):
        print("--split N needs N >= 2, the calls scenario and at least N --pairs", file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    split = [f"centralino-x{args.split}"] if args.split else []
    for target_name in ["centralino", *split, *args.peer]:
        print(f"\n## {target_name}", flush=True)
        with tempfile.TemporaryDirectory(prefix="centralino-bench-") as tmp:
            results[target_name] = _measure(target_name, Path(tmp), args, criteria)
    report = {
        "scenario": args.scenario,
        "command": "centralino bench " + " ".join(sys.argv[2:]),
        "settings": "tuned (rate limits off, warning logging, no qualify)" if args.tuned else "defaults",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "criteria": asdict(criteria),
        "targets": results,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"{args.scenario}-{stamp}.json").write_text(json.dumps(report, indent=2))
    md = _markdown(report)
    (out_dir / f"{args.scenario}-{stamp}.md").write_text(md)
    png = out_dir / f"{args.scenario}-{stamp}.png"
    if plot(report, png):
        print(f"plot: {png}")
    else:
        print("no plot: pip install matplotlib (the bench extra)", file=sys.stderr)
    print()
    print(md)
    return 0 if results["centralino"]["best"] else 1


def _measure(name: str, work: Path, args: argparse.Namespace, criteria: Criteria) -> dict:
    """Start one target, step the rate against it, stop it."""
    pairs = max(1, args.pairs)
    # numeric names: a trunk's called number is reduced to its digits before routing
    users = [(f"{5_000_000 + i}", f"pw{i}") for i in range(max(args.users, pairs))]
    infs = [write_users_csv(work / f"users{i}.csv", users[i::pairs], "bench.local") for i in range(pairs)]
    api_port = 0
    if name == "centralino" or name.startswith("centralino-x"):
        # the prototype: N processes, pair i served by process i % N, one database (docs/multicore.md)
        processes = int(name.partition("-x")[2] or 1)
        rtp = args.scenario == "calls-rtp"
        targets = []
        for k in range(processes):
            sub = work / f"process{k}" if processes > 1 else work
            sub.mkdir(exist_ok=True)
            sip_port, api_k = _free_port(2), _free_port(1)
            plan = bench_plan(sub, sip_port, api_k, users, pairs, tuned=args.tuned,
                              storage=work / "bench.db" if processes > 1 else None)
            answerers = [] if args.scenario == "register" else [
                (users[i][0], lambda i=i, sub=sub, port=sip_port: _answering_uas(sub, port, users[i], echo=rtp))
                for i in range(pairs) if i % processes == k]
            targets.append(peers.start_centralino(sub, plan, api_k, sip_port, answerers))
            api_port = api_port or api_k
    elif name == "kamailio":
        targets = [peers.start_kamailio(work, pairs)]
    else:
        targets = [peers.start_sippy(work, pairs)]
    history: list[Step] = []
    rows = []
    try:
        while (rate := next_rate(history, criteria, start=args.start, factor=args.factor,
                                 max_rate=args.max_rate)) is not None:
            cpu0, err0, t0 = _cpu_of(targets), _udp_rcvbuf_errors(), time.monotonic()
            media0 = _media_totals(api_port) if name == "centralino" else None
            res = _run_pairs(args, targets, work, rate, infs)
            wall = time.monotonic() - t0
            cpu = (_cpu_of(targets) - cpu0) / wall if wall > 0 else 0.0
            achieved = res.achieved_rate
            if args.scenario == "calls-rtp" and res.elapsed > args.hold:
                achieved = res.successful / (res.elapsed - args.hold)  # the last calls' hold is not offering time
            step = Step(rate, res.failure_ratio, res.percentile(95), achieved)
            history.append(step)
            row = {
                "rate": rate, "achieved": round(achieved, 1), "successful": res.successful,
                "failed": res.failed, "failure_ratio": round(res.failure_ratio, 5),
                "p50_ms": _ms(res.percentile(50)), "p95_ms": _ms(res.percentile(95)),
                "retransmissions": res.retransmissions, "switch_cpu": round(cpu, 2),
                "udp_rcvbuf_errors": _udp_rcvbuf_errors() - err0,
                "passed": step.passes(criteria),
            }
            if media0 is not None and args.scenario == "calls-rtp":
                row["media"] = _media_delta(media0, _media_totals(api_port))
            rows.append(row)
            print(_row_md(row), flush=True)
            if any(t.proc.poll() is not None for t in targets):
                print(f"{name} exited during the run", file=sys.stderr)
                break
            row["settle_s"] = _settle(targets)
            print(f"  (idle again after {row['settle_s']:g} s)", file=sys.stderr, flush=True)
    finally:
        for t in targets:
            t.stop()
    best = best_rate(history, criteria)
    return {"steps": rows, "best": asdict(best) if best else None}


SETTLE_CPU = 0.10  # a target is idle again below 10 % of a core
SETTLE_MAX = 45.0  # seconds: past the longest SIP timer (32 s) of a step's last calls


def _settle(targets: list[peers.Target]) -> float:
    """Wait until the targets are idle again before the next step, so each step starts from the
    same state: after an overloaded step, retransmissions and half-set-up calls keep a target busy
    for up to 32 s, and a step begun meanwhile would measure that step's load plus the last one's
    (the same wait for every target). Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < SETTLE_MAX:
        cpu0, t0 = _cpu_of(targets), time.monotonic()
        time.sleep(1.0)
        if (_cpu_of(targets) - cpu0) / (time.monotonic() - t0) < SETTLE_CPU:
            break
    return round(time.monotonic() - start, 1)


def _cpu_of(targets: list[peers.Target]) -> float:
    return sum(_cpu_seconds(t.proc.pid) for t in targets)


def _run_pairs(args: argparse.Namespace, targets: list[peers.Target], work: Path, rate: float,
               infs: list[Path]) -> SippResult:
    """One step: ``--pairs`` SIPp callers at once, each with its share of the rate and calls,
    from its own address, calling its own answerer (pair i at target i % N); one merged result."""
    from concurrent.futures import ThreadPoolExecutor

    pairs = len(infs)
    share, count = rate / pairs, int(rate * args.duration / pairs)

    def one(i: int) -> SippResult:
        target = targets[i % len(targets)]
        dest = f"127.0.0.1:{target.sip_port}"
        mine = i // len(targets)  # this pair's place among its target's pairs
        service = target.services[mine % len(target.services)]
        if args.scenario == "calls-rtp":
            hold = int(args.hold * 1000)
            return run_sipp(_rtp_scenario(work, args.hold), dest, rate=share, count=count, transport=args.transport,
                            local_ip=caller_ip(i), timeout=args.duration + args.hold + 40,
                            extra=["-s", service, "-d", str(hold), "-l", str(int(share * (args.hold + 4)) + 10),
                                   "-mp", str(_free_port(2))])
        if args.scenario == "calls":
            return run_sipp("uac_cps.xml", dest, rate=share, count=count, transport=args.transport,
                            local_ip=caller_ip(i),
                            extra=["-s", service, "-l", str(int(share * 4) + 10), "-mp", str(_free_port(2))])
        return run_sipp("register_digest.xml", dest, rate=share, count=count, inf=infs[i], transport=args.transport,
                        local_ip=caller_ip(i), auth_uri="bench.local")

    if pairs == 1:
        return one(0)
    with ThreadPoolExecutor(pairs) as pool:
        return merge(list(pool.map(one, range(pairs))))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _rtp_scenario(work: Path, hold: float) -> Path:
    """The calls-rtp caller; calls longer than SIPp's 8 s sample get a generated stream."""
    from .pcap import write_g711a_pcap
    from .sipp import SCENARIOS

    text = (SCENARIOS / "uac_cps_rtp.xml").read_text()
    if hold > 7:
        pcap = work / "g711a-long.pcap"
        if not pcap.exists():
            write_g711a_pcap(pcap, hold + 1)
        text = text.replace("/usr/share/sip-tester/g711a.pcap", str(pcap))
    path = work / "uac_cps_rtp.xml"
    path.write_text(text)
    return path


def _media_totals(api_port: int) -> dict[str, int]:
    """The media workers' packet counters, summed (rx, tx, lost by sequence gaps)."""
    from ..api.server import call_api

    try:
        workers = call_api(f"127.0.0.1:{api_port}", "GET", "/api/v1/media", timeout=5)[1]["workers"]
    except (OSError, KeyError, TypeError):
        return {}
    return {k: sum(int(w.get(k) or 0) for w in workers) for k in ("rx", "tx", "lost")}


def _media_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Packets the switch relayed during a step and the share lost on the way in."""
    rx, lost = after.get("rx", 0) - before.get("rx", 0), after.get("lost", 0) - before.get("lost", 0)
    return {"rx": rx, "tx": after.get("tx", 0) - before.get("tx", 0), "lost": lost,
            "loss_ratio": round(lost / (rx + lost), 6) if rx + lost else 0.0}


def _answering_uas(work: Path, sip_port: int, user: tuple[str, str], *, echo: bool = False) -> subprocess.Popen:
    """A SIPp UAS answering every call, registered as the bench extension ``user``: with
    ``echo`` (calls-rtp) it rings, answers and echoes the RTP; else it answers at once, as the
    peers' answerers do."""
    from .sipp import register_contact, start_sipp

    port = _free_port(2)
    uas = start_sipp("uas_echo.xml" if echo else peers.ANSWERER, local_ip="127.0.0.1", port=port, media_port=_free_port(2),
                     count=10_000_000, log_dir=work, extra=["-rtp_echo"] if echo else None)
    register_contact(("127.0.0.1", sip_port), user[0], user[1], ("127.0.0.1", port), "bench.local")
    return uas


HEADER = ("| offered/s | achieved/s | failed | p50 ms | p95 ms | retrans | CPU (all processes) | UDP rcvbuf errors | pass |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|:--:|")


MEDIA_COLUMNS = (" RTP packets relayed | RTP loss |", "---:|---:|")


def _row_md(r: dict) -> str:
    line = (f"| {r['rate']:.0f} | {r['achieved']:.0f} | {r['failed']} ({r['failure_ratio'] * 100:.2f}%) | "
            f"{r['p50_ms']} | {r['p95_ms']} | {r['retransmissions']} | {r['switch_cpu'] * 100:.0f}% | "
            f"{r['udp_rcvbuf_errors']} | {'yes' if r['passed'] else 'no'} |")
    if "media" in r:
        line += f" {r['media']['rx']} | {r['media']['loss_ratio'] * 100:.3f}% |"
    return line


def _header(rows: list[dict]) -> str:
    if not any("media" in r for r in rows):
        return HEADER
    top, rule = HEADER.split("\n")
    return top + MEDIA_COLUMNS[0] + "\n" + rule + MEDIA_COLUMNS[1]


def _markdown(report: dict) -> str:
    lines = [f"### {report['scenario']}: `{report['command']}` ({report['when']}, "
             f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']})", "",
             f"Centralino's settings: {report.get('settings', 'defaults')}.", ""]
    crit = report["criteria"]
    summary = []
    for name, result in report["targets"].items():
        lines += [f"**{name}**", "", _header(result["steps"]), *(_row_md(r) for r in result["steps"]), ""]
        best = result["best"]
        summary.append((name, best["achieved_rate"] if best else 0.0))
    lines.append(f"Highest rate with < {crit['max_failure_ratio'] * 100:g}% failures and p95 ≤ {crit['max_p95_ms']:g} ms:")
    lines.append("")
    reference = dict(summary).get("kamailio")
    lines += ["| target | per second | vs Kamailio |", "|---|---:|---:|"]
    for name, rate in summary:
        ratio = f"{rate / reference:.2f}x" if reference else "-"
        lines.append(f"| {name} | {rate:.0f} | {ratio} |")
    one = dict(summary).get("centralino")
    for name, rate in summary:
        if name.startswith("centralino-x") and one:
            lines += ["", f"{name} (the multicore prototype: {name.partition('-x')[2]} processes, one database) "
                          f"vs one process: {rate / one:.2f}x"]
    return "\n".join(lines) + "\n"
