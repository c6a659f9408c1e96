"""The CRM adapters' payloads for fixed calls equal golden files (tests/unit/golden/): what
Bitrix24's telephony.externalcall.* methods and amoCRM's /api/v4/calls are sent for an inbound
queue call an agent answered (with its recording), one the caller abandoned, and an outbound
call to a busy number. Set CENTRALINO_UPDATE_GOLDEN=1 to rewrite them after a deliberate change
(and read the diff)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from centralino.config.webhooks import Webhook
from centralino.events import CallEnded, CdrRecord, QueueConnected, QueueEntered, QueueLogRow
from centralino.storage.webhook_formats import body_for

GOLDEN = Path(__file__).parent / "golden"
T0 = 1796220000.0  # 2026-12-02 ~13:20 UTC

BITRIX = Webhook(url="https://acme.bitrix24.ru/rest/1/k3y/", format="bitrix24", users={"1003": 7}, default_user=1)
AMO = Webhook(url="https://acme.amocrm.ru", format="amocrm", token="amo-long-lived", users={"1002": 9001},
              default_user=9000)
STANDARD = Webhook(url="https://crm.example.com/hook", secret="whsec_c2VjcmV0c2VjcmV0", events=["call.ended"])


def link(call_id: str, seconds: float) -> str:
    return f"https://pbx.example.com/api/v1/cdr/{call_id}/recording?expires={int(T0 + seconds)}&sig=s1gn"


def answered_queue_call() -> CallEnded:
    """+7 495 … calls the 8-800 line, waits 12 s in the queue, agent 1002 talks 95 s; recorded."""
    return CallEnded(call_id="c-answered", at=T0 + 110, seq=41, records=(
        CdrRecord("c-answered", "call", T0, T0 + 110, "ANSWERED", answer=T0 + 1, talk_seconds=109.0,
                  caller="+74951234567", called="88001234567", source="trunk:provider", did="88001234567",
                  destination="queue:sales", sip_status=200, hangup_by="caller",
                  recording="/var/lib/centralino/recordings/c-answered.wav", customer_e164="+74951234567",
                  ivr_digits="1,2"),
        CdrRecord("c-answered", "a", T0, T0 + 110, "ANSWERED", answer=T0 + 1, caller="+74951234567",
                  source="trunk:provider"),
        CdrRecord("c-answered", "b", T0 + 12, T0 + 110, "NO ANSWER", caller="+74951234567",
                  destination="extension:1004", sip_status=487),
        CdrRecord("c-answered", "b", T0 + 13, T0 + 110, "ANSWERED", answer=T0 + 15, talk_seconds=95.0,
                  caller="+74951234567", destination="extension:1002", sip_status=200),
    ))


def abandoned_queue_call() -> CallEnded:
    return CallEnded(call_id="c-abandoned", at=T0 + 40, seq=42, records=(
        CdrRecord("c-abandoned", "call", T0, T0 + 40, "ANSWERED", answer=T0 + 1, talk_seconds=39.0,
                  caller="84957654321", called="88001234567", source="trunk:provider", did="88001234567",
                  destination="queue:sales", sip_status=200, hangup_by="caller", customer_e164="+74957654321"),
        CdrRecord("c-abandoned", "b", T0 + 5, T0 + 40, "CANCELLED", caller="+74957654321",
                  destination="extension:1003", sip_status=487),
    ))


def busy_outbound_call() -> CallEnded:
    return CallEnded(call_id="c-busy", at=T0 + 8, seq=43, records=(
        CdrRecord("c-busy", "call", T0, T0 + 8, "BUSY", caller="1003", called="+79161112233",
                  source="extension:1003", destination="trunk:provider", sip_status=486, hangup_by="callee"),
    ))


def connected() -> QueueConnected:
    return QueueConnected(at=T0 + 15, seq=40, row=QueueLogRow(
        T0 + 15, "CONNECT", "c-answered", "sales", "1002", "+74951234567", "88001234567", wait=14.0, ivr="1,2"))


CASES = {
    "queue-connect": connected, "answered": answered_queue_call, "abandoned": abandoned_queue_call,
    "outbound-busy": busy_outbound_call,
}


def payloads(hook: Webhook) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, make in CASES.items():
        event = make()
        body = body_for(event, hook, {"1002", "1003", "1004"}, link) if event.type.startswith(hook.wants) else None
        out[name] = None if body is None else json.loads(body)
    return out


@pytest.mark.parametrize("hook,name", [(BITRIX, "bitrix24"), (AMO, "amocrm"), (STANDARD, "standard")])
def test_payloads_equal_the_golden_files(hook, name):
    got = payloads(hook)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("CENTRALINO_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(path.read_text())


def test_bitrix24_steps_say_what_a_crm_needs():
    """Read beside the golden file: the facts the payloads must carry, named."""
    got = payloads(BITRIX)
    (register,) = got["queue-connect"]["steps"]
    assert register["method"] == "telephony.externalcall.register"
    assert register["params"]["USER_PHONE_INNER"] == "1002" and register["params"]["TYPE"] == 2
    assert register["params"]["PHONE_NUMBER"] == "+74951234567" and register["params"]["SHOW"] == 1
    steps = got["answered"]["steps"]
    assert [s["method"] for s in steps] == ["telephony.externalcall.register", "telephony.externalcall.finish",
                                            "telephony.externalCall.attachRecord"]
    assert all(s["call"] == "c-answered" for s in steps)
    assert steps[1]["params"] == {"USER_PHONE_INNER": "1002", "DURATION": 95, "STATUS_CODE": "200", "ADD_TO_CHAT": 0}
    missed = got["abandoned"]["steps"]
    assert missed[1]["params"]["STATUS_CODE"] == "304" and missed[1]["params"]["USER_ID"] == 1
    assert len(missed) == 2, "no recording to attach"
    busy = got["outbound-busy"]["steps"]
    assert busy[0]["params"]["TYPE"] == 1 and busy[0]["params"]["USER_ID"] == 7  # 1003 is Bitrix24 user 7
    assert busy[1]["params"]["STATUS_CODE"] == "486"


def test_amocrm_calls_say_what_a_crm_needs():
    got = payloads(AMO)
    assert got["queue-connect"] is None  # amoCRM is told once, when the call has ended
    (call,) = got["answered"]
    assert call["direction"] == "inbound" and call["uniq"] == "c-answered" and call["duration"] == 95
    assert call["call_status"] == 4 and call["responsible_user_id"] == 9001
    assert call["link"].startswith("https://pbx.example.com/api/v1/cdr/c-answered/recording?expires=")
    (missed,) = got["abandoned"]
    assert missed["call_status"] == 6 and missed["duration"] == 0 and missed["responsible_user_id"] == 9000
    assert missed["phone"] == "+74957654321"  # the caller wrote 8 495…: the CDR's E.164 form goes to the CRM
    assert "link" not in missed
    (busy,) = got["outbound-busy"]
    assert busy["direction"] == "outbound" and busy["phone"] == "+79161112233" and busy["call_status"] == 7


def test_internal_calls_are_not_the_crms():
    internal = CallEnded(call_id="c-int", at=T0, records=(
        CdrRecord("c-int", "call", T0, T0 + 5, "ANSWERED", answer=T0, talk_seconds=5, caller="1001", called="1002",
                  source="extension:1001", destination="extension:1002"),))
    assert body_for(internal, BITRIX, set(), link) is None and body_for(internal, AMO, set(), link) is None
    assert body_for(internal, STANDARD, set(), link) is not None


def test_a_queue_entry_goes_to_no_crm_adapter():
    entered = QueueEntered(at=T0, row=QueueLogRow(T0, "ENTER", "c-x", "sales", caller="+7495"))
    assert not entered.type.startswith(BITRIX.wants) and not entered.type.startswith(AMO.wants)


def test_the_plan_checks_what_each_format_needs():
    with pytest.raises(ValueError, match="default_user"):
        Webhook(url="https://acme.bitrix24.ru/rest/1/k/", format="bitrix24")
    with pytest.raises(ValueError, match="token"):
        Webhook(url="https://acme.amocrm.ru", format="amocrm")
    with pytest.raises(ValueError, match="secret"):
        Webhook(url="https://crm.example.com/hook")
    assert BITRIX.method_url("telephony.externalcall.finish") == \
        "https://acme.bitrix24.ru/rest/1/k3y/telephony.externalcall.finish.json"


def test_standard_payload_names_the_customer_in_e164_and_the_ivr_keys():
    got = payloads(STANDARD)
    data = got["answered"]["data"]
    assert data["customer_e164"] == "+74951234567" and data["ivr_digits"] == "1,2"
    assert data["queue"] == "sales" and data["wait_seconds"] == 14.0
    abandoned = got["abandoned"]["data"]
    assert abandoned["caller"] == "84957654321" and abandoned["customer_e164"] == "+74957654321"
    assert abandoned["ivr_digits"] is None
