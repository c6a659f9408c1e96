"""The `centralino` command: run, check, status, reload, route, cdr, erlang, report, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from datetime import UTC
from typing import Any

from .config.loader import PlanInvalid, load_plan


def _plan_or_exit(path: str | None) -> Any:
    try:
        return load_plan(path).plan
    except PlanInvalid as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None


def _api_address(args: argparse.Namespace) -> str:
    if getattr(args, "api", None):
        return args.api
    return _plan_or_exit(args.config).server.api.listen


def cmd_run(args: argparse.Namespace) -> int:
    from .app import RunOptions, serve
    from .logsetup import setup_logging

    try:
        loaded = load_plan(args.config)
    except PlanInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    logcfg = loaded.plan.server.logging
    setup_logging(args.log_level or logcfg.level, args.log_format or logcfg.format, sip_trace=args.sip_trace)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve(loaded, RunOptions(plan_path=args.config, sip_trace=args.sip_trace,
                                        drain_seconds=args.drain)))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"centralino: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            loaded = load_plan(path)
        except PlanInvalid as exc:
            for err in exc.errors:
                print(err)
            status = 1
            continue
        plan = loaded.plan
        print(
            f"{path}: OK ({len(plan.extensions)} extensions, {len(plan.trunks)} trunks, "
            f"{len(plan.routes)} routes, {len(plan.queues)} queues)"
        )
    return status


def _ask_switch(args: argparse.Namespace, method: str, path: str) -> Any:
    """Call the running switch's control API; exit 1 with a clear message if none answers."""
    from .api.server import call_api

    address = _api_address(args)
    try:
        return call_api(address, method, path)[1]
    except OSError as exc:
        print(f"centralino {args.command}: no switch answering on {address}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_status(args: argparse.Namespace) -> int:
    data = _ask_switch(args, "GET", "/status")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"Centralino {data['version']} — plan {data['plan']} — up {data['uptime']:.0f}s")
    print(f"listening: {', '.join(data['listening'])}")
    regs = data["registrations"]
    print(f"\nregistrations ({len(regs)}):")
    if regs:
        print(f"  {'AOR':<10} {'contact':<44} {'expires':>7} {'source':<28} {'reach':<6} {'rtt':>7}  user agent")
        for r in regs:
            reach = {True: "yes", False: "NO", None: "-"}[r["reachable"]]
            rtt = f"{r['rtt_ms']}ms" if r["rtt_ms"] is not None else "-"
            print(f"  {r['aor']:<10} {r['contact'][:44]:<44} {r['expires_in']:>6}s {r['source']:<28} "
                  f"{reach:<6} {rtt:>7}  {r['user_agent'][:30]}")
    tx = data["transactions"]
    print(f"\ntransactions: {tx['total']}" + "".join(f"\n  {k}: {v}" for k, v in sorted(tx["by_state"].items())))
    print(f"connections: {data['connections']}")
    calls = data.get("calls", {})
    print(f"calls: {calls.get('active', 0)} active ({calls.get('answered', 0)} answered), "
          f"{calls.get('completed', 0)} completed")
    trunks = data.get("trunks", {})
    if trunks:
        print(f"\ntrunks ({len(trunks)}):")
        for name, t in trunks.items():
            reg = ("registered" if t["registered"] else f"NOT registered {t['last_error']}".strip()) if t["register"] else "no registration"
            up = {True: "up", False: "DOWN", None: "-"}[t["reachable"]]
            chans = f"{t['channels']}/{t['max_channels'] or '∞'}"
            print(f"  {name:<12} {t['host']:<28} {up:<5} {reg:<30} channels {chans}")
    sec = data["security"]
    print(f"\nbans ({len(sec['bans'])}):" + "".join(
        f"\n  {b['source']} for {b['remaining']}s more: {b['reason']}" for b in sec["bans"]))
    print(f"dropped: {sec['dropped_rate_limited']} rate-limited, {sec['dropped_banned']} from banned sources")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    """Show schedules, or force one open/closed (day/night switch) or back to its hours."""
    from .api.server import call_api

    address = _api_address(args)
    payload = json.dumps({"schedule": args.name, "mode": args.mode}).encode() if args.mode else b""
    try:
        status, data = call_api(address, "POST" if payload else "GET", "/schedules", payload)
    except OSError as exc:
        print(f"centralino schedule: no switch answering on {address}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"centralino schedule: {data.get('error')}", file=sys.stderr)
        return 1
    for name, st in data["schedules"].items():
        if args.name in (None, name):
            print(f"{name}: {'open' if st['open'] else 'closed'} (mode {st['mode']}: {st['why']})")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    data = _ask_switch(args, "POST", "/reload")
    if data.get("ok"):
        print(f"reloaded {data['plan']}")
        return 0
    print("reload refused; the running plan stays in force:", file=sys.stderr)
    for e in data.get("errors", []):
        print(f"  {e}", file=sys.stderr)
    return 1


def cmd_route(args: argparse.Namespace) -> int:
    """Dry run: which route a call would take, and why."""
    from datetime import datetime

    from .switch.router import CallContext, Router, normalise

    plan = _plan_or_exit(args.config)
    at = datetime.now(UTC)
    if args.at:
        at = datetime.fromisoformat(args.at)
    source = args.source or "extension"
    to = normalise(args.to, plan.trunks.get(source)) if source in plan.trunks else args.to
    decision = Router(plan).route(CallContext(to=to, caller=args.caller or "", source=source, at=at))
    print(f"call to {to!r} from {args.caller or '-'!r} (source {source}) at {at.isoformat()}")
    print(decision.describe())
    action = decision.action.model_dump(by_alias=True, exclude_none=True)
    print(f"action: {json.dumps(action)}")
    step = decision.action
    seen = 0
    while step is not None and step.ivr is not None and seen < 10:  # follow IVRs, one after another
        from .ivr.engine import dry_run

        seen += 1
        name = step.ivr
        step, trace = asyncio.run(dry_run(plan, name, at, args.digits, {"caller": args.caller or ""}))
        print(f"\nIVR {name} with keys {args.digits or '(none)'!r}:")
        for line in trace:
            print(f"  {line}")
        print("leaves with: " + (json.dumps(step.model_dump(by_alias=True, exclude_none=True)) if step else "hang up"))
    return 0


def cmd_cdr(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .storage.cdr import export, query
    from .storage.database import storage_path

    plan = _plan_or_exit(args.config)

    def ts(text: str | None) -> float | None:
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            return datetime.fromisoformat(text).timestamp()

    rows = query(storage_path(plan.server.storage), ts(args.since), ts(args.until), legs=args.legs)
    sys.stdout.write(export(rows, args.format))
    return 0


def cmd_erlang(args: argparse.Namespace) -> int:
    """Agents needed for a service-level target (Erlang C, workload = calls x handling time)."""
    from .acd.erlang import agents_needed, parse_target, staffing

    try:
        level, seconds = parse_target(args.target_sl)
        need = agents_needed(args.calls_per_hour, args.aht, level, seconds, args.max_occupancy)
    except ValueError as exc:
        print(f"centralino erlang: {exc}", file=sys.stderr)
        return 2
    print(f"workload: {args.calls_per_hour:g} calls/h x {args.aht:g} s = {need.erlangs:.2f} Erlangs")
    print(f"agents needed for {args.target_sl}: {need.agents}"
          + (f" on the phones; {math.ceil(round(need.agents / (1 - args.shrinkage), 6))} scheduled with "
             f"{100 * args.shrinkage:.0f}% shrinkage" if args.shrinkage else ""))
    print("| agents | P(wait) | service level | ASA s | occupancy |\n|---:|---:|---:|---:|---:|")
    for n in range(max(1, need.agents - 3), need.agents + 4):
        s = staffing(n, args.calls_per_hour, args.aht, seconds)
        mark = " ←" if n == need.agents else ""
        asa = f"{s.asa:.1f}" if s.asa != float("inf") else "∞"
        print(f"| {n}{mark} | {100 * s.wait_probability:.1f}% | {100 * s.service_level:.1f}% | {asa} "
              f"| {100 * s.occupancy:.1f}% |")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Queue and agent statistics from the queue log, as CSV (or a table)."""
    from datetime import datetime

    from .acd.stats import summarize, to_csv
    from .storage.database import storage_path
    from .storage.queue_log import load

    plan = _plan_or_exit(args.config)

    def ts(text: str | None) -> float | None:
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return datetime.fromisoformat(text).timestamp()

    events = load(args.db or storage_path(plan.server.storage), ts(args.since), ts(args.until))
    if args.queue:
        calls = {e.call_id for e in events if e.queue == args.queue}
        events = [e for e in events if e.call_id in calls or (e.event == "AGENT" and args.by != "queue")]
    thresholds = {n: q.service_level for n, q in plan.queues.items()}
    rows = summarize(events, args.by, interval=args.interval * 60, thresholds=thresholds)
    sys.stdout.write(to_csv(rows) if args.format == "csv" else json.dumps(rows, indent=2) + "\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="centralino", description="Self-hosted softswitch and contact centre")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the switch (the embedded default plan without --config)")
    r.add_argument("--config", "-c", help="the routing plan (YAML)")
    r.add_argument("--sip-trace", action="store_true", help="print every SIP message in and out")
    r.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    r.add_argument("--log-format", choices=["text", "json"])
    r.add_argument("--drain", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long calls may go on before they are hung up (default 30)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate plan files; every error with file, line and key path")
    c.add_argument("files", nargs="+")
    c.set_defaults(func=cmd_check)

    for name, func, text in (("status", cmd_status, "registrations, transactions and bans of a running switch"),
                             ("reload", cmd_reload, "re-read the plan of a running switch")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
        s.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
        if name == "status":
            s.add_argument("--json", action="store_true")
        s.set_defaults(func=func)

    sc = sub.add_parser("schedule", help="show opening-hours schedules, or force one open/closed (day/night)")
    sc.add_argument("name", nargs="?", help="the schedule (all when omitted)")
    sc.add_argument("mode", nargs="?", choices=["open", "closed", "auto"], help="auto: back to its hours")
    sc.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
    sc.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
    sc.set_defaults(func=cmd_schedule)

    rt = sub.add_parser("route", help="dry run: which route a call would take and why")
    rt.add_argument("to", help="the called number")
    rt.add_argument("--from", dest="caller", default="", help="the caller (extension or number)")
    rt.add_argument("--source", help="'extension' or a trunk name (default: extension)")
    rt.add_argument("--at", help="ISO time, e.g. 2026-12-25T10:00:00+01:00 (default: now)")
    rt.add_argument("--digits", default="", help="keys pressed in the IVR, one per menu/collect read; "
                    "'-' = no key before the timeout (e.g. 7-2)")
    rt.add_argument("--config", "-c")
    rt.set_defaults(func=cmd_route)

    cd = sub.add_parser("cdr", help="export call detail records")
    cd.add_argument("--since", help="ISO time or epoch seconds")
    cd.add_argument("--until", help="ISO time or epoch seconds")
    cd.add_argument("--format", choices=["csv", "json"], default="csv")
    cd.add_argument("--legs", action="store_true", help="one row per leg too, not only per call")
    cd.add_argument("--config", "-c")
    cd.set_defaults(func=cmd_cdr)

    er = sub.add_parser("erlang", help="Erlang C: agents needed for a service level")
    er.add_argument("--calls-per-hour", type=float, required=True)
    er.add_argument("--aht", type=float, required=True, help="average handling time (talk + wrap-up), seconds")
    er.add_argument("--target-sl", default="80/20", help="percent answered / within seconds (default 80/20)")
    er.add_argument("--max-occupancy", type=float, default=1.0, help="e.g. 0.85: at least this many idle")
    er.add_argument("--shrinkage", type=float, default=0.0, help="e.g. 0.3: breaks, training, absence")
    er.set_defaults(func=cmd_erlang)

    rp = sub.add_parser("report", help="queue/agent statistics from the queue log, as CSV")
    rp.add_argument("--by", choices=["queue", "agent", "interval", "did", "source", "disposition"], default="queue")
    rp.add_argument("--interval", type=int, default=60, help="minutes per row with --by interval")
    rp.add_argument("--queue", help="only this queue's calls")
    rp.add_argument("--since", help="ISO time or epoch seconds")
    rp.add_argument("--until", help="ISO time or epoch seconds")
    rp.add_argument("--format", choices=["csv", "json"], default="csv")
    rp.add_argument("--db", help="the SQLite file (default: the plan's storage)")
    rp.add_argument("--config", "-c")
    rp.set_defaults(func=cmd_report)

    b = sub.add_parser("bench", help="SIPp benchmarks (see bench/)")
    from .bench.runner import add_arguments

    add_arguments(b)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
