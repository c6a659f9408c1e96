"""Serving the API (api/http.py, api/control.py) on server.api.listen, and the CLI's credential.

The API is what `centralino status` and `centralino reload` talk to. Every request needs the local
credential: a random token the switch writes at start into ``api-token`` (0600) in its data
directory and into an address-keyed file of its user's runtime directory, which the CLI reads.
A request whose ``Host`` is not the API's own address or whose ``Origin`` is foreign is refused,
so neither a web page open in a browser on this host nor a DNS-rebinding page can drive the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from ..private_files import open_private, private_dir

log = logging.getLogger("centralino.api")

TOKEN_FILE = "api-token"


def runtime_dir() -> Path:
    """Where a running switch leaves its API credential keyed by address, for this user's CLI."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "centralino"
    from ..config.loader import user_data_dir

    return user_data_dir() / "run"


def _address_file(address: str) -> Path:
    host, _, port = address.rpartition(":")
    safe = host.strip("[]").replace(":", "_") or "0.0.0.0"
    return runtime_dir() / f"api-{safe}-{port}.token"


def find_token(address: str, data_dir: Path | None = None) -> str | None:
    """The credential of the switch answering on ``address``: $CENTRALINO_API_TOKEN, else the
    token file in its data directory, else the one it left keyed by its address."""
    env = os.environ.get("CENTRALINO_API_TOKEN")
    if env:
        return env.strip()
    candidates = ([data_dir / TOKEN_FILE] if data_dir is not None else []) + [_address_file(address)]
    for path in candidates:
        try:
            return path.read_text().strip()
        except OSError:
            continue
    return None


class ApiServer:
    """uvicorn serving the FastAPI app on the switch's own event loop (no threads, no processes).

    The listening socket is bound here first, so a busy port is a plain start-up error; uvicorn's
    signal handling is left out (the switch owns SIGINT/SIGTERM and stops us in its shutdown)."""

    def __init__(self) -> None:
        self.app: Any = None
        self.guard: Any = None
        self.address: tuple[str, int] | None = None
        self.token = secrets.token_urlsafe(32)
        self.hosts: set[str] = set()
        self._extra_hosts: list[str] = []
        self.public_url: str | None = None
        self._written: list[Path] = []
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def refused(self) -> int:
        return self.guard.refused if self.guard is not None else 0

    def allowed_hosts(self) -> set[str]:
        return self.hosts

    def set_names(self, names: list[str], public_url: str | None = None) -> None:
        """The configured names (server.api.hosts, and public_url's host) the API also answers for."""
        self.public_url = public_url.rstrip("/") if public_url else None
        self._extra_hosts = list(names)
        if self.public_url:
            self._extra_hosts.append(self.public_url.partition("://")[2].partition("/")[0])
        self._compute_hosts()

    @property
    def base_url(self) -> str:
        """Where others reach the API: server.api.public_url, else the address it listens on."""
        if self.public_url:
            return self.public_url
        if self.address is None:
            return ""
        host, port = self.address
        return f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    def _compute_hosts(self) -> None:
        if self.address is None:
            return
        host, port = self.address
        names = {"127.0.0.1", "localhost", "[::1]", host if ":" not in host else f"[{host}]", self._listen_host}
        hosts = {f"{n}:{port}" for n in names}
        for name in self._extra_hosts:
            hosts.add(name)
            if ":" not in name.rsplit("]", 1)[-1]:
                hosts.add(f"{name}:{port}")
        self.hosts = hosts

    async def start(self, listen: str, app: Any) -> None:
        import socket

        import uvicorn

        host, _, port = listen.rpartition(":")
        self._listen_host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in self._listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._listen_host, int(port)))
        except OSError:
            sock.close()
            raise
        sock.listen(512)
        sock.setblocking(False)
        self.address = sock.getsockname()[:2]
        self._compute_hosts()
        self.app = app
        from .http import Guard

        self.guard = Guard(app, self.allowed_hosts)
        config = uvicorn.Config(self.guard, lifespan="off", log_level="warning", access_log=False,
                                ws="websockets-sansio", ws_max_size=64 * 1024, ws_ping_interval=20.0,
                                timeout_keep_alive=30, h11_max_incomplete_event_size=64 * 1024,
                                limit_concurrency=1000, server_header=False)
        self._server = uvicorn.Server(config)
        config.load()
        self._server.lifespan = config.lifespan_class(config)
        await self._server.startup(sockets=[sock])
        self._task = asyncio.ensure_future(self._server.main_loop())
        log.info("API on http://%s:%d (pages: /wallboard, /agent; docs: /api/v1/docs)", *self.address)

    def write_token(self, data_dir: Path | None) -> None:
        """Leave the credential for the CLI (files readable by this user only)."""
        assert self.address is not None
        paths = ([data_dir / TOKEN_FILE] if data_dir is not None else [])
        paths.append(_address_file(f"{self.address[0]}:{self.address[1]}"))
        for path in paths:
            try:
                private_dir(path.parent)
                with open_private(path) as f:
                    f.write(self.token.encode() + b"\n")
                self._written.append(path)
            except OSError as exc:
                log.warning("cannot write the API credential to %s: %s", path, exc)

    async def close(self) -> None:
        for path in self._written:
            if path.parent == runtime_dir():
                try:
                    path.unlink()
                except OSError:
                    pass
        if self._server is not None:
            self._server.should_exit = True
            if self._task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._task, 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.shutdown(), 3.0)
            self._server = None


def call_api(address: str, method: str, path: str, payload: bytes = b"", timeout: float = 10.0, *,
             token: str | None = None, data_dir: Path | None = None) -> tuple[int, Any]:
    """Blocking client used by the CLI (and the tests): sends the switch's local credential."""
    import http.client

    host, _, port = address.rpartition(":")
    token = token or find_token(address, data_dir) or ""
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        if payload:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()
