"""What the switch leaves on disk and who may drive it: the data directory 0700 and its files
0600 whatever the umask (the database holds SIP passwords and the nonce secret); generated
passwords printed once; the control API refuses requests without the local credential, with a
foreign Host or Origin (a web page, DNS rebinding), and the CLI finds the credential itself."""

from __future__ import annotations

import http.client
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time

from helpers import Caller, RunningSwitch, free_port, plan_text, wait_for


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        data = tmp_path / "var" / "centralino"
        text = plan_text(tmp_path, 'routes:\n  - {match: {to: "600"}, action: {play: "tone:1000/500"}, record: true}\n',
                         extensions='extensions:\n  "1001": {password: "pw1001"}\n')
        text = text.replace(f'storage: "sqlite:{tmp_path / "centralino.db"}"',
                            f'storage: "sqlite:{data / "centralino.db"}"\n  recordings: "{data / "recordings"}"')
        with RunningSwitch(text) as sw:
            alice = Caller(sw.address("udp"), "1001", "pw1001")
            resp = alice.call("600")
            assert resp is not None and resp.status == 200
            alice._ack(alice.last_invite, resp)
            wait_for(lambda: list((data / "recordings").rglob("*.wav")), 5)
            time.sleep(0.8)
            token = data / "api-token"
            assert mode(token) == 0o600
        assert mode(data) == 0o700 and mode(tmp_path / "var") == 0o700
        for name in ("centralino.db", "centralino.db-wal", "centralino.db-shm"):
            if (data / name).exists():
                assert mode(data / name) == 0o600, name
        recordings = list((data / "recordings").rglob("*.wav"))
        assert recordings and all(mode(r) == 0o600 for r in recordings)
        assert all(mode(d) == 0o700 for d in (data / "recordings").rglob("*") if d.is_dir())
    finally:
        os.umask(old)


def test_an_older_world_readable_database_is_tightened(tmp_path):
    db = tmp_path / "centralino.db"
    db.write_bytes(b"")
    os.chmod(db, 0o644)
    with RunningSwitch(plan_text(tmp_path)):
        assert mode(db) == 0o600


def test_generated_passwords_are_printed_once_and_shown_on_demand(tmp_path):
    plan = tmp_path / "plan.yaml"
    sip, api = free_port(), free_port(socket.SOCK_STREAM)
    plan.write_text(textwrap.dedent(f"""\
        server:
          sip: {{listen: ["udp:127.0.0.1:{sip}"]}}
          api: {{listen: "127.0.0.1:{api}"}}
          storage: "sqlite:data/pbx.db"
        extensions:
          "1001": {{name: Alice}}
          "1002": {{password: "in-the-plan"}}
        """))

    def run_once() -> str:
        proc = subprocess.Popen([sys.executable, "-m", "centralino", "run", "--config", str(plan)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if "(generated now; shown once)" in line or "generated earlier" in line or len(lines) > 60:
                    break
        finally:
            proc.terminate()
            rest = proc.communicate(timeout=20)[0]
        return "".join(lines) + rest

    first = run_once()
    printed = re.findall(r"extension 1001 \(Alice\): user 1001, password (\S+) \(generated now; shown once\)", first)
    assert len(printed) == 1, first
    assert "in-the-plan" not in first
    second = run_once()
    assert printed[0] not in second and "1 extension(s) use passwords generated earlier" in second, second
    shown = subprocess.run([sys.executable, "-m", "centralino", "passwords", "--config", str(plan), "--show"],
                           capture_output=True, text=True, timeout=30).stdout
    assert f"extension 1001 (Alice): {printed[0]} (generated)" in shown
    assert "extension 1002: in-the-plan (in the plan)" in shown
    masked = subprocess.run([sys.executable, "-m", "centralino", "passwords", "--config", str(plan)],
                            capture_output=True, text=True, timeout=30).stdout
    assert printed[0] not in masked and "********" in masked
    assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "pbx.db") == 0o600


def raw(api: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    host, port = api.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.putrequest(method, path, skip_host=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_control_api_needs_the_local_credential_and_its_own_host(tmp_path):
    with RunningSwitch(plan_text(tmp_path)) as sw:
        token = (tmp_path / "api-token").read_text().strip()
        good = {"Host": sw.api, "Authorization": f"Bearer {token}"}
        assert raw(sw.api, "GET", "/api/v1/status", good) == 200
        assert raw(sw.api, "GET", "/api/v1/status", {"Host": sw.api}) == 401
        assert raw(sw.api, "POST", "/api/v1/reload", {"Host": sw.api, "Authorization": "Bearer guessed"}) == 401
        # what a web page can send: text/plain, its own Origin, no token
        assert raw(sw.api, "PUT", "/api/v1/schedules/office", {"Host": sw.api, "Origin": "http://evil.example",
                                                               "Content-Type": "text/plain"},
                   b'{"mode": "closed"}') in (401, 403)
        # DNS rebinding: the page's name in Host, even with a token
        assert raw(sw.api, "GET", "/api/v1/status", {**good, "Host": f"evil.example:{sw.api.rsplit(':', 1)[1]}"}) == 421
        assert raw(sw.api, "GET", "/api/v1/status", {**good, "Origin": "http://evil.example"}) == 403
        assert raw(sw.api, "GET", "/api/v1/status", {**good, "Origin": f"http://{sw.api}"}) == 200
        assert raw(sw.api, "GET", "/api/v1/status", {**good, "Host": f"localhost:{sw.api.rsplit(':', 1)[1]}"}) == 200
        # the CLI finds the credential on its own (the plan's data directory, or by address)
        plan = tmp_path / "plan.yaml"
        plan.write_text(f'server: {{api: {{listen: "{sw.api}"}}, storage: "sqlite:{tmp_path / "centralino.db"}"}}\n')
        env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR",)}
        env["XDG_DATA_HOME"] = str(tmp_path / "elsewhere")  # not the runtime copy: the data directory's file
        r = subprocess.run([sys.executable, "-m", "centralino", "status", "--config", str(plan)],
                           capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0 and "registrations (0)" in r.stdout, r.stdout + r.stderr
        r = subprocess.run([sys.executable, "-m", "centralino", "status", "--api", sw.api],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([sys.executable, "-m", "centralino", "status", "--api", sw.api],
                           capture_output=True, text=True, timeout=30, env={**env, "CENTRALINO_API_TOKEN": "wrong"})
        assert r.returncode == 1 and "refused our credential" in r.stderr
        assert sw.status()["security"]["api_refused"] >= 6
