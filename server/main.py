"""create_app(): routers, error handlers, limits and lifespan."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware

from server import __version__, contact_centre, errors
from server.config import get_settings
from server.catalogue.router import router as categories_router
from server.health import router as health_router
from server.inbound.router import router as contractor_router
from server.dispatch.router import router as dispatch_router
from server.jobs.router import router as jobs_router
from server.ogc.router import router as ogc_router
from server.open311.router import router as open311_router
from server.outbox.router import router as outbox_router
from server.reports.router import router as reports_router

log = logging.getLogger("kerbside")


class BodyLimit(BaseHTTPMiddleware):
    """Refuse request bodies over the configured size before reading them (413 problem+json)."""

    async def dispatch(self, request: Request, call_next):
        s = get_settings()
        limit = s.max_photo_bytes + 64 * 1024 if "/photos" in request.url.path else s.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return errors.problem(400, "bad-content-length", "Bad request", "Content-Length is not a number",
                                      fields=["Content-Length"])
            if int(length) > limit:
                return errors.problem(413, "payload-too-large", "Payload too large",
                                      f"the body is {length} bytes; the limit is {limit}", fields=["body"])
        return await call_next(request)


def create_app() -> FastAPI:
    """Build the Kerbside API application."""
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("Kerbside API %s starting (%s)", __version__, settings.env)
        yield
        await contact_centre.shutdown()

    app = FastAPI(
        title="Kerbside API",
        version=__version__,
        description="Field-worker job dispatch and asset-fault reporting. Errors are application/problem+json.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.include_router(health_router)
    app.include_router(categories_router)
    app.include_router(reports_router)
    # Before the jobs router: /jobs/overdue is not a job reference.
    app.include_router(dispatch_router)
    app.include_router(jobs_router)
    app.include_router(contractor_router)
    app.include_router(outbox_router)
    app.include_router(open311_router)
    app.include_router(ogc_router)
    contact_centre.install(app)  # dashboard pages + API, /api/v1/events, /api/v1/subscriptions
    return app
