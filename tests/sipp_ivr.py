"""SIPp caller scenarios for IVR tests, made from bench/scenarios/uac_dtmf.xml: the same
INVITE/ACK, then RFC 2833 keys from SIPp's DTMF pcaps at chosen moments, then either our BYE
after a hold time or a BYE from the switch (answered with 200)."""

from __future__ import annotations

from pathlib import Path

from centralino.bench.sipp import SCENARIOS

PCAP = "/usr/share/sip-tester/dtmf_2833_{}.pcap"


def ivr_caller(path: Path, keys: list[tuple[int, str]], *, hold_ms: int, switch_hangs_up: bool = False) -> Path:
    """``keys``: (pause before it in ms, digit); then ``hold_ms`` more before the BYE."""
    text = (SCENARIOS / "uac_dtmf.xml").read_text()
    head, _, rest = text.partition('  <label id="media"/>')
    bye = rest[rest.index("  <send retrans=\"500\">"):]
    media = ['  <label id="media"/>']
    for pause, digit in keys:
        media.append(f'  <pause milliseconds="{pause}"/>')
        media.append(f'  <nop><action><exec play_pcap_audio="{PCAP.format(digit)}"/></action></nop>')
    media.append(f'  <pause milliseconds="{hold_ms}"/>')
    if switch_hangs_up:
        tail = """  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""
        body = head + "\n".join(media) + "\n" + tail
    else:
        body = head + "\n".join(media) + "\n" + bye
    path.write_text(body)
    return path
