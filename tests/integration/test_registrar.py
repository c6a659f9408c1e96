"""Registrar behaviour over real UDP/TCP sockets with a hand-rolled client (exact messages):
expiry, removal, query, q-values, contact limits, nonce replay and staleness, OPTIONS qualify."""

from __future__ import annotations

import threading
import time

import pytest
from centralino.switch.sip.auth import DigestChallenge, DigestClient
from centralino.switch.sip.message import Request, make_response
from helpers import RunningSwitch, SipClient, plan_text, wait_for


@pytest.fixture
def switch(tmp_path):
    with RunningSwitch(plan_text(tmp_path, registrar="", security=", nonce_lifetime: 2")) as sw:
        yield sw


def aors(sw):
    return sorted((r["aor"], r["contact"]) for r in sw.status()["registrations"])


def test_register_query_and_remove(switch):
    c = SipClient(switch.address("udp"))
    ok = c.register_with_auth("1001", "secret1001", expires=600)
    assert ok.status == 200
    contact = ok.header_list("Contact")
    assert len(contact) == 1 and contact[0].endswith(";expires=600")
    assert ok.header("Date")
    # query: REGISTER without Contact lists the bindings, changes nothing
    q = c.register_with_auth("1001", "secret1001", contact=False, expires=None)
    assert q.status == 200 and q.header_list("Contact") == contact
    # Expires: 0 removes it
    gone = c.register_with_auth("1001", "secret1001", expires=0)
    assert gone.status == 200 and gone.header_list("Contact") == []
    assert aors(switch) == []


def test_star_removes_all(switch):
    a, b = SipClient(switch.address("udp")), SipClient(switch.address("udp"))
    assert a.register_with_auth("1001", "secret1001").status == 200
    assert b.register_with_auth("1001", "secret1001").status == 200
    assert len(aors(switch)) == 2
    bad = a.register_with_auth("1001", "secret1001", contact="*", expires=30)
    assert bad.status == 400  # '*' needs Expires: 0
    ok = a.register_with_auth("1001", "secret1001", contact="*", expires=0)
    assert ok.status == 200 and aors(switch) == []


def test_expiry_removes_binding(tmp_path):
    with RunningSwitch(plan_text(tmp_path, registrar="", security="").replace("min_expires: 10", "min_expires: 1")) as sw:
        c = SipClient(sw.address("udp"))
        assert c.register_with_auth("1001", "secret1001", expires=2).status == 200
        assert len(aors(sw)) == 1
        assert wait_for(lambda: aors(sw) == [], 6), "binding must expire after 2 s"


def test_interval_too_brief_and_max_clamp(switch):
    c = SipClient(switch.address("udp"))
    brief = c.register_with_auth("1001", "secret1001", expires=5)
    assert brief.status == 423 and brief.header("Min-Expires") == "10"
    clamped = c.register_with_auth("1001", "secret1001", expires=999999)
    assert clamped.status == 200 and clamped.header_list("Contact")[0].endswith(";expires=7200")


def test_q_values_order_contacts(switch):
    c = SipClient(switch.address("udp"))
    host, port = c.local
    contacts = f"<sip:1001@{host}:{port}>;q=0.2, <sip:1001@{host}:{port + 1}>;q=0.9"
    ok = c.register_with_auth("1001", "secret1001", contact=contacts)
    assert ok.status == 200
    listed = ok.header_list("Contact")
    assert listed[0].startswith(f"<sip:1001@{host}:{port + 1}>;q=0.9")


def test_max_contacts_evicts_oldest(switch):
    # 1002 allows two contacts
    clients = [SipClient(switch.address("udp")) for _ in range(3)]
    for c in clients:
        assert c.register_with_auth("1002", "secret1002").status == 200
        time.sleep(0.01)
    contacts = [contact for aor, contact in aors(switch) if aor == "1002"]
    assert len(contacts) == 2
    oldest = f"sip:1002@{clients[0].local[0]}:{clients[0].local[1]};transport=udp"
    assert oldest not in contacts


def test_registering_someone_else_is_forbidden(switch):
    c = SipClient(switch.address("udp"))
    first = c.transact(c.register("1002"))
    challenge = DigestClient.pick(first.header_values("WWW-Authenticate"))
    auth = DigestClient("1001", "secret1001").authorize(challenge, "REGISTER", "sip:example.com")
    assert c.transact(c.register("1002", auth=auth)).status == 403


