"""OGC API Features Part 1 documents as plain data, or JSON bytes around features the database wrote (pure: no
database, no web framework)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from server.ogc.params import CRS84, DEFAULT_LIMIT, MAX_LIMIT
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
]
JSON = "application/json"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
PROBLEM = "application/problem+json"
HTML = "text/html"
# Every layer in gis_data/manifest.yaml is published under the OGL v3 (tests/server/test_ogc_conformance.py
# checks the manifest), and so are the wards; jobs are council records and carry no licence link.
OGL = "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection is: id, words, its CRS84 extent and, for jobs, its time span."""

    id: str
    title: str
    description: str
    bbox: tuple[float, float, float, float] | None
    temporal: tuple[datetime | None, datetime | None] | None = None
    open_data: bool = True  # published under the OGL (a license link); jobs are not


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


def link(href: str, rel: str, type_: str = JSON, title: str | None = None) -> dict:
    """One link object."""
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def landing(base: str, title: str, description: str) -> dict:
    """The landing page: links to the API definition, conformance and the collections."""
    return {"title": title, "description": description, "links": [
        link(f"{base}?f=json", "self", JSON, "This document"),
        link(f"{base}/api", "service-desc", OPENAPI, "The API definition (OpenAPI 3.0)"),
        link(f"{base}/conformance", "conformance", JSON, "Conformance classes"),
        link(f"{base}/collections", "data", JSON, "The feature collections"),
        link(OGL, "license", HTML, "Open Government Licence v3.0 (asset layers and wards)"),
    ]}


def conformance() -> dict:
    """The conformance classes implemented: Core, GeoJSON, OpenAPI 3.0 and Part 2 CRS."""
    return {"conformsTo": list(CONFORMANCE)}


def collection(base: str, c: CollectionInfo, crs: list[str], storage_crs: str) -> dict:
    """One collection's metadata with its items link, extent and CRSs (Part 2: CRS84 first, then storage)."""
    href = f"{base}/collections/{quote(c.id)}"
    out = {"id": c.id, "title": c.title, "description": c.description, "itemType": "feature", "crs": list(crs),
           "storageCrs": storage_crs,
           "links": [link(href, "self", JSON, c.title), link(f"{href}/items", "items", GEOJSON, "The features")]}
    if c.open_data:
        out["links"].append(link(OGL, "license", HTML, "Open Government Licence v3.0"))
    extent: dict = {}
    if c.bbox:
        extent["spatial"] = {"bbox": [list(c.bbox)], "crs": CRS84}
    if c.temporal:
        extent["temporal"] = {"interval": [[_iso(c.temporal[0]), _iso(c.temporal[1])]], "trs": GREGORIAN}
    if extent:
        out["extent"] = extent
    return out


def collections(base: str, infos: list[CollectionInfo], crs: list[str], storage_crs: str) -> dict:
    """The collections list."""
    return {"links": [link(f"{base}/collections", "self", JSON, "The feature collections")],
            "collections": [collection(base, c, crs, storage_crs) for c in infos]}


def dumps(doc: dict | list) -> bytes:
    """JSON bytes as the API's JSONResponse writes them (UTF-8, compact, no NaN)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def items_page(base: str, collection_id: str, features: str, returned: int, *, matched: int, limit: int,
               offset: int, query: dict[str, str]) -> bytes:
    """A GeoJSON FeatureCollection page with numberMatched/numberReturned and self/next/prev links, around
    `features`, the JSON array text of its `returned` features (made by the database: server/ogc/features.py)."""
    href = f"{base}/collections/{quote(collection_id)}/items"

    def page(at: int) -> str:
        return f"{href}?{urlencode({**query, 'limit': limit, 'offset': at})}"

    links = [link(page(offset), "self", GEOJSON, "This page"),
             link(f"{base}/collections/{quote(collection_id)}", "collection", JSON, "The collection")]
    if offset + returned < matched:
        links.append(link(page(offset + limit), "next", GEOJSON, "Next page"))
    if offset > 0:
        links.append(link(page(max(0, offset - limit)), "prev", GEOJSON, "Previous page"))
    rest = dumps({"links": links, "timeStamp": _iso(datetime.now(timezone.utc).replace(microsecond=0)),
                  "numberMatched": matched, "numberReturned": returned})
    return b'{"type":"FeatureCollection","features":' + features.encode("utf-8") + b"," + rest[1:]


def one_feature(base: str, collection_id: str, feature_id: str, feature: str) -> bytes:
    """A single feature (its JSON object text) with its self and collection links added."""
    href = f"{base}/collections/{quote(collection_id)}"
    links = [link(f"{href}/items/{quote(feature_id, safe='')}", "self", GEOJSON, "This feature"),
             link(href, "collection", JSON, "The collection")]
    return feature.rstrip().removesuffix("}").encode("utf-8") + b',"links":' + dumps(links) + b"}"


# OGC exception codes → the stable problem type codes the rest of the API uses (server/errors.py).
PROBLEM_CODES = {"NotFound": "not-found", "InvalidParameterValue": "invalid-parameter-value",
                 "Unauthorized": "unauthorized", "Forbidden": "forbidden"}
TITLES = {400: "Bad request", 401: "Authentication required", 403: "Not allowed", 404: "Not found"}


def exception(type_base: str, code: str, description: str, status: int, instance: str,
              fields: list[str] | None = None) -> dict:
    """One error body for the whole API: RFC 9457 problem details that also carry OGC's code and description."""
    body = {"type": type_base + PROBLEM_CODES.get(code, "bad-request"), "title": TITLES.get(status, "Error"),
            "status": status, "detail": description, "instance": instance, "code": code, "description": description}
    if fields:
        body["fields"] = fields
        body["invalid_params"] = [{"name": f} for f in fields]
    return body


