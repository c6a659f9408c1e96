"""The relay benchmark's parts: NG protocol encoding, lost-or-late accounting, capacity."""

from __future__ import annotations

from centralino.bench.relay import Row, bdecode, bencode, capacity, summary
from centralino.bench.rtpgen import Result


def _result(calls: int, sent: int = 10_000, received: int = 10_000, late: int = 0) -> Result:
    return Result(calls, 10.0, sent, received, late, 0.1, 1.0, 2.0, 5.0, 1.0)


def test_bencode_round_trip_and_the_rtpengine_reply_shape() -> None:
    body = {"command": "offer", "call-id": "c1", "replace": ["origin"], "n": 3}
    assert bencode(body) == b"d7:call-id2:c17:command5:offer1:ni3e7:replacel6:originee"
    assert bdecode(bencode(body)) == body
    assert bdecode(b"d6:result2:ok3:sdp5:v=0\r\ne") == {"result": "ok", "sdp": "v=0\r\n"}


def test_late_packets_count_as_lost_for_the_listener() -> None:
    r = _result(100, sent=10_000, received=9_995, late=10)
    assert r.lost == 5 and r.loss_ratio == 0.0005 and r.late_ratio == 0.001
    assert r.lost_or_late_ratio == 0.0015
    assert not Row("centralino", r, 0.5, 0.5).passed  # 0.05 % loss alone would have passed
    assert Row("centralino", _result(100, late=9), 0.5, 0.5).passed


def test_capacity_is_the_last_pass_before_the_first_failure() -> None:
    rows = [Row("centralino", _result(n, late=late), 0.5, 0.5)
            for n, late in ((100, 0), (300, 0), (500, 50), (700, 0))]  # 700 passing after 500 failed: luck
    rows += [Row("rtpengine", _result(n), 0.5, 0.5) for n in (100, 300, 500, 700)]
    assert capacity(rows, "centralino") == 300 and capacity(rows, "rtpengine") == 700
    text = summary(rows)
    assert "| centralino | 300 | 0.43x |" in text and "| rtpengine | 700 | 1.00x |" in text
