"""Dialog state (route set, CSeq, targets) and the storage layer (WAL, migrations, group commit)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from centralino.storage.database import Database, storage_path
from centralino.storage.migrations import MIGRATIONS
from centralino.switch.sip.dialog import Dialog
from centralino.switch.sip.errors import RemoteProtocolError
from centralino.switch.sip.message import make_response
from centralino.switch.sip.parser import parse_datagram

INVITE = (b"INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n"
          b"Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"
          b"From: <sip:alice@a.example>;tag=at\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\n"
          b"CSeq: 10 INVITE\r\nContact: <sip:alice@10.0.0.1>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def test_uas_dialog_and_in_dialog_requests():
    req = parse_datagram(INVITE)
    d = Dialog.from_uas(req, "bt")
    assert d.id == ("c1", "bt", "at")
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example;lr", "sip:p2.example;lr"]
    bye = d.create_request("BYE", "SIP/2.0/UDP b.example;branch=z9hG4bK2")
    assert str(bye.uri) == "sip:alice@10.0.0.1"
    assert bye.header_values("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert bye.from_.tag == "bt" and bye.to.tag == "at" and bye.cseq.seq == 1
    # the peer's CSeq must grow; a target refresh moves the remote target
    reinvite = parse_datagram(INVITE.replace(b"CSeq: 10", b"CSeq: 11").replace(b"10.0.0.1", b"10.0.0.9"))
    d.check_request(reinvite)
    assert str(d.remote_target) == "sip:alice@10.0.0.9"
    with pytest.raises(RemoteProtocolError):
        d.check_request(parse_datagram(INVITE))


def test_uac_dialog_reverses_record_route():
    req = parse_datagram(INVITE)
    resp = make_response(req, 200, to_tag="bt", headers=[("Contact", "<sip:bob@10.0.0.2>")])
    d = Dialog.from_uac(req, resp)
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example;lr", "sip:p1.example;lr"]
    assert d.remote_tag == "bt" and str(d.remote_target) == "sip:bob@10.0.0.2"
    ack = d.create_request("ACK", "SIP/2.0/UDP a.example;branch=z9hG4bK3")
    assert ack.cseq.seq == 10 and ack.cseq.method == "ACK"


def test_strict_route_goes_into_request_uri():
    req = parse_datagram(INVITE.replace(b"<sip:p1.example;lr>, ", b"<sip:p1.example>, "))
    d = Dialog.from_uas(req, "bt")
    bye = d.create_request("BYE", "SIP/2.0/UDP b.example;branch=z9hG4bK2")
    assert str(bye.uri) == "sip:p1.example"
    assert bye.header_values("Route")[-1] == "<sip:alice@10.0.0.1>"


def test_storage_paths():
    assert storage_path("sqlite:///var/lib/c.db") == "/var/lib/c.db"
    assert storage_path("sqlite:c.db") == "c.db"
    assert storage_path("x/c.db") == "x/c.db"


def test_migrations_wal_and_group_commit(tmp_path):
    path = str(tmp_path / "db" / "c.db")

    async def main():
        db = Database(path)
        await db.open()
        assert await db.migrate() == MIGRATIONS[-1][0]  # idempotent
        writes = [db.write([("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{i}", "v"))]) for i in range(50)]
        await asyncio.gather(*writes)
        bad = db.write([("INSERT INTO meta (key, value) VALUES (?, ?)", ("k1", "dup"))])
        with pytest.raises(sqlite3.IntegrityError):
            await bad
        await db.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 50
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == MIGRATIONS[-1][0]
