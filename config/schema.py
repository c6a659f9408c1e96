"""Typed models of the routing plan (the YAML contract, see docs/architecture.md). Unknown keys are errors."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict
from .scripts import Script

# the server section lives in config/server.py; callers keep importing it from here
from .server import (  # noqa: F401
    ApiConfig,
    Cidr,
    ConferenceConfig,
    FeatureCodes,
    ListenAddress,
    LoggingConfig,
    RecordingConfig,
    RegistrarConfig,
    RtpConfig,
    SecurityConfig,
    ServerConfig,
    SipConfig,
    TLSConfig,
)
from .users import User, user_errors
from .webhooks import Webhook


class Extension(Strict):
    password: str | None = None  # None: generated once and kept in the database
    name: str | None = None
    max_contacts: int = Field(3, ge=1, le=100)
    pin: str | None = None  # voicemail PIN


_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_TRUNK_URI_RE = re.compile(r"^(?:(?P<scheme>sips?):)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:;\[\]@/\s]+)(?::(?P<port>\d{1,5}))?(?P<params>(?:;[^;]*)*)$")


def split_trunk_host(text: str) -> tuple[str, int | None, str | None]:
    """``host``, ``host:port``, ``[v6]:port``, ``sip:host:port;transport=tcp`` or ``sips:host``
    (what FreeSWITCH's ``proxy`` and Asterisk's ``contact`` users write) → (host, port, transport);
    ValueError for anything that could never be resolved."""
    value = text.strip()
    if "@" in value:
        raise ValueError(f"host {text!r} has a user part: give the host only and the user as username:")
    m = _TRUNK_URI_RE.match(value)
    if m is None:
        raise ValueError(f"host {text!r} is not a host name, an address, host:port or sip:host:port")
    host = m.group("host").strip("[]")
    port = int(m.group("port")) if m.group("port") else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range in host {text!r}")
    transport = "tls" if m.group("scheme") == "sips" else None
    for param in filter(None, (m.group("params") or "").split(";")):
        key, _, val = param.partition("=")
        if key.strip().lower() == "transport":
            t = val.strip().lower()
            if t not in ("udp", "tcp", "tls"):
                raise ValueError(f"transport {val!r} in host {text!r} is not udp, tcp or tls")
            transport = t
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.match(host) or host.replace(".", "").isdigit():
            raise ValueError(f"{host!r} is neither an IP address nor a valid host name") from None
    return host, port, transport


class Trunk(Strict):
    host: str  # a name or an address; host:port and sip:host:port;transport=tcp are accepted too
    port: int = Field(5060, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    username: str | None = None
    password: str | None = None
    register_: bool = Field(False, alias="register")
    allow_from: list[Cidr] = []
    dids: list[str] = []
    max_channels: int | None = Field(None, ge=1)
    country_code: str | None = None  # number normalisation: '7' turns 8800… and +7800… into E.164
    qualify: float = Field(30.0, ge=0)  # OPTIONS ping every N seconds (up/down, RTT); 0 = off

    @model_validator(mode="before")
    @classmethod
    def _host_forms(cls, data: object) -> object:
        if not isinstance(data, dict) or not isinstance(data.get("host"), str):
            return data
        host, port, transport = split_trunk_host(data["host"])
        out = dict(data, host=host)
        if port is not None:
            if "port" in data and str(data["port"]) != str(port):
                raise ValueError(f"host says port {port} but port: is {data['port']}")
            out["port"] = port
        if transport is not None:
            if "transport" in data and data["transport"] != transport:
                raise ValueError(f"host says transport {transport} but transport: is {data['transport']}")
            out["transport"] = transport
            if port is None and "port" not in data and transport == "tls":
                out["port"] = 5061
        return out

    @model_validator(mode="after")
    def _creds(self) -> Trunk:
        if self.register_ and not (self.username and self.password):
            raise ValueError("register: true needs username and password")
        return self


def prompt_list(value: str | list[str] | None) -> list[str]:
    """Prompts given as a list or a comma-separated string."""
    items = value if isinstance(value, list) else (value or "").split(",")
    return [i.strip() for i in items if i.strip()]


class Action(Strict):
    """What a route, menu choice or fallback does. Exactly one verb per action."""

    dial: str | None = None
    timeout: int | None = Field(None, ge=1)
    else_: Action | None = Field(None, alias="else")
    trunk: str | list[str] | None = None
    number: str | None = None
    hangup: int | None = Field(None, ge=400, le=699)
    ivr: str | None = None
    queue: str | None = None
    callback: str | None = None  # with queue: a callback request for this number ("" = the caller's)
    voicemail: str | None = None
    conference: str | None = None
    play: str | list[str] | None = None  # prompt names/files, a list or comma-separated
    then: Action | None = None

    @property
    def prompts(self) -> list[str]:
        return prompt_list(self.play)

    @model_validator(mode="after")
    def _one_verb(self) -> Action:
        verbs = [v for v in ("dial", "trunk", "hangup", "ivr", "queue", "voicemail", "conference", "play")
                 if getattr(self, v) is not None]
        if len(verbs) != 1:
            raise ValueError(
                "an action needs exactly one of dial, trunk, hangup, ivr, queue, voicemail, "
                f"conference, play (got {', '.join(verbs) or 'none'})"
            )
        if self.callback is not None and self.queue is None:
            raise ValueError("callback goes with queue: {queue: sales, callback: \"${number}\"}")
        return self


class RouteMatch(Strict):
    to: str | None = None
    from_: str | None = Field(None, alias="from")  # a number/regex, or 'extension' / a trunk name
    source: str | None = None
    schedule: str | None = None

    @field_validator("to", "from_")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class Route(Strict):
    name: str | None = None
    match: RouteMatch = RouteMatch()
    action: Action
    record: bool = False  # record the call (dual-channel) from its answer


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN_RE = re.compile(r"^\d{2}:\d{2}-\d{2}:\d{2}$")


class Schedule(Strict):
    timezone: str = "UTC"
    open: dict[str, str] = {}
    holidays: list[date] = []

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("open")
    @classmethod
    def _spans(cls, value: dict[str, str]) -> dict[str, str]:
        for days, spans in value.items():
            for part in days.split(","):
                lo, _, hi = part.strip().partition("-")
                if lo not in _DAYS or (hi and hi not in _DAYS):
                    raise ValueError(f"bad day range {days!r} (use mon-fri, sat, sun, ...)")
            for span in str(spans).split(","):
                if not _SPAN_RE.match(span.strip()):
                    raise ValueError(f"bad time span {span!r} (use HH:MM-HH:MM)")
        return value


class IvrClosed(Strict):
    play: str | list[str] | None = None
    then: Action | None = None


# A step in an IVR: the name of another node of the same IVR (goto), or an action that leaves it.
Step = str | Action


class IvrMenu(Strict):
    prompt: str | list[str] = "menu"
    choices: dict[str, Step]
    timeout: float = Field(5, gt=0)  # seconds to wait for a key after the prompt
    retries: int = Field(3, ge=0)  # repeats after a timeout or an invalid key
    invalid: str | list[str] | None = "invalid"
    on_fail: Step | None = None  # after the retries (default: goodbye, hang up)


class IvrCollect(Strict):
    prompt: str | list[str]
    var: str  # where the digits go (${var} afterwards)
    min_digits: int = Field(1, ge=1)
    max_digits: int = Field(20, ge=1)
    terminator: str = "#"
    timeout: float = Field(5, gt=0)  # seconds for the first key and between keys
    retries: int = Field(2, ge=0)
    invalid: str | list[str] | None = "invalid"
    on_fail: Step | None = None
    secret: bool = False  # a PIN, a card number: kept as "*" in the log, CDR, call card and webhooks


class IvrNode(Strict):
    """One step of a flow; exactly one of play, menu, collect, set, if, schedule."""

    play: str | list[str] | None = None
    menu: IvrMenu | None = None
    collect: IvrCollect | None = None
    set: dict[str, str] | None = None  # variables: priority, language, skill.NAME, anything
    if_: str | None = Field(None, alias="if")  # "${var} == value" (== != < > <= >= matches)
    then: Step | None = None
    else_: Step | None = Field(None, alias="else")
    schedule: str | None = None
    open: Step | None = None
    closed: Step | None = None
    next: Step | None = None  # after play, collect or set (none: hang up)

    @model_validator(mode="after")
    def _one_kind(self) -> IvrNode:
        kinds = [k for k in ("play", "menu", "collect", "set", "if_", "schedule") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("an IVR node needs exactly one of play, menu, collect, set, if, schedule "
                             f"(got {', '.join(k.rstrip('_') for k in kinds) or 'none'})")
        if self.if_ is not None and self.then is None:
            raise ValueError("an 'if' node needs 'then'")
        if self.schedule is not None and (self.open is None or self.closed is None):
            raise ValueError("a schedule node needs 'open' and 'closed'")
        return self


class Ivr(Strict):
    """Either the short form (greeting, schedule, closed, menu) or a graph of named nodes."""

    greeting: str | list[str] | None = None
    schedule: str | None = None
    closed: IvrClosed | None = None
    prompt: str | list[str] = "menu"
    menu: dict[str, Step] = {}
    timeout: float = Field(5, gt=0)
    retries: int = Field(3, ge=0)
    start: str | None = None  # the first node (default: the first one listed)
    nodes: dict[str, IvrNode] = {}

    @model_validator(mode="after")
    def _one_form(self) -> Ivr:
        if self.nodes and (self.menu or self.greeting or self.schedule or self.closed):
            raise ValueError("use either nodes or the short form (greeting, schedule, closed, menu), not both")
        if not self.nodes and not self.menu and not self.greeting:
            raise ValueError("an IVR needs nodes, or a greeting and/or a menu")
        if self.start is not None and self.start not in self.nodes:
            raise ValueError(f"start node {self.start!r} is not among the nodes")
        return self


class Agent(Strict):
    name: str | None = None
    skills: dict[str, Annotated[int, Field(ge=0, le=10)]] = {}
    logged_in: bool = False  # logged in at start-up (otherwise the agent dials *45)


class Strategy(StrEnum):
    RINGALL = "ringall"
    LONGEST_IDLE = "longest-idle"
    ROUND_ROBIN = "round-robin"
    FEWEST_CALLS = "fewest-calls"
    RANDOM = "random"
    SKILLS = "skills"


class Announce(Strict):
    position_every: int | None = Field(None, ge=5)  # "you are caller number N", "about M minutes"
    first_after: int = Field(5, ge=0)  # the first position announcement, seconds after joining
    estimated_wait: bool = True
    periodic: str | list[str] | None = None  # prompts repeated while waiting ("please-hold")
    periodic_every: int = Field(60, ge=5)


class Escalation(Strict):
    every: int = Field(30, ge=1)  # seconds of waiting
    step: int = Field(1, ge=1)  # each required skill level drops by this much


class QueueCallback(Strict):
    key: str = "*"  # the caller presses it while waiting to be called back instead
    offer_after: int = Field(30, ge=0)  # offer it (prompt callback-offer) after this wait
    offer_every: int = Field(60, ge=5)  # and again this often
    trunk: str | None = None  # how to reach numbers that are not extensions (default: the caller's trunk)
    ring_timeout: int = Field(30, ge=5)  # how long the customer's phone rings once an agent took the callback


class Queue(Strict):
    strategy: Strategy = Strategy.LONGEST_IDLE
    members: list[str] = []
    ring_timeout: int = Field(15, ge=1)
    retry: int = Field(5, ge=0)  # an agent that missed a caller is not rung for it again before
    wrapup: int = Field(10, ge=0)
    max_no_answer: int = Field(3, ge=0)  # missed rings in a row that auto-pause an agent; 0 = off
    announce: Announce = Announce()
    moh: str | None = "moh"  # the music on hold prompt; None: ringing tone
    max_wait: int | None = Field(None, ge=1)
    max_len: int | None = Field(None, ge=1)
    join_empty: bool = True  # join when no agent is logged in (or all are paused)
    leave_when_empty: bool = False  # leave (to overflow) when the last agent logs out or pauses
    timeout: Action | None = None  # after max_wait (else the caller hears goodbye)
    overflow: Action | None = None  # when full or empty (else timeout, else busy)
    priority: int = 0  # weight against other queues sharing agents (60 s of waiting per level)
    requires: dict[str, Annotated[int, Field(ge=0, le=10)]] = {}  # skill levels callers need
    escalate: Escalation | None = None
    callback: QueueCallback | None = None
    service_level: int = Field(20, ge=1)  # seconds: "answered within" for service level
    record: bool = False
    supervisors: list[str] = []  # extensions that may listen / whisper / barge on members' calls
    script: str | None = None  # what agents say on its calls (scripts:, shown on the agent desktop)
    dispositions: list[str] = ["resolved", "callback", "escalated", "wrong-number"]  # the desktop's choices


class CampaignRetry(Strict):
    """Seconds before a lead is tried again after each outcome."""

    busy: int = Field(600, ge=0)
    no_answer: int = Field(3600, ge=0)
    machine: int = Field(86_400, ge=0)
    failed: int = Field(1800, ge=0)
    abandoned: int = Field(3600, ge=0)  # a person the dialer could not connect is called again later


class CampaignAmd(Strict):
    """Answering-machine detection on answer, with app_amd's parameters (milliseconds)."""

    enabled: bool = True
    initial_silence: int | None = None
    greeting: int | None = None
    after_greeting_silence: int | None = None
    total_analysis_time: int | None = None
    minimum_word_length: int | None = None
    between_words_silence: int | None = None
    maximum_number_of_words: int | None = None
    silence_threshold: int | None = None
    maximum_word_length: int | None = None

    @property
    def params(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump(exclude={"enabled"}).items() if v is not None}


