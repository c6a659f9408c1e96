"""Test helpers: a switch running in a background thread on loopback, a tiny SIP client,
and access to the real external peers (SIPp, baresip) with CI-aware skipping."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from centralino.api.server import call_api
from centralino.app import RunOptions, Switch
from centralino.config.loader import parse_plan_text
from centralino.switch.sip.auth import DigestClient
from centralino.switch.sip.message import Request, Response
from centralino.switch.sip.parser import StreamParser, parse_datagram
from centralino.switch.sip.uri import parse_uri

DATA = Path(__file__).parent / "data"
TORTURE = DATA / "torture"


def need_tool(name: str) -> str:
    """Path of an external peer; a missing one skips locally and fails under CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI (the README's test command installs it)")
        pytest.skip(f"{name} not installed")
    return path


def plan_text(tmp: Path, extra: str = "", *, security: str = "", registrar: str = "",
              extensions: str | None = None, host: str = "127.0.0.1") -> str:
    exts = extensions if extensions is not None else textwrap.dedent("""\
        extensions:
          "1001": {password: "secret1001", name: Alice}
          "1002": {password: "secret1002", name: Bob, max_contacts: 2}
          "watson": {password: "elementary"}
          "user": {password: "userpass"}
          "j.user": {password: "juserpass"}
        """)
    return textwrap.dedent(f"""\
        server:
          sip:
            listen: ["udp:{host}:0", "tcp:{host}:0"]
            domain: example.com
          api: {{listen: "127.0.0.1:0"}}
          storage: "sqlite:{tmp / 'centralino.db'}"
          registrar: {{min_expires: 10, default_expires: 3600, max_expires: 7200, qualify_interval: 0{registrar}}}
          security: {{rate_limit: 0{security}}}
        """) + exts + extra


class RunningSwitch:
    """Runs Switch.run() in its own thread and event loop; tests talk to it over sockets."""

    def __init__(self, text: str, plan_path: str | None = None) -> None:
        self.loaded = parse_plan_text(text, plan_path or "test-plan.yaml")
        self.plan_path = plan_path
        self.switch: Switch | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._error: BaseException | None = None
        self._started = threading.Event()

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.switch = Switch(self.loaded, RunOptions(plan_path=self.plan_path, drain_seconds=1.0))
        self._started.set()
        try:
            self.loop.run_until_complete(self.switch.run())
        except BaseException as exc:
            self._error = exc
        finally:
            self.loop.close()

    def __enter__(self) -> RunningSwitch:
        self._thread.start()
        self._started.wait(5)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self._error is not None:
                raise self._error
            if self.switch is not None and self.switch.ready.is_set():
                return self
            time.sleep(0.01)
        raise TimeoutError("switch did not start")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.loop is not None and self.switch is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.switch.stop)
            self._thread.join(10)

    def call(self, fn, *args):  # run fn(*args) on the switch's loop and return its result
        async def wrap():
            r = fn(*args)
            if asyncio.iscoroutine(r):
                r = await r
            return r
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def address(self, transport: str) -> tuple[str, int]:
        assert self.switch is not None and self.switch.transports is not None
        return self.switch.transports.local_address(transport)

    @property
    def api(self) -> str:
        assert self.switch is not None and self.switch.api.address is not None
        host, port = self.switch.api.address
        return f"{host}:{port}"

    def status(self) -> dict:
        code, data = call_api(self.api, "GET", "/api/v1/status")
        assert code == 200
        return data


