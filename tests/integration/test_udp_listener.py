"""The hand-read UDP listener (switch/transport/udp.py): what a backlog looks like to the core —
the kernel's receive time for each datagram, and calls already under way served before new
INVITEs — over a real loopback socket."""

from __future__ import annotations

import asyncio
import socket
import time

from centralino.switch.sip.parser import is_new_invite
from centralino.switch.transport.udp import UDPListener

INVITE = b"INVITE sip:1002@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:1002@x>\r\n\r\n"
REINVITE = b"INVITE sip:1002@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\nt: <sip:1002@x> ;tag=ab\r\n\r\n"
BYE = b"BYE sip:1002@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK3\r\nTo: <sip:1002@x>;tag=ab\r\n\r\n"
RESPONSE = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK4\r\nTo: <sip:1@x>;tag=cd\r\n\r\n"


def test_new_invite_is_told_from_everything_else_without_parsing():
    assert is_new_invite(INVITE)
    assert not is_new_invite(REINVITE) and not is_new_invite(BYE) and not is_new_invite(RESPONSE)
    # a tag in the body (after the head) does not make an INVITE in-dialog
    assert is_new_invite(INVITE + b"To: <sip:a>;tag=1\r\n")


def test_backlog_is_delivered_with_kernel_times_and_calls_under_way_first():
    got: list[tuple[bytes, float]] = []

    async def main() -> tuple[float, float]:
        listener = UDPListener.bind("127.0.0.1", 0, lambda data, flow, at: got.append((data, at)))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Linux turns receive timestamps on for the whole stack a moment after the first socket
        # asks (deferred work): until then a datagram is stamped when read. A switch asks at start.
        await asyncio.sleep(0.2)
        try:
            sent_at = time.time()
            for data in (INVITE, BYE, REINVITE, INVITE.replace(b"K1", b"K5"), RESPONSE):
                sender.sendto(data, listener.local)
            await asyncio.sleep(0.3)  # a stalled switch: the datagrams wait in the socket
            read_at = time.time()
            listener.start()
            for _ in range(50):
                await asyncio.sleep(0.01)
                if len(got) == 5:
                    break
            assert listener.timestamps
            return sent_at, read_at
        finally:
            listener.close()
            sender.close()

    sent_at, read_at = asyncio.run(main())
    order = [data for data, _ in got]
    assert order == [BYE, REINVITE, RESPONSE, INVITE, INVITE.replace(b"K1", b"K5")]
    for _, at in got:  # when the kernel took them, not when they were read 0.3 s later
        assert sent_at - 0.01 <= at <= read_at - 0.25