class OnMachine(Strict):
    """What a machine gets: a message after its beep (``play``), or ``hangup``."""

    play: str | list[str] | None = None
    hangup: bool = False
    beep_timeout: int = Field(20, ge=1)  # seconds to wait for the beep before playing anyway


_HOURS_RE = re.compile(r"^\d{2}:\d{2}-\d{2}:\d{2}$")
_DAY_RANGE_RE = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?$")


class Campaign(Strict):
    mode: Literal["preview", "progressive", "power", "predictive", "broadcast"]
    queue: str | None = None  # whose logged-in agents take the calls (not for broadcast)
    trunk: str | list[str]  # one name or a failover list
    caller_id: str | None = None  # the number callees see (From and P-Asserted-Identity)
    region: str | None = None  # ISO country for numbers written without a country code ("RU")
    leads: str | None = None  # a CSV imported when the campaign starts
    calling_hours: str = "09:00-21:00"  # in the CALLEE's local time
    days: str = "mon-sun"
    max_abandon_rate: float = Field(0.03, ge=0, le=1)
    target_abandon_rate: float = Field(0.025, ge=0, le=1)  # what the predictive pacer aims at
    abandon_window: Literal["30d", "24h"] = "30d"  # the rule's window; both are always reported
    ratio: float = Field(2.0, ge=1.0, le=10.0)  # power mode: calls per free agent
    max_concurrent: int = Field(10, ge=1)  # broadcast: calls at once
    ring_timeout: int = Field(25, ge=15, le=120)  # never below 15 s
    max_attempts: int = Field(3, ge=1)
    retry: CampaignRetry = CampaignRetry()
    amd: CampaignAmd | bool = False
    on_machine: OnMachine | None = None
    safe_harbour: str | None = None  # played within 2 s when no agent is free for a person
    message: str | list[str] | None = None  # broadcast: what callees hear
    press: dict[str, Action] = {}  # broadcast: keys during the message
    dnc: list[str] = []  # do-not-call lists (CSV with a phone column, or one number per line)
    dispositions: list[str] = ["done", "callback", "refused", "wrong-number"]
    record: bool = False  # record the calls connected to agents
    script: str | None = None  # what agents say on its calls (scripts:)

    @field_validator("calling_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        for span in value.split(","):
            if not _HOURS_RE.match(span.strip()):
                raise ValueError(f"bad calling hours {span!r} (use HH:MM-HH:MM)")
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        for part in value.split(","):
            if not _DAY_RANGE_RE.match(part.strip()):
                raise ValueError(f"bad days {value!r} (use mon-fri, sat, sun, ...)")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Z]{2}$", value):
            raise ValueError(f"region {value!r} is not a two-letter country code (RU, IT, GB, …)")
        return value

    @model_validator(mode="after")
    def _needs(self) -> Campaign:
        if self.mode != "broadcast" and not self.queue:
            raise ValueError(f"a {self.mode} campaign needs a queue (its agents take the calls)")
        if self.mode == "broadcast" and not self.message:
            raise ValueError("a broadcast campaign needs a message")
        if self.target_abandon_rate > self.max_abandon_rate:
            raise ValueError("target_abandon_rate above max_abandon_rate")
        return self

    @property
    def trunks(self) -> list[str]:
        return [self.trunk] if isinstance(self.trunk, str) else list(self.trunk)

    @property
    def amd_config(self) -> CampaignAmd | None:
        if isinstance(self.amd, bool):
            return CampaignAmd() if self.amd else None
        return self.amd if self.amd.enabled else None


