"""`centralino bench wallboard`: how soon the wallboard in a real browser shows a caller.

The switch runs at defaults (``centralino run``) with a queue nobody answers; headless Chromium
(Debian's ``chromium`` + ``chromium-driver``, driven with selenium) is logged in as the admin on
``/wallboard``, and a MutationObserver in the page notes the wall-clock time each time the
queue's ``offered`` figure changes. SIPp callers enter the queue (``--rate`` calls/s, each
waiting ``--hold`` s). The k-th caller is on the page when the figure first reads k or more; its
latency is that moment minus its ``ENTER`` row's time (the queue log's ``at``, stamped when the
switch handled the INVITE): SIP handling → event → WebSocket → the page's REST refresh → DOM. Browser and switch share the
machine's clock. Prints and writes a JSON and Markdown report.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from .events import _pct, _plan
from .live import SwitchDidNotStart, live_switch, save, stamp
from .runner import _free_port
from .sipp import run_sipp, sipp_binary

OBSERVE = """
// the page re-renders its tables: watch the whole document, note each change of the figure
const read = () => { const c = document.querySelector('[data-queue="sales"][data-metric="offered"]');
                     return c ? c.textContent.trim() : ""; };
window.__changes = [];
let last = read();
new MutationObserver(() => { const now = read(); if (now !== last) { last = now; window.__changes.push([Date.now() / 1000, now]); } })
  .observe(document.body, {childList: true, characterData: true, subtree: true});
return last;
"""


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def _measure(args: argparse.Namespace, api: str, sip: str, db: Path) -> dict:
    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.get(f"http://{api}/login?next=/wallboard")
        driver.find_element(By.ID, "user").send_keys("admin")
        driver.find_element(By.ID, "password").send_keys("bench-admin")
        driver.find_element(By.ID, "submit").click()
        end = time.monotonic() + 15
        while time.monotonic() < end and driver.execute_script(
                "const c = document.querySelector('[data-queue=\"sales\"][data-metric=\"waiting\"]');"
                "const l = document.getElementById('link');"
                "return !(c && c.textContent.trim() === '0' && l && l.textContent.includes('live'));"):
            time.sleep(0.1)
        driver.execute_script(OBSERVE)
        result = run_sipp("uac_call.xml", sip, rate=args.rate, count=args.calls, local_ip="127.0.0.10",
                          extra=["-s", "88005553535", "-key", "caller", "84951234567", "-d",
                                 str(int(args.hold * 1000)), "-mp", str(_free_port(2))],
                          timeout=args.calls / args.rate + args.hold + 30)
        time.sleep(args.hold + 1.5)
        changes = driver.execute_script("return window.__changes")
    finally:
        driver.quit()
    conn = sqlite3.connect(db)
    entered = [r[0] for r in conn.execute("SELECT at FROM queue_log WHERE event = 'ENTER' ORDER BY at")]
    conn.close()
    # the k-th caller to enter is on the page once its "offered" figure reads k or more (it only grows)
    latencies, seen = [], 0
    for k, at in enumerate(entered, 1):
        later = [t for t, value in changes if value.isdigit() and int(value) >= k]
        if later:
            latencies.append((later[0] - at) * 1000)
            seen += 1
    return {"calls": {"rate": args.rate, "count": args.calls, "successful": result.successful, "failed": result.failed},
            "entered": len(entered), "shown": seen, "dom_changes": len(changes),
            "latency_ms": {"p50": round(_pct(latencies, 0.5), 1), "p95": round(_pct(latencies, 0.95), 1),
                           "max": round(max(latencies), 1) if latencies else None}}


def main(args: argparse.Namespace) -> int:
    if sipp_binary() is None:
        print("centralino bench wallboard needs SIPp: apt-get install sip-tester", file=sys.stderr)
        return 2
    if not shutil.which("chromedriver"):
        print("centralino bench wallboard needs chromium and chromium-driver (Debian packages)", file=sys.stderr)
        return 2
    try:
        with live_switch("centralino-wallboard-", lambda w, s, a: _plan(w, s, a, 20)) as sw:
            report = stamp(_measure(args, sw.api, sw.sip, sw.work / "bench.db"))
    except SwitchDidNotStart:
        return 1
    lat, calls = report["latency_ms"], report["calls"]
    md = (f"# Wallboard update latency in headless Chromium ({report['settings']})\n\n`{report['command']}`\n\n"
          f"| SIPp calls/s | calls ok / failed | callers entered | shown | ENTER→DOM p50 | p95 | max |\n"
          f"|---|---|---|---|---|---|---|\n"
          f"| {calls['rate']} | {calls['successful']} / {calls['failed']} | {report['entered']} | {report['shown']} | "
          f"{lat['p50']} ms | {lat['p95']} ms | {lat['max']} ms |\n")
    save(args.out, "wallboard", report, md)
    return 0 if calls["failed"] == 0 and report["shown"] == report["entered"] else 1