def test_nonce_replay_is_refused(switch):
    c = SipClient(switch.address("udp"))
    first = c.transact(c.register("1001"))
    challenge = DigestClient.pick(first.header_values("WWW-Authenticate"))
    auth = DigestClient("1001", "secret1001").authorize(challenge, "REGISTER", "sip:example.com")
    assert c.transact(c.register("1001", auth=auth)).status == 200
    replay = c.transact(c.register("1001", auth=auth))  # same nonce, same nc
    assert replay.status == 401
    fresh = DigestChallenge.parse(replay.header("WWW-Authenticate"))
    assert fresh.nonce != challenge.nonce and fresh.stale


def test_expired_nonce_gets_stale_challenge(switch):
    c = SipClient(switch.address("udp"))
    first = c.transact(c.register("1001"))
    challenge = DigestClient.pick(first.header_values("WWW-Authenticate"))
    time.sleep(2.3)  # nonce_lifetime is 2 s in this plan
    auth = DigestClient("1001", "secret1001").authorize(challenge, "REGISTER", "sip:example.com")
    stale = c.transact(c.register("1001", auth=auth))
    assert stale.status == 401 and DigestChallenge.parse(stale.header("WWW-Authenticate")).stale


def test_unknown_and_known_users_get_identical_challenges(switch):
    c = SipClient(switch.address("udp"))
    known = c.transact(c.register("1001"))
    unknown = c.transact(c.register("nobody"))
    def shape(resp):
        ch = DigestChallenge.parse(resp.header("WWW-Authenticate"))
        return resp.status, resp.reason, ch.realm, ch.algorithm, ch.qop, ch.opaque, len(ch.nonce), \
            [n for n, _ in resp.headers if n not in ("Via", "From", "To", "Call-ID", "CSeq")]
    assert shape(known) == shape(unknown)
    # and a wrong password for an unknown user is answered like one for a known user
    def wrong(user):
        first = c.transact(c.register(user))
        ch = DigestClient.pick(first.header_values("WWW-Authenticate"))
        return c.transact(c.register(user, auth=DigestClient(user, "x").authorize(ch, "REGISTER", "sip:example.com")))
    assert shape(wrong("1001")) == shape(wrong("nobody"))


def test_tcp_registration_reuses_the_connection(switch):
    c = SipClient(switch.address("tcp"), transport="tcp")
    assert c.register_with_auth("1001", "secret1001").status == 200
    reg = switch.status()["registrations"][0]
    assert reg["source"].startswith("tcp:127.0.0.1:") and "#" in reg["source"]


def test_options_to_the_switch(switch):
    c = SipClient(switch.address("udp"))
    req = c.register("1001")
    req.method = "OPTIONS"
    req.set_header("CSeq", "1 OPTIONS")
    resp = c.transact(req)
    assert resp.status == 200
    assert "REGISTER" in resp.header("Allow") and resp.header("Accept") == "application/sdp"


def test_qualify_measures_reachability_and_rtt(tmp_path):
    with RunningSwitch(plan_text(tmp_path).replace("qualify_interval: 0", "qualify_interval: 1")) as sw:
        phone = SipClient(sw.address("udp"))
        assert phone.register_with_auth("1001", "secret1001").status == 200
        silent = SipClient(sw.address("udp"))
        assert silent.register_with_auth("1001", "secret1001").status == 200

        stop = threading.Event()

        def answer_options():  # the first phone answers OPTIONS, the second never does
            while not stop.is_set():
                msg = phone.recv(0.2)
                if isinstance(msg, Request) and msg.method == "OPTIONS":
                    phone.send(make_response(msg, 200, to_tag="p").serialize())

        t = threading.Thread(target=answer_options, daemon=True)
        t.start()
        try:
            def reach():
                regs = {r["contact"]: r for r in sw.status()["registrations"]}
                return regs if all(r["reachable"] is True for r in regs.values() if str(phone.local[1]) in r["contact"]) \
                    and any(r["reachable"] is not None for r in regs.values()) else None
            regs = wait_for(reach, 8)
            assert regs
            answering = next(r for c, r in regs.items() if f":{phone.local[1]};" in c)
            assert answering["reachable"] is True and answering["rtt_ms"] is not None and answering["rtt_ms"] < 1000
        finally:
            stop.set()
            t.join(1)
