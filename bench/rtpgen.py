"""The RTP load generator of ``centralino bench relay`` (``rtpgen.c``): built once per source
version with the machine's C compiler into the user's cache directory, then run as a child
process that plays both phones of N calls and times every packet (see the C file's header)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("rtpgen.c")
LATE_MS = 50.0  # a packet this late is as good as lost for a jitter buffer


class GeneratorUnavailable(RuntimeError):
    pass


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "centralino"


def build() -> Path:
    """The compiled generator (compiled now if this source version was not built yet)."""
    source = SOURCE.read_bytes()
    binary = _cache_dir() / f"rtpgen-{hashlib.sha256(source).hexdigest()[:12]}"
    if binary.exists():
        return binary
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise GeneratorUnavailable("the relay bench builds its packet generator with a C compiler: apt-get install gcc")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    done = subprocess.run([cc, "-O2", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        raise GeneratorUnavailable(f"could not build {SOURCE.name}: {done.stderr.strip()[:400]}")
    tmp.replace(binary)
    return binary


@dataclass(frozen=True)
class Result:
    calls: int
    seconds: float
    sent: int
    received: int
    late: int  # arrived more than LATE_MS after it was sent
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    generator_cpu_s: float

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received)

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.sent if self.sent else 1.0

    @property
    def late_ratio(self) -> float:
        return self.late / self.sent if self.sent else 0.0

    @property
    def lost_or_late_ratio(self) -> float:
        """What a listener loses: packets that never came plus those too late to be played."""
        return (self.lost + self.late) / self.sent if self.sent else 1.0

    @classmethod
    def parse(cls, line: str) -> Result:
        d = json.loads(line)
        return cls(d["calls"], d["seconds"], d["sent"], d["received"], d["late_50ms"], d["p50_ms"], d["p99_ms"],
                   d["p999_ms"], d["max_ms"], d["generator_cpu_s"])


class Generator:
    """One run: ``start(n)`` gives the 2n local ports (call i: 2i is side A, 2i+1 side B);
    ``go(duration, targets)`` sends to the relay's ports and returns the timed result."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def start(self, calls: int) -> list[int]:
        self.proc = subprocess.Popen([str(build())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{calls}\n")
        self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        if not words or words[0] != "ports" or len(words) != 2 * calls + 1:
            raise GeneratorUnavailable(f"rtpgen did not start: {' '.join(words)[:200]!r}")
        return [int(w) for w in words[1:]]

    def go(self, duration: float, targets: list[int]) -> Result:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"go {duration} " + " ".join(map(str, targets)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        self.proc.wait(10)
        return Result.parse(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
