"""The pages in a real browser (Debian's headless Chromium driven with selenium): a supervisor
logs in and watches a SIPp caller enter a queue on the wallboard with the figures the API gives;
an agent logs in on the agent desktop, goes ready, and the card shows the caller and the CRM link
when the queue rings its phone. Screenshots go to the test's directory, and to
``$CENTRALINO_SCREENSHOTS`` when set (the README's pictures)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from centralino.bench.sipp import run_sipp
from helpers import Phone, RunningSwitch, db_rows, free_port, need_tool, plan_text, wait_for

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

EXTS = """\
extensions:
  "1001": {password: "pw1001"}
  "1002": {password: "pw1002"}
  "1003": {password: "pw1003"}
"""


def plan(tmp_path) -> str:
    trunk = f"""\
trunks:
  carrier: {{host: 127.0.0.1, port: {free_port()}, allow_from: ["127.0.0.10/32"], dids: ["88005553535"], qualify: 0}}
routes:
  - {{match: {{to: "88005553535"}}, action: {{queue: sales}}}}
agents:
  "1002": {{name: Bob}}
  "1003": {{name: Carol}}
queues:
  sales: {{members: ["1002", "1003"], supervisors: ["1001"], ring_timeout: 10, wrapup: 2, record: true,
          script: greeting, dispositions: [sale, no-sale, callback]}}
  support: {{members: ["1003"], supervisors: ["1001"]}}
scripts:
  greeting:
    start: hello
    nodes:
      hello: {{say: "Good morning, this is ACME. Am I speaking with the holder of {{caller}}?",
               options: {{"Yes": offer, "No": holder}}}}
      holder: {{say: "Ask when the holder can be reached, and offer a callback."}}
      offer: {{say: "Offer the blue one: 20 % off this week.", options: {{"Interested": close}}}}
      close: {{say: "Take the order and read it back."}}
users:
  alice: {{role: supervisor, name: Alice, extension: "1001", password: "alice-pw"}}
  bob: {{role: agent, name: Bob, extension: "1002", password: "bob-pw"}}
