"""The codecs the media workers speak, behind one small interface: each stream gets a
``Decoder`` (RTP payload → 20 ms of 8 kHz int16 PCM) and an ``Encoder`` (the reverse).

The worker's internal audio is 8 kHz mono int16 everywhere (mixing, recording, detection);
wide-band codecs are resampled at the edge. G.711 has no state and is also decoded and encoded
for whole arrays of channels at once by the worker's tick (``g711``); G.722 and Opus go through
av (FFmpeg) with a context per stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import g711
from .resample import Resampler

FRAME = 160  # samples per 20 ms at 8 kHz


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What the SDP says about a codec: encoding name, RTP clock, static payload type."""

    name: str  # as in a=rtpmap, upper-case except opus
    clock: int
    static_pt: int | None = None
    channels: int = 1
    fmtp: str | None = None

    @property
    def rtpmap(self) -> str:
        chans = f"/{self.channels}" if self.channels > 1 else ""
        return f"{self.name}/{self.clock}{chans}"


PCMU = CodecInfo("PCMU", 8000, 0)
PCMA = CodecInfo("PCMA", 8000, 8)
G722 = CodecInfo("G722", 8000, 9)  # RFC 3551: 8000 in SDP, 16 kHz sampling
L16 = CodecInfo("L16", 8000)
OPUS = CodecInfo("opus", 48000, None, 2, "useinbandfec=1")
# the order we prefer when we pick; G.711 first: no transcoding cost, every phone has it
KNOWN: dict[str, CodecInfo] = {c.name.lower(): c for c in (PCMU, PCMA, G722, OPUS, L16)}


def codec_named(name: str) -> CodecInfo | None:
    return KNOWN.get(name.lower())


class Decoder:
    def decode(self, payload: bytes) -> np.ndarray:
        raise NotImplementedError

    def conceal(self) -> np.ndarray:
        """A frame for a lost packet (the last one, faded; FFmpeg codecs have their own PLC
        only inside their bitstreams)."""
        last = getattr(self, "_last", None)
        if last is None:
            return np.zeros(FRAME, np.int16)
        self._last = (last.astype(np.int32) // 2).astype(np.int16)
        return self._last


class Encoder:
    def encode(self, pcm: np.ndarray) -> bytes:
        raise NotImplementedError


class _G711Decoder(Decoder):
    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self._last: np.ndarray | None = None

    def decode(self, payload: bytes) -> np.ndarray:
        self._last = self.table[np.frombuffer(payload, np.uint8)]
        return self._last


class _G711Encoder(Encoder):
    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def encode(self, pcm: np.ndarray) -> bytes:
        return self.table[pcm.astype(np.int32) + 32768].tobytes()


class _L16Decoder(Decoder):
    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def decode(self, payload: bytes) -> np.ndarray:
        self._last = np.frombuffer(payload, ">i2").astype(np.int16)
        return self._last


class _L16Encoder(Encoder):
    def encode(self, pcm: np.ndarray) -> bytes:
        return pcm.astype(">i2").tobytes()


class _AvDecoder(Decoder):
    """G.722 (16 kHz) or Opus (48 kHz) through av, resampled to 8 kHz."""

    def __init__(self, codec: str, rate: int) -> None:
        import av

        self.ctx = av.CodecContext.create(codec, "r")
        self.ctx.sample_rate = rate
        self.ctx.layout = "mono"
        self.down = Resampler(rate, 8000)
        self._packet = av.Packet
        self._last: np.ndarray | None = None

    def decode(self, payload: bytes) -> np.ndarray:
        chunks = []
        try:
            for frame in self.ctx.decode(self._packet(payload)):
                pcm = frame.to_ndarray()
                if pcm.dtype != np.int16:  # float planar (opus)
                    pcm = np.clip(pcm * 32767.0, -32768, 32767).astype(np.int16)
                chunks.append(pcm.reshape(-1, pcm.shape[-1])[0] if pcm.ndim > 1 else pcm)
        except Exception:  # a damaged payload from the network: conceal, never raise
            return self.conceal()
        if not chunks:
            return self.conceal()
        out = self.down.process(np.concatenate(chunks))
        self._last = _fit(out)
        return self._last


class _AvEncoder(Encoder):
    def __init__(self, codec: str, rate: int, bit_rate: int | None = None) -> None:
        import av

        self.av = av
        self.ctx = av.CodecContext.create(codec, "w")
        self.ctx.sample_rate = rate
        self.ctx.layout = "mono"
        self.ctx.format = "s16"
        if bit_rate:
            self.ctx.bit_rate = bit_rate
        self.ctx.open()
        self.rate = rate
        self.up = Resampler(8000, rate)
        self.pts = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        wide = self.up.process(pcm)
        frame = self.av.AudioFrame.from_ndarray(wide.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self.pts
        self.pts += len(wide)
        return b"".join(bytes(p) for p in self.ctx.encode(frame))


def _fit(pcm: np.ndarray) -> np.ndarray:
    if len(pcm) == FRAME:
        return pcm
    if len(pcm) > FRAME:
        return pcm[:FRAME]
    return np.concatenate([pcm, np.zeros(FRAME - len(pcm), np.int16)])


def make_decoder(name: str) -> Decoder:
    key = name.lower()
    if key == "pcmu":
        return _G711Decoder(g711.ULAW_TO_PCM)
    if key == "pcma":
        return _G711Decoder(g711.ALAW_TO_PCM)
    if key == "l16":
        return _L16Decoder()
    if key == "g722":
        return _AvDecoder("g722", 16000)
    if key == "opus":
        return _AvDecoder("opus", 48000)
    raise ValueError(f"no decoder for {name}")


def make_encoder(name: str) -> Encoder:
    key = name.lower()
    if key == "pcmu":
        return _G711Encoder(g711.PCM_TO_ULAW)
    if key == "pcma":
        return _G711Encoder(g711.PCM_TO_ALAW)
    if key == "l16":
        return _L16Encoder()
    if key == "g722":
        return _AvEncoder("g722", 16000)
    if key == "opus":
        return _AvEncoder("libopus", 48000, 24000)
    raise ValueError(f"no encoder for {name}")


def timestamp_step(name: str) -> int:
    """RTP timestamp units per 20 ms frame."""
    info = codec_named(name)
    return (info.clock if info else 8000) // 50