class Mailbox(Strict):
    """A voicemail box. Every extension has one under its own number (PIN: the extension's
    ``pin``, light on its own phones); ``mailboxes:`` adds shared ones (sales, general)."""

    pin: str | None = None  # asked by *97; a box without one opens only from its own extension
    notify: list[str] = []  # extensions whose phones get its message-waiting indication
    greeting: str | None = None  # prompt before the tone (default: leave-message)
    max_seconds: int = Field(180, ge=5, le=3600)
    silence_seconds: float = Field(5.0, ge=1, le=60)  # this much quiet after speech ends the message


def mailbox_for(plan: Plan, name: str) -> Mailbox | None:
    if name in plan.mailboxes:
        return plan.mailboxes[name]
    ext = plan.extensions.get(name)
    return None if ext is None else Mailbox(pin=ext.pin, notify=[name])


class Plan(Strict):
    server: ServerConfig = ServerConfig()
    extensions: dict[str, Extension] = {}
    trunks: dict[str, Trunk] = {}
    routes: list[Route] = []
    schedules: dict[str, Schedule] = {}
    ivr: dict[str, Ivr] = {}
    agents: dict[str, Agent] = {}
    queues: dict[str, Queue] = {}
    campaigns: dict[str, Campaign] = {}
    conferences: dict[str, ConferenceConfig] = {}  # optional settings per room; any name works
    mailboxes: dict[str, Mailbox] = {}  # shared voicemail boxes (extensions have their own)
    users: dict[str, User] = {}  # who may log in to the API and the web pages (config/users.py)
    webhooks: dict[str, Webhook] = {}  # where events are posted (config/webhooks.py)
    scripts: dict[str, Script] = {}  # call scripts for the agent desktop (config/scripts.py)

    @field_validator("extensions")
    @classmethod
    def _ext_names(cls, value: dict[str, Extension]) -> dict[str, Extension]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9_.\-+]+$", name):
                raise ValueError(f"extension name {name!r} is not a valid SIP user name")
        return value


