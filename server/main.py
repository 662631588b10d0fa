"""create_app(): routers, error handlers, limits and lifespan."""
from __future__ import annotations

import gc
import logging
import re
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from server import __version__, contact_centre, cors, db, errors, metrics, observability, openapi, poolroute
from server.auth.throttle import AuthThrottle
from server.config import get_settings
from server.deps import single_valued_query
from server.catalogue.router import router as categories_router
from server.health import router as health_router
from server.inbound.router import router as contractor_router
from server.dispatch.router import router as dispatch_router
from server.planning.router import router as planning_router
from server.jobs.router import job_page_on_pool, router as jobs_router
from server.ogc.router import router as ogc_router
from server.open311.router import router as open311_router
from server.outbox.router import router as outbox_router
from server.reports.batch import IntakeBatcher
from server.reports.router import create_report_on_pool, router as reports_router
from server.notifications.public import router as public_router
from server.notifications.router import router as notifications_router

log = logging.getLogger("kerbside")


# Routes that take a photo upload get the photo limit; every other body gets the JSON limit.
UPLOADS = re.compile(r"/photos$|^/open311/v2/requests\.[^/]*$")


class BodyLimit:
    """Refuse request bodies over the configured size (413 problem+json), with or without Content-Length.

    With Content-Length the check is made before reading anything. Without it (chunked transfer) the
    body is read here up to the limit and then handed to the app, so an endless stream is cut off.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        s = get_settings()
        limit = s.max_photo_bytes + 64 * 1024 if UPLOADS.search(scope.get("path", "")) else s.max_body_bytes
        length = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                return await errors.problem(400, "bad-content-length", "Bad request", "Content-Length is not a number",
                                            fields=["Content-Length"])(scope, receive, send)
            if int(length) > limit:
                return await _too_large(length, limit)(scope, receive, send)
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _too_large(f"more than {limit}", limit)(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect as usual

        await self.app(scope, replay, send)


def _too_large(size: str, limit: int):
    return errors.problem(413, "payload-too-large", "Payload too large",
                          f"the body is {size} bytes; the limit is {limit}", fields=["body"])


def create_app() -> FastAPI:
    """Build the Kerbside API application."""
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("Kerbside API %s starting (%s)", __version__, settings.env)
        # Everything loaded so far (modules, mappers, the catalogue) lives as long as the process: keep it out
        # of the garbage collector's full passes, which otherwise walk it again and again under load.
        gc.collect()
        gc.freeze()
        app.state.intake_pool = await db.open_async_pool()
        app.state.intake_batcher = IntakeBatcher(app.state.intake_pool,
                                                 min(settings.intake_batch_senders, settings.db_async_pool_size),
                                                 settings.db_pool_timeout_seconds,
                                                 settings.intake_batch_linger_ms / 1000)
        try:
            yield
        finally:
            await app.state.intake_batcher.close()
            await app.state.intake_pool.close()
            await contact_centre.shutdown()

    app = FastAPI(
        title="Kerbside API",
        version=__version__,
        description="Field-worker job dispatch and asset-fault reporting. Errors are application/problem+json.",
        lifespan=lifespan,
        dependencies=[Depends(single_valued_query)],
    )
    observability.configure_logging(settings.log_level, settings.log_format)
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(cors.ScopedCors)  # preflights answered before the body limit; inside the request context
    # Outermost: request id, security headers, access log and metrics cover every answer, 413s and 429s too.
    app.state.auth_throttle = AuthThrottle(settings.auth_failure_rate)
    app.add_middleware(observability.RequestContext, throttle=app.state.auth_throttle)
    app.include_router(metrics.router)
    app.include_router(health_router)
    app.include_router(categories_router)
    app.include_router(reports_router)
    poolroute.install(app, "/api/v1/reports", "POST", create_report_on_pool, before=app.router.routes[-1])
    # Before the jobs router: /jobs/overdue is not a job reference.
    app.include_router(dispatch_router)
    app.include_router(planning_router)
    app.include_router(jobs_router)
    poolroute.install(app, "/api/v1/jobs/{reference}", "GET", job_page_on_pool, before=app.router.routes[-1])
    app.include_router(contractor_router)
    app.include_router(outbox_router)
    app.include_router(open311_router)
    app.include_router(ogc_router)
    app.include_router(notifications_router)
    app.include_router(public_router)
    contact_centre.install(app)  # dashboard pages + API, /api/v1/events, /api/v1/subscriptions
    openapi.install(app)  # problem+json and auth declared on every operation
    return app
