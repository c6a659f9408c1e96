"""Whom the dialer may call when: calling hours in the callee's local time (across a DST change,
for numbers with several zones, unknown zones), numbers normalised to E.164, do-not-call lists;
then the leads: the CSV import (bad rows by line, the rest kept), the life cycle, the store
(real SQLite: re-imports are idempotent, DNC numbers are never dialable), the export and the
campaign report."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest
from centralino.config.schema import Campaign
from centralino.dialer.compliance import NumberError, Window, e164, read_dnc, zones_for
from centralino.dialer.leads import (
    LeadState,
    after_attempt,
    export_rows,
    import_statements,
    read_leads,
)
from centralino.dialer.pacing import Outcome
from centralino.dialer.report import summarize_attempts
from centralino.storage.migrations import MIGRATIONS


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+7 (495) 123-45-67", None, "+74951234567"),
    ("8 495 123 45 67", "RU", "+74951234567"),
    ("06 1234 5601", "IT", "+390612345601"),
    ("+1 212-555-0105", None, "+12125550105"),
])
def test_numbers_are_normalised_to_e164(raw, region, expected):
    assert e164(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "not a number", "+7 495", "12345"])
def test_what_cannot_be_a_number_is_refused_with_why(raw):
    with pytest.raises(NumberError):
        e164(raw, "RU")


# -- calling hours ------------------------------------------------------------------------------------
def test_hours_are_the_callees_not_the_switchs():
    w = Window("09:00-21:00")
    at = utc("2026-12-07 07:30")  # Monday: 10:30 in Moscow, 02:30 in New York
    assert w.may_call("+74951234567", "", at)[0]
    ok, why = w.may_call("+12125550105", "", at)
    assert not ok and "America/New_York" in why and "outside 09:00-21:00" in why


def test_the_leads_own_time_zone_overrides_the_numbers():
    w = Window("09:00-21:00")
    at = utc("2026-12-07 12:00")  # 15:00 in Moscow, 22:00 in Vladivostok
    assert w.may_call("+74951234567", "", at)[0]
    assert not w.may_call("+74951234567", "Asia/Vladivostok", at)[0]


def test_a_dst_change_moves_the_window_in_utc():
    """New York: 09:00 is 14:00 UTC in winter (EST) and 13:00 UTC in summer (EDT)."""
    w = Window("09:00-21:00")
    before = utc("2026-03-07 13:30")  # Saturday, EST: 08:30
    after = utc("2026-03-09 13:30")  # Monday, EDT (since Sunday 8 March): 09:30
    assert not w.may_call("+12125550105", "", before)[0]
    assert w.may_call("+12125550105", "", after)[0]
    # and back in November: 20:30 EDT is inside, the same UTC hour after the change is 19:30 EST
    assert not w.may_call("+12125550105", "", utc("2026-10-31 01:30"))[0]  # 21:30 EDT
    assert w.may_call("+12125550105", "", utc("2026-11-02 01:30"))[0]  # 20:30 EST


def test_a_number_with_several_zones_is_called_only_when_the_window_holds_in_all_of_them():
    mobile = "+351912345678"  # a Portuguese mobile: Lisbon (UTC+0 in winter) or the Azores (UTC-1)
    assert set(zones_for(mobile)) == {"Europe/Lisbon", "Atlantic/Azores"}
    w = Window("09:00-21:00")
    ok, why = w.may_call(mobile, "", utc("2026-12-07 09:30"))  # 09:30 Lisbon, 08:30 Azores
    assert not ok and "Atlantic/Azores" in why and "2 zones" in why
    ok, why = w.may_call(mobile, "", utc("2026-12-07 10:30"))
    assert ok and "all 2" in why
    assert not w.may_call(mobile, "", utc("2026-12-07 21:30"))[0]  # 21:30 Lisbon
    # a US toll-free number may ring anywhere from Newfoundland to Guam (10.5 hours apart, Guam
    # being a day ahead): only two hours a day hold in all of its zones
    toll_free = "+18005550199"
    assert len(zones_for(toll_free)) > 20
    assert [h for h in range(24) if w.may_call(toll_free, "", utc(f"2026-12-07 {h:02d}:00"))[0]] == [0, 23]
    # unless the lead says where the callee is
    assert w.may_call(toll_free, "America/Chicago", utc("2026-12-07 16:00"))[0]


def test_an_unknown_zone_is_never_called_and_says_so():
    ok, why = Window("00:00-24:00").may_call("+882351234567", "", utc("2026-12-07 12:00"))  # an international network
    assert not ok and "unknown" in why


def test_days_of_the_week_and_split_hours():
    w = Window("09:00-13:00,14:00-18:00", "mon-fri")
    assert w.may_call("+74951234567", "", utc("2026-12-07 07:00"))[0]  # Mon 10:00
    assert not w.may_call("+74951234567", "", utc("2026-12-07 10:30"))[0]  # Mon 13:30, lunch
    assert not w.may_call("+74951234567", "", utc("2026-12-06 07:00"))[0]  # Sun 10:00


def test_do_not_call_lists_as_csv_or_one_number_per_line(tmp_path):
    (tmp_path / "a.csv").write_text("name,phone\nX,+7 495 123-45-67\nY,garbage\n")
    (tmp_path / "b.txt").write_text("84951112233\n+12125550105\n")
    assert read_dnc([tmp_path / "a.csv", tmp_path / "b.txt"], "RU") == {"+74951234567", "+74951112233", "+12125550105"}


# -- the import ------------------------------------------------------------------------------------------
CSV = """\
phone,name,timezone,amount
+7 495 123-45-67,Ivan,,1200
not a number,Bad,,1
+74951234568,Mila,Mars/Olympus,2
+74951234569,Short row
8 495 123 45 67,Ivan again,Europe/Moscow,1300

