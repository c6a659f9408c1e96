"""A G.711 A-law RTP stream as a pcap file for SIPp's ``play_pcap_audio``: SIPp ships an 8 s
sample; long-call benchmarks need audio for the whole hold time. Ethernet/IPv4/UDP framing with
20 ms packets, a 1 kHz tone at −12 dBFS (SIPp replays the payloads with their timing)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..media.codecs import make_encoder


def write_g711a_pcap(path: Path, seconds: float, *, freq: float = 1000.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (0.25 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return write_pcm_pcap(path, pcm)


def write_pcm_pcap(path: Path, pcm: np.ndarray) -> Path:
    """Any 8 kHz 16-bit audio (speech, a beep) as an A-law RTP pcap SIPp can play."""
    encoder = make_encoder("PCMA")
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(len(pcm) // 160):
        payload = encoder.encode(pcm[i * 160:(i + 1) * 160])
        rtp = struct.pack("!BBHII", 0x80, 8, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, 0x12345678) + payload
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00" + ip
        usec = i * 20_000
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path
