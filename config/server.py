"""``server:`` of the plan: listen addresses, RTP, the API, storage, recordings, registrar,
security, logging and feature codes (re-exported by config/schema.py, where the rest of the plan is)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from .base import Strict

_LISTEN_RE = re.compile(r"^(udp|tcp|tls):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an address or network: {value!r}") from None
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]


class ListenAddress(Strict):
    transport: Literal["udp", "tcp", "tls"]
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        m = _LISTEN_RE.match(text)
        if not m or not 0 <= int(m.group(3)) <= 65535:
            raise ValueError(f"expected transport:host:port like 'udp:0.0.0.0:5060', got {text!r}")
        return cls(transport=m.group(1), host=m.group(2).strip("[]"), port=int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


class TLSConfig(Strict):
    cert: str
    key: str


class SipConfig(Strict):
    listen: list[str] = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    domain: str = "centralino.local"
    realm: str | None = None  # digest realm; defaults to the domain
    external_ip: str = "auto"
    tls: TLSConfig | None = None
    force_rport: bool = True  # answer to the source port even without ;rport (phones behind NAT)
    tcp_idle_timeout: float = Field(600.0, gt=0)
    tcp_max_connections: int = Field(2000, ge=1)  # TCP/TLS connections in all
    tcp_max_per_source: int = Field(50, ge=1)  # ... from one address (trusted sources excepted)
    tcp_message_timeout: float = Field(10.0, gt=0)  # a connection must deliver a whole message this soon
    user_agent: str = "Centralino"
    t1: float = Field(0.5, gt=0)  # RFC 3261 T1; change only for networks with a known RTT
    session_expires: int = Field(1800, ge=0)  # RFC 4028 session timer we ask for; 0 = off
    min_se: int = Field(90, ge=1)  # the shortest we accept (RFC 4028 recommends 90 s)
    max_setups: int = Field(300, ge=1)  # calls in setup (not yet ringing/answered) beyond which new calls get 503
    max_queue_delay: float = Field(0.2, gt=0)  # seconds a new call's INVITE may wait unread before 503 (overload)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one listen address is needed")
        for item in value:
            ListenAddress.parse(item)
        return value

    @property
    def listen_addresses(self) -> list[ListenAddress]:
        return [ListenAddress.parse(v) for v in self.listen]


class RtpConfig(Strict):
    ports: str = "20000-29999"
    workers: int | Literal["auto"] = "auto"  # processes; 0 = media in the control process
    address: str = "auto"  # where RTP sockets bind; auto = the host of the first SIP listener
    timeout: float = Field(60.0, ge=0)  # seconds without RTP before an answered call is ended
    inband_dtmf: bool = True  # detect DTMF tones in the audio of sides without telephone-event

    @property
    def port_range(self) -> tuple[int, int]:
        low, _, high = self.ports.partition("-")
        return int(low), int(high)

    @field_validator("ports")
    @classmethod
    def _check_ports(cls, value: str) -> str:
        m = re.match(r"^(\d+)-(\d+)$", value)
        if not m or not 1024 <= int(m.group(1)) < int(m.group(2)) <= 65535:
            raise ValueError("expected a port range like '20000-29999'")
        return value


class ApiConfig(Strict):
    listen: str = "127.0.0.1:8080"
    # names the API answers for besides its own address (the Host header a browser sends when
    # it is reached through a DNS name); every other Host is refused (DNS rebinding)
    hosts: list[str] = []
    # how CRMs and signed links reach the API from outside, e.g. "https://pbx.example.com" (a
    # reverse proxy in front); its host is answered for too. Unset: http://<listen address>
    public_url: str | None = None
    session_hours: float = Field(12.0, gt=0)  # a login's token lives this long
    rate_limit: float = Field(50.0, gt=0)  # requests per second per token (burst: twice that)
    # failed logins per source address: this many in login_window seconds → 429 for that window
    login_failures: int = Field(5, ge=1)
    login_window: float = Field(300.0, gt=0)
    # the agent desktop's screen-pop: a link to the caller in the company's CRM, e.g.
    # "https://crm.example.com/contacts?phone={caller}" ({caller}, {did}, {queue}, {call} are filled in)
    crm_url: str | None = None


    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", value):
            raise ValueError("public_url is an http:// or https:// address, e.g. https://pbx.example.com")
        return value


class RegistrarConfig(Strict):
    min_expires: int = Field(60, ge=1)
    default_expires: int = Field(3600, ge=1)
    max_expires: int = Field(7200, ge=1)
    qualify_interval: float = Field(30.0, ge=0)  # OPTIONS ping of every binding; 0 disables

    @model_validator(mode="after")
    def _order(self) -> RegistrarConfig:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need min_expires <= default_expires <= max_expires")
        return self


class SecurityConfig(Strict):
    # failed authentications per source: a burst (5 in 60 s → banned 10 min) and a slow guesser
    # (20 in an hour → banned an hour); per user from any source (10 in an hour → new sources
    # locked out for an hour, the addresses it registers from keep working)
    max_auth_failures: int = Field(5, ge=1)
    failure_window: float = Field(60.0, gt=0)
    ban_seconds: float = Field(600.0, ge=0)
    long_max_failures: int = Field(20, ge=1)
    long_failure_window: float = Field(3600.0, gt=0)
    long_ban_seconds: float = Field(3600.0, ge=0)
    user_max_failures: int = Field(10, ge=1)
    user_failure_window: float = Field(3600.0, gt=0)
    user_lock_seconds: float = Field(3600.0, ge=0)
    # New requests (dialog-creating or out-of-dialog) per second per source address; 0 = off.
    # Responses to the switch's own requests and requests inside its dialogs are never counted.
    rate_limit: float = Field(100.0, ge=0)
    rate_burst: int = Field(200, ge=1)
    # Trusted sources (trunks' allow_from, `trusted`) get a high limit, not none: UDP sources can be forged.
    trusted_rate_limit: float = Field(2000.0, ge=0)
    trusted_rate_burst: int = Field(1000, ge=1)
    nonce_lifetime: float = Field(300.0, gt=0)
    # Challenges offered, preferred first. SHA-256 (RFC 8760) is opt-in: SIPp and baresip 1.0
    # (libre) give up on any challenge whose algorithm they do not know, even next to an MD5 one.
    auth_algorithms: list[Literal["SHA-256", "MD5"]] = Field(["MD5"], min_length=1)
    user_agent_deny: list[str] = ["friendly-scanner", "sipvicious", "sipcli", "sip-scan", "VaxSIPUserAgent"]
    trusted: list[Cidr] = []  # never rate-limited or banned


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class RecordingConfig(Strict):
    layout: Literal["stereo", "mono"] = "stereo"  # stereo: caller left, agent right
    format: Literal["wav", "opus", "mp3"] = "wav"  # opus/mp3: re-encoded after the call
    pause_code: str = "*1"  # DTMF feature code toggling pause/resume during a call ("" = off)


class ConferenceConfig(Strict):
    max_members: int = Field(50, ge=2, le=500)
    join_tones: bool = True
    announce: str | None = "conference-join"  # prompt played to whoever joins


class FeatureCodes(Strict):
    """Codes a desk phone dials (source: extension). Empty string turns one off."""

    agent_login: str = "*45"
    agent_logout: str = "*46"
    agent_pause: str = "*47"  # *47 then a reason code: *472 = pause_reasons["2"]
    agent_unpause: str = "*48"
    monitor: str = "*222"  # then the agent's extension; during it 1 listen, 2 whisper, 3 barge
    voicemail: str = "*97"  # own mailbox (PIN asked); *97 + mailbox for another one
    pause_reasons: dict[str, str] = {"1": "break", "2": "lunch", "3": "training", "4": "meeting"}


class ServerConfig(Strict):
    sip: SipConfig = SipConfig()
    rtp: RtpConfig = RtpConfig()
    api: ApiConfig = ApiConfig()
    storage: str = "sqlite:centralino.db"
    recordings: str = "recordings"
    recording: RecordingConfig = RecordingConfig()
    features: FeatureCodes = FeatureCodes()
    prompts: list[str] = ["prompts"]  # directories searched before the packaged prompts
    registrar: RegistrarConfig = RegistrarConfig()
    security: SecurityConfig = SecurityConfig()
    logging: LoggingConfig = LoggingConfig()