+12125550105,John,America/New_York,55
"""


def test_a_csv_with_bad_rows_imports_the_good_ones_and_names_the_bad_lines():
    report = read_leads(CSV, "RU")
    assert [r.phone for r in report.rows] == ["+74951234567", "+12125550105"]
    assert report.duplicates == 1
    ivan = report.rows[0]
    assert ivan.name == "Ivan again" and ivan.timezone == "Europe/Moscow" and ivan.fields == {"amount": "1300"}
    lines = {line: why for line, why in report.errors}
    assert set(lines) == {3, 4, 5}
    assert "not a phone number" in lines[3] and "unknown time zone" in lines[4] and "2 columns" in lines[5]


def test_a_csv_without_a_phone_column_is_refused_at_line_1():
    report = read_leads("name,number\nIvan,+74951234567\n")
    assert report.rows == [] and report.errors[0][0] == 1 and "phone" in report.errors[0][1]


def db(tmp_path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "leads.db")
    conn.row_factory = sqlite3.Row
    for _version, sql in MIGRATIONS:
        conn.executescript(sql)
    return conn


def test_re_importing_is_idempotent_and_keeps_each_leads_history(tmp_path):
    conn = db(tmp_path)
    rows = read_leads(CSV, "RU").rows
    with conn:
        for sql, params in import_statements("c", rows, {"+12125550105"}, "leads.csv"):
            conn.execute(sql, params)
        conn.execute("UPDATE leads SET state = 'retry', attempts = 2 WHERE phone = '+74951234567'")
    with conn:
        for sql, params in import_statements("c", rows, set(), "leads.csv"):
            conn.execute(sql, params)
    got = {r["phone"]: dict(r) for r in conn.execute("SELECT * FROM leads")}
    assert len(got) == 2
    assert got["+74951234567"]["state"] == "retry" and got["+74951234567"]["attempts"] == 2
    assert got["+12125550105"]["state"] == "dnc"  # once on a do-not-call list, it stays off


# -- the life cycle ----------------------------------------------------------------------------------------
CAMPAIGN = Campaign.model_validate({
    "mode": "progressive", "queue": "q", "trunk": "t", "max_attempts": 3,
    "retry": {"busy": 600, "no_answer": 3600, "machine": 86400, "failed": 1800, "abandoned": 900},
})


@pytest.mark.parametrize(("outcome", "state", "delay"), [
    (Outcome.BUSY, LeadState.RETRY, 600), (Outcome.NO_ANSWER, LeadState.RETRY, 3600),
    (Outcome.MACHINE, LeadState.RETRY, 86400), (Outcome.FAILED, LeadState.RETRY, 1800),
    (Outcome.ABANDONED, LeadState.RETRY, 900), (Outcome.HUMAN, LeadState.DONE, None),
    (Outcome.INVALID, LeadState.INVALID, None),
])
def test_each_outcome_moves_the_lead(outcome, state, delay):
    move = after_attempt(outcome, 0, 1000.0, CAMPAIGN)
    assert move.state is state and move.attempts == 1
    if delay is not None:
        assert move.next_at == 1000.0 + delay


def test_congestion_retries_without_spending_an_attempt_and_max_attempts_ends_it():
    move = after_attempt(Outcome.CONGESTION, 2, 1000.0, CAMPAIGN)
    assert move.state is LeadState.RETRY and move.attempts == 2 and move.next_at == 1060.0
    assert after_attempt(Outcome.BUSY, 2, 1000.0, CAMPAIGN).state is LeadState.DONE
    # a machine that got the message is done; an agent's appointment that could not ring them stays one
    assert after_attempt(Outcome.MACHINE, 0, 1000.0, CAMPAIGN, message_left=True).state is LeadState.DONE
    assert after_attempt(Outcome.CONGESTION, 1, 1000.0, CAMPAIGN, callback=True).state is LeadState.CALLBACK


def test_ring_timeout_below_15_seconds_is_refused():
    with pytest.raises(ValueError):
        Campaign.model_validate({"mode": "progressive", "queue": "q", "trunk": "t", "ring_timeout": 10})


# -- export and report -------------------------------------------------------------------------------------
def test_the_export_has_every_lead_with_its_attempts_and_disposition():
    rows = [{"id": 1, "phone": "+74951234567", "name": "Ivan", "timezone": "", "state": "done", "attempts": 2,
             "last_outcome": "answered-human", "disposition": "paid", "fields": json.dumps({"amount": "1200"})}]
    attempts = {1: [{"at": 1.0, "outcome": "busy"}, {"at": 2.0, "outcome": "answered-human"}]}
    data = json.loads(export_rows(rows, attempts, "json"))
    assert data[0]["outcomes"] == ["busy", "answered-human"] and data[0]["disposition"] == "paid"
    text = export_rows(rows, attempts, "csv")
    assert text.splitlines()[0].endswith("outcomes,amount")
    assert "busy answered-human,1200" in text


def test_the_campaign_report_sums_attempts_by_agent():
    rows = [
        {"campaign": "c", "at": 10.0, "outcome": "answered-human", "agent": "1002", "ring_seconds": 8.0},
        {"campaign": "c", "at": 20.0, "outcome": "abandoned", "agent": "", "ring_seconds": 6.0},
        {"campaign": "c", "at": 30.0, "outcome": "machine", "agent": "", "ring_seconds": 10.0},
        {"campaign": "c", "at": 40.0, "outcome": "busy", "agent": "", "ring_seconds": 2.0},
    ]
    total = summarize_attempts(rows)[0]
    assert total["attempts"] == 4 and total["live_answers"] == 2 and total["abandon_rate"] == 0.5
    assert total["contact_rate"] == 0.5 and total["machine_share"] == pytest.approx(1 / 3, abs=1e-3)
    by_agent = {r["agent"]: r for r in summarize_attempts(rows, "agent")}
    assert by_agent["1002"]["answered-human"] == 1 and by_agent["-"]["attempts"] == 3
