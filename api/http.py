"""The HTTP surface on FastAPI: the guard every request passes, authentication, JSON errors.

Every request, HTTP or WebSocket, first meets ``Guard`` (plain ASGI): a ``Host`` that is not one
of the API's names is refused with 421 (a DNS-rebinding page), an ``Origin`` of another site or a
``Sec-Fetch-Site: cross-site`` with 403, a body over ``MAX_BODY`` with 413. Then each route's
dependency ``allow(...)`` authenticates (``Authorization: Bearer`` or the session cookie; a cookie
needs ``X-CSRF-Token`` on anything that changes state), checks the role, and applies the token's
rate (429 with ``Retry-After``). Errors always have the shape ``{"error": str, "status": int}``.
``ROUTE_ROLES`` records who may call each route (the role-matrix test walks it).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config.users import Role
from .auth import ApiAuth, Principal, Via

log = logging.getLogger("centralino.api")

MAX_BODY = 1 << 20
COOKIE = "centralino_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALL_ROLES: tuple[Role, ...] = (Role.ADMIN, Role.SUPERVISOR, Role.AGENT)
ROUTE_ROLES: dict[tuple[str, str], tuple[Role, ...]] = {}  # (method, path) → roles allowed; () public


class ApiError(HTTPException):
    """A refusal with a message (and optional headers) in the API's error shape."""


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "status": status, **extra}


class Guard:
    """Host, Origin and size checks before anything else (HTTP and WebSocket)."""

    def __init__(self, app: ASGIApp, hosts: Callable[[], set[str]]) -> None:
        self.app, self.hosts = app, hosts
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        self.refused += 1
        status, message = refusal
        client = scope.get("client")
        log.info("API refused %s %s from %s: %d %s", scope.get("method", "WS"), scope["path"][:60],
                 client[0] if client else "?", status, message)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps(error_body(status, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, headers: dict[str, str]) -> tuple[int, str] | None:
        hosts = self.hosts()
        host = headers.get("host", "")
        if host not in hosts:
            return 421, f"this API answers for {sorted(hosts)[0]} and its configured names, not Host {host[:80]!r}"
        origin = headers.get("origin")
        if origin is not None and origin.partition("://")[2] not in hosts:
            return 403, "cross-site requests are refused"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site requests are refused"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return 413, f"a request body is at most {MAX_BODY} bytes"
        return None


def _token_of(headers: Any, cookies: dict[str, str]) -> tuple[str, Via] | None:
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        return (token.strip(), Via.BEARER) if scheme.lower() == "bearer" and token.strip() else None
    token = cookies.get(COOKIE, "")
    return (token, Via.COOKIE) if token else None


def authenticate(auth: ApiAuth, headers: Any, cookies: dict[str, str], method: str) -> Principal:
    """The principal of a request, or an ApiError (401, 403 CSRF, 429)."""
    now = time.time()
    found = _token_of(headers, cookies)
    principal = auth.principal(*found, now) if found is not None else None
    if principal is None:
        auth.refused += 1
        raise ApiError(401, "log in first: POST /api/v1/auth/login, or send Authorization: Bearer TOKEN",
                       headers={"WWW-Authenticate": "Bearer"})
    if principal.via is Via.COOKIE and method not in SAFE_METHODS:
        sent = headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent, auth.csrf_for(principal.token_id)):
            auth.refused += 1
            raise ApiError(403, "missing or wrong X-CSRF-Token (the pages send the one /api/v1/auth/me gives)")
    wait = auth.bucket.take(principal.token_id, now)
    if wait is not None:
        raise ApiError(429, "too many requests for this token", headers={"Retry-After": str(max(1, round(wait)))})
    return principal


def allow(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """The dependency of a route that ``roles`` may call."""

    async def dependency(request: Request) -> Principal:
        principal = authenticate(request.app.state.auth, request.headers, request.cookies, request.method)
        if principal.role not in roles:
            raise ApiError(403, f"a {principal.role.value} may not do this")
        request.state.principal = principal
        return principal

    dependency.roles = roles  # type: ignore[attr-defined]
    return dependency


def ws_principal(websocket: WebSocket) -> Principal:
    return authenticate(websocket.app.state.auth, websocket.headers, websocket.cookies, "GET")


def route(app_or_router: Any, method: str, path: str, roles: Iterable[Role], prefix: str = "",
          **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an endpoint that ``roles`` may call (none: public) and note it in ROUTE_ROLES."""
    allowed = tuple(roles)
    ROUTE_ROLES[(method, prefix + path)] = allowed
    deps = [Depends(allow(*allowed))] if allowed else []
    return app_or_router.api_route(path, methods=[method], dependencies=deps, **kwargs)  # type: ignore[no-any-return]


def install_errors(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"at": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                  for e in exc.errors()]
        return JSONResponse(error_body(422, "invalid request: " + "; ".join(
            f"{f['at']}: {f['problem']}" for f in fields), fields=fields), 422)

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(error_body(400, str(exc)), 400)

    @app.exception_handler(KeyError)
    async def missing(_: Request, exc: KeyError) -> JSONResponse:
        return JSONResponse(error_body(404, str(exc.args[0]) if exc.args else "not found"), 404)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("API handler failed")
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), 500)
