"""Domain errors and the one handler that turns them into application/problem+json (RFC 9457)."""
from __future__ import annotations

import email.message
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
import psycopg
import psycopg_pool
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("kerbside.errors")
TYPE_BASE = "https://kerbside.example/problems/"
PROBLEM = "application/problem+json"


class DomainError(Exception):
    """A refusal with a stable code, an HTTP status and (where known) the fields at fault."""

    status = 400
    code = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, fields: list[str] | None = None, code: str | None = None,
                 status: int | None = None, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or []
        self.code = code or self.code
        self.status = status or self.status
        self.extra = extra or {}
        self.headers = headers


class NotFound(DomainError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(DomainError):
    status, code, title = 422, "validation-error", "Invalid request"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Not allowed"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload-too-large", "Payload too large"


def problem(status: int, code: str, title: str, detail: str, *, fields: list[str] | None = None,
            instance: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Build a problem+json response with a stable type URI ending in `code`."""
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if fields:
        body["fields"] = fields
        body["invalid_params"] = [{"name": f} for f in fields]
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_name(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on the app."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError):
        return problem(exc.status, exc.code, exc.title, exc.detail, fields=exc.fields,
                       instance=request.url.path, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        fields = sorted({_field_name(tuple(e.get("loc", ()))) for e in errors})
        detail = "; ".join(f"{_field_name(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in errors[:10])
        code = "malformed-json" if any(e.get("type") == "json_invalid" for e in errors) else "validation-error"
        return problem(422, code, "Invalid request", detail, fields=fields, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        codes = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
                 413: "payload-too-large", 415: "unsupported-media-type"}
        code = codes.get(exc.status_code, "http-error")
        response = problem(exc.status_code, code, str(exc.detail), str(exc.detail), instance=request.url.path,
                           headers=getattr(exc, "headers", None))
        if request.url.path == "/ogc" or request.url.path.startswith("/ogc/"):
            # A path no OGC route matches gets the body the OGC router's own errors have (the problem plus
            # OGC's code and description), so an OGC client sees one format for every 404.
            body = json.loads(response.body)
            body.update(code="NotFound" if exc.status_code == 404 else "InvalidRequest", description=body["detail"])
            if exc.status_code == 404:
                body.update(title="Not found", detail="no such resource", description="no such resource")
            response = JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM,
                                    headers=getattr(exc, "headers", None))
        return response

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return problem(503, "database-unavailable", "Service unavailable",
                       "The database is not reachable; try again shortly.", headers={"Retry-After": "5"})

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down_raw(request: Request, exc: psycopg.OperationalError):
        # The same, from a statement run on the driver directly (the report intake).
        return await _db_down(request, exc)

    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def _db_busy_raw(request: Request, exc: psycopg_pool.PoolTimeout):
        return await _db_busy(request, exc)

    @app.exception_handler(psycopg.DataError)
    async def _bad_value_raw(request: Request, exc: psycopg.DataError):
        return _refused_value(request, type(exc).__name__)

    @app.exception_handler(PoolTimeout)
    async def _db_busy(request: Request, exc: PoolTimeout):
        # Every pooled connection is busy (a stalled or overloaded database): say so, do not 500.
        log.warning("no database connection free: %s", exc.__class__.__name__)
        return problem(503, "database-unavailable", "Service unavailable",
                       "No database connection became free in time; try again shortly.",
                       headers={"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError):
        # The database refused a value the caller sent (a NUL character, a number out of range…): their
        # input, not our bug. Only the kind of refusal is told or logged: PostgreSQL's own message may
        # quote the value, and a value may be a secret.
        return _refused_value(request, type(exc.orig).__name__)

    def _refused_value(request: Request, kind: str):
        log.warning("value refused by the database (%s) on %s %s", kind, request.method, request.url.path)
        return problem(422, "invalid-value", "Invalid request", f"a value could not be used ({kind})",
                       instance=request.url.path)

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError):
        if exc.connection_invalidated:
            return problem(503, "database-unavailable", "Service unavailable",
                           "The database connection was lost; try again shortly.", headers={"Retry-After": "5"})
        log.exception("database error")
        return problem(500, "internal-error", "Internal error", "An unexpected error occurred.")


def json_body(request: Request, raw: bytes) -> Any:
    """A request body as FastAPI reads one for a model parameter: JSON when the content type says so (or
    none is given), the raw bytes otherwise (which then fail validation), None when empty. Malformed JSON is
    a 422 `malformed-json` at once, as FastAPI answers it before anything else."""
    if not raw:
        return None
    content_type = request.headers.get("content-type")
    if content_type:
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
            return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", getattr(exc, "pos", 0)),
                                       "msg": "JSON decode error", "input": {},
                                       "ctx": {"error": getattr(exc, "msg", str(exc))}}]) from None


def validated(model: type[BaseModel], payload: Any) -> Any:
    """The payload as `model`, or the 422 FastAPI would give for a body parameter of that type."""
    if payload is None:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
