"""The systems a benchmark drives: Centralino itself, and for comparison in the same run a
Kamailio 5.x stateful proxy (a config written here) and the sippy B2BUA (PyPI `sippy`).

Each target is started in the background and tells where SIPp should send its calls; for the
``calls`` scenario every target hands the calls to the same kind of SIPp UAS.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..api.server import call_api
from .sipp import start_sipp

KAMAILIO_CFG = """#!KAMAILIO
# A plain stateful proxy: record-route, relay every new INVITE to the benchmark's UAS.
debug=0
log_stderror=yes
children=2
listen=udp:127.0.0.1:{port}
disable_tcp=yes
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    # the Request-URI's user names the benchmark's UAS port (one per SIPp pair)
    $du = "sip:127.0.0.1:" + $rU;
    t_relay();
}}
"""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    name: str
    sip_port: int
    proc: subprocess.Popen
    helpers: list[subprocess.Popen] = field(default_factory=list)
    services: list[str] = field(default_factory=lambda: ["answer"])  # the called user, per SIPp pair

    def stop(self) -> None:
        for p in [*self.helpers, self.proc]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def missing(name: str) -> str | None:
    """What to install for a peer, or None when it is there."""
    if name == "kamailio" and shutil.which("kamailio") is None:
        return "Kamailio is not installed: apt-get install kamailio"
    if name == "sippy" and shutil.which("b2bua_radius") is None:
        return "the sippy B2BUA is not installed: pip install 'centralino[bench]' (or pip install sippy)"
    return None


ANSWERER = "uas_answer.xml"  # calls benchmarks: 200 at once, no 180 (see the scenario)


def start_uas(work: Path) -> tuple[int, subprocess.Popen]:
    port = free_port()
    uas = start_sipp(ANSWERER, local_ip="127.0.0.1", port=port, media_port=free_port(),
                     count=10_000_000, log_dir=work)
    return port, uas


def start_kamailio(work: Path, pairs: int = 1) -> Target:
    answerers = [start_uas(work) for _ in range(pairs)]
    port = free_port()
    modules = next((str(p) for p in Path("/usr/lib").glob("*/kamailio/modules") if (p / "tm.so").exists()),
                   "/usr/lib/x86_64-linux-gnu/kamailio/modules")
    cfg = work / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(port=port, modules=modules))
    proc = subprocess.Popen(["kamailio", "-f", str(cfg), "-DD", "-E", "-m", "256", "-M", "32"],
                            stdout=(work / "kamailio.log").open("w"), stderr=subprocess.STDOUT)
    time.sleep(1.5)
    if proc.poll() is not None:
        raise RuntimeError(f"kamailio did not start: {(work / 'kamailio.log').read_text()[-500:]}")
    return Target("kamailio", port, proc, [uas for _, uas in answerers], [str(p) for p, _ in answerers])


def start_sippy(work: Path, pairs: int = 1) -> Target:
    """sippy routes every call to one static address: all SIPp callers share one answerer."""
    uas_port, uas = start_uas(work)
    port = free_port()
    proc = subprocess.Popen(
        ["b2bua_radius", "--sip_address=127.0.0.1", f"--sip_port={port}", f"--static_route=127.0.0.1:{uas_port}",
         "--foreground=on", "--acct_enable=off", "--auth_enable=off", f"--logfile={work / 'sippy.log'}"],
        stdout=(work / "sippy.out").open("w"), stderr=subprocess.STDOUT)
    time.sleep(2.0)
    if proc.poll() is not None:
        raise RuntimeError("the sippy B2BUA did not start")
    return Target("sippy", port, proc, [uas], ["answer"] * pairs)


def start_centralino(work: Path, plan: Path, api_port: int, sip_port: int,
                     answerers: list[tuple[str, Callable[[], subprocess.Popen]]]) -> Target:
    """The switch, then each answering SIPp registered as its extension (the pair's service)."""
    proc = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan)],
                            stdout=(work / "switch.log").open("w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the switch did not start")
        try:
            if call_api(f"127.0.0.1:{api_port}", "GET", "/api/v1/status", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)  # also after an answer that is not 200: a tight loop here would load the switch
    else:
        proc.terminate()
        raise RuntimeError(f"the switch did not answer /api/v1/status within 30 s (see {work / 'switch.log'})")
    target = Target("centralino", sip_port, proc, services=[ext for ext, _ in answerers] or ["answer"])
    for _, start in answerers:
        target.helpers.append(start())
    return target
