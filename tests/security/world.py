"""A small world for access and fuzz tests: one token per role, jobs held by two contractors and a crew.

Built through the real API (intake, assign, photo upload) on whatever connection the caller's app is
bound to, so the rows look exactly like production ones. Job B carries unique marker strings: the
access tests assert that contractor A never receives a byte of them.
"""
from __future__ import annotations

import io
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from PIL import Image
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from server.auth.models import ApiToken
from server.auth.tokens import create_token
from server.jobs.models import Job
from server.outbox.models import OutboxMessage, Subscription
from server.open311.queries import media_key
from server.reports.models import Photo, Report

CONTRACTOR_A = "street-lighting"
CONTRACTOR_B = "green-spaces"
CREW = "highways"
ROLES = ("none", "field_worker", "crew", "advisor", "supervisor", "contractor_a", "contractor_b", "admin",
         "open311_client", "revoked", "expired")


@dataclass
class World:
    """Everything a test needs to address: tokens by role and the references of the planted rows."""

    tokens: dict[str, str | None]
    job_a: str
    job_b: str
    job_crew: str
    report_a: str
    report_b: str
    report_a_client_id: str
    photo_a: int
    photo_b: int
    subscription: int
    outbox_a: int
    media_a: str  # an Open311 upload's public name: "<key>.<ext>" under /open311/v2/media/
    marker_b: list[str] = field(default_factory=list)
    # Report A's reporter: only GET /api/v1/reports/{reference}/contact may ever answer these.
    contact_a: list[str] = field(default_factory=list)


def auth(token: str | None) -> dict[str, str]:
    """The Authorization header for a token (none for None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def jpeg(colour=(30, 120, 200)) -> bytes:
    """A small real JPEG."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buf, "JPEG")
    return buf.getvalue()


def _points(session: Session, layer: str, n: int, apart_m: float) -> list[tuple[float, float]]:
    """n assets of a layer at least apart_m from each other (so reports are not joined as duplicates)."""
    # Assets with no job at all (other tests commit jobs on the shared database), in random order.
    rows = session.execute(text("""
        SELECT a.geom, ST_Y(ST_Transform(a.geom, 4326)) lat, ST_X(ST_Transform(a.geom, 4326)) lon
          FROM assets a JOIN asset_layers l ON l.id = a.layer_id
         WHERE l.name = :layer AND NOT EXISTS (SELECT 1 FROM jobs j WHERE ST_DWithin(j.geom, a.geom, 60))
         ORDER BY random() LIMIT 400"""), {"layer": layer}).all()
    chosen: list = []
    for r in rows:
        if all(session.scalar(text("SELECT ST_Distance(:a, :b)"), {"a": r.geom, "b": c.geom}) > apart_m
               for c in chosen):
            chosen.append(r)
        if len(chosen) == n:
            return [(c.lat, c.lon) for c in chosen]
    raise AssertionError(f"not {n} {layer} assets {apart_m} m apart")


def _report(client, token: str, category: str, lat: float, lon: float, answers: dict, description: str,
            contact: dict | None = None) -> dict:
    body = {"client_id": str(uuid.uuid4()), "category": category, "lat": lat, "lon": lon, "accuracy_m": 4.0,
            "observed_at": datetime.now(timezone.utc).isoformat(), "answers": answers, "description": description}
    if contact:
        body["contact"] = contact
    r = client.post("/api/v1/reports", json=body, headers=auth(token))
    assert r.status_code == 201 and r.json()["job"]["attached"] is False, r.text
    return {**r.json(), "client_id": body["client_id"]}