def cross_references(plan: Plan) -> list[tuple[tuple, str]]:
    """References between sections (a route to an unknown IVR, ...) as (key path, message)."""
    from ..media.player import PromptCache, PromptError

    errors: list[tuple[tuple, str]] = []
    prompts = PromptCache([Path(d) for d in plan.server.prompts])

    def check_prompts(names: list[str], path: tuple) -> None:
        for prompt in names:
            try:
                prompts.load(prompt) if prompt.startswith(("tone:", "silence/")) else prompts.resolve(prompt)
            except PromptError as exc:
                errors.append((path, str(exc)))

    def check_action(action: Action | None, path: tuple) -> None:
        if action is None:
            return
        refs = (("ivr", plan.ivr), ("queue", plan.queues))
        for key, table in refs:
            name = getattr(action, key)
            if name is not None and name not in table:
                errors.append(((*path, key), f"unknown {key} {name!r}"))
        trunks = [action.trunk] if isinstance(action.trunk, str) else (action.trunk or [])
        for t in trunks:
            if t not in plan.trunks:
                errors.append(((*path, "trunk"), f"unknown trunk {t!r}"))
        if action.dial is not None and "${" not in action.dial:
            for target in [t.strip() for t in action.dial.replace("&", ",").split(",") if t.strip()]:
                if target not in plan.extensions:
                    errors.append(((*path, "dial"), f"unknown extension {target!r}"))
        check_prompts(action.prompts, (*path, "play"))
        box = action.voicemail
        if box is not None and "${" not in box and mailbox_for(plan, box) is None:
            errors.append(((*path, "voicemail"), f"unknown mailbox {box!r} (not an extension nor in mailboxes)"))
        check_action(action.else_, (*path, "else"))
        check_action(action.then, (*path, "then"))

    for i, route in enumerate(plan.routes):
        check_action(route.action, ("routes", i, "action"))
        src = route.match.source
        if src is not None and src not in ("extension", "any") and src not in plan.trunks:
            errors.append((("routes", i, "match", "source"),
                           f"unknown source {src!r} (extension, any or a trunk)"))
        sched = route.match.schedule
        if sched is not None and sched not in plan.schedules:
            errors.append((("routes", i, "match", "schedule"), f"unknown schedule {sched!r}"))
    for name, ivr in plan.ivr.items():
        check_ivr(plan, name, ivr, check_action, check_prompts, errors)
    for name, queue in plan.queues.items():
        if queue.moh:
            check_prompts([queue.moh], ("queues", name, "moh"))
        periodic = queue.announce.periodic
        check_prompts([periodic] if isinstance(periodic, str) else list(periodic or []),
                      ("queues", name, "announce", "periodic"))
        for key in ("members", "supervisors"):
            for i, member in enumerate(getattr(queue, key)):
                if member not in plan.extensions:
                    errors.append((("queues", name, key, i), f"unknown extension {member!r}"))
        if queue.callback is not None and queue.callback.trunk and queue.callback.trunk not in plan.trunks:
            errors.append((("queues", name, "callback", "trunk"), f"unknown trunk {queue.callback.trunk!r}"))
        if queue.script is not None and queue.script not in plan.scripts:
            errors.append((("queues", name, "script"), f"unknown script {queue.script!r}"))
        check_action(queue.timeout, ("queues", name, "timeout"))
        check_action(queue.overflow, ("queues", name, "overflow"))
    for name, mailbox in plan.mailboxes.items():
        for i, ext in enumerate(mailbox.notify):
            if ext not in plan.extensions:
                errors.append((("mailboxes", name, "notify", i), f"unknown extension {ext!r}"))
        if mailbox.greeting:
            check_prompts([mailbox.greeting], ("mailboxes", name, "greeting"))
    for name in plan.agents:
        if name not in plan.extensions:
            errors.append((("agents", name), f"agent {name!r} is not an extension"))
    for name, camp in plan.campaigns.items():
        base = ("campaigns", name)
        if camp.queue is not None and camp.queue not in plan.queues:
            errors.append(((*base, "queue"), f"unknown queue {camp.queue!r}"))
        for t in camp.trunks:
            if t not in plan.trunks:
                errors.append(((*base, "trunk"), f"unknown trunk {t!r}"))
        for key, value in (("safe_harbour", camp.safe_harbour), ("message", camp.message)):
            check_prompts(prompt_list(value), (*base, key))
        if camp.on_machine is not None:
            check_prompts(prompt_list(camp.on_machine.play), (*base, "on_machine", "play"))
        if camp.script is not None and camp.script not in plan.scripts:
            errors.append(((*base, "script"), f"unknown script {camp.script!r}"))
        for digit, action in camp.press.items():
            check_action(action, (*base, "press", digit))
        if camp.region is not None:
            import phonenumbers

            if camp.region not in phonenumbers.SUPPORTED_REGIONS:
                errors.append(((*base, "region"), f"unknown region {camp.region!r}"))
    errors.extend(user_errors(plan))
    return errors


