"""Running SIPp and reading what it measured (the stat CSV and the per-call response times)."""

from __future__ import annotations

import csv
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = Path(__file__).parent / "scenarios"


@dataclass
class SippResult:
    target_rate: float
    successful: int
    failed: int
    elapsed: float  # seconds SIPp ran
    retransmissions: int = 0
    rtt_ms: list[float] = field(default_factory=list)
    returncode: int = 0
    errors: str = ""

    @property
    def total(self) -> int:
        return self.successful + self.failed

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.total if self.total else 1.0

    @property
    def achieved_rate(self) -> float:
        return self.successful / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float | None:
        if not self.rtt_ms:
            return None
        if len(self.rtt_ms) == 1:
            return self.rtt_ms[0]
        return statistics.quantiles(self.rtt_ms, n=100, method="inclusive")[int(p) - 1]


def merge(results: list[SippResult]) -> SippResult:
    """Several SIPp callers run side by side as one measurement: counts add up, response
    times pool, the run lasts as long as the slowest."""
    if len(results) == 1:
        return results[0]
    return SippResult(
        target_rate=sum(r.target_rate for r in results),
        successful=sum(r.successful for r in results),
        failed=sum(r.failed for r in results),
        elapsed=max(r.elapsed for r in results),
        retransmissions=sum(r.retransmissions for r in results),
        rtt_ms=[t for r in results for t in r.rtt_ms],
        returncode=max(r.returncode for r in results),
        errors="".join(r.errors for r in results)[:4000],
    )


def sipp_binary() -> str | None:
    return shutil.which("sipp")


def parse_stat_csv(path: Path) -> dict[str, str]:
    """The last row of SIPp's -trace_stat file, as column → value."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def parse_rtt_csv(path: Path) -> list[float]:
    """Response times in ms from SIPp's -trace_rtt file (Date_ms;response_time_ms;rtd_no)."""
    out: list[float] = []
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for row in csv.reader(f, delimiter=";"):
            if len(row) >= 2 and row[1].replace(".", "", 1).isdigit():
                out.append(float(row[1]))
    return out


def run_sipp(
    scenario: str | Path,
    target: str,
    *,
    rate: float,
    count: int,
    inf: Path | None = None,
    transport: str = "u1",
    local_ip: str = "127.0.0.1",
    extra: list[str] | None = None,
    timeout: float | None = None,
    auth_uri: str | None = None,
) -> SippResult:
    """``auth_uri``: the URI SIPp puts in its digest (without ``sip:``). It must name the
    Request-URI — the switch refuses credentials computed for another URI — and SIPp's own
    default is ``remote_ip:remote_port``, so scenarios that authenticate pass it."""
    sipp = sipp_binary()
    if sipp is None:
        raise FileNotFoundError("sipp is not installed (Debian package: sip-tester)")
    scenario = Path(scenario)
    if not scenario.is_absolute() and not scenario.exists():
        scenario = SCENARIOS / scenario
    with tempfile.TemporaryDirectory(prefix="sipp-") as tmp:
        work = Path(tmp)
        cmd = [
            sipp, target, "-sf", str(scenario), "-m", str(count), "-r", str(rate), "-rp", "1000",
            "-t", transport, "-i", local_ip, "-p", "0", "-nostdin", "-trace_stat", "-stf",
            str(work / "stat.csv"), "-fd", "1", "-trace_rtt", "-rtt_freq", "1", "-trace_err",
            "-error_file", str(work / "errors.log"), "-timeout", f"{int(timeout or count / max(rate, 1) + 30)}s",
            "-timeout_error", "-max_recv_loops", "10000", *(["-auth_uri", auth_uri] if auth_uri else []),
        ]
        if inf is not None:
            cmd += ["-inf", str(inf)]
        cmd += extra or []
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                              timeout=(timeout or count / max(rate, 1) + 30) + 30)
        wall = time.monotonic() - start
        stats = parse_stat_csv(work / "stat.csv") if (work / "stat.csv").exists() else {}
        rtt_files = list(work.glob("*_rtt.csv"))
        rtts = parse_rtt_csv(rtt_files[0]) if rtt_files else []
        errors = (work / "errors.log").read_text(errors="replace")[:4000] if (work / "errors.log").exists() else ""
    elapsed = _epoch(stats.get("CurrentTime", "")) - _epoch(stats.get("StartTime", ""))
    if elapsed <= 0:
        elapsed = _hms(stats.get("ElapsedTime(C)", "")) or wall
    return SippResult(
        target_rate=rate,
        successful=int(stats.get("SuccessfulCall(C)", 0) or 0),
        failed=int(stats.get("FailedCall(C)", 0) or 0) + max(0, count - int(stats.get("TotalCallCreated", count) or count)),
        elapsed=elapsed,
        retransmissions=int(stats.get("Retransmissions(C)", 0) or 0),
        rtt_ms=rtts,
        returncode=proc.returncode,
        errors=errors or proc.stderr[-2000:],
    )


