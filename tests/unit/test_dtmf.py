from centralino.media.dtmf import DtmfReceiver, TelephoneEvent


def test_event_round_trip_and_digits():
    ev = TelephoneEvent(11, True, 10, 1280)
    assert TelephoneEvent.parse(ev.serialize()) == ev and ev.digit == "#"
    assert TelephoneEvent(16, False, 0, 0).digit is None


def test_receiver_reports_each_digit_once_at_its_end():
    rx = DtmfReceiver()
    start = TelephoneEvent(5, False, 10, 320).serialize()
    end = TelephoneEvent(5, True, 10, 1280).serialize()
    assert rx.feed(1000, start) is None
    assert rx.feed(1000, end) == ("5", 160)
    assert rx.feed(1000, end) is None and rx.feed(1000, end) is None  # redundant end packets
    assert rx.feed(2600, TelephoneEvent(5, True, 10, 800).serialize()) == ("5", 100)  # pressed again
    assert rx.feed(3000, b"\x01") is None


def test_sip_info_bodies():
    from centralino.switch.b2bua.indialog import dtmf_from_info
    from centralino.switch.sip.message import Request
    from centralino.switch.sip.uri import parse_uri

    def info(ctype, body):
        return Request("INFO", parse_uri("sip:a@b"), [("Content-Type", ctype)], body)

    assert dtmf_from_info(info("application/dtmf-relay", b"Signal=#\r\nDuration=250\r\n")) == ("#", 250)
    assert dtmf_from_info(info("application/dtmf", b"7")) == ("7", 0)
    assert dtmf_from_info(info("application/dtmf-relay", b"Signal=hello")) is None
    assert dtmf_from_info(info("text/plain", b"5")) is None