"""
    text = plan_text(tmp_path, trunk, extensions=EXTS)
    return text.replace('api: {listen: "127.0.0.1:0"}',
                        'api: {listen: "127.0.0.1:0", crm_url: "https://crm.example.com/find?phone={caller}"}')


def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        if os.environ.get("CI"):
            raise AssertionError("CI needs chromium and chromium-driver (Debian packages)")
        pytest.skip("chromium / chromium-driver not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def shot(driver, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    target = os.environ.get("CENTRALINO_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def log_in(driver, api: str, user: str, password: str, page: str) -> None:
    driver.get(f"http://{api}/login?next={page}")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()
    assert wait_for(lambda: driver.current_url.endswith(page), 10), driver.current_url


def text_of(driver, selector: str) -> str:
    # one script call: the page re-renders its tables, a held element reference would go stale
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';", selector)


def api_get(sw, path: str) -> dict:
    from centralino.api.server import call_api

    status, data = call_api(sw.api, "GET", path)
    assert status == 200, data
    return data


def caller_in_queue(sw, seconds: float) -> threading.Thread:
    """A SIPp caller from the carrier to 8-800 that waits ``seconds`` in the queue, then hangs up."""
    target = "{}:{}".format(*sw.address("udp"))
    result: dict = {}

    def run() -> None:
        result["res"] = run_sipp("uac_call.xml", target, rate=1, count=1, local_ip="127.0.0.10",
                                 extra=["-s", "88005553535", "-key", "caller", "84951234567", "-d",
                                        str(int(seconds * 1000)), "-mp", str(free_port())])

    thread = threading.Thread(target=run, daemon=True)
    thread.result = result  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_wallboard_shows_a_caller_entering_the_queue(tmp_path):
    need_tool("sipp")
    with RunningSwitch(plan(tmp_path)) as sw:
        driver = browser()
        try:
            log_in(driver, sw.api, "alice", "alice-pw", "/wallboard")
            waiting = '[data-queue="sales"][data-metric="waiting"]'
            assert wait_for(lambda: text_of(driver, waiting) == "0", 10), driver.page_source[:2000]
            assert wait_for(lambda: "live" in text_of(driver, "#link"), 5)
            started = time.monotonic()
            call = caller_in_queue(sw, 6.0)
            assert wait_for(lambda: text_of(driver, waiting) == "1", 8), "the wallboard never showed the caller"
            seen_after = time.monotonic() - started
            api = api_get(sw, "/api/v1/queues")["queues"]["sales"]
            assert api["waiting"] == 1
            assert text_of(driver, '[data-queue="sales"][data-metric="offered"]') == str(api["offered"]) == "1"
            time.sleep(1.2)  # the longest-wait clock ticks in the page
            assert text_of(driver, '[data-queue="sales"][data-metric="longest_wait"]') not in ("", "0s", "—")
            assert driver.find_elements(By.CSS_SELECTOR, '[data-agent="1002"][data-metric="state"]')
            # the supervisor sees the caller waiting in its queue among the live calls
            assert wait_for(lambda: "84951234567" in text_of(driver, "#calls tbody"), 5)
            shot(driver, tmp_path, "wallboard")
            call.join(30)
            assert wait_for(lambda: text_of(driver, waiting) == "0", 8)
            assert wait_for(lambda: text_of(driver, '[data-queue="sales"][data-metric="abandon_rate"]') == "100%", 8)
            (tmp_path / "latency.json").write_text(json.dumps({"sipp_start_to_wallboard_s": seen_after}))
            # the reports page: today's tables and charts, the same figures as the CSV
            driver.get(f"http://{sw.api}/reports")
            offered = '[data-queue="sales"][data-metric="offered"]'
            assert wait_for(lambda: text_of(driver, offered) == "1", 10), driver.page_source[:2000]
            assert text_of(driver, '[data-queue="sales"][data-metric="abandon_rate"]') == "100%"



            host, port = sw.api.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            token = (tmp_path / "api-token").read_text().strip()
            conn.request("GET", "/api/v1/reports/today?by=queue&format=csv", headers={"Authorization": f"Bearer {token}"})
            csv_text = conn.getresponse().read().decode()
            assert csv_text.splitlines()[0].startswith("queue,offered,answered,abandoned")
            assert csv_text.splitlines()[1].startswith("sales,1,0,1")
            shot(driver, tmp_path, "reports")
        finally:
            driver.quit()


def test_agent_desktop_takes_a_queue_call_with_its_card(tmp_path):
    need_tool("sipp")
    with RunningSwitch(plan(tmp_path)) as sw:
        phone = Phone(sw.address("udp"), "1002", "pw1002").start()  # Bob's desk phone answers
        driver = browser()
        try:
            log_in(driver, sw.api, "bob", "bob-pw", "/agent")
            assert wait_for(lambda: text_of(driver, "#state").startswith("logged-out"), 10)
            driver.find_element(By.ID, "ready").click()
            assert wait_for(lambda: text_of(driver, "#state") == "available", 5)
            assert api_get(sw, "/api/v1/agents")["agents"]["1002"]["state"] == "available"
            call = caller_in_queue(sw, 3.0)
            assert wait_for(lambda: text_of(driver, '[data-field="caller"]') == "84951234567", 10), \
                driver.page_source[:3000]
            assert text_of(driver, '[data-field="queue"]') == "sales"
            crm = driver.find_element(By.ID, "crm")
            assert crm.get_attribute("href") == "https://crm.example.com/find?phone=84951234567"
            assert wait_for(lambda: text_of(driver, "#state") in ("on-call", "wrap-up"), 10)
            # the queue's script, filled in with the call's fields, walked by its buttons
            assert text_of(driver, "#script-say") == "Good morning, this is ACME. Am I speaking with the holder of 84951234567?"
            driver.find_element(By.CSS_SELECTOR, '[data-option="Yes"]').click()
            assert text_of(driver, "#script-say") == "Offer the blue one: 20 % off this week."
            driver.find_element(By.CSS_SELECTOR, '[data-option="Interested"]').click()
            assert text_of(driver, "#script-say") == "Take the order and read it back."
            assert not driver.find_elements(By.CSS_SELECTOR, "#script-options button")
            choices = driver.execute_script(
                "return [...document.querySelectorAll('#disposition-choices option')].map(o => o.value)")
            assert choices == ["sale", "no-sale", "callback"]  # the queue's dispositions
            # the disposition and notes, from the page into the queue log
            driver.find_element(By.ID, "dispositions").send_keys("sale")
            driver.find_element(By.ID, "notes").send_keys("wants the blue one")
            # and a call back tomorrow at 10:00, local time (the page's datetime field)
            tomorrow = time.localtime(time.time() + 86400)
            when = time.strftime("%Y-%m-%dT10:00", tomorrow)
            driver.execute_script("document.getElementById('callback-at').value = arguments[0]", when)
            driver.find_element(By.ID, "dispose").click()
            assert wait_for(lambda: text_of(driver, "#disposed") == "saved", 5), text_of(driver, "#disposed")
            rows = wait_for(lambda: db_rows(sw, "SELECT * FROM queue_log WHERE event = 'DISPOSITION'"), 5)
            assert rows and rows[0]["reason"] == "sale" and rows[0]["notes"] == "wants the blue one"
            assert rows[0]["agent"] == "1002" and rows[0]["queue"] == "sales" and rows[0]["caller"] == "84951234567"
            (scheduled,) = api_get(sw, "/api/v1/callbacks")["callbacks"]
            assert scheduled["number"] == "84951234567" and scheduled["queue"] == "sales"
            assert scheduled["at"] == time.mktime(time.strptime(when, "%Y-%m-%dT%H:%M"))
            call.join(30)
            # today's calls: this one, with its disposition and its recording to play
            assert wait_for(lambda: text_of(driver, '#calls [data-field="disposition"]') == "sale", 10), \
                driver.find_element(By.ID, "calls").get_attribute("outerHTML")
            assert text_of(driver, '#calls [data-field="caller"]') == "84951234567"
            audio = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#calls audio[data-recording]"), 10)
            assert audio, "the recording of the call is listed"
            driver.set_window_size(1280, 1300)  # the whole desktop, today's calls included
            shot(driver, tmp_path, "agent")
            # pause with a reason from the page, seen by the API
            driver.find_element(By.ID, "pause").click()
            assert wait_for(lambda: api_get(sw, "/api/v1/agents")["agents"]["1002"]["state"] == "paused", 5)
            assert wait_for(lambda: text_of(driver, "#state").startswith("paused"), 5)
        finally:
            driver.quit()
            phone.stop()


def test_agent_desktop_transfers_the_caller(tmp_path):
    """Bob answers a queue call on his desk phone, types 1003 beside the card and clicks
    Transfer: Carol's phone rings and, answered, has the caller; Bob's leg is released."""
    need_tool("sipp")
    with RunningSwitch(plan(tmp_path)) as sw:
        bob = Phone(sw.address("udp"), "1002", "pw1002").start()
        carol = Phone(sw.address("udp"), "1003", "pw1003").start()
        assert call_api_ok(sw, "/api/v1/agents/1002/state", {"action": "login"})
        driver = browser()
        try:
            log_in(driver, sw.api, "bob", "bob-pw", "/agent")
            call = caller_in_queue(sw, 6.0)
            assert wait_for(lambda: driver.find_element(By.ID, "transfer-box").is_displayed(), 10)
            assert wait_for(lambda: text_of(driver, "#state") == "on-call", 5)
            driver.find_element(By.ID, "transfer-to").send_keys("1003")
            driver.find_element(By.ID, "transfer").click()
            assert wait_for(lambda: text_of(driver, "#transferred") == "ringing", 5), text_of(driver, "#transferred")
            assert wait_for(lambda: carol.invite is not None, 5), "Carol's phone did not ring"
            assert wait_for(lambda: [c for c in api_get(sw, "/api/v1/calls")["calls"]
                                     if c["destination"] == "extension:1003"], 5)
            assert wait_for(lambda: any(m.method == "BYE" for m in bob.received), 5), "Bob's leg was not released"
            call.join(30)
        finally:
            driver.quit()
            bob.stop()
            carol.stop()


def call_api_ok(sw, path: str, body: dict) -> bool:
    from centralino.api.server import call_api

    return call_api(sw.api, "POST", path, json.dumps(body).encode())[0] == 200


def test_wallboard_moves_a_waiting_caller_to_another_queue(tmp_path):
    """Nobody is ready in sales: the supervisor picks support beside the waiting caller and
    clicks Move; the caller waits in support (the page and the API agree), sales logs MOVED."""
    need_tool("sipp")
    with RunningSwitch(plan(tmp_path)) as sw:
        driver = browser()
        try:
            log_in(driver, sw.api, "alice", "alice-pw", "/wallboard")
            call = caller_in_queue(sw, 8.0)
            move = '#calls button[data-action="move"]'
            assert wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, move), 10), driver.page_source[:2000]
            assert "waiting in sales" in text_of(driver, "#calls tbody")
            driver.execute_script("document.querySelector('#calls select[data-action=\"move-to\"]').value = 'support'")
            driver.execute_script("document.querySelector(arguments[0]).click()", move)
            assert wait_for(lambda: text_of(driver, '[data-queue="support"][data-metric="waiting"]') == "1", 8)
            assert text_of(driver, '[data-queue="sales"][data-metric="waiting"]') == "0"
            assert "waiting in support" in text_of(driver, "#calls tbody")
            (live,) = api_get(sw, "/api/v1/calls")["calls"]
            assert live["queue"] == "support"
            rows = wait_for(lambda: db_rows(sw, "SELECT * FROM queue_log WHERE event = 'MOVED'"), 5)
            assert rows[0]["queue"] == "sales" and rows[0]["reason"] == "support"
            call.join(30)
        finally:
            driver.quit()


def test_wallboard_listen_button_rings_the_supervisors_phone(tmp_path):
    need_tool("sipp")
    with RunningSwitch(plan(tmp_path)) as sw:
        from centralino.api.server import call_api

        bob = Phone(sw.address("udp"), "1002", "pw1002").start()
        alice = Phone(sw.address("udp"), "1001", "pw1001").start()  # the supervisor's desk phone
        assert call_api(sw.api, "POST", "/api/v1/agents/1002/state", b'{"action": "login"}')[0] == 200
        driver = browser()
        try:
            log_in(driver, sw.api, "alice", "alice-pw", "/wallboard")
            call = caller_in_queue(sw, 8.0)
            listen = '[data-agent="1002"][data-action="listen"]'
            assert wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, listen), 10), "Bob never showed on a call"
            driver.execute_script("document.querySelector(arguments[0]).click()", listen)
            assert wait_for(lambda: alice.invite is not None, 10), "the supervisor's phone did not ring"
            sessions = wait_for(lambda: api_get(sw, "/api/v1/monitor")["sessions"], 5)
            assert sessions and sessions[0]["supervisor"] == "1001" and sessions[0]["agent"] == "1002"
            assert sessions[0]["mode"] == "listen"
            assert wait_for(lambda: driver.execute_script(
                "const b = document.querySelector(arguments[0]); return b && b.className === 'primary';", listen), 5)
            shot(driver, tmp_path, "wallboard-listen")
            driver.execute_script(
                "document.querySelector('[data-agent=\"1002\"][data-action=\"whisper\"]').click()")
            assert wait_for(lambda: api_get(sw, "/api/v1/monitor")["sessions"][0]["mode"] == "whisper", 5)
            call.join(30)
            assert wait_for(lambda: not api_get(sw, "/api/v1/monitor")["sessions"], 10)
        finally:
            driver.quit()
            bob.stop()
            alice.stop()


def test_login_page_refuses_a_wrong_password(tmp_path):
    with RunningSwitch(plan(tmp_path)) as sw:
        driver = browser()
        try:
            driver.get(f"http://{sw.api}/wallboard")
            assert wait_for(lambda: "/login" in driver.current_url, 10)  # not logged in: sent to the login
            driver.find_element(By.ID, "user").send_keys("alice")
            driver.find_element(By.ID, "password").send_keys("nope")
            driver.find_element(By.ID, "submit").click()
            assert wait_for(lambda: "wrong user name or password" in text_of(driver, "#error"), 5)
            shot(driver, tmp_path, "login")
        finally:
            driver.quit()

