"""Audio test helpers: an RTP phone on a real UDP socket that sends tones and keeps what it
receives, and the analysis the tests judge audio by (dominant frequency, energy, duration)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
from centralino.media.codecs import make_decoder, make_encoder
from centralino.media.rtp import RtpPacket


def sine(freq: float, seconds: float, level: float = 0.3, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def dominant(pcm: np.ndarray, rate: int = 8000) -> float:
    """The strongest frequency of a stretch of audio, in Hz."""
    if len(pcm) == 0:
        return 0.0
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    spectrum[:5] = 0
    return float(np.fft.rfftfreq(len(pcm), 1 / rate)[spectrum.argmax()])


def level_at(pcm: np.ndarray, freq: float, rate: int = 8000) -> float:
    """Amplitude of ``freq`` in ``pcm`` (in 16-bit units; a full sine of amplitude A gives ~A)."""
    if len(pcm) == 0:
        return 0.0
    t = np.arange(len(pcm)) / rate
    return float(2 * abs(np.dot(pcm.astype(np.float64), np.exp(-2j * np.pi * freq * t))) / len(pcm))


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


class RtpPhone:
    """Sends audio to a media endpoint and records what comes back, decoded."""

    def __init__(self, codec: str = "PCMU", pt: int | None = None, ip: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self.codec = codec
        self.pt = pt if pt is not None else {"PCMU": 0, "PCMA": 8, "G722": 9}.get(codec.upper(), 111)
        self.received: list[RtpPacket] = []
        self._stop = threading.Event()
        self._rx = threading.Thread(target=self._receive, daemon=True)
        self._rx.start()
        self._tx: threading.Thread | None = None
        self.seq = 0

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            try:
                self.received.append(RtpPacket.parse(data))
            except ValueError:
                pass

    def send(self, pcm: np.ndarray, to: tuple[str, int], *, block: bool = False) -> None:
        """Stream ``pcm`` in 20 ms packets, paced in real time (in a thread unless ``block``)."""
        def run() -> None:
            enc = make_encoder(self.codec)
            step = 960 if self.codec.lower() == "opus" else 160
            start = time.monotonic()
            for i in range(0, len(pcm) - 159, 160):
                if self._stop.is_set():
                    return
                payload = enc.encode(pcm[i:i + 160])
                packet = RtpPacket(self.pt, self.seq & 0xFFFF, (self.seq * step) & 0xFFFFFFFF, 0x5151, payload)
                self.sock.sendto(packet.serialize(), to)
                self.seq += 1
                delay = start + (i // 160 + 1) * 0.02 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        if block:
            run()
        else:
            self._tx = threading.Thread(target=run, daemon=True)
            self._tx.start()

    def wait_sent(self) -> None:
        if self._tx is not None:
            self._tx.join()

    def audio(self, pt: int | None = None, codec: str | None = None) -> np.ndarray:
        """Everything received with payload type ``pt`` (default: ours), decoded, in order of arrival."""
        want = self.pt if pt is None else pt
        dec = make_decoder(codec or self.codec)
        frames = [dec.decode(p.payload) for p in list(self.received) if p.payload_type == want]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    def close(self) -> None:
        self._stop.set()
        self._rx.join(1)
        self.sock.close()


class Talker:
    """An RtpPhone that keeps sending a tone (20 ms packets) until told to stop."""

    def __init__(self, hz: int, codec: str = "PCMU") -> None:
        self.phone = RtpPhone(codec)
        self.hz = hz
        self.to: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def start(self, to: tuple[str, int]) -> Talker:
        self.to = to
        self._thread.start()
        return self

    def _run(self) -> None:
        enc, tone = make_encoder(self.phone.codec), sine(self.hz, 1.0)
        start, n = time.monotonic(), 0
        while not self._stop.is_set():
            frame = tone[(n % 50) * 160:(n % 50) * 160 + 160]
            pkt = RtpPacket(self.phone.pt, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, 0x1000 + self.hz, enc.encode(frame))
            assert self.to is not None
            self.phone.sock.sendto(pkt.serialize(), self.to)
            n += 1
            self.sent = n
            time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def heard(self, since: float) -> np.ndarray:
        """What arrived during the last ``since`` seconds (arrival order), decoded."""
        audio = self.phone.audio()
        return audio[-int(8000 * since):]

    def close(self) -> None:
        self.stop()
        self.phone.close()
