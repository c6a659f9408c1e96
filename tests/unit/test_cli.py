"""The command line as a newcomer meets it: bad arguments get one line and exit 2 (never a
traceback), pipes that close early are not errors, times say which zone they are in."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from centralino.storage.migrations import MIGRATIONS


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "centralino", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, **kw)


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and re.fullmatch(r"centralino \d+\.\d+\.\d+\n", r.stdout)


@pytest.mark.parametrize("args", [
    ["route", "800", "--at", "next tuesday"],
    ["cdr", "--since", "yesterday"],
    ["report", "--until", "2026-13-45"],
    ["route", "800", "--source", "nosuchtrunk"],
    ["erlang", "--calls-per-hour", "x", "--aht", "180"],
    ["frobnicate"],
])
def test_bad_arguments_get_one_line_and_exit_2(args):
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if not line.startswith("usage:") and line.strip()]
    assert len(lines) == 1, r.stderr


def test_route_at_reads_a_naive_time_in_the_schedules_zone_and_says_so():
    r = cli("route", "800", "--at", "2026-12-05 12:30", "--digits", "1")
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert "2026-12-05T12:30:00+01:00" in first and "Europe/Rome" in first
    assert "leaves with: {\"queue\": \"sales\"}" in r.stdout  # Saturday 12:30 Rome: open
    # with an explicit offset the time is taken as given: 12:30 UTC is 13:30 in Rome, closed
    r = cli("route", "800", "--at", "2026-12-05T12:30:00+00:00", "--digits", "1")
    assert "read in" not in r.stdout.splitlines()[0] and "closed" in r.stdout


def test_route_in_a_plan_without_schedules_uses_the_local_zone(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text('extensions: {"1001": {}}\nroutes:\n  - {match: {to: "1001"}, action: {dial: "1001"}}\n')
    r = cli("route", "1001", "--config", str(plan), "--at", "2026-07-01 09:00", env={"TZ": "America/New_York"})
    assert "2026-07-01T09:00:00-04:00" in r.stdout and "America/New_York, this machine's time zone" in r.stdout


def test_check_counts_in_words():
    r = cli("check")
    assert r.returncode == 0
    assert "1 trunk," in r.stdout and "3 extensions" in r.stdout and "1 trunks" not in r.stdout
    assert r.stdout.rstrip().endswith("2 queues, 1 campaign)")


def test_report_help_names_both_formats():
    assert "CSV or JSON" in cli("report", "--help").stdout


def _db_with_calls(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    for _, sql in MIGRATIONS:
        conn.executescript(sql)
    for i in range(n):
        conn.execute("INSERT INTO cdr (call_id, leg, start, answer, end, disposition) VALUES (?, 'call', ?, ?, ?, 'ANSWERED')",
                     (f"c{i}", 1_764_633_600.0 + i, 1_764_633_602.5 + i, 1_764_633_660.0 + i))
    conn.commit()
    conn.close()


def test_cdr_times_are_iso_with_their_zone_and_json_keeps_epoch(tmp_path):
    _db_with_calls(tmp_path / "c.db", 1)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'server: {{storage: "sqlite:{tmp_path / "c.db"}"}}\n')
    env = {"TZ": "Europe/Rome"}
    csv_out = cli("cdr", "--config", str(plan), env=env).stdout.splitlines()
    assert "2025-12-02T01:00:00.000+01:00" in csv_out[1] and "1764633600" not in csv_out[1]
    row = json.loads(cli("cdr", "--config", str(plan), "--format", "json", env=env).stdout)[0]
    assert row["start"] == "2025-12-02T01:00:00.000+01:00" and row["start_epoch"] == 1_764_633_600.0
    assert row["answer_epoch"] == 1_764_633_602.5


def test_a_pipe_closed_early_is_not_an_error(tmp_path):
    _db_with_calls(tmp_path / "c.db", 20_000)
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'server: {{storage: "sqlite:{tmp_path / "c.db"}"}}\n')
    done = subprocess.run(f"{sys.executable} -m centralino cdr --config {plan} | head -1",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("id,call_id,leg")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_plan_files_resolve_relative_paths_from_their_own_folder(tmp_path):
    from centralino.config.loader import load_plan

    (tmp_path / "etc").mkdir()
    plan = tmp_path / "etc" / "plan.yaml"
    plan.write_text(textwrap.dedent("""\
        server: {storage: "sqlite:data/pbx.db", recordings: rec, prompts: [my-prompts, /abs/prompts]}
        """))
    server = load_plan(plan).plan.server
    assert server.storage == f"sqlite:{tmp_path / 'etc' / 'data' / 'pbx.db'}"
    assert server.recordings == str(tmp_path / "etc" / "rec")
    assert server.prompts == [str(tmp_path / "etc" / "my-prompts"), "/abs/prompts"]


def test_the_embedded_default_keeps_its_data_in_the_user_data_dir(tmp_path, monkeypatch):
    from centralino.config.loader import load_plan

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    server = load_plan(None).plan.server
    assert server.storage == f"sqlite:{tmp_path / 'xdg' / 'centralino' / 'centralino.db'}"
    assert server.recordings == str(tmp_path / "xdg" / "centralino" / "recordings")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_plan(None).plan.server.storage == f"sqlite:{tmp_path / 'home' / '.local' / 'share' / 'centralino' / 'centralino.db'}"


CAMPAIGN_PLAN = """\
server:
  storage: "sqlite:{db}"
