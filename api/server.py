"""A small HTTP/JSON control API (status, reload) on server.api.listen, stdlib only.

It is what `centralino status` and `centralino reload` talk to. Later issues add the REST
resources, WebSocket events and the wallboard here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("centralino.api")

Route = Callable[[bytes], Awaitable[tuple[int, Any]]]
MAX_BODY = 1 << 20


class ApiServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    def route(self, method: str, path: str, handler: Route) -> None:
        self.routes[(method, path)] = handler

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host.strip("[]") or "127.0.0.1", int(port))
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        log.info("control API on http://%s:%d", *self.address)

    async def close(self) -> None:
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
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length > MAX_BODY:
                raise ValueError("body too large")
            body = await asyncio.wait_for(reader.readexactly(length), 10.0) if length else b""
            handler = self.routes.get((method, path.split("?", 1)[0]))
            if handler is None:
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
        data = json.dumps(payload, indent=2, default=str).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity"}.get(status, "Error")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
        )
        try:
            await writer.drain()
        finally:
            writer.close()


def call_api(address: str, method: str, path: str, payload: bytes = b"", timeout: float = 10.0) -> tuple[int, Any]:
    """Blocking client used by the CLI."""
    import http.client

    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    try:
        conn.request(method, path, body=payload or None)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()
