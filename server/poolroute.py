"""PoolRoute: the API's two busiest requests answered on its async pool, ahead of their FastAPI routes.

The report intake (POST /api/v1/reports) and the job page (GET /api/v1/jobs/{reference}) each run on a
connection of the API's psycopg async pool (server/db.py open_async_pool), with the token check riding on their
first statement. Their APIRoutes also take the request's ORM session, for the path that runs without the pool
(an app run without its lifespan, or whose sessions are overridden, as the test suite's rollback-per-test is),
and FastAPI solves that dependency, with its exit stack, on every request even when the pool answers. A
PoolRoute sits just ahead of the APIRoute, for the same path and method: its handler answers on the pool, or
returns None, and then the request goes on to the app's routes as if the PoolRoute were not there, with any
body it read. The APIRoute stays what OpenAPI, the access matrix and the docs describe; a PoolRoute is left out
of the schema. Errors raised in a handler are answered by the app's exception handlers, as the APIRoute's are.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from server.db import async_pool_for

Handler = Callable[[Request, AsyncConnectionPool], Awaitable[Response | None]]
DECLINED = "kerbside.pool_route_declined"


class PoolRoute(Route):
    """`method path`, answered by `handler` on the API's async pool when it can (see the module)."""

    def __init__(self, path: str, method: str, handler: Handler, router) -> None:
        self._handler, self._router, self._method = handler, router, method
        super().__init__(path, self._serve, methods=[method], include_in_schema=False)
        self.app = self._serve  # an ASGI callable: it may hand the request on unanswered

    def matches(self, scope):
        # Other methods (HEAD too) are the APIRoute's to answer; so is a query string, which it judges.
        if (scope["type"] != "http" or scope.get("method") != self._method or scope.get("query_string")
                or scope.get(DECLINED)):
            return Match.NONE, {}
        match, child = super().matches(scope)
        if match is Match.FULL:
            child = {**child, "route": self}  # the metrics' and the access log's route label: the same template
        return match, child

    async def _serve(self, scope, receive, send) -> None:
        read: list[dict] = []

        async def recorded():
            message = await receive()
            read.append(message)
            return message

        request = Request(scope, recorded)
        pool = async_pool_for(request)
        if pool is not None:
            response = await self._handler(request, pool)
            if response is not None:
                return await response(scope, receive, send)
        scope[DECLINED] = True
        await self._router(scope, _replay(read, receive) if read else receive, send)


def _replay(read: list[dict], receive):
    """`receive` with the messages already read (the body) handed out once more, first."""
    pending = list(read)

    async def replay():
        return pending.pop(0) if pending else await receive()

    return replay


def install(app, path: str, method: str, handler: Handler, *, before: BaseRoute) -> None:
    """Put a PoolRoute for `method path` among `app`'s routes, just ahead of `before` (the route, or the
    included router, that holds its APIRoute): routes ahead of that one, such as /jobs/overdue, still match
    first."""
    routes = app.router.routes
    at = next(i for i, r in enumerate(routes) if r is before)  # by identity: included routers compare by value
    routes.insert(at, PoolRoute(path, method, handler, app.router))
