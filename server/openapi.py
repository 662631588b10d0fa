"""Make /openapi.json tell the truth: every answer an operation can give, with its media type and schema.

FastAPI documents a 422 as its own JSON shape and knows nothing of our auth, our problem+json
errors or the standards endpoints that read their parameters by hand. This module completes the
document once, from the routes themselves (which dependencies they use, which roles they need, what
they take), plus a short table for Open311 and OGC whose parameters live in their own parsers.
Schemathesis checks every response against this document (tests/fuzz), so a lie here fails a test.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from server.errors import PROBLEM

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "type": "object", "title": "Problem", "description": "RFC 9457 problem details; `type` ends in a stable code.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "string"}},
        "invalid_params": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                      "properties": {"name": {"type": "string"}}}},
    },
}
WHY = {400: "Bad request", 401: "No valid bearer token", 403: "The token's role may not do this",
       404: "Not found (or not yours to see)", 409: "Conflict with the current state or an earlier request",
       410: "Gone", 413: "Body too large", 422: "Invalid input (the fields at fault are named)",
       429: "Too many failed tokens from this address (see Retry-After)", 503: "Database unavailable (Retry-After)"}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds to wait"}}
ANY_JSON = {"type": ["object", "array"]}

# Open311 GeoReport v2: answers in XML or JSON (by the path's .fmt); errors are GeoReport error lists.
OPEN311_ERRORS = {"type": "array", "items": {"type": "object", "required": ["code", "description"],
                                             "properties": {"code": {"type": "integer"},
                                                            "description": {"type": "string"}}}}
OPEN311_COMMON = [("jurisdiction_id", "this council's jurisdiction id"),
                  ("api_key", "optional on reads; must be valid when sent")]
OPEN311_QUERY = {
    "/open311/v2/requests.{fmt}": [("service_request_id", "comma list"), ("service_code", "comma list"),
                                   ("status", "open and/or closed"), ("start_date", "W3C date-time"),
                                   ("end_date", "W3C date-time")],
    "/open311/v2/servicerequestupdates.{fmt}": [("start_date", "W3C date-time"), ("end_date", "W3C date-time")],
}
_REQUEST_FORM = {
    "type": "object", "required": ["api_key", "service_code"],
    "properties": {k: {"type": "string"} for k in (
        "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string", "address_id",
        "description", "media_url", "email", "first_name", "last_name", "phone", "account_id", "device_id")},
    "additionalProperties": {"type": "string", "description": "attribute[code] answers"},
}
_UPDATE_FORM = {
    "type": "object", "required": ["api_key", "service_request_id", "update_id", "status"],
    "properties": {k: {"type": "string"} for k in (
        "api_key", "jurisdiction_id", "service_request_id", "update_id", "status", "updated_datetime",
        "description", "media_url", "lat", "long", "account_id")},
}
OPEN311_FORMS = {
    ("post", "/open311/v2/requests.{fmt}"): {
        "application/x-www-form-urlencoded": {"schema": _REQUEST_FORM},
        "multipart/form-data": {"schema": {**_REQUEST_FORM, "properties": {
            **_REQUEST_FORM["properties"], "media": {"type": "string", "format": "binary"}}}}},
    ("post", "/open311/v2/servicerequestupdates.{fmt}"): {
        "application/x-www-form-urlencoded": {"schema": _UPDATE_FORM}},
}

# A path no route can match (a newline in an OGC feature id: `{feature_id:path}` stops at one) is answered
# by the application's own 404, which under /ogc carries OGC's code and description too (server/errors.py).

# OGC API Features: JSON only; errors are problem documents that also carry OGC's {code, description}.
OGC_ERROR = {"type": "object", "required": [*PROBLEM_SCHEMA["required"], "code", "description"],
             "properties": {**PROBLEM_SCHEMA["properties"], "code": {"type": "string"},
                            "description": {"type": "string"}}}
OGC_MEDIA = {"/ogc/api": "application/vnd.oai.openapi+json;version=3.0",
             "/ogc/collections/{collection_id}/items": "application/geo+json",
             "/ogc/collections/{collection_id}/items/{feature_id}": "application/geo+json"}
OGC_ITEMS_QUERY = [("bbox", "minLon,minLat,maxLon,maxLat (or in bbox-crs)"), ("limit", "1 to 1000"),
                   ("offset", "0 or more"), ("datetime", "instant or interval (RFC 3339, '..' open)"),
                   ("bbox-crs", "CRS URI of the bbox (CRS84 or the storage CRS)"),
                   ("crs", "CRS URI of the geometries returned (CRS84 or the storage CRS)")]
OGC_FEATURE_QUERY = [("crs", "CRS URI of the geometry returned (CRS84 or the storage CRS)")]

# Operations whose success is not JSON.
MEDIA_200 = {
    ("get", "/api/v1/photos/{photo_id}"): {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                                           "image/png": {"schema": {"type": "string", "format": "binary"}}},
    ("get", "/api/v1/events"): {"text/event-stream": {"schema": {
        "type": "object", "description": "one server-sent event", "required": ["data"],
        "properties": {"event": {"type": "string", "enum": ["job", "ready", "reset"]}, "data": {"type": "string"},
                       "id": {"type": "string"}, "retry": {"type": "integer"}}}}},
}
EXTRA_STATUS = {
    ("get", "/api/v1/photos/{photo_id}"): [410],
    # Notify's callbacks: its bearer token, not ours (401); a receipt for a message not yet recorded (404).
    ("post", "/api/v1/notify/receipts"): [401, 404],
    ("post", "/api/v1/notify/inbound-sms"): [401],
}
# Public HTML pages answer an unknown reference or link with an HTML page, not a problem document.
HTML_404 = ("/r/{reference}", "/u/{token}")


def _problem(status: int) -> dict:
    out: dict[str, Any] = {"description": WHY.get(status, "Problem"), "content": {PROBLEM: {"schema": PROBLEM_REF}}}
    if status in (429, 503):
        out["headers"] = RETRY_AFTER
    return out


def _calls(route: APIRoute) -> set:
    """Every dependency callable the route uses (recursively)."""
    seen, stack = set(), [route.dependant]
    while stack:
        d = stack.pop()
        for sub in d.dependencies:
            if sub.call is not None:
                seen.add(sub.call)
            stack.append(sub)
    return seen


def _roles(calls: set) -> tuple[str, ...] | None:
    for c in calls:
        if getattr(c, "roles", None):
            return c.roles
    return None


def _param(name: str, where: str, description: str, schema: dict | None = None, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def api_routes(app: FastAPI) -> list[tuple[APIRoute, str]]:
    """Every APIRoute of the app (through included routers) with its full path template."""
    out = []
    for ctx in iter_route_contexts(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            out.append((ctx.original_route, ctx.path_format or ctx.path))
    return out


def required_roles(app: FastAPI) -> dict[tuple[str, str], tuple[str, ...]]:
    """(METHOD, path) → the roles a route's require() names (routes without one are left out)."""
    out = {}
    for route, path in api_routes(app):
        roles = _roles(_calls(route))
        if roles:
            out.update({(m, path): roles for m in route.methods})
    return out