extensions:
  "1002": {{password: "pw1002"}}
trunks:
  out: {{host: "127.0.0.1:5999"}}
queues:
  q: {{members: ["1002"]}}
campaigns:
  reminders:
    mode: progressive
    queue: q
    trunk: out
    region: RU
    calling_hours: "09:00-21:00"
    dnc: [dnc.csv]
"""


def test_campaign_import_reports_bad_rows_by_line_and_plan_says_why_each_lead_is_or_is_not_dialled(tmp_path):
    (tmp_path / "dnc.csv").write_text("+74951000003\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(CAMPAIGN_PLAN.format(db=tmp_path / "c.db"))
    (tmp_path / "leads.csv").write_text(
        "phone,name,timezone\n8 495 100-00-01,Ivan,\nbad,Nobody,\n+12125550105,John,\n+74951000003,Dana,\n")
    r = cli("campaign", "import", "reminders", str(tmp_path / "leads.csv"), "-c", str(plan))
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"{tmp_path / 'leads.csv'}:3: not a phone number: 'bad' (" + r.stderr.split(" (", 1)[1]
    assert "imported 3 leads into reminders (0 duplicates merged, 1 on a do-not-call list, 1 rows skipped)" in r.stdout
    again = cli("campaign", "import", "reminders", str(tmp_path / "leads.csv"), "-c", str(plan))
    assert again.returncode == 0
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM leads").fetchone()[0] == 3  # idempotent
    # Monday 10:00 UTC: 13:00 in Moscow, 05:00 in New York
    r = cli("campaign", "plan", "reminders", "--at", "2026-12-07T10:00+00:00", "-c", str(plan))
    assert r.returncode == 0, r.stderr
    lines = {line.split()[1]: line for line in r.stdout.splitlines() if line.startswith("  ")}
    assert lines["+74951000001"].split()[0] == "dial" and "Europe/Moscow is within" in lines["+74951000001"]
    assert lines["+12125550105"].split()[0] == "no" and "outside" in lines["+12125550105"]
    assert lines["+74951000003"].split()[0] == "no" and "do-not-call" in lines["+74951000003"]
    assert r.stdout.rstrip().endswith("1 would be dialled now, 2 not")
    # a campaign that does not exist, or no file: one line, exit 2
    r = cli("campaign", "import", "nosuch", "x.csv", "-c", str(plan))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no campaign 'nosuch'" in r.stderr
    r = cli("campaign", "import", "reminders", str(tmp_path / "missing.csv"), "-c", str(plan))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot read" in r.stderr
