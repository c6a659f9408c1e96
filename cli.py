"""The `centralino` command: run, check, status, reload, route, cdr, erlang, report, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config.loader import PlanInvalid, load_plan


class _Parser(argparse.ArgumentParser):
    """A bad argument is one line on stderr and exit status 2 (argparse also prints the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def local_zone() -> tzinfo:
    """The machine's time zone as an IANA zone when it can be named (DST-correct), else the
    current fixed offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            target = os.path.realpath("/etc/localtime")
            if "zoneinfo/" in target:
                name = target.split("zoneinfo/", 1)[1]
        except OSError:
            name = ""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def parse_when(text: str, zone: tzinfo | None = None) -> datetime:
    """An ISO 8601 date/time ('2026-12-05 12:30', '2026-12-05T12:30+01:00', '2026-12-05') or
    epoch seconds; a time without a zone is read in ``zone`` (default: the local zone)."""
    value = text.strip()
    try:
        return datetime.fromtimestamp(float(value), zone or local_zone())
    except (ValueError, OverflowError, OSError):
        pass
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use ISO 8601 like '2026-12-05 12:30' or '2026-12-05T12:30+01:00', "
            "or epoch seconds)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone or local_zone())


def _without_zone(text: str) -> bool:
    """An ISO time written without an offset (epoch seconds are absolute)."""
    try:
        float(text)
        return False
    except ValueError:
        return datetime.fromisoformat(text.strip()).tzinfo is None


def _when_arg(text: str) -> datetime:
    return parse_when(text)


def _when_text(text: str) -> str:
    """--at keeps the text (its zone is decided with the plan), checked here for a clear error."""
    parse_when(text)
    return text


def _loaded_or_exit(path: str | None) -> Any:
    try:
        return load_plan(path)
    except PlanInvalid as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(1) from None


def _plan_or_exit(path: str | None) -> Any:
    return _loaded_or_exit(path).plan


def _api_address(args: argparse.Namespace) -> str:
    if getattr(args, "api", None):
        return args.api
    return _plan_or_exit(args.config).server.api.listen


def cmd_run(args: argparse.Namespace) -> int:
    from .app import RunOptions, serve
    from .logsetup import setup_logging, stop_logging

    try:
        loaded = load_plan(args.config)
    except PlanInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    os.umask(0o077)  # recordings, voicemail and the database are for the switch's user only
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
        stop_logging()
        print(f"centralino: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_logging()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate plans (the embedded default without a file): every error with file:line and key
    path; trunk hosts must resolve; warnings (e.g. routes strangers can take to a trunk) go
    after the OK line."""
    from .config.schema import resolution_errors, warnings_for

    status = 0
    for path in args.files or [None]:
        try:
            loaded = load_plan(path)
        except PlanInvalid as exc:
            for err in exc.errors:
                print(err)
            status = 1
            continue
        plan = loaded.plan
        unresolved = loaded.errors_for(resolution_errors(plan))
        if unresolved:
            for err in unresolved:
                print(err)
            status = 1
            continue
        print(
            f"{loaded.source}: OK ({_plural(len(plan.extensions), 'extension')}, "
            f"{_plural(len(plan.trunks), 'trunk')}, {_plural(len(plan.routes), 'route')}, "
            f"{_plural(len(plan.queues), 'queue')}"
            + (f", {_plural(len(plan.campaigns), 'campaign')})" if plan.campaigns else ")")
        )
        for warning in loaded.errors_for(warnings_for(plan)):
            print(f"{warning} (warning)")
    return status


def _data_dir(args: argparse.Namespace) -> Path | None:
    """The running switch's data directory (its API credential is there), from the plan."""
    from .storage.database import storage_path

    if getattr(args, "api", None) and not getattr(args, "config", None):
        return None
    path = storage_path(_plan_or_exit(args.config).server.storage)
    return None if path == ":memory:" else Path(path).resolve().parent


def _request_switch(args: argparse.Namespace, method: str, path: str, payload: bytes = b"",
                    timeout: float = 10.0) -> tuple[int, Any]:
    """Call the running switch's control API with its local credential; exit 1 with a clear
    message if none answers or it refuses us."""
    from .api.server import call_api

    address = _api_address(args)
    try:
        status, data = call_api(address, method, path, payload, timeout, data_dir=_data_dir(args))
    except OSError as exc:
        print(f"centralino {args.command}: no switch answering on {address}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if status == 401:
        print(f"centralino {args.command}: the switch on {address} refused our credential (run as the "
              "switch's user, or set CENTRALINO_API_TOKEN)", file=sys.stderr)
        raise SystemExit(1)
    return status, data


def _ask_switch(args: argparse.Namespace, method: str, path: str) -> Any:
    return _request_switch(args, method, path)[1]


def cmd_status(args: argparse.Namespace) -> int:
    data = _ask_switch(args, "GET", "/api/v1/status")
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
            reg = ("registered" if t["registered"] else "NOT registered") if t["register"] else "no registration"
            up = {True: "up", False: "DOWN", None: "-"}[t["reachable"]]
            chans = f"{t['channels']}/{t['max_channels'] or '∞'}"
            error = f"  last error: {t['last_error']}" if t.get("last_error") else ""
            print(f"  {name:<12} {t['host']:<28} {up:<5} {reg:<16} channels {chans}{error}")
    sec = data["security"]
    print(f"\nbans ({len(sec['bans'])}):" + "".join(
        f"\n  {b['source']} for {b['remaining']}s more: {b['reason']}" for b in sec["bans"]))
    print(f"dropped: {sec['dropped_rate_limited']} rate-limited, {sec['dropped_banned']} from banned sources")
    return 0


def cmd_passwords(args: argparse.Namespace) -> int:
    """The extensions' SIP passwords: from the plan, or generated by the switch (kept in its
    database, readable by the switch's user only)."""
    from .storage.database import read_rows, storage_path

    plan = _plan_or_exit(args.config)
    path = storage_path(plan.server.storage)
    try:
        rows = read_rows(path, "SELECT key, value FROM meta WHERE key LIKE 'password:%'") if Path(path).exists() else []
    except sqlite3.Error as exc:
        print(f"centralino passwords: cannot read {path}: {exc} (run as the switch's user)", file=sys.stderr)
        return 1
    stored = {r["key"].split(":", 1)[1]: r["value"] for r in rows}
    for name, ext in plan.extensions.items():
        label = f" ({ext.name})" if ext.name else ""
        if ext.password is not None:
            where, value = "in the plan", ext.password
        elif name in stored:
            where, value = "generated", stored[name]
        else:
            where, value = "generated at the next start", None
        shown = value if args.show and value is not None else ("********" if value is not None else "-")
        print(f"extension {name}{label}: {shown} ({where})")
    return 0


def cmd_security(args: argparse.Namespace) -> int:
    """Bans and locked-out users of a running switch; unban an address or unlock a user."""
    status, data = _request_switch(args, "GET", "/api/v1/security")
    for key, field, value in (("unban", "address", args.unban), ("unlock", "user", args.unlock)):
        if value and status == 200:
            status, data = _request_switch(args, "POST", f"/api/v1/security/{key}", json.dumps({field: value}).encode())
    if status != 200:
        print(f"centralino security: {data.get('error')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"bans ({len(data['bans'])}):" + "".join(
        f"\n  {b['source']} for {b['remaining']:.0f}s more: {b['reason']}" for b in data["bans"]))
    print(f"locked users ({len(data['locked_users'])}):" + "".join(
        f"\n  {u['user']} for {u['remaining']:.0f}s more: {u['reason']}" for u in data["locked_users"]))
    print(f"dropped: {data['dropped_rate_limited']} rate-limited, {data['dropped_banned']} from banned sources, "
          f"{data['dropped_user_agent']} scanner User-Agents; {data['refused_locked']} attempts on locked users")
    return 0


def _campaign_or_exit(plan: Any, name: str) -> Any:
    if name not in plan.campaigns:
        known = ", ".join(plan.campaigns) or "none in this plan"
        print(f"centralino campaign: no campaign {name!r} (known: {known})", file=sys.stderr)
        raise SystemExit(2)
    return plan.campaigns[name]


def _db_for(plan: Any) -> str:
    from .storage.database import storage_path

    return storage_path(plan.server.storage)


def _sync_migrated(path: str) -> sqlite3.Connection:
    """The plan's database, created and migrated if the switch never ran (an import before the
    first start)."""
    from .private_files import private_file
    from .storage.migrations import MIGRATIONS

    private_file(Path(path))
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
    for version, sql in MIGRATIONS:
        if version > current:
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.commit()
    return conn


def cmd_campaign(args: argparse.Namespace) -> int:
    """import/export leads, a dry run of who would be dialled, and start/pause/stop/status."""
    if args.action in ("start", "pause", "stop", "status"):
        return _campaign_on_switch(args)  # the running switch's plan is the one that counts
    plan = _plan_or_exit(args.config)
    campaign = _campaign_or_exit(plan, args.name)
    if args.action == "import":
        from .dialer.compliance import read_dnc
        from .dialer.leads import import_statements, read_leads_file

        args.file = args.file or campaign.leads
        if not args.file:
            print(f"centralino campaign import: give a CSV file (campaign {args.name} has no leads: file)",
                  file=sys.stderr)
            return 2
        try:
            report = read_leads_file(args.file, campaign.region)
        except OSError as exc:
            print(f"centralino campaign import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
        except UnicodeDecodeError:
            print(f"centralino campaign import: {args.file} is not UTF-8 text", file=sys.stderr)
            return 2
        dnc = read_dnc(campaign.dnc, campaign.region) if campaign.dnc else set()
        conn = _sync_migrated(_db_for(plan))
        with conn:
            for sql, params in import_statements(args.name, report.rows, dnc, str(args.file)):
                conn.execute(sql, params)
        for line, why in report.errors:
            print(f"{args.file}:{line}: {why}", file=sys.stderr)
        blocked = sum(1 for r in report.rows if r.phone in dnc)
        print(f"imported {len(report.rows)} leads into {args.name} ({report.duplicates} duplicates merged, "
              f"{blocked} on a do-not-call list, {len(report.errors)} rows skipped)")
        return 1 if report.errors and not report.rows else 0
    if args.action == "export":
        from .dialer.leads import export_rows

        conn = _sync_migrated(_db_for(plan))
        rows = [dict(r) for r in conn.execute("SELECT * FROM leads WHERE campaign = ? ORDER BY id", (args.name,))]
        attempts: dict[int, list[dict[str, Any]]] = {}
        for r in conn.execute("SELECT lead_id, at, outcome, ring_seconds, agent, sip_status, amd FROM lead_attempts"
                              " WHERE campaign = ? ORDER BY at", (args.name,)):
            row = dict(r)
            attempts.setdefault(int(row.pop("lead_id")), []).append(row)
        sys.stdout.write(export_rows(rows, attempts, args.format))
        return 0
    if args.action == "plan":
        from .dialer.compliance import Window, read_dnc
        from .dialer.leads import DIALABLE

        zone = local_zone()
        at = parse_when(args.at, zone) if args.at else datetime.now(zone)
        conn = _sync_migrated(_db_for(plan))
        window = Window(campaign.calling_hours, campaign.days)
        dnc = read_dnc(campaign.dnc, campaign.region) if campaign.dnc else set()
        print(f"campaign {args.name} at {at.isoformat()}: calling hours {campaign.calling_hours} {campaign.days} "
              "in each callee's local time")
        counts = {"dial": 0, "not": 0}
        for r in conn.execute("SELECT * FROM leads WHERE campaign = ? ORDER BY next_at, id", (args.name,)):
            state = r["state"]
            if state not in {s.value for s in DIALABLE}:
                why = {"dnc": "on a do-not-call list", "invalid": "invalid number"}.get(
                    state, f"{state} ({r['last_outcome'] or 'no outcome'}, {r['attempts']} attempt(s))")
                verdict = "no"
            elif r["phone"] in dnc:
                verdict, why = "no", "on a do-not-call list"
            elif r["next_at"] and r["next_at"] > at.timestamp():
                verdict = "no"
                why = f"retry at {datetime.fromtimestamp(r['next_at'], zone).isoformat(timespec='minutes')}"
            else:
                ok, why = window.may_call(r["phone"], r["timezone"], at)
                verdict = "dial" if ok else "no"
            counts["dial" if verdict == "dial" else "not"] += 1
            print(f"  {verdict:<4} {r['phone']:<16} {r['name'][:20]:<20} {why}")
        print(f"{counts['dial']} would be dialled now, {counts['not']} not")
        return 0
    raise AssertionError(args.action)


def _campaign_on_switch(args: argparse.Namespace) -> int:
    payload = json.dumps({"action": args.action}).encode()
    status, data = _request_switch(args, "POST", f"/api/v1/campaigns/{quote(args.name, safe='')}", payload)
    if status != 200:
        print(f"centralino campaign: {data.get('error')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    w = data["abandonment"]
    print(f"campaign {data['campaign']} ({data['mode']}): {data['state']}" + (f" — {data['reason']}" if data["reason"] else ""))
    print("  leads: " + ", ".join(f"{k} {v}" for k, v in sorted(data["leads"].items())) or "  leads: none")
    print(f"  dialled {data['dialled']}, answered {data['answered']}, abandoned {data['abandoned']}; "
          f"abandonment 30 days {100 * w['30d']['rate']:.2f}% ({w['30d']['abandoned']}/{w['30d']['answered']}), "
          f"24 h {100 * w['24h']['rate']:.2f}% ({w['24h']['abandoned']}/{w['24h']['answered']})")
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(data["outcomes"].items())))
    print(f"  AMD machine share {100 * data['amd_machine_share']:.0f}%, agents {data['agents']}, "
          f"talk {data['talk_minutes_per_agent_hour']} min per agent-hour, in flight {data['in_flight']}")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    """The switch's recent events as JSON lines; --follow keeps waiting for more (Ctrl-C ends)."""
    since = 0
    try:
        while True:
            query = urlencode({"since": since, "wait": 20 if args.follow else 0, "types": ",".join(args.type or [])})
            status, data = _request_switch(args, "GET", f"/api/v1/events/poll?{query}", timeout=30.0)
            if status != 200:
                print(f"centralino events: {data.get('error')}", file=sys.stderr)
                return 1
            for event in data["events"]:
                print(json.dumps(event, ensure_ascii=False), flush=True)
            since = data["next"]
            if not args.follow:
                return 0
    except KeyboardInterrupt:
        return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Integration tokens of a running switch: create (printed once), list, revoke."""
    if args.action == "create":
        if not args.name:
            print("centralino token create: --name is needed", file=sys.stderr)
            return 2
        body = {"name": args.name, "days": args.days or None, **({"user": args.user} if args.user else
                                                                   {"role": args.role or "admin"})}
        status, data = _request_switch(args, "POST", "/api/v1/tokens", json.dumps(body).encode())
    elif args.action == "list":
        status, data = _request_switch(args, "GET", "/api/v1/tokens")
    else:
        status, data = _request_switch(args, "DELETE", f"/api/v1/tokens/{quote(args.name or '', safe='')}")
    if status != 200:
        print(f"centralino token: {data.get('error')}", file=sys.stderr)
        return 1
    if args.action == "create":
        print(data["token"])
        print(f"token {data['name']} ({data['role']}{', as ' + data['user'] if data['user'] else ''}): shown once; "
              "send it as Authorization: Bearer TOKEN", file=sys.stderr)
    elif args.action == "list":
        for t in data["tokens"]:
            print(f"{t['name']}\t{t['kind']}\t{t['role']}\t{t['user'] or '-'}\texpires "
                  f"{datetime.fromtimestamp(t['expires']).astimezone().isoformat(timespec='minutes') if t['expires'] else 'never'}")
    else:
        print(f"revoked {args.name}")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    """hash: a password_hash for the plan (password read from stdin); reset NAME: a new generated
    password for a user of the running switch, printed once."""
    if args.action == "hash":
        import getpass

        from .config.users import hash_password

        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            print("centralino user hash: an empty password", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    if not args.name:
        print("centralino user reset: which user?", file=sys.stderr)
        return 2
    status, data = _request_switch(args, "POST", f"/api/v1/users/{quote(args.name, safe='')}/password")
    if status != 200:
        print(f"centralino user: {data.get('error')}", file=sys.stderr)
        return 1
    print(f"user {data['user']}: password {data['password']} (shown once)")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    """Show schedules, or force one open/closed (day/night switch) or back to its hours."""
    if args.mode:
        status, data = _request_switch(args, "PUT", f"/api/v1/schedules/{quote(args.name or '', safe='')}",
                                       json.dumps({"mode": args.mode}).encode())
    else:
        status, data = _request_switch(args, "GET", "/api/v1/schedules")
    if status != 200:
        print(f"centralino schedule: {data.get('error')}", file=sys.stderr)
        return 1
    for name, st in data["schedules"].items():
        if args.name in (None, name):
            print(f"{name}: {'open' if st['open'] else 'closed'} (mode {st['mode']}: {st['why']})")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    data = _ask_switch(args, "POST", "/api/v1/reload")
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
    source = args.source or "extension"
    if source != "extension" and source not in plan.trunks:
        known = ", ".join(["extension", *plan.trunks]) or "extension"
        print(f"centralino route: --source {source!r} is neither 'extension' nor a trunk of the plan "
              f"(known: {known})", file=sys.stderr)
        return 2
    zones = {s.timezone for s in plan.schedules.values()}
    if len(zones) == 1:
        zone: tzinfo = ZoneInfo(next(iter(zones)))
        zone_why = f"{next(iter(zones))}, the time zone of the plan's schedules"
    else:
        zone = local_zone()
        zone_why = f"{getattr(zone, 'key', zone)}, this machine's time zone"
    if args.at:
        at = parse_when(args.at, zone)
        zone_note = f" (read in {zone_why})" if _without_zone(args.at) else ""
    else:
        at = datetime.now(zone)
        zone_note = f" (now, in {zone_why})"
    to = normalise(args.to, plan.trunks.get(source)) if source in plan.trunks else args.to
    decision = Router(plan).route(CallContext(to=to, caller=args.caller or "", source=source, at=at))
    print(f"call to {to!r} from {args.caller or '-'!r} (source {source}) at {at.isoformat()}{zone_note}")
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


def _epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def cmd_cdr(args: argparse.Namespace) -> int:
    from .storage.cdr import export, query
    from .storage.database import storage_path

    plan = _plan_or_exit(args.config)
    rows = query(storage_path(plan.server.storage), _epoch(args.since), _epoch(args.until), legs=args.legs)
    sys.stdout.write(export(rows, args.format, local_zone()))
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
    """Queue and agent statistics from the queue log, as CSV or JSON."""
    from .acd.stats import summarize, to_csv
    from .storage.database import storage_path
    from .storage.queue_log import load

    plan = _plan_or_exit(args.config)
    if args.campaign:
        return _campaign_report(args, plan, args.db or storage_path(plan.server.storage))
    events = load(args.db or storage_path(plan.server.storage), _epoch(args.since), _epoch(args.until))
    if args.queue:
        calls = {e.call_id for e in events if e.queue == args.queue}
        events = [e for e in events if e.call_id in calls or (e.event == "AGENT" and args.by != "queue")]
    thresholds = {n: q.service_level for n, q in plan.queues.items()}
    rows = summarize(events, args.by, interval=args.interval * 60, thresholds=thresholds)
    sys.stdout.write(to_csv(rows) if args.format == "csv" else json.dumps(rows, indent=2) + "\n")
    return 0


def _campaign_report(args: argparse.Namespace, plan: Any, db: str) -> int:
    from .acd.stats import to_csv
    from .dialer.report import summarize_attempts

    _campaign_or_exit(plan, args.campaign)
    by = {"queue": "campaign", "did": "campaign", "source": "campaign"}.get(args.by, args.by)
    conn = _sync_migrated(db)
    rows = [dict(r) for r in conn.execute(
        "SELECT a.*, l.disposition FROM lead_attempts a JOIN leads l ON l.id = a.lead_id"
        " WHERE a.campaign = ? AND a.at >= ? AND a.at < ? ORDER BY a.at",
        (args.campaign, _epoch(args.since) or 0.0, _epoch(args.until) or float("inf")))]
    out = summarize_attempts(rows, by, interval=args.interval * 60, zone=local_zone())
    sys.stdout.write(to_csv(out) if args.format == "csv" else json.dumps(out, indent=2) + "\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="centralino", description="Self-hosted softswitch and contact centre")
    p.add_argument("--version", action="version", version=f"centralino {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the switch (the embedded default plan without --config)")
    r.add_argument("--config", "-c", help="the routing plan (YAML)")
    r.add_argument("--sip-trace", action="store_true", help="print every SIP message in and out")
    r.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    r.add_argument("--log-format", choices=["text", "json"])
    r.add_argument("--drain", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long calls may go on before they are hung up (default 30)")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate plan files (the embedded default without one); every "
                       "error with file, line and key path")
    c.add_argument("files", nargs="*", help="plan files (none: the embedded default plan)")
    c.set_defaults(func=cmd_check)

    for name, func, text in (("status", cmd_status, "registrations, transactions and bans of a running switch"),
                             ("reload", cmd_reload, "re-read the plan of a running switch")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
        s.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
        if name == "status":
            s.add_argument("--json", action="store_true")
        s.set_defaults(func=func)

    pw = sub.add_parser("passwords", help="the extensions' SIP passwords (generated ones are kept in the database)")
    pw.add_argument("--show", action="store_true", help="print them (else masked)")
    pw.add_argument("--config", "-c")
    pw.set_defaults(func=cmd_passwords)

    se = sub.add_parser("security", help="bans and locked-out users of a running switch; unban or unlock")
    se.add_argument("--unban", metavar="IP", help="lift the ban of an address")
    se.add_argument("--unlock", metavar="USER", help="end the lockout of a user")
    se.add_argument("--json", action="store_true")
    se.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
    se.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
    se.set_defaults(func=cmd_security)

    cp = sub.add_parser("campaign", help="outbound campaigns: import/export leads, plan (dry run), start/pause/stop/status")
    cp.add_argument("action", choices=["import", "export", "plan", "start", "pause", "stop", "status"])
    cp.add_argument("name", help="the campaign (as in the plan's campaigns:)")
    cp.add_argument("file", nargs="?", help="import: the leads CSV (a phone column; timezone, name, any others); "
                    "default: the campaign's leads: file")
    cp.add_argument("--format", choices=["csv", "json"], default="csv", help="export")
    cp.add_argument("--at", type=_when_text, help="plan: the moment to judge (default now; local zone unless given)")
    cp.add_argument("--json", action="store_true")
    cp.add_argument("--config", "-c")
    cp.add_argument("--api", help="the control API address HOST:PORT (start/pause/stop/status)")
    cp.set_defaults(func=cmd_campaign)

    ev = sub.add_parser("events", help="the running switch's recent events as JSON lines (calls, queues, "
                        "agents, the dialer's attempts and lead cards)")
    ev.add_argument("--type", action="append", default=[], metavar="PREFIX",
                    help="only events whose type starts so, e.g. dialer. or queue.connected (repeatable)")
    ev.add_argument("--follow", "-f", action="store_true", help="keep printing events as they come")
    ev.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
    ev.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
    ev.set_defaults(func=cmd_events)

    tk = sub.add_parser("token", help="API tokens for integrations (a CRM, a script): create, list, revoke")
    tk.add_argument("action", choices=["create", "list", "revoke"])
    tk.add_argument("--name", help="the token's name (create, revoke)")
    tk.add_argument("--role", choices=["admin"], help="create: a role token (default admin)")
    tk.add_argument("--user", help="create: a token acting as this plan user (its role and scope)")
    tk.add_argument("--days", type=float, default=365.0, help="create: lifetime in days (0: never expires)")
    tk.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
    tk.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
    tk.set_defaults(func=cmd_token)

    us = sub.add_parser("user", help="web/API users: hash a password for the plan, or reset a generated one")
    us.add_argument("action", choices=["hash", "reset"])
    us.add_argument("name", nargs="?", help="reset: the user")
    us.add_argument("--config", "-c", help="the plan the switch runs (to find its API address)")
    us.add_argument("--api", help="the control API address HOST:PORT (overrides --config)")
    us.set_defaults(func=cmd_user)

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
    rt.add_argument("--at", type=_when_text, help="ISO time, e.g. '2026-12-25 10:00' or 2026-12-25T10:00+01:00 "
                    "(default: now); without a zone it is read in the time zone of the plan's schedules "
                    "(when they share one), else in this machine's")
    rt.add_argument("--digits", default="", help="keys pressed in the IVR, one per menu/collect read; "
                    "'-' = no key before the timeout (e.g. 7-2)")
    rt.add_argument("--config", "-c")
    rt.set_defaults(func=cmd_route)

    cd = sub.add_parser("cdr", help="export call detail records")
    cd.add_argument("--since", type=_when_arg, help="ISO time (local zone unless given) or epoch seconds")
    cd.add_argument("--until", type=_when_arg, help="ISO time (local zone unless given) or epoch seconds")
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

    rp = sub.add_parser("report", help="queue/agent statistics from the queue log, as CSV or JSON",
                        description="Queue and agent statistics from the queue log, as CSV or JSON.")
    rp.add_argument("--by", choices=["queue", "agent", "interval", "did", "source", "disposition"], default="queue")
    rp.add_argument("--interval", type=int, default=60, help="minutes per row with --by interval")
    rp.add_argument("--queue", help="only this queue's calls")
    rp.add_argument("--campaign", help="a dialer campaign's attempts instead (by campaign, agent, interval "
                    "or disposition)")
    rp.add_argument("--since", type=_when_arg, help="ISO time (local zone unless given) or epoch seconds")
    rp.add_argument("--until", type=_when_arg, help="ISO time (local zone unless given) or epoch seconds")
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
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # the reader went away (`centralino cdr | head`): not an error, and no traceback at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