def resolution_errors(plan: Plan, timeout: float = 5.0) -> list[tuple[tuple, str]]:
    """What `centralino check` adds to the schema's checks: trunk hosts that do not resolve now
    (the running switch logs the same as a warning, since DNS may be down at boot), and campaign
    files (leads, do-not-call lists) that cannot be read."""
    import concurrent.futures
    import os
    import socket

    errors: list[tuple[tuple, str]] = []
    for name, camp in plan.campaigns.items():
        files = [(("campaigns", name, "leads"), camp.leads)] if camp.leads else []
        files += [(("campaigns", name, "dnc", i), path) for i, path in enumerate(camp.dnc)]
        for where, path in files:
            if not os.access(path, os.R_OK):
                errors.append((where, f"cannot read {path}"))
    names = {}
    for name, trunk in plan.trunks.items():
        try:
            ipaddress.ip_address(trunk.host)
        except ValueError:
            names[name] = trunk
    if not names:
        return errors
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        futures = {name: pool.submit(socket.getaddrinfo, t.host, t.port, 0, socket.SOCK_DGRAM)
                   for name, t in names.items()}
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                errors.append((("trunks", name, "host"), f"{names[name].host!r} did not resolve in {timeout:g} s"))
            except OSError as exc:
                errors.append((("trunks", name, "host"), f"cannot resolve {names[name].host!r}: "
                                                          f"{exc.strerror or exc}"))
    return errors


