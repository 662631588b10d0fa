"""Every endpoint × every role: the expected status of each cell is data (TABLE), checked one cell at a time.

Endpoints are enumerated from the app's routes; a route missing from TABLE fails the suite, so a new
endpoint cannot ship without saying who may call it. Each cell runs in its own savepoint, so a write
by one role never changes what the next role sees. Contractor A's answers are also searched for any
trace of contractor B's job (its references, its contractor reference, a marker in its text).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tests.security.asgi import Stream
from tests.security.world import ROLES, World, auth, jpeg

# Columns, in this order:      none  field crew  adv   sup   ctrA  ctrB  admin o311 revoked expired
# o311 is an Open311 front end's key (open311_client): GeoReport only, a 403 everywhere else.
TABLE: dict[str, tuple[int, ...]] = {
    "GET /openapi.json":                                 (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /docs":                                         (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /docs/oauth2-redirect":                         (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /redoc":                                        (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    # Loopback or the metrics token only (neither here): no role opens it.
    "GET /metrics":                                      (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "GET /healthz":                                      (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/v1/categories":                            (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /api/v1/categories/{code}":                     (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "POST /api/v1/reports":                              (401, 201, 201, 201, 201, 403, 403, 201, 403, 401, 401),
    "GET /api/v1/reports/{reference}":                   (401, 200, 404, 200, 200, 200, 404, 200, 403, 401, 401),
    "POST /api/v1/reports/{reference}/photos":           (401, 201, 404, 201, 201, 403, 403, 201, 403, 401, 401),
    "GET /api/v1/photos/{photo_id}":                     (401, 200, 404, 200, 200, 200, 404, 200, 403, 401, 401),
    "GET /api/v1/me/jobs":                               (401, 403, 200, 403, 403, 403, 403, 200, 403, 401, 401),
    "POST /api/v1/jobs/{reference}/status":              (401, 403, 200, 403, 200, 403, 403, 200, 403, 401, 401),
    "POST /api/v1/jobs/{reference}/photos":              (401, 403, 201, 403, 201, 403, 403, 201, 403, 401, 401),
    "POST /api/v1/jobs/{reference}/assign":              (401, 403, 403, 403, 200, 403, 403, 200, 403, 401, 401),
    "POST /api/v1/jobs/{reference}/redispatch":          (401, 403, 403, 403, 200, 403, 403, 200, 403, 401, 401),
    # Day plans (issue 15): a day long past, so each allowed cell gives its refusal, not a plan.
    "POST /api/v1/plans":                                (401, 403, 403, 403, 422, 403, 403, 422, 403, 401, 401),
    "GET /api/v1/plans/{day}":                           (401, 403, 403, 404, 404, 403, 403, 404, 403, 401, 401),
    "POST /api/v1/plans/{day}/replan":                   (401, 403, 403, 403, 409, 403, 403, 409, 403, 401, 401),
    "POST /api/v1/plans/{day}/urgent":                   (401, 403, 403, 403, 422, 403, 403, 422, 403, 401, 401),
    "GET /api/v1/me/plan":                               (401, 403, 200, 403, 403, 403, 403, 200, 403, 401, 401),
    "POST /api/v1/me/plan/stops/{reference}/arrive":     (401, 403, 404, 403, 403, 403, 403, 404, 403, 401, 401),
    "POST /api/v1/me/plan/stops/{reference}/complete":   (401, 403, 404, 403, 403, 403, 403, 404, 403, 401, 401),
    "GET /api/v1/dispatch/queue":                        (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/jobs/overdue":                          (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/jobs":                                  (401, 200, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "GET /api/v1/jobs/{reference}":                      (401, 200, 404, 200, 200, 200, 404, 200, 403, 401, 401),
    "GET /api/v1/contractor/jobs":                       (401, 403, 403, 403, 403, 200, 200, 200, 403, 401, 401),
    # Admin passes require("contractor") but holds no contractor: refused rather than speaking for one.
    "POST /api/v1/contractor/jobs/{reference}/updates":  (401, 403, 403, 403, 403, 200, 404, 403, 403, 401, 401),
    # Signed by the contractor's secret, not by a token: unsigned is 401 whoever sends it.
    "POST /api/v1/contractors/{name}/webhook":           (401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401),
    "GET /api/v1/outbox":                                (401, 403, 403, 403, 200, 403, 403, 200, 403, 401, 401),
    "POST /api/v1/outbox/{message_id}/retry":            (401, 403, 403, 403, 200, 403, 403, 200, 403, 401, 401),
    # Open311: the token is the api_key; reads are public, a bad key is a GeoReport 403.
    "GET /open311/v2/discovery.{fmt}":                   (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "GET /open311/v2/services.{fmt}":                    (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "GET /open311/v2/services/{service_code}.{fmt}":     (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "GET /open311/v2/requests.{fmt}":                    (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "POST /open311/v2/requests.{fmt}":                   (403, 200, 403, 200, 200, 403, 403, 200, 200, 403, 403),
    "GET /open311/v2/requests/{service_request_id}.{fmt}": (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "GET /open311/v2/tokens/{token}.{fmt}":              (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "GET /open311/v2/servicerequestupdates.{fmt}":       (200, 200, 200, 200, 200, 200, 200, 200, 200, 403, 403),
    "POST /open311/v2/servicerequestupdates.{fmt}":      (403, 403, 403, 403, 403, 200, 404, 403, 200, 403, 403),
    # Photos uploaded through Open311, public by unguessable name (FixMyStreet fetches media_url with no key).
    "GET /open311/v2/media/{key}.{ext}":                 (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /open311/v2/{rest}":                            (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "POST /open311/v2/{rest}":                           (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "PUT /open311/v2/{rest}":                            (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "PATCH /open311/v2/{rest}":                          (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "DELETE /open311/v2/{rest}":                         (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    # OGC API Features: the landing pages never look at a token; collections do.
    "GET /ogc":                                          (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /ogc/conformance":                              (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /ogc/api":                                      (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /ogc/collections":                              (200, 200, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "GET /ogc/collections/{collection_id}":              (401, 403, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "GET /ogc/collections/{collection_id}/items":        (401, 403, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "GET /ogc/collections/{collection_id}/items/{feature_id}": (401, 403, 404, 200, 200, 200, 404, 200, 403, 401, 401),
    # HEAD on every OGC GET path: the GET's status and headers, no body.
    "GET /ogc/":                                         (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "HEAD /ogc":                                         (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "HEAD /ogc/":                                        (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "HEAD /ogc/conformance":                             (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "HEAD /ogc/api":                                     (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "HEAD /ogc/collections":                             (200, 200, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "HEAD /ogc/collections/{collection_id}":             (401, 403, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "HEAD /ogc/collections/{collection_id}/items":       (401, 403, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "HEAD /ogc/collections/{collection_id}/items/{feature_id}": (401, 403, 404, 200, 200, 200, 404, 200, 403, 401, 401),
    "GET /api/v1/contact-centre/me":                     (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/contact-centre/options":                (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/contact-centre/find":                   (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/contact-centre/board":                  (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/contact-centre/figures":                (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/events":                                (401, 403, 200, 200, 200, 200, 200, 200, 403, 401, 401),
    "POST /api/v1/subscriptions":                        (401, 403, 403, 403, 403, 403, 403, 201, 403, 401, 401),
    "GET /api/v1/subscriptions":                         (401, 403, 403, 403, 403, 403, 403, 200, 403, 401, 401),
    "GET /api/v1/subscriptions/{subscription_id}":       (401, 403, 403, 403, 403, 403, 403, 200, 403, 401, 401),
    "PATCH /api/v1/subscriptions/{subscription_id}":     (401, 403, 403, 403, 403, 403, 403, 200, 403, 401, 401),
    "DELETE /api/v1/subscriptions/{subscription_id}":    (401, 403, 403, 403, 403, 403, 403, 204, 403, 401, 401),
    # Reporter contact: advisers only, every read audited; chasers logged by advisers; failures for supervisors.
    "GET /api/v1/reports/{reference}/contact":          (401, 403, 403, 200, 200, 403, 403, 200, 403, 401, 401),
    "POST /api/v1/jobs/{reference}/chasers":            (401, 403, 403, 201, 201, 403, 403, 201, 403, 401, 401),
    "GET /api/v1/notifications/failures":               (401, 403, 403, 403, 200, 403, 403, 200, 403, 401, 401),
    # GOV.UK Notify's callbacks carry Notify's bearer token, which no role holds.
    "POST /api/v1/notify/receipts":                     (401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401),
    "POST /api/v1/notify/inbound-sms":                  (401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401),
    # Public pages: no sign-in, no personal data; an unknown unsubscribe link is a 404 whoever follows it.
    "GET /r/{reference}":                               (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /u/{token}":                                   (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "POST /u/{token}":                                  (404, 404, 404, 404, 404, 404, 404, 404, 404, 404, 404),
    "GET /dashboard":                                    (307, 307, 307, 307, 307, 307, 307, 307, 307, 307, 307),
    "GET /dashboard/{path}":                             (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
    "GET /dashboard/vendor/leaflet/{path}":              (200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200),
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def request_for(key: str, w: World, token: str | None) -> dict:
    """The concrete request of one table row for one caller (fresh ids each time)."""
    method, path = key.split(" ", 1)
    fmt_path = path.replace("{fmt}", "json")
    values = {"code": "street_light", "reference": w.job_a, "photo_id": w.photo_a, "message_id": w.outbox_a,
              "name": "street-lighting", "service_code": "street_light", "service_request_id": w.report_a,
              "token": w.report_a_client_id, "rest": "nothing-here.json", "collection_id": "jobs",
              "feature_id": w.job_a, "subscription_id": w.subscription, "path": "index.html", "day": "2000-01-01",
              "key": w.media_a.rsplit(".", 1)[0], "ext": w.media_a.rsplit(".", 1)[1]}
    special = {  # rows whose natural target is another job, or that need a body
        "GET /api/v1/reports/{reference}": {"reference": w.report_a},
        "POST /api/v1/reports/{reference}/photos": {"reference": w.report_a},
        "POST /api/v1/jobs/{reference}/status": {"reference": w.job_crew},
        "POST /api/v1/jobs/{reference}/photos": {"reference": w.job_crew},
        "POST /api/v1/jobs/{reference}/assign": {"reference": w.job_crew},
        "POST /api/v1/jobs/{reference}/redispatch": {"reference": w.job_crew},
        "POST /api/v1/me/plan/stops/{reference}/arrive": {"reference": w.job_crew},
        "POST /api/v1/me/plan/stops/{reference}/complete": {"reference": w.job_crew},
        "GET /dashboard/vendor/leaflet/{path}": {"path": "leaflet.js"},
        "GET /api/v1/reports/{reference}/contact": {"reference": w.report_a},
        "GET /r/{reference}": {"reference": w.report_a},
    }.get(key, {})
    url = fmt_path.format(**{**values, **special})
    req: dict = {"method": method, "url": url, "headers": auth(token)}
    if path.startswith("/open311/"):
        req["headers"] = {}
        if method == "GET" and token:
            req["params"] = {"api_key": token}
    body = {
        "POST /api/v1/reports": lambda: {"json": {
            "client_id": str(uuid.uuid4()), "category": "graffiti", "lat": 51.3812, "lon": -2.3590,
            "accuracy_m": 5, "observed_at": _now(), "answers": {"offensive": "no"}}},
        "POST /api/v1/reports/{reference}/photos": lambda: {
            "data": {"client_id": str(uuid.uuid4())}, "files": {"file": ("p.jpg", jpeg(), "image/jpeg")}},
        "POST /api/v1/jobs/{reference}/photos": lambda: {
            "data": {"client_id": str(uuid.uuid4()), "kind": "progress"},
            "files": {"file": ("p.jpg", jpeg(), "image/jpeg")}},
        "POST /api/v1/jobs/{reference}/status": lambda: {"json": {"status": "accepted", "note": "access test"}},
        "POST /api/v1/jobs/{reference}/assign": lambda: {"json": {"contractor": "street-lighting"}},
        "POST /api/v1/jobs/{reference}/redispatch": lambda: {"json": {"note": "access test"}},
        "POST /api/v1/plans": lambda: {"json": {"day": "2000-01-01"}},
        "POST /api/v1/plans/{day}/urgent": lambda: {"json": {"job": w.job_crew}},
        "POST /api/v1/me/plan/stops/{reference}/complete": lambda: {"json": {"lat": 51.38, "lon": -2.36}},
        "POST /api/v1/contractor/jobs/{reference}/updates": lambda: {
            "json": {"update_id": f"acc-{uuid.uuid4()}", "status": "accepted"}},
        "POST /api/v1/contractors/{name}/webhook": lambda: {"json": {"updates": []}},
        "POST /open311/v2/requests.{fmt}": lambda: {"data": {
            **({"api_key": token} if token else {}), "service_code": "graffiti", "lat": "51.3812",
            "long": "-2.3590", "attribute[offensive]": "no", "description": "access test"}},
        "POST /open311/v2/servicerequestupdates.{fmt}": lambda: {"data": {
            **({"api_key": token} if token else {}), "service_request_id": w.report_a,
            "update_id": f"acc-{uuid.uuid4()}", "status": "IN_PROGRESS", "updated_datetime": _now(),
            "description": "access test"}},
        "POST /api/v1/subscriptions": lambda: {"json": {
            "url": "https://93.184.215.14/other-hook", "secret": "s" * 24, "event_types": ["status_changed"]}},
        "PATCH /api/v1/subscriptions/{subscription_id}": lambda: {"json": {"active": False}},
        "GET /api/v1/contact-centre/find": lambda: {"params": {"q": w.job_a}},
        "POST /api/v1/jobs/{reference}/chasers": lambda: {"json": {"channel": "phone"}},
        "POST /api/v1/notify/receipts": lambda: {"json": {
            "id": str(uuid.uuid4()), "reference": "kerbside-1", "to": "someone@example.org", "status": "delivered",
            "notification_type": "email"}},
        "POST /api/v1/notify/inbound-sms": lambda: {"json": {
            "id": str(uuid.uuid4()), "source_number": "447700900777", "content": "STOP"}},
    }.get(key)
    if body is not None:
        extra = body()
        if "params" in extra and "params" in req:
            extra["params"] = {**req["params"], **extra["params"]}
        req.update(extra)
    return req


def app_routes(app) -> set[str]:
    """Every route of the app as 'METHOD path' (HEAD, which Starlette adds to GET, left out; a route declared
    for HEAD alone is in)."""
    out = set()
    for ctx in iter_route_contexts(app.routes):
        path = ctx.path_format or ctx.path
        methods = ctx.methods or {"GET"}  # a mount serves GET
        if not ctx.methods and not path.endswith("{path}"):
            path = path.rstrip("/") + "/{path}"
        out |= {f"{m} {path}" for m in methods if m != "HEAD" or "GET" not in methods}
    return out


def call(app, req: dict) -> tuple[int, bytes]:
    """Send one request; the event stream is read up to its `ready` event and then closed."""
    if req["url"] == "/api/v1/events":
        with Stream(app, req["url"], req["headers"]) as s:
            if s.status == 200:
                s.frames(lambda f: f.get("event") == "ready")
                return s.status, s.raw
            return s.status, s.body()
    client = TestClient(app, follow_redirects=False)
    r = client.request(req.pop("method"), req.pop("url"), **req)
    return r.status_code, r.content


def test_every_route_is_in_the_table(env):
    app, _, _ = env
    routes = app_routes(app)
    missing = sorted(routes - set(TABLE))
    assert not missing, f"routes with no row in TABLE (say who may call them): {missing}"
    stale = sorted(set(TABLE) - routes)
    assert not stale, f"rows for routes that no longer exist: {stale}"
    assert all(len(row) == len(ROLES) for row in TABLE.values())


CELLS_CHECKED: list[int] = []


@pytest.mark.parametrize("key", sorted(TABLE))
def test_row(env, key):
    app, connection, w = env
    app.state.auth_throttle.reset()  # two bad tokens per row; the throttle has its own test
    got = {}
    for role, expected in zip(ROLES, TABLE[key]):
        savepoint = connection.begin_nested()
        try:
            status, body = call(app, request_for(key, w, w.tokens[role]))
        finally:
            savepoint.rollback()
        got[role] = status
        if role == "contractor_a" and not key.startswith("GET /open311/"):
            leaked = [m for m in w.marker_b if m.encode() in body]
            assert not leaked, f"{key}: contractor A received contractor B's {leaked}"
        if key != "GET /api/v1/reports/{reference}/contact":
            exposed = [m for m in w.contact_a if m.encode() in body]
            assert not exposed, f"{key}: {role} received report A's reporter contact {exposed}"
    CELLS_CHECKED.append(len(got))
    wrong = {role: (got[role], exp) for role, exp in zip(ROLES, TABLE[key]) if got[role] != exp}
    assert not wrong, f"{key}: (got, expected) by role: {wrong}"
