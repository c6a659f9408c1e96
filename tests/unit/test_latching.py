"""Which packets an endpoint latches on to after a re-point (a transfer, a re-INVITE with a new
address): the new party only, never the one before; behind NAT, the host the dialog signals
from. Pure: the endpoint is fed datagrams by hand."""

from __future__ import annotations

import asyncio

import pytest
from centralino.media.relay import Endpoint
from centralino.switch.b2bua.indialog import latch_host
from centralino.switch.transport.base import Flow

PKT = bytes([0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1]) + b"\xff" * 160


class _Engine:
    def digit(self, *args):  # pragma: no cover - no DTMF here
        pass


@pytest.fixture
def ep():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield Endpoint(_Engine(), "e1", "127.0.0.1", 40000, "c")
    loop.close()


def test_after_a_transfer_the_old_party_is_never_latched(ep):
    ep.repoint(("10.0.0.2", 4000), ("10.0.0.2", 4001), "10.0.0.2")  # the agent
    ep.on_rtp(PKT, ("10.0.0.2", 4000))
    assert ep.learned == ("10.0.0.2", 4000) and ep.rx == 1
    previous = ep.repoint(("10.0.0.3", 5000), ("10.0.0.3", 5001), "10.0.0.3")  # the transfer target
    assert previous is not None and previous["rx"] == 1 and ep.rx == 0
    for _ in range(15):  # the agent's phone goes on until it has processed the BYE
        ep.on_rtp(PKT, ("10.0.0.2", 4000))
    assert ep.learned is None and ep.dropped_source == 15
    ep.on_rtp(PKT, ("10.0.0.3", 5000))
    assert ep.learned == ("10.0.0.3", 5000) and ep.rx == 1


def test_same_host_other_port_is_the_new_party_but_not_the_old_port(ep):
    """Two phones on one host (or one NAT): the old party's exact address stays refused."""
    ep.repoint(("127.0.0.1", 4000), ("127.0.0.1", 4001), "127.0.0.1")
    ep.on_rtp(PKT, ("127.0.0.1", 4000))
    ep.repoint(("127.0.0.1", 6000), ("127.0.0.1", 6001), "127.0.0.1")
    ep.on_rtp(PKT, ("127.0.0.1", 4000))
    assert ep.learned is None
    ep.on_rtp(PKT, ("127.0.0.1", 6002))  # a phone sending from another port than its SDP's
    assert ep.learned == ("127.0.0.1", 6002)


def test_a_stranger_cannot_latch_before_the_party(ep):
    ep.repoint(("192.0.2.10", 7000), ("192.0.2.10", 7001), "192.0.2.10")
    ep.on_rtp(PKT, ("198.51.100.66", 7000))
    assert ep.learned is None and ep.dropped_source == 1


def test_behind_nat_the_signalling_host_latches(ep):
    ep.repoint(("192.168.1.20", 8000), ("192.168.1.20", 8001), "93.184.216.7")
    ep.on_rtp(PKT, ("93.184.216.7", 31337))  # the NAT's port, not the SDP's
    assert ep.learned == ("93.184.216.7", 31337)


def test_latch_host_picks_the_signalling_source_only_for_a_private_sdp_behind_a_public_one():
    flow = Flow("udp", ("93.184.216.7", 5060), ("198.51.100.1", 5060))
    assert latch_host("192.168.1.20", flow) == "93.184.216.7"  # NAT
    assert latch_host("93.184.216.9", flow) == "93.184.216.9"  # a public media address of its own
    lan = Flow("udp", ("192.168.1.30", 5060), ("192.168.1.1", 5060))
    assert latch_host("192.168.1.20", lan) == "192.168.1.20"  # all on the LAN
    assert latch_host("10.1.1.1", None) == "10.1.1.1"


def test_the_same_address_again_is_no_move(ep):
    ep.repoint(("10.0.0.2", 4000), ("10.0.0.2", 4001), "10.0.0.2")
    ep.on_rtp(PKT, ("10.0.0.2", 4000))
    assert ep.repoint(("10.0.0.2", 4000), ("10.0.0.2", 4001), "10.0.0.2") is None  # a hold/unhold re-INVITE
    assert ep.learned == ("10.0.0.2", 4000) and ep.rx == 1