def start_sipp(scenario: str | Path, *, local_ip: str, port: int, media_port: int, count: int,
               extra: list[str] | None = None, log_dir: Path | None = None) -> subprocess.Popen:
    """A SIPp server (UAS) in the background, e.g. a phone answering and echoing RTP."""
    sipp = sipp_binary()
    if sipp is None:
        raise FileNotFoundError("sipp is not installed (Debian package: sip-tester)")
    scenario = Path(scenario)
    if not scenario.exists():
        scenario = SCENARIOS / scenario
    cmd = [sipp, "-sf", str(scenario), "-i", local_ip, "-p", str(port), "-mp", str(media_port),
           "-m", str(count), "-nostdin", "-trace_err", *(extra or [])]
    proc = subprocess.Popen(cmd, cwd=log_dir or tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_listening(proc, local_ip, port)
    return proc


def _wait_listening(proc: subprocess.Popen, ip: str, port: int, timeout: float = 5.0) -> None:
    """Return once the SIPp server holds its port: calls sent to it before then are lost, and
    a SIPp that could not start (its port taken) must say so, not leave callers hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SIPp exited at start: {(proc.stderr.read() if proc.stderr else '')[-500:]}")
        bound = _udp_ports_bound()
        if bound is None or port in bound:  # no kernel table to read (not Linux): do not wait
            return
        time.sleep(0.02)
    raise RuntimeError(f"SIPp did not open {ip}:{port} within {timeout:g} s")


def _udp_ports_bound() -> set[int] | None:
    """Local UDP ports with a socket bound (read from the kernel's table: probing by binding
    could itself take the port from SIPp at the wrong moment)."""
    ports: set[int] = set()
    read = False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        read = True
        for line in lines:
            local = line.split()[1]
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports if read else None


def _epoch(text: str) -> float:
    """SIPp's time columns read 'date<TAB>time<TAB>epoch'."""
    try:
        return float(text.split("\t")[-1])
    except ValueError:
        return 0.0


def _hms(text: str) -> float:
    """'00:00:02' or '00:00:02:123' → seconds (SIPp prints ElapsedTime this way)."""
    parts = text.strip().split(":")
    try:
        if len(parts) == 4:
            h, m, s, ms = (int(p) for p in parts)
            return h * 3600 + m * 60 + s + ms / 1000
        if len(parts) == 3:
            h, m, s = (float(p) for p in parts)
            return h * 3600 + m * 60 + s
    except ValueError:
        pass
    return 0.0


def write_users_csv(path: Path, users: list[tuple[str, str]], domain: str) -> Path:
    """An injection file for register_digest.xml: user; [authentication ...]; domain."""
    lines = ["SEQUENTIAL"]
    lines += [f"{u};[authentication username={u} password={p}];{domain};" for u, p in users]
    path.write_text("\n".join(lines) + "\n")
    return path


def scenario_copy(name: str, directory: Path, **placeholders: str | Path) -> Path:
    """A copy of one of our scenarios with its placeholders (e.g. AGENT_PCAP) filled in."""
    text = (SCENARIOS / name).read_text()
    for key, value in placeholders.items():
        text = text.replace(key, str(value))
    path = directory / name
    path.write_text(text)
    return path


def register_contact(switch: tuple[str, int], user: str, password: str, contact: tuple[str, int],
                     domain: str, expires: int = 3600) -> int:
    """Register ``contact`` (a SIPp UAS, which cannot register itself and then answer) as the
    extension ``user``, with digest; returns the final status."""
    import socket

    from ..switch.sip.auth import DigestClient
    from ..switch.sip.message import Request
    from ..switch.sip.parser import parse_datagram
    from ..switch.sip.uri import parse_uri

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((contact[0], 0))
        sock.settimeout(2)
        auth, status = None, 0
        for cseq in (1, 2):
            headers = [("Via", f"SIP/2.0/UDP {contact[0]}:{sock.getsockname()[1]};branch=z9hG4bKreg{user}{cseq};rport"),
                       ("Max-Forwards", "70"), ("From", f"<sip:{user}@{domain}>;tag=r{user}"),
                       ("To", f"<sip:{user}@{domain}>"), ("Call-ID", f"register-{user}-{contact[1]}"),
                       ("CSeq", f"{cseq} REGISTER"), ("Contact", f"<sip:{user}@{contact[0]}:{contact[1]}>"),
                       ("Expires", str(expires))]
            if auth:
                headers.append(("Authorization", auth))
            sock.sendto(Request("REGISTER", parse_uri(f"sip:{domain}"), headers).serialize(), switch)
            resp = parse_datagram(sock.recvfrom(65535)[0])
            status = resp.status
            if status != 401:
                return status
            challenge = DigestClient.pick(resp.header_values("WWW-Authenticate"))
            auth = DigestClient(user, password).authorize(challenge, "REGISTER", f"sip:{domain}")
        return status
    finally:
        sock.close()
