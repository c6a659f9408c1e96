"""`centralino bench`: SIPp against a Centralino it starts itself, stepping the rate until
failures pass 0.1 % or the p95 response time passes a bound; JSON + Markdown reports.

Scenarios: ``register`` (REGISTER with digest: 401, authenticated REGISTER, 200) and ``calls``
(calls per second through the B2BUA, no media: a SIPp "trunk" calls an extension answered by a
SIPp UAS; INVITE-200-ACK-BYE; the SDP is still anchored, so each call creates and frees two
RTP endpoints in a media worker). Peers (Kamailio, sippy) in the same run come with the
performance milestone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from .sipp import run_sipp, sipp_binary, write_users_csv
from .stepping import Criteria, Step, best_rate, next_rate

RESULTS = Path("bench") / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", default="register", choices=["register", "calls", "relay"])
    p.add_argument("--streams", type=int, nargs="+", default=[100, 500, 1000],
                   help="relay: concurrent calls to relay through one media worker")
    p.add_argument("--start", type=float, default=500.0, help="first rate (per second)")
    p.add_argument("--factor", type=float, default=1.5, help="rate growth between steps")
    p.add_argument("--max-rate", type=float, default=20000.0)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    p.add_argument("--max-p95-ms", type=float, default=200.0)
    p.add_argument("--max-failure", type=float, default=0.001, help="failure ratio that ends the run")
    p.add_argument("--users", type=int, default=1000, help="distinct extensions registering")
    p.add_argument("--transport", default="u1", help="SIPp -t (u1, un, t1, tn)")
    p.add_argument("--out", default=str(RESULTS), help="where the JSON and Markdown reports go")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


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


def bench_plan(workdir: Path, sip_port: int, api_port: int, users: list[tuple[str, str]]) -> Path:
    exts = "".join(f'  "{u}": {{password: "{p}"}}\n' for u, p in users)
    calls = (
        'trunks:\n  bench: {host: 127.0.0.1, port: 9, allow_from: ["127.0.0.10/32"], qualify: 0}\n'
        'routes:\n  - {match: {to: "^answer$"}, action: {dial: "b00000"}}\n'
    )
    plan = workdir / "bench-plan.yaml"
    plan.write_text(
        "server:\n"
        f'  sip: {{listen: ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"], domain: bench.local}}\n'
        f'  api: {{listen: "127.0.0.1:{api_port}"}}\n'
        f'  storage: "sqlite:{workdir / "bench.db"}"\n'
        "  registrar: {qualify_interval: 0}\n"
        "  security: {rate_limit: 0}\n"
        "  logging: {level: warning}\n"
        '  rtp: {ports: "40000-59999"}\n'
        "extensions:\n" + exts + calls
    )
    return plan


def main(args: argparse.Namespace) -> int:
    if args.scenario == "relay":
        from .relay import main as relay_main

        return relay_main(["--streams", *map(str, args.streams), "--duration", str(args.duration)])
    if sipp_binary() is None:
        print("centralino bench needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    criteria = Criteria(args.max_failure, args.max_p95_ms)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="centralino-bench-") as tmp:
        work = Path(tmp)
        users = [(f"b{i:05d}", f"pw{i}") for i in range(args.users)]
        sip_port, api_port = _free_port(2), _free_port(1)
        plan = bench_plan(work, sip_port, api_port, users)
        inf = write_users_csv(work / "users.csv", users, "bench.local")
        log = (work / "switch.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan)],
                                stdout=log, stderr=subprocess.STDOUT)
        uas = None
        try:
            _wait_ready(api_port, proc)
            if args.scenario == "calls":
                uas = _answering_uas(work, sip_port, users[0])
            history: list[Step] = []
            rows = []
            while (rate := next_rate(history, criteria, start=args.start, factor=args.factor,
                                     max_rate=args.max_rate)) is not None:
                cpu0, err0, t0 = _cpu_seconds(proc.pid), _udp_rcvbuf_errors(), time.monotonic()
                if args.scenario == "calls":
                    res = run_sipp("uac_cps.xml", f"127.0.0.1:{sip_port}", rate=rate, count=int(rate * args.duration),
                                   transport=args.transport, local_ip="127.0.0.10",
                                   extra=["-s", "answer", "-l", str(int(rate * 4) + 10), "-mp", "23000"])
                else:
                    res = run_sipp("register_digest.xml", f"127.0.0.1:{sip_port}", rate=rate,
                                   count=int(rate * args.duration), inf=inf, transport=args.transport)
                wall = time.monotonic() - t0
                cpu = (_cpu_seconds(proc.pid) - cpu0) / wall if wall > 0 else 0.0
                step = Step(rate, res.failure_ratio, res.percentile(95), res.achieved_rate)
                history.append(step)
                row = {
                    "rate": rate, "achieved": round(res.achieved_rate, 1), "successful": res.successful,
                    "failed": res.failed, "failure_ratio": round(res.failure_ratio, 5),
                    "p50_ms": res.percentile(50), "p95_ms": res.percentile(95),
                    "retransmissions": res.retransmissions, "switch_cpu": round(cpu, 2),
                    "udp_rcvbuf_errors": _udp_rcvbuf_errors() - err0,
                    "passed": step.passes(criteria),
                }
                rows.append(row)
                print(_row_md(row), flush=True)
                if proc.poll() is not None:
                    print("the switch exited during the run", file=sys.stderr)
                    break
        finally:
            if uas is not None:
                uas.kill()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    best = best_rate(history, criteria)
    report = {
        "scenario": args.scenario,
        "command": "centralino bench " + " ".join(sys.argv[2:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "criteria": asdict(criteria),
        "steps": rows,
        "best": asdict(best) if best else None,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out_dir / f"{args.scenario}-{stamp}.json").write_text(json.dumps(report, indent=2))
    md = _markdown(report)
    (out_dir / f"{args.scenario}-{stamp}.md").write_text(md)
    print()
    print(md)
    return 0 if best else 1


def _answering_uas(work: Path, sip_port: int, user: tuple[str, str]) -> subprocess.Popen:
    """A SIPp UAS answering every call, registered as the first bench extension."""
    import socket

    from ..switch.sip.auth import DigestClient
    from ..switch.sip.message import Request
    from ..switch.sip.parser import parse_datagram
    from ..switch.sip.uri import parse_uri
    from .sipp import start_sipp

    port = _free_port(2)
    uas = start_sipp("uas_echo.xml", local_ip="127.0.0.1", port=port, media_port=_free_port(2),
                     count=10_000_000, log_dir=work)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    name, password = user
    auth = None
    for cseq in (1, 2):
        headers = [("Via", f"SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch=z9hG4bKbench{cseq};rport"),
                   ("Max-Forwards", "70"), ("From", f"<sip:{name}@bench.local>;tag=b"), ("To", f"<sip:{name}@bench.local>"),
                   ("Call-ID", "bench-register"), ("CSeq", f"{cseq} REGISTER"),
                   ("Contact", f"<sip:{name}@127.0.0.1:{port}>"), ("Expires", "3600")]
        if auth:
            headers.append(("Authorization", auth))
        sock.sendto(Request("REGISTER", parse_uri("sip:bench.local"), headers).serialize(), ("127.0.0.1", sip_port))
        resp = parse_datagram(sock.recvfrom(65535)[0])
        if resp.status == 401:
            challenge = DigestClient.pick(resp.header_values("WWW-Authenticate"))
            auth = DigestClient(name, password).authorize(challenge, "REGISTER", "sip:bench.local")
    sock.close()
    return uas


def _wait_ready(api_port: int, proc: subprocess.Popen) -> None:
    from ..api.server import call_api

    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the switch did not start")
        try:
            if call_api(f"127.0.0.1:{api_port}", "GET", "/status", timeout=1)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the switch did not answer")


HEADER = ("| offered/s | achieved/s | failed | p50 ms | p95 ms | retrans | switch CPU | UDP rcvbuf errors | pass |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|:--:|")


def _row_md(r: dict) -> str:
    return (f"| {r['rate']:.0f} | {r['achieved']:.0f} | {r['failed']} ({r['failure_ratio'] * 100:.2f}%) | "
            f"{r['p50_ms']} | {r['p95_ms']} | {r['retransmissions']} | {r['switch_cpu'] * 100:.0f}% | "
            f"{r['udp_rcvbuf_errors']} | {'yes' if r['passed'] else 'no'} |")


def _markdown(report: dict) -> str:
    lines = [f"### {report['scenario']}: `{report['command']}` ({report['when']}, "
             f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']})", "", HEADER]
    lines += [_row_md(r) for r in report["steps"]]
    best = report["best"]
    lines.append("")
    if best:
        lines.append(f"Highest rate with < {report['criteria']['max_failure_ratio'] * 100:g}% failures and "
                     f"p95 ≤ {report['criteria']['max_p95_ms']:g} ms: **{best['achieved_rate']:.0f}/s** "
                     f"(offered {best['rate']:.0f}/s).")
    else:
        lines.append("No step passed.")
    return "\n".join(lines) + "\n"
