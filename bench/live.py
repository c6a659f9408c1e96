"""What the benchmarks that drive a running switch share: ``centralino run`` at its defaults in a
scratch folder with a bench plan, the admin logged in, stopped afterwards; and the report's
stamp and files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .runner import _free_port


class SwitchDidNotStart(RuntimeError):
    pass


@dataclass(frozen=True)
class LiveSwitch:
    work: Path  # the scratch folder (the plan, the database, the switch's log)
    api: str  # host:port of the API
    sip: str  # host:port of the SIP listener
    token: str  # the bench admin's session token


def login(api: str) -> str:
    req = urllib.request.Request(f"http://{api}/api/v1/auth/login", method="POST",
                                 data=json.dumps({"user": "admin", "password": "bench-admin"}).encode(),
                                 headers={"Content-Type": "application/json"})
    return str(json.load(urllib.request.urlopen(req, timeout=10))["token"])


@contextmanager
def live_switch(prefix: str, write_plan: Callable[[Path, int, int], Path]) -> Iterator[LiveSwitch]:
    """``write_plan(work, sip_port, api_port)`` writes the plan (with the user admin /
    bench-admin); raises SwitchDidNotStart (after printing its log) when it never answers."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        sip_port, api_port = _free_port(2), _free_port(1)
        plan = write_plan(work, sip_port, api_port)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(work / "run")}
        log = (work / "switch.log").open("w")
        switch = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan)],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env)
        api = f"127.0.0.1:{api_port}"
        try:
            token = ""
            for _ in range(120):
                try:
                    token = login(api)
                    break
                except OSError:
                    time.sleep(0.25)
            if not token:
                print((work / "switch.log").read_text()[-3000:], file=sys.stderr)
                raise SwitchDidNotStart(f"the switch did not answer on {api}")
            yield LiveSwitch(work, api, f"127.0.0.1:{sip_port}", token)
        finally:
            switch.terminate()
            try:
                switch.wait(20)
            except subprocess.TimeoutExpired:
                switch.kill()


def stamp(report: dict) -> dict:
    report.update(command="centralino bench " + " ".join(sys.argv[2:]), settings="defaults",
                  when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  machine={"cpus": os.cpu_count(), "python": platform.python_version()})
    return report


def save(out: str, name: str, report: dict, markdown: str) -> None:
    """``<name>-<time>.json`` and ``.md`` in ``out``; the Markdown is printed."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y%m%d-%H%M%S")
    (folder / f"{name}-{when}.json").write_text(json.dumps(report, indent=2))
    (folder / f"{name}-{when}.md").write_text(markdown)
    print(markdown)
