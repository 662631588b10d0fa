"""CORS, scoped by path: the public read endpoints for the configured origins, /api/v1 only when asked.

Starlette's CORSMiddleware answers preflights and adds the Access-Control-* headers, but for every path
alike. Kerbside's public reads (`/ogc`, the `/open311` GETs, `/healthz`) are meant for browser maps and GIS
pages on other origins; its write API is not, unless `KERBSIDE_CORS_API` says so. So one CORSMiddleware
per scope is put behind a small dispatcher, and anything outside a scope never sees a CORS header (a
browser on another origin then cannot read the answer, and a preflight is refused with a 405 as before).

"Credentials" covers every caller credential: with `KERBSIDE_CORS_CREDENTIALS` off, a page on another
origin may read public data only (no Authorization header, no Access-Control-Allow-Credentials); with it
on, it may send a bearer token and the browser's credentials mode "include" is honoured.
"""
from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from server.config import get_settings
from server.errors import problem

PUBLIC_READ = re.compile(r"^/(?:ogc(?:/|$)|open311/|healthz$)")
READ_METHODS = ("GET", "HEAD")
API_METHODS = ("GET", "HEAD", "POST", "PATCH", "DELETE")
# Headers a page may read from our answers (besides the CORS-safelisted ones).
EXPOSE = ("X-Request-Id", "Content-Crs", "Link", "Retry-After", "Content-Length")
MAX_AGE = 600


class _Cors(CORSMiddleware):
    """Starlette's CORS middleware with a refused preflight answered as problem+json, like every 4xx here."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """The library's preflight answer; a refusal names what was refused in a problem document."""
        answer = super().preflight_response(request_headers)
        if answer.status_code == 200:
            return answer
        refused = answer.body.decode().removeprefix("Disallowed CORS ").split(", ")
        fields = {"origin": "Origin", "method": "Access-Control-Request-Method",
                  "headers": "Access-Control-Request-Headers",
                  "private-network": "Access-Control-Request-Private-Network"}
        headers = {k: v for k, v in answer.headers.items() if k.lower().startswith(("access-control-", "vary"))}
        return problem(400, "cors-refused", "Cross-origin request refused",
                       f"this cross-origin request is not allowed here: {', '.join(refused)}",
                       fields=[fields.get(r, r) for r in refused], headers=headers)


class ScopedCors:
    """ASGI middleware: CORS for the public reads (and /api/v1 if configured) for the configured origins."""

    def __init__(self, app) -> None:
        s = get_settings()
        self.app, self.origins = app, list(s.cors_origins)
        headers = ["Authorization"] if s.cors_credentials else []
        common = dict(allow_origins=self.origins, allow_credentials=s.cors_credentials, expose_headers=EXPOSE,
                      max_age=MAX_AGE)
        self.public = _Cors(app, allow_methods=READ_METHODS, allow_headers=headers, **common)
        self.api = _Cors(app, allow_methods=API_METHODS, allow_headers=[*headers, "Content-Type"], **common) \
            if s.cors_api else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.origins:
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope["method"]
        if PUBLIC_READ.match(path):
            # Writes under /open311 (a POST form needs no preflight) get no CORS headers: not readable.
            target = self.public if method in (*READ_METHODS, "OPTIONS") else None
        elif self.api is not None and path.startswith("/api/v1/"):
            target = self.api
        else:
            target = None
        # In scope, every answer says Vary: Origin (the library adds it, also when no Origin was sent), so no
        # cache hands a same-origin answer to a page on another origin.
        return await (target or self.app)(scope, receive, send)