def _api_operation(op: dict, route: APIRoute, method: str, path: str) -> None:
    from server.db import get_session
    from server.deps import current_principal

    calls = _calls(route)
    statuses = {int(s) for s in op.get("responses", {}) if s.isdigit()}
    problems: set[int] = set()
    if current_principal in calls or any(getattr(c, "bearer", False) for c in calls):
        op["security"] = [{"bearerAuth": []}]
        problems |= {401, 429}
        if _roles(calls):
            problems.add(403)
    if "{" in path:
        problems.add(404)
    if op.get("parameters") or "requestBody" in op:
        problems.add(422)
    if "requestBody" in op:
        problems |= {400, 413}
    if get_session in calls:
        problems.add(503)
    problems |= set(EXTRA_STATUS.get((method, path), ()))
    responses = op.setdefault("responses", {})
    for status in sorted(problems | {s for s in statuses if s >= 400}):
        responses[str(status)] = {**responses.get(str(status), {}), **_problem(status)}
    if (method, path) in MEDIA_200:
        responses["200"] = {"description": "OK", "content": MEDIA_200[(method, path)]}


def _open311_operation(op: dict, method: str, path: str) -> None:
    for p in op.get("parameters", []):
        if p["name"] == "fmt":
            p["schema"] = {"type": "string", "enum": ["xml", "json"]}
    names = {p["name"] for p in op.get("parameters", [])}
    if method == "get":
        for name, text in OPEN311_COMMON + OPEN311_QUERY.get(path, []):
            if name not in names:
                op.setdefault("parameters", []).append(_param(name, "query", text))
    else:
        op["requestBody"] = {"required": True, "content": OPEN311_FORMS[(method, path)]}
    body = {"text/xml": {"schema": {"type": "string"}}, "application/json": {"schema": ANY_JSON}}
    errors = {"text/xml": {"schema": {"type": "string"}}, "application/json": {"schema": OPEN311_ERRORS}}
    op["responses"] = {"200": {"description": "The GeoReport document", "content": body},
                       **{str(s): {"description": WHY[s], "content": errors} for s in (400, 403, 404)},
                       "429": _problem(429), "503": _problem(503)}
    if method == "post":
        op["responses"]["413"] = _problem(413)


