"""G.711 tables against a scalar transcription of the ITU-T G.191 reference code, known values,
and round trips."""

from __future__ import annotations

import numpy as np
from centralino.media.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


def itu_ulaw(x: int) -> int:
    absno = ((~x) >> 2) if x < 0 else (x >> 2)
    absno = min(absno + 33, 0x1FFF)
    i, segno = absno >> 6, 1
    while i:
        segno += 1
        i >>= 1
    out = ((8 - segno) << 4) | (15 - ((absno >> segno) & 0x0F))
    return out | 0x80 if x >= 0 else out


def itu_alaw(x: int) -> int:
    ix = ((~x) >> 4) if x < 0 else (x >> 4)
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


ALL = np.arange(-32768, 32768, dtype=np.int32)


def test_encoders_match_the_itu_reference_for_every_sample():
    assert (ulaw_encode(ALL) == np.array([itu_ulaw(int(v)) for v in ALL], dtype=np.uint8)).all()
    assert (alaw_encode(ALL) == np.array([itu_alaw(int(v)) for v in ALL], dtype=np.uint8)).all()


def test_known_values():
    assert ulaw_encode(np.array([0, -1, 32767, -32768])).tolist() == [0xFF, 0x7F, 0x80, 0x00]
    assert alaw_encode(np.array([0, -1, 32767, -32768])).tolist() == [0xD5, 0x55, 0xAA, 0x2A]
    assert ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]


def test_round_trip_is_idempotent_and_close():
    codes = np.arange(256, dtype=np.uint8)
    assert (ulaw_encode(ulaw_decode(codes)) == codes).sum() >= 255  # 0x7F and 0xFF both mean zero
    assert (alaw_encode(alaw_decode(codes)) == codes).all()
    tone = (8000 * np.sin(2 * np.pi * 1000 * np.arange(800) / 8000)).astype(np.int16)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        err = dec(enc(tone)).astype(np.float64) - tone
        snr = 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean(err**2))
        assert snr > 30  # G.711's ~38 dB SNR on a loud tone
