"""The FastAPI application: the /api/v1 resources, their OpenAPI description and interactive docs,
the event stream, /metrics and the web pages (static files of ``web/``, nothing fetched from
outside at run time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from .auth import ApiAuth
from .control import V1, ControlledSwitch, install_routes
from .events import EventTail
from .http import ROUTE_ROLES, install_errors

WEB = Path(__file__).resolve().parent.parent / "web"
PAGES = {"/login": "login.html", "/wallboard": "wallboard.html", "/agent": "agent.html", "/reports": "reports.html"}


def build_app(sw: ControlledSwitch, auth: ApiAuth, version: str = "") -> tuple[FastAPI, EventTail]:
    app = FastAPI(title="Centralino", version=version, openapi_url=f"{V1}/openapi.json", docs_url=f"{V1}/docs",
                  redoc_url=None, description="Calls, queues, agents, supervision, recordings, voicemail, "
                  "campaigns and the event stream of a running Centralino switch.")
    app.state.auth = auth
    install_errors(app)
    tail = install_routes(app, sw, auth)

    def page(name: str) -> Any:
        async def serve() -> FileResponse:
            return FileResponse(WEB / name, media_type="text/html",
                                headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                         "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})
        return serve

    for path, name in PAGES.items():
        ROUTE_ROLES[("GET", path)] = ()  # the page itself is public; everything it shows needs a login
        app.add_api_route(path, page(name), methods=["GET"], include_in_schema=False)

    async def home() -> RedirectResponse:
        return RedirectResponse("/wallboard")

    ROUTE_ROLES[("GET", "/")] = ()
    app.add_api_route("/", home, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")
    return app, tail