# --------------------------------------------------------------------------------------------------
class SipClient:
    """A deliberately small UAC for tests that need to craft exact messages."""

    def __init__(self, server: tuple[str, int], transport: str = "udp", local_ip: str = "127.0.0.1",
                 sock: socket.socket | None = None):
        self.server = server
        self.transport = transport
        if sock is not None:  # an already connected stream socket (TLS)
            self.sock = sock
            self.parser = StreamParser()
            self.pending = []
        elif transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((local_ip, 0))
        else:
            self.sock = socket.create_connection(server, timeout=5, source_address=(local_ip, 0))
            self.parser = StreamParser()
            self.pending: list = []
        self.sock.settimeout(3)
        self.local = self.sock.getsockname()
        self.cseq = 0
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float = 3.0) -> Response | Request | None:
        self.sock.settimeout(timeout)
        try:
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(65535)
                return parse_datagram(data)
            while not self.pending:
                data = self.sock.recv(65535)
                if not data:
                    return None
                self.pending.extend(self.parser.feed(data))
            return self.pending.pop(0)
        except TimeoutError:
            return None

    def register(self, user: str, *, contact: str | None = None, expires: int | None = 3600,
                 auth: str | None = None, extra: list[tuple[str, str]] | None = None,
                 domain: str = "example.com") -> Request:
        self.cseq += 1
        host, port = self.local
        headers = [
            ("Via", f"SIP/2.0/{self.transport.upper()} {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{user}@{domain}>;tag={self.tag}"),
            ("To", f"<sip:{user}@{domain}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
        ]
        if contact is not False:
            headers.append(("Contact", contact or f"<sip:{user}@{host}:{port};transport={self.transport}>"))
        if expires is not None:
            headers.append(("Expires", str(expires)))
        if auth:
            headers.append(("Authorization", auth))
        headers += extra or []
        return Request("REGISTER", parse_uri(f"sip:{domain}"), headers)

    def transact(self, req: Request, timeout: float = 3.0) -> Response | None:
        """Send a request and return its final response (skipping 1xx)."""
        self.send(req.serialize())
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self.recv(max(0.05, deadline - time.time()))
            if isinstance(msg, Response) and msg.status >= 200:
                return msg
        return None

    def register_with_auth(self, user: str, password: str, **kw) -> Response | None:
        first = self.transact(self.register(user, **kw))
        if first is None or first.status != 401:
            return first
        challenge = DigestClient.pick(first.header_values("WWW-Authenticate"))
        assert challenge is not None
        auth = DigestClient(user, password).authorize(challenge, "REGISTER", f"sip:{kw.get('domain', 'example.com')}")
        return self.transact(self.register(user, auth=auth, **kw))


# --------------------------------------------------------------------------------------------------
def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def baresip_config(ip: str, port: int, source: str = "/dev/null", record_dir: str | None = None) -> str:
    """A baresip 1.0 config: G.711 only, audio from a WAV file (aufile), what it receives
    recorded to WAV files in ``record_dir`` (sndfile) when given."""
    lines = [
        "poll_method\t\tepoll", f"sip_listen\t\t{ip}:{port}", "module_path\t\t/usr/lib/baresip/modules",
        "module\t\t\tg711.so", "module\t\t\taufile.so",
        *(["module\t\t\tsndfile.so"] if record_dir else []),
        "module_tmp\t\tuuid.so", "module_tmp\t\taccount.so", "module_app\t\tmenu.so",
        f"audio_source\t\taufile,{source}", "audio_player\t\taufile,/dev/null",
        *([f"snd_path\t\t{record_dir}"] if record_dir else []),
    ]
    return "\n".join(lines) + "\n"


class NetNamespace:
    """A network namespace with a veth pair (10.77.x.1 and 10.77.x.2) and a default route, for
    softphones (baresip 1.0 will not use loopback for media). Needs root and iproute2."""

    def __init__(self) -> None:
        import subprocess

        self._run = subprocess.run
        self.name = f"cz{os.getpid() % 10000}{uuid.uuid4().hex[:4]}"
        octet = int(self.name[-2:], 16) % 250 + 1
        self.switch_ip = f"10.77.{octet}.1"
        self.phone_ip = f"10.77.{octet}.2"

    def sh(self, *args: str) -> None:
        self._run(["ip", "netns", "exec", self.name, *args], check=True, capture_output=True)

    def __enter__(self) -> NetNamespace:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            if os.environ.get("CI"):
                pytest.fail("network namespace tests need root and iproute2 under CI")
            pytest.skip("needs root and iproute2 for a network namespace")
        self._run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.sh("ip", "link", "set", "lo", "up")
        self.sh("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb")
        self.sh("ip", "addr", "add", f"{self.switch_ip}/24", "dev", "va")
        self.sh("ip", "addr", "add", f"{self.phone_ip}/24", "dev", "vb")
        self.sh("ip", "link", "set", "va", "up")
        self.sh("ip", "link", "set", "vb", "up")
        self.sh("ip", "route", "add", "default", "dev", "va")
        return self

    def __exit__(self, *exc: object) -> None:
        self._run(["ip", "netns", "delete", self.name], capture_output=True)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------------------------------
def sdp_for(port: int, codecs: str = "0 8 101", ip: str = "127.0.0.1") -> str:
    """An SDP for a test phone on ``port`` offering ``codecs`` (payload types)."""
    names = {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "101": "telephone-event/8000",
             "111": "opus/48000/2"}
    maps = "".join(f"a=rtpmap:{pt} {names[pt]}\r\n" for pt in codecs.split())
    return (f"v=0\r\no=test 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {codecs}\r\n{maps}a=sendrecv\r\n")


SDP_OFFER = ("v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
             "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")


class Phone(SipClient):
    """A scripted SIP phone for call tests: registers, then answers INVITEs as told."""

    def __init__(self, server, user, password, behaviour="answer", local_ip="127.0.0.1"):
        super().__init__(server, local_ip=local_ip)
        self.user, self.password = user, password
        self.behaviour = behaviour  # answer | ring | early | busy | silent | answer-on-cancel | late-answer
        self.received: list[Request] = []
        self.invite: Request | None = None
        self.session_expires: int | None = None
        self.sdp: str | None = None  # the SDP this phone answers with (default: SDP_OFFER, port 40000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        resp = self.register_with_auth(self.user, self.password)
        assert resp is not None and resp.status == 200
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(2)

    def _reply(self, req, status, body=b"", extra=()):
        from centralino.switch.sip.message import make_response
        headers = [("Contact", f"<sip:{self.user}@{self.local[0]}:{self.local[1]}>"), *extra]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        self.send(make_response(req, status, to_tag=f"ph{self.user}", headers=headers, body=body).serialize())

    def _loop(self):
        while not self._stop.is_set():
            msg = self.recv(0.1)
            if not isinstance(msg, Request):
                continue
            self.received.append(msg)
            if msg.method == "INVITE" and msg.to.tag is not None:  # re-INVITE: mirror the direction
                offer = msg.body.decode()
                mirror = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
                direction = next((d for d in mirror if f"a={d}" in offer), None)
                answer = self.sdp or SDP_OFFER.format(port=40002)  # a phone keeps its own media address
                if direction:
                    answer = answer.replace("a=sendrecv", f"a={mirror[direction]}")
                self._reply(msg, 200, answer.encode())
            elif msg.method in ("UPDATE", "INFO", "NOTIFY"):
                self._reply(msg, 200)
            elif msg.method == "INVITE":
                self.invite = msg
                if self.behaviour == "silent":
                    continue
                if self.behaviour == "early":
                    self._reply(msg, 183, SDP_OFFER.format(port=40004).encode())
                else:
                    self._reply(msg, 180)
                if self.behaviour == "busy":
                    self._reply(msg, 486)
                elif self.behaviour == "answer":
                    # a phone with session timers lets the caller (the switch) refresh
                    timer = [("Session-Expires", f"{self.session_expires};refresher=uac"), ("Require", "timer")] \
                        if self.session_expires and msg.header("Session-Expires") else []
                    self._reply(msg, 200, (self.sdp or SDP_OFFER.format(port=40000)).encode(), extra=timer)
            elif msg.method in ("BYE", "CANCEL", "OPTIONS"):
                self._reply(msg, 200)
                if msg.method == "CANCEL" and self.invite is not None:
                    if self.behaviour == "answer-on-cancel":  # our 200 crosses the CANCEL
                        self._reply(self.invite, 200, SDP_OFFER.format(port=40000).encode())
                    elif self.behaviour != "late-answer":  # late-answer: the test answers later itself
                        self._reply(self.invite, 487)


def refer(phone: Phone, target: str, domain: str = "example.com", replaces: str | None = None) -> None:
    """The phone (the callee of its current call) transfers the caller to ``target``; with
    ``replaces`` (call-id;to-tag=..;from-tag=..) it is an attended transfer."""
    from centralino.switch.sip.dialog import Dialog

    d = Dialog.from_uas(phone.invite, f"ph{phone.user}")
    d.local_seq = 100
    host, port = phone.local
    req = d.create_request("REFER", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport",
                           contact=f"<sip:{phone.user}@{host}:{port}>",
                           extra=[("Refer-To", f"<sip:{target}@{domain}{_replaces(replaces)}>"),
                                  ("Referred-By", f"<sip:{phone.user}@{domain}>")])
    phone.send(req.serialize())


def _replaces(value: str | None) -> str:
    from urllib.parse import quote

    return "" if value is None else "?Replaces=" + quote(value, safe="")


class Caller(SipClient):
    """Places one authenticated INVITE and can CANCEL or BYE it."""

    def __init__(self, server, user, password, local_ip="127.0.0.1"):
        super().__init__(server, local_ip=local_ip)
        self.user, self.password = user, password
        self.responses: list[Response] = []
        self.sdp: str | None = None  # the offer (default: SDP_OFFER on the SIP port + 1)

    def invite(self, to: str, *, auth: bool = True, domain: str = "example.com", cseq: int = 1,
               extra=()) -> Request:
        host, port = self.local
        headers = [
            ("Via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport"),
            ("Max-Forwards", "70"), ("From", f"<sip:{self.user}@{domain}>;tag={self.tag}"),
            ("To", f"<sip:{to}@{domain}>"), ("Call-ID", self.call_id), ("CSeq", f"{cseq} INVITE"),
            ("Contact", f"<sip:{self.user}@{host}:{port}>"), ("Content-Type", "application/sdp"), *extra,
        ]
        return Request("INVITE", parse_uri(f"sip:{to}@{domain}"), headers,
                       (self.sdp or SDP_OFFER.format(port=port + 1)).encode())

    def call(self, to: str, *, until: int = 200, timeout: float = 5.0) -> Response | None:
        """INVITE (answering a 407 once); returns the first response with status >= until."""
        req = self.invite(to)
        self.send(req.serialize())
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = self.recv(max(0.05, deadline - time.time()))
            if not isinstance(msg, Response):
                continue
            self.responses.append(msg)
            if msg.status == 407 and msg.cseq.seq == 1:
                self._ack(req, msg)
                ch = DigestClient.pick(msg.header_values("Proxy-Authenticate"))
                cred = DigestClient(self.user, self.password).authorize(ch, "INVITE", str(req.uri))
                req = self.invite(to, cseq=2, extra=[("Proxy-Authorization", cred)])
                self.last_invite = req
                self.send(req.serialize())
                continue
            self.last_invite = req
            if msg.status >= until:
                if msg.status >= 300:
                    self._ack(req, msg)
                return msg
        return None

    def _ack(self, req, resp):
        headers = [("Via", req.header_values("Via")[0]), ("Max-Forwards", "70"), ("From", req.header("From")),
                   ("To", resp.header("To")), ("Call-ID", req.call_id), ("CSeq", f"{req.cseq.seq} ACK")]
        self.send(Request("ACK", req.uri, headers).serialize())

    def hang_up(self, answer: Response, cseq: int) -> Response | None:
        """BYE in the dialog that ``answer`` (our INVITE's 2xx) created; its final response."""
        from centralino.switch.sip.dialog import Dialog

        dialog = Dialog.from_uac(self.last_invite, answer)
        dialog.local_seq = cseq - 1
        host, port = self.local
        return self.transact(dialog.create_request(
            "BYE", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport"))

    def cancel(self):
        req = self.last_invite
        headers = [("Via", req.header_values("Via")[0]), ("Max-Forwards", "70"), ("From", req.header("From")),
                   ("To", req.header("To")), ("Call-ID", req.call_id), ("CSeq", f"{req.cseq.seq} CANCEL")]
        self.send(Request("CANCEL", req.uri, headers).serialize())


def media_port(resp) -> int:
    from centralino.switch.sip.sdp import parse_sdp

    return parse_sdp(resp.body).media[0].port


def info_digit(caller: Caller, answer, cseq: int, digit: str) -> None:
    from centralino.switch.sip.dialog import Dialog

    dialog = Dialog.from_uac(caller.last_invite, answer)
    dialog.local_seq = cseq - 1
    host, port = caller.local
    req = dialog.create_request("INFO", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport",
                                body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
                                extra=[("Content-Type", "application/dtmf-relay")])
    assert caller.transact(req).status == 200


def sipp_phone(sw, ext: str, log_dir: Path, calls: int = 1, scenario: str = "uas_echo.xml"):
    """A SIPp UAS (answering and echoing RTP by default) registered as ``ext`` (password pw<ext>)."""
    from centralino.bench.sipp import start_sipp

    port = free_port()
    uas = start_sipp(scenario, local_ip="127.0.0.1", port=port, media_port=free_port(), count=calls,
                     extra=["-rtp_echo"], log_dir=log_dir)
    reg = SipClient(sw.address("udp")).register_with_auth(ext, f"pw{ext}", contact=f"<sip:{ext}@127.0.0.1:{port}>")
    assert reg.status == 200
    return uas


def db_rows(sw, sql: str, params: tuple = ()) -> list[dict]:
    """Rows of a query on a running (or stopped) test switch's SQLite file, as dicts."""
    import sqlite3

    from centralino.storage.database import storage_path

    conn = sqlite3.connect(storage_path(sw.loaded.plan.server.storage))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()