def _ogc_operation(op: dict, path: str) -> None:
    names = {p["name"] for p in op.get("parameters", [])}
    extra = [("f", "json (the only format)")] + (OGC_ITEMS_QUERY if path.endswith("/items") else
                                                 OGC_FEATURE_QUERY if path.endswith("/{feature_id}") else [])
    for name, text in extra:
        if name not in names:
            schema = {"type": "string", "enum": ["json", "geojson"]} if name == "f" else None
            op.setdefault("parameters", []).append(_param(name, "query", text, schema))
    ok = {OGC_MEDIA.get(path, "application/json"): {"schema": {"type": "object"}}}
    error = {PROBLEM: {"schema": OGC_ERROR}}
    op["responses"] = {"200": {"description": "OK", "content": ok},
                       **{str(s): {"description": WHY[s], "content": error} for s in (400, 401, 403, 404)},
                       "429": _problem(429), "503": _problem(503)}


def _webhook_operation(op: dict) -> None:
    op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ANY_JSON}}}
    op["parameters"] = [*op.get("parameters", []),
                        _param("X-Kerbside-Timestamp", "header", "unix seconds, signed with the body"),
                        _param("X-Kerbside-Signature", "header", "sha256=HMAC(secret, timestamp + '.' + body)")]
    # An update for a job not yet known is a 404 carrying the per-update results (so the sender retries).
    op["responses"]["404"]["content"]["application/json"] = {"schema": {"type": "object"}}


def _add_body_models(doc: dict) -> None:
    """Request models that handlers read themselves (declared in openapi_extra by $ref), as components."""
    from server.reports.schemas import ReportIn

    for model in (ReportIn,):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            doc["components"]["schemas"].setdefault(name, sub)
        doc["components"]["schemas"].setdefault(model.__name__, schema)


def complete(app: FastAPI, doc: dict) -> dict:
    """Add problem responses, auth and the hand-read parameters to a generated OpenAPI document."""
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    doc["components"].setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http", "scheme": "bearer", "description": "an API token (ks_…); contractor tokens see their jobs"}
    for schema in ("HTTPValidationError", "ValidationError"):
        doc["components"]["schemas"].pop(schema, None)
    _add_body_models(doc)
    for route, path in api_routes(app):
        if not route.include_in_schema:
            continue
        for method in sorted(m.lower() for m in route.methods):
            op = doc["paths"].get(path, {}).get(method)
            if op is None:
                continue
            if path.startswith("/open311/"):
                _open311_operation(op, method, path)
            elif path.startswith("/ogc"):
                _ogc_operation(op, path)
            else:
                _api_operation(op, route, method, path)
                if path == "/api/v1/contractors/{name}/webhook":
                    _webhook_operation(op)
                if path in HTML_404:
                    op["responses"]["404"]["content"] = {"text/html": {"schema": {"type": "string"}}}
            # Any request carrying credentials from a throttled address is refused before routing.
            op["responses"].setdefault("429", _problem(429))
            if path == "/healthz":
                op["responses"]["503"] = {"description": "The database is unreachable",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}
    return doc


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once per app)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            app.openapi_schema = complete(app, doc)
        return app.openapi_schema

    app.openapi = openapi
