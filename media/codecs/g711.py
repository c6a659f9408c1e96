"""G.711 µ-law (PCMU) and A-law (PCMA) through numpy lookup tables: decoding is one table
index per sample, encoding one index into a 64 Ki table of all 16-bit values — whole frames (or
whole arrays of channels) at a time, never a Python loop per sample."""

from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _bit_length(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0, np.floor(np.log2(np.maximum(v, 1))).astype(np.int32) + 1, 0)


def _ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """ITU-T G.191 ulaw_compress, vectorised (negative values via one's complement)."""
    x = pcm.astype(np.int32)
    absno = np.minimum(np.where(x < 0, (~x) >> 2, x >> 2) + 33, 0x1FFF)
    segno = _bit_length(absno >> 6) + 1
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0x0F)
    return ((high << 4) | low | np.where(x >= 0, 0x80, 0)).astype(np.uint8)


def _alaw_encode(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.int32)
    sign = np.where(x >= 0, 0x80, 0)
    mag = np.minimum(np.where(x >= 0, x, -x - 1), 32767) >> 3  # 13-bit magnitude
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8)


ULAW_TO_PCM = _ulaw_decode_table()
ALAW_TO_PCM = _alaw_decode_table()
_ALL = np.arange(-32768, 32768, dtype=np.int32)
PCM_TO_ULAW = _ulaw_encode(_ALL)  # index with (sample + 32768)
PCM_TO_ALAW = _alaw_encode(_ALL)


def ulaw_decode(data: bytes | np.ndarray) -> np.ndarray:
    return ULAW_TO_PCM[np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data]


def alaw_decode(data: bytes | np.ndarray) -> np.ndarray:
    return ALAW_TO_PCM[np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data]


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    return PCM_TO_ULAW[pcm.astype(np.int32) + 32768]


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    return PCM_TO_ALAW[pcm.astype(np.int32) + 32768]