def _param(name: str, schema: dict, description: str, where: str = "query") -> dict:
    out = {"name": name, "in": where, "required": where == "path", "description": description, "schema": schema}
    if where == "query":
        out.update(style="form", explode=False)
    return out


def openapi(base: str, title: str, version: str, crs: list[str]) -> dict:
    """An OpenAPI 3.0 definition of the OGC API part (what GDAL and OWSLib read for limits)."""
    f = _param("f", {"type": "string", "enum": ["json"]}, "Output format (JSON only)")
    cid = _param("collectionId", {"type": "string"}, "A collection id", "path")
    crs_param = _param("crs", {"type": "string", "format": "uri", "enum": list(crs), "default": CRS84},
                       "CRS of the geometries returned (Part 2); the answer's Content-Crs header names it")
    items_params = [cid, f,
                    _param("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                           "minLon,minLat,maxLon,maxLat in CRS84, or in bbox-crs"),
                    _param("bbox-crs", {"type": "string", "format": "uri", "enum": list(crs), "default": CRS84},
                           "CRS of the bbox numbers (Part 2)"),
                    crs_param,
                    _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                           f"Page size; values above {MAX_LIMIT} are served as {MAX_LIMIT}"),
                    _param("offset", {"type": "integer", "minimum": 0, "default": 0}, "Features to skip"),
                    _param("datetime", {"type": "string"}, "Instant or interval (RFC 3339); used by jobs")]
    ok = {"description": "OK", "content": {JSON: {}}}
    geo = {"description": "OK", "content": {GEOJSON: {}}}

    def err(why: str) -> dict:
        return {"description": why, "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/exception"}}}}

    bad, missing = err("A query parameter is unknown or invalid"), err("No such collection or feature")
    # Collections and features look at the token: none is fine for public layers, a bad one is a 401, and a
    # role that may not read a collection (jobs) is a 403.
    guarded = {"401": err("The bearer token is unknown, revoked or expired, or the collection needs one"),
               "403": err("This token's role may not read the collection")}
    anyone_or_bearer = [{}, {"bearer": []}]

    def op(summary: str, op_id: str, parameters: list, responses: dict, secured: bool = False) -> dict:
        out = {"summary": summary, "operationId": op_id, "parameters": parameters,
               "responses": {**responses, "400": bad}}
        if secured:
            out["security"] = anyone_or_bearer
            out["responses"].update(guarded)
        return {"get": out}

    paths = {
        "/": op("Landing page", "getLandingPage", [f], {"200": ok}),
        "/conformance": op("Conformance classes", "getConformance", [f], {"200": ok}),
        "/api": op("This API definition", "getApiDefinition", [f],
                   {"200": {"description": "OK", "content": {OPENAPI: {}}}}),
        "/collections": op("Feature collections", "getCollections", [f], {"200": ok}, secured=True),
        "/collections/{collectionId}": op("One collection", "describeCollection", [cid, f],
                                          {"200": ok, "404": missing}, secured=True),
        "/collections/{collectionId}/items": op("Features", "getFeatures", items_params,
                                                {"200": geo, "404": missing}, secured=True),
        "/collections/{collectionId}/items/{featureId}": op(
            "One feature", "getFeature",
            [cid, _param("featureId", {"type": "string"}, "A feature id", "path"), f, crs_param],
            {"200": geo, "404": missing}, secured=True),
    }
    exception_schema = {"type": "object", "required": ["code", "type", "title", "status", "detail"],
                        "description": "RFC 9457 problem details with the OGC exception's code and description",
                        "properties": {k: {"type": "string"} for k in ("code", "description", "type", "title",
                                                                        "detail", "instance")}}
    exception_schema["properties"]["status"] = {"type": "integer"}
    return {"openapi": "3.0.3", "info": {"title": title, "version": version,
                                         "license": {"name": "Open Government Licence v3.0", "url": OGL}},
            "servers": [{"url": base}], "paths": paths,
            "components": {"schemas": {"exception": exception_schema},
                           "securitySchemes": {"bearer": {
                               "type": "http", "scheme": "bearer",
                               "description": "A Kerbside API token: optional for public layers, "
                                              "needed for jobs (staff, or the contractor or crew holding them)"}}}}