def warnings_for(plan: Plan) -> list[tuple[tuple, str]]:
    """What is valid but probably not meant (printed by `centralino check` after OK): routes out
    through a trunk that a caller nobody authenticated — one coming in from a trunk — can take
    (the toll-fraud hairpin)."""
    found: list[tuple[tuple, str]] = []

    def trunks_of(action: Action | None) -> list[str]:
        if action is None:
            return []
        own = [action.trunk] if isinstance(action.trunk, str) else list(action.trunk or [])
        return own + trunks_of(action.else_) + trunks_of(action.then)

    for i, route in enumerate(plan.routes):
        out = trunks_of(route.action)
        if not out:
            continue
        m = route.match
        if m.source in plan.trunks:
            sources = [m.source]
        elif m.from_ in plan.trunks:
            sources = [m.from_]
        elif m.from_ is not None or m.source == "extension":
            continue  # only authenticated extensions (a caller pattern is never checked on trunk calls)
        else:
            sources = list(plan.trunks)
        for src in sources:
            if src in plan.trunks:
                found.append((("routes", i, "action"),
                              f"a call from trunk {src!r} (its caller is not authenticated) can take this route out "
                              f"through trunk {', '.join(repr(t) for t in out)}; add source: extension unless this "
                              "hairpin is meant"))
    return found


