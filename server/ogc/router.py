"""OGC API Features (Part 1: Core, GeoJSON, OpenAPI 3.0; Part 2: CRS) at /ogc — thin HTTP glue, JSON only.

Authentication is the API's bearer token (GDAL: --config GDAL_HTTP_HEADERS "Authorization: Bearer …").
Errors are problem+json documents that also carry OGC's {code, description} (400/401/403/404).
Every GET path answers HEAD too (HTTP requires it; the OGC ETS and caches send it), with the GET's headers.
"""
from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from server import __version__
from server.auth.models import OPEN311_CLIENT
from server.auth.tokens import verify
from server.config import get_settings
from server.deps import Principal, SessionDep
from server.errors import PROBLEM, TYPE_BASE
from server.ogc import documents, params, service
from server.ogc.params import OgcError

router = APIRouter(prefix="/ogc", tags=["ogc"])
ONLY_F = frozenset({"f"})


def _get(path: str, summary: str):
    """Register a GET operation and its HEAD twin (kept out of the OpenAPI document: HEAD is implied)."""
    def register(endpoint):
        router.add_api_route(path, endpoint, methods=["GET"], summary=summary)
        router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)
        return endpoint
    return register


def _caller(request: Request, session: Session) -> Principal | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":  # anonymous (other schemes belong to proxies, not to us)
        return None
    row = verify(session, token.strip()) if token.strip() else None
    if row is None:
        raise OgcError(401, "Unauthorized", "the bearer token is unknown, revoked or expired")
    if row.role == OPEN311_CLIENT:
        raise OgcError(403, "Forbidden", "an open311_client token is an api_key for /open311/v2 only")
    return Principal(row.id, row.name, row.role, row.contractor_id, row.crew_id)


def _storage_crs() -> str:
    return params.crs_uri(get_settings().srid)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _crs_uris() -> list[str]:
    return [params.crs_uri(srid) for srid in service.offered_srids()]


def _answer(request: Request, build: Callable[[dict[str, str]], dict | bytes], *, allowed: frozenset[str] = ONLY_F,
            media_type: str = documents.JSON, headers: dict[str, str] | None = None) -> Response:
    """Check the query parameters, build the document, and turn an OgcError into its JSON answer.

    `build` gives a document, or its JSON bytes (feature pages: made mostly by the database) passed through.
    `headers` may be filled in by `build` (Content-Crs, once the CRS is known)."""
    try:
        query = dict(request.query_params)
        if len(query) != len(request.query_params.multi_items()):
            raise OgcError(400, "InvalidParameterValue", "a query parameter was given more than once")
        params.check_known(query, allowed)
        params.output_format(query.get("f"))
        doc = build(query)
        if isinstance(doc, bytes):
            return Response(doc, media_type=media_type, headers=headers)
        return JSONResponse(doc, media_type=media_type, headers=headers)
    except OgcError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(documents.exception(TYPE_BASE, exc.code, exc.description, exc.status,
                                                request.url.path, exc.fields),
                            exc.status, headers=headers, media_type=PROBLEM)


# `/ogc` and `/ogc/` both answer (no redirect): clients join "/" to the root they were given.
@_get("/", "OGC API Features landing page")
@_get("", "OGC API Features landing page")
def landing(request: Request) -> JSONResponse:
    """Links to the API definition, the conformance classes and the collections."""
    s = get_settings()
    return _answer(request, lambda q: documents.landing(
        _base(request), f"{s.council_name}: assets and jobs",
        "Kerbside asset layers, wards and open jobs as OGC API Features (GeoJSON, CRS84)"))


@_get("/conformance", "Conformance classes")
def conformance(request: Request) -> JSONResponse:
    """Core, GeoJSON, OpenAPI 3.0 and (Part 2) CRS by reference."""
    return _answer(request, lambda q: documents.conformance())


@_get("/api", "OpenAPI 3.0 definition of the OGC API")
def api(request: Request) -> JSONResponse:
    """The service description clients read (limits, parameters)."""
    return _answer(request, lambda q: documents.openapi(_base(request), "Kerbside OGC API Features", __version__,
                                                        _crs_uris()), media_type=documents.OPENAPI)


@_get("/collections", "Feature collections the caller may read")
def collections(request: Request, session: SessionDep) -> JSONResponse:
    """Asset layers and wards (public by setting), and open jobs for staff tokens."""
    return _answer(request, lambda q: documents.collections(
        _base(request), service.collection_infos(session, _caller(request, session)), _crs_uris(), _storage_crs()))


@_get("/collections/{collection_id}", "One collection")
def collection(collection_id: str, request: Request, session: SessionDep) -> JSONResponse:
    """A collection's metadata and extent."""
    return _answer(request, lambda q: documents.collection(
        _base(request), service.collection_info(session, _caller(request, session), collection_id), _crs_uris(),
        _storage_crs()))


@_get("/collections/{collection_id}/items", "Features: bbox, limit, offset, datetime")
def items(collection_id: str, request: Request, session: SessionDep) -> Response:
    """A GeoJSON page of features with numberMatched, numberReturned and a next link."""
    headers: dict[str, str] = {}

    def build(q: dict[str, str]) -> bytes:
        who = _caller(request, session)
        info = service.collection_info(session, who, collection_id, temporal=False)
        offered = service.offered_srids()
        srid, bbox_srid = params.crs("crs", q.get("crs"), offered), params.crs("bbox-crs", q.get("bbox-crs"), offered)
        limit, offset = params.limit(q.get("limit")), params.offset(q.get("offset"))
        bbox = params.bbox(q.get("bbox"), projected=bbox_srid != params.WGS84)
        when = params.interval(q.get("datetime"))
        page = service.items(session, who, info, bbox=bbox, when=when, limit=limit, offset=offset, srid=srid,
                             bbox_srid=bbox_srid)
        headers["Content-Crs"] = f"<{params.crs_uri(srid)}>"
        keep = {k: v for k, v in q.items() if k in ("f", "bbox", "datetime", "crs", "bbox-crs")}
        return documents.items_page(_base(request), collection_id, page.features, page.returned,
                                    matched=page.matched, limit=limit, offset=offset, query=keep)
    return _answer(request, build, allowed=params.ITEMS_PARAMS, media_type=documents.GEOJSON, headers=headers)


@_get("/collections/{collection_id}/items/{feature_id:path}", "One feature")
def item(collection_id: str, feature_id: str, request: Request, session: SessionDep) -> Response:
    """One feature by id (asset reference, job reference or ward code)."""
    headers: dict[str, str] = {}

    def build(q: dict[str, str]) -> bytes:
        who = _caller(request, session)
        info = service.collection_info(session, who, collection_id, temporal=False)
        srid = params.crs("crs", q.get("crs"), service.offered_srids())
        found = service.one(session, who, info, feature_id, srid)
        headers["Content-Crs"] = f"<{params.crs_uri(srid)}>"
        return documents.one_feature(_base(request), collection_id, feature_id, found)
    return _answer(request, build, allowed=params.FEATURE_PARAMS, media_type=documents.GEOJSON, headers=headers)
