"""`dar ui`: the sessions of a database in the browser, live, and read-only.

A Starlette app over one store. The page is the report's own template (`dar.views.report`): it
reads the same session model from this app's JSON API instead of from embedded data. Only
GET routes exist, so nothing here can write to the log; the server binds to loopback by
default and answers only to loopback host names there (a web page elsewhere cannot reach
it through DNS rebinding). Live updates poll ``/api/head``: a version that changes whenever
a row is appended to a session's chain, cheap to read however large the log is.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dar._core import canonical_json, sha256_hex_of
from dar.errors import DarError
from dar.store import AdminStore
from dar.store.sql import SessionFilter
from dar.views.report import page
from dar.views.sessions import diff, diff_counts, list_sessions, load_session

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_LIST = 1000
#: The page loads nothing from elsewhere and cannot be framed.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=str).encode("utf-8")


def _answer(content: Any, status: int = 200) -> Response:
    return _Json(content, status_code=status, headers=HEADERS)


def _version(store: AdminStore, session: str | None) -> str:
    """Changes whenever a row is appended (to ``session``, or to any session)."""
    if session is not None:
        return store.chain_heads(session).get(session, "")
    return sha256_hex_of(canonical_json(store.chain_heads()))


def _filter(request: Request) -> SessionFilter:
    q = request.query_params
    try:
        limit = min(int(q.get("limit", "200")), MAX_LIST)
    except ValueError:
        limit = 200
    return SessionFilter(
        text=q.get("text") or None,
        tool=q.get("tool") or None,
        status=q.get("status") or None,
        limit=max(limit, 1),
    )


def create_app(store: AdminStore, host: str = "127.0.0.1") -> Starlette:
    """The app over ``store`` (which the caller closes), to be served on ``host``."""

    def index(request: Request) -> Response:
        return HTMLResponse(page("dar ui", "ui", None), headers=HEADERS)

    def sessions(request: Request) -> Response:
        found = list_sessions(store, _filter(request))
        return _answer({"sessions": [s.as_dict() for s in found], "version": _version(store, None)})

    def session(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        version = _version(store, session_id)
        try:
            view = load_session(store, session_id)
        except DarError as exc:
            return _answer({"error": str(exc)}, 404)
        return _answer({**view.as_dict(), "version": version})

    def head(request: Request) -> Response:
        return _answer({"version": _version(store, request.query_params.get("session"))})

    def compare(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        try:
            pairs = diff(load_session(store, a), load_session(store, b))
        except DarError as exc:
            return _answer({"error": str(exc)}, 404)
        return _answer(
            {"a": a, "b": b, "counts": diff_counts(pairs), "pairs": [p.as_dict() for p in pairs]}
        )

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/sessions", sessions, methods=["GET"]),
        Route("/api/sessions/{session_id:path}", session, methods=["GET"]),
        Route("/api/head", head, methods=["GET"]),
        Route("/api/diff", compare, methods=["GET"]),
    ]
    # On loopback, answer only requests addressed to a loopback name.
    guard = [Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK))]
    return Starlette(routes=routes, middleware=guard if host in LOOPBACK else [])


def serve(store: AdminStore, host: str, port: int) -> None:
    """Run the app until interrupted."""
    import uvicorn

    uvicorn.run(create_app(store, host), host=host, port=port, log_level="warning")