def _photo(client, token: str, report_ref: str, colour) -> int:
    r = client.post(f"/api/v1/reports/{report_ref}/photos", headers=auth(token),
                    data={"client_id": str(uuid.uuid4())}, files={"file": ("p.jpg", jpeg(colour), "image/jpeg")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _open311_photo(client, session: Session, key: str, tag: str) -> str:
    """A request from a front end with one uploaded photo; the photo's public name under /open311/v2/media/."""
    r = client.post("/open311/v2/requests.json", data={
        "api_key": key, "service_code": "graffiti", "lat": "51.3815", "long": "-2.3594",
        "attribute[offensive]": "no", "description": f"Tag on a wall {tag}"},
        files={"photo1": ("p.jpg", jpeg((90, 90, 90)), "image/jpeg")})
    assert r.status_code == 200, r.text
    ref = r.json()[0]["service_request_id"]
    photo = session.execute(select(Photo.id, Photo.sha256).join(Report, Report.id == Photo.report_id)
                            .where(Report.reference == ref)).one()
    return f"{media_key(photo.id, photo.sha256)}.jpg"


def build(client, session: Session, commit=None) -> World:
    """Tokens for every role and three jobs (contractor A's, contractor B's, the crew's).

    `commit` makes the tokens visible to the API before it is called (default: flush, for an API
    bound to the same connection; pass session.commit for an API on its own connections).
    """
    commit = commit or session.flush
    tag = uuid.uuid4().hex[:10]
    tokens: dict[str, str | None] = {"none": None}
    for role in ("field_worker", "advisor", "supervisor", "admin"):
        tokens[role] = create_token(session, role, name=f"sec-{role}-{tag}")[1]
    tokens["crew"] = create_token(session, "crew", name=f"sec-crew-{tag}", crew=CREW)[1]
    tokens["contractor_a"] = create_token(session, "contractor", name=f"sec-a-{tag}", contractor=CONTRACTOR_A)[1]
    tokens["contractor_b"] = create_token(session, "contractor", name=f"sec-b-{tag}", contractor=CONTRACTOR_B)[1]
    tokens["open311_client"] = create_token(session, "open311_client", name=f"fms-{tag}")[1]
    revoked, tokens["revoked"] = create_token(session, "admin", name=f"sec-revoked-{tag}")
    revoked.revoked_at = datetime.now(timezone.utc)
    tokens["expired"] = create_token(session, "admin", name=f"sec-expired-{tag}",
                                     expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))[1]
    commit()

    (la, lo), (lb, lob) = _points(session, "street_lights", 2, 200)
    (lc, loc), = _points(session, "grit_bins", 1, 0)
    marker = f"BSECRET{tag}"
    contact_a = {"first_name": f"Reportername{tag}", "email": f"reporter-{tag}@example.org", "phone": "07700900777"}
    a = _report(client, tokens["field_worker"], "street_light", la, lo, {"fault": "out"}, f"Lamp A out {tag}",
                contact_a)
    b = _report(client, tokens["field_worker"], "street_light", lb, lob, {"fault": "out"}, f"Lamp {marker} out")
    c = _report(client, tokens["field_worker"], "grit_bin", lc, loc, {"problem": "empty"}, f"Grit bin {tag}")
    for job, who in ((a["job"]["reference"], {"contractor": CONTRACTOR_A}),
                     (b["job"]["reference"], {"contractor": CONTRACTOR_B}), (c["job"]["reference"], {"crew": CREW})):
        r = client.post(f"/api/v1/jobs/{job}/assign", json=who, headers=auth(tokens["supervisor"]))
        assert r.status_code == 200, r.text
    contractor_ref_b = f"GSREF{marker}"
    session.execute(update(Job).where(Job.reference == b["job"]["reference"]).values(contractor_ref=contractor_ref_b))
    photo_a = _photo(client, tokens["field_worker"], a["reference"], (30, 120, 200))
    photo_b = _photo(client, tokens["field_worker"], b["reference"], (200, 120, 30))
    media_a = _open311_photo(client, session, tokens["open311_client"], tag)
    job_a_id = session.scalar(select(Job.id).where(Job.reference == a["job"]["reference"]))
    outbox_a = session.scalar(select(OutboxMessage.id).where(OutboxMessage.job_id == job_a_id)
                              .order_by(OutboxMessage.id.desc()))
    sub = Subscription(url="https://93.184.215.14/kerbside-hook", secret=f"whsec-{tag}-0123456789abcdef",
                       event_types=["status_changed"], active=True)
    session.add(sub)
    commit()
    assert session.get(Photo, photo_b) is not None and session.get(ApiToken, revoked.id).revoked_at is not None
    return World(tokens=tokens, job_a=a["job"]["reference"], job_b=b["job"]["reference"],
                 job_crew=c["job"]["reference"], report_a=a["reference"], report_b=b["reference"],
                 report_a_client_id=a["client_id"], photo_a=photo_a, photo_b=photo_b, subscription=sub.id,
                 outbox_a=outbox_a, media_a=media_a, marker_b=[marker, contractor_ref_b, b["job"]["reference"], b["reference"]],
                 contact_a=list(contact_a.values()))


def per_request_sessions(connection):
    """A get_session override: a fresh savepoint session per request on one connection."""

    def get_session():
        session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()

    return get_session


@contextmanager
def world_app(engine, photo_root):
    """(app, connection, world) on one connection whose outer transaction is rolled back on exit.

    Each request gets its own savepoint session, so a request that fails half-way leaves nothing for
    the next; callers may wrap tests or single requests in connection.begin_nested() as well.
    """
    import pytest
    from fastapi.testclient import TestClient

    from server.config import get_settings
    from server.db import get_session
    from server.main import create_app

    connection = engine.connect()
    outer = connection.begin()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(get_settings(), "photo_root", photo_root)
            app = create_app()
            app.dependency_overrides[get_session] = per_request_sessions(connection)
            setup = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
            world = build(TestClient(app), setup)
            setup.commit()
            setup.close()
            yield app, connection, world
    finally:
        outer.rollback()
        connection.close()