def check_ivr(plan: Plan, name: str, ivr: Ivr, check_action, check_prompts, errors: list) -> None:  # type: ignore[no-untyped-def]
    """Every node an IVR names exists, every prompt, queue and schedule it uses is known."""
    base = ("ivr", name)

    def step(value: Step | None, path: tuple) -> None:
        if isinstance(value, str):
            if value not in ivr.nodes:
                errors.append((path, f"unknown IVR node {value!r}" + ("" if ivr.nodes else
                                                                       " (the short form has no nodes)")))
        else:
            check_action(value, path)

    def schedule(sched: str | None, path: tuple) -> None:
        if sched is not None and sched not in plan.schedules:
            errors.append((path, f"unknown schedule {sched!r}"))

    schedule(ivr.schedule, (*base, "schedule"))
    check_prompts(prompt_list(ivr.greeting), (*base, "greeting"))
    if ivr.menu:
        check_prompts(prompt_list(ivr.prompt), (*base, "prompt"))
    for digit, choice in ivr.menu.items():
        step(choice, (*base, "menu", digit))
    if ivr.closed:
        check_prompts(prompt_list(ivr.closed.play), (*base, "closed", "play"))
        check_action(ivr.closed.then, (*base, "closed", "then"))
    for node_name, node in ivr.nodes.items():
        path = (*base, "nodes", node_name)
        check_prompts(prompt_list(node.play), (*path, "play"))
        schedule(node.schedule, (*path, "schedule"))
        for key in ("then", "else_", "open", "closed", "next"):
            step(getattr(node, key), (*path, key.rstrip("_")))
        for sub, spec in (("menu", node.menu), ("collect", node.collect)):
            if spec is None:
                continue
            check_prompts(prompt_list(spec.prompt), (*path, sub, "prompt"))
            check_prompts(prompt_list(spec.invalid), (*path, sub, "invalid"))
            step(spec.on_fail, (*path, sub, "on_fail"))
        if node.menu is not None:
            for digit, choice in node.menu.choices.items():
                step(choice, (*path, "menu", "choices", digit))
