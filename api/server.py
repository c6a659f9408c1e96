"""A small HTTP/JSON control API (status, reload, …) on server.api.listen, stdlib only.

It is what `centralino status` and `centralino reload` talk to. Every request needs the local
credential: a random token the switch writes at start into ``api-token`` (0600) in its data
directory and into an address-keyed file of its user's runtime directory, which the CLI reads.
A request whose ``Host`` is not the API's own address or whose ``Origin`` is foreign is refused,
so neither a web page open in a browser on this host nor a DNS-rebinding page can drive the switch.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..private_files import open_private, private_dir

log = logging.getLogger("centralino.api")

Route = Callable[[bytes], Awaitable[tuple[int, Any]]]
MAX_BODY = 1 << 20
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


@dataclass(frozen=True)
class RawBody:
    """A route's reply that is not JSON (the Prometheus exposition of /metrics)."""

    content_type: str
    body: bytes


class ApiServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None
        self.token = secrets.token_urlsafe(32)
        self._hosts: set[str] = set()
        self._written: list[Path] = []
        self.refused = 0

    def route(self, method: str, path: str, handler: Route) -> None:
        self.routes[(method, path)] = handler

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host.strip("[]") or "127.0.0.1", int(port))
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        port = sock[1]
        names = {"127.0.0.1", "localhost", "[::1]", host.strip("[]") or "127.0.0.1", sock[0]}
        self._hosts = {f"{n}:{port}" for n in names} | ({f"[{sock[0]}]:{port}"} if ":" in sock[0] else set())
        log.info("control API on http://%s:%d", *self.address)

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

    def _refusal(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        host = headers.get("host", "")
        if host not in self._hosts:
            return 421, {"error": f"this API answers for {sorted(self._hosts)[0]} only, not Host {host[:80]!r}"}
        origin = headers.get("origin")
        if origin is not None and origin.removeprefix("http://") not in self._hosts:
            return 403, {"error": "cross-site requests are refused"}
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.token.encode()):
            return 401, {"error": "a token is needed (the CLI reads it from the switch's data directory)"}
        return None

    async def close(self) -> None:
        for path in self._written:
            if path.parent == runtime_dir():
                try:
                    path.unlink()
                except OSError:
                    pass
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip():
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            refusal = self._refusal(headers)
            body = await asyncio.wait_for(reader.readexactly(length), 10.0) if length and refusal is None else b""
            handler = self.routes.get((method, path.split("?", 1)[0]))
            if refusal is not None:
                self.refused += 1
                status, payload = refusal
                log.info("control API refused %s %s from %s: %d", method, path[:60],
                         writer.get_extra_info("peername"), status)
            elif handler is None:
                status, payload = 404, {"error": f"no such resource: {method} {path}"}
            else:
                status, payload = await handler(body)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            status, payload = 400, {"error": str(exc)}
        except asyncio.CancelledError:
            writer.close()
            raise
        except Exception as exc:
            log.exception("API handler failed")
            status, payload = 500, {"error": str(exc)}
        if isinstance(payload, RawBody):
            data, content_type = payload.body, payload.content_type
        else:
            data, content_type = json.dumps(payload, indent=2, default=str).encode(), "application/json"
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  409: "Conflict", 421: "Misdirected Request", 422: "Unprocessable Entity"}.get(status, "Error")
        extra = "WWW-Authenticate: Bearer\r\n" if status == 401 else ""
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n{extra}"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
        )
        try:
            await writer.drain()
        finally:
            writer.close()


def call_api(address: str, method: str, path: str, payload: bytes = b"", timeout: float = 10.0, *,
             token: str | None = None, data_dir: Path | None = None) -> tuple[int, Any]:
    """Blocking client used by the CLI (and the tests): sends the switch's local credential."""
    import http.client

    host, _, port = address.rpartition(":")
    token = token or find_token(address, data_dir) or ""
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request(method, path, body=payload or None, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()
