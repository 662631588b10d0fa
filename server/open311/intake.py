"""POST requests: a GeoReport v2 form through the same intake as the field app (channel "open311").

Idempotency: `attribute[fixmystreet_id]` (or `attribute[external_id]`) names the request in the
caller's system. The intake client_id is uuid5(token, external id), so a replay from the same
api_key answers the same service_request_id and creates nothing. Without an external id every POST
is a new report. Attributes that are not questions of the service are ignored (FixMyStreet sends
its own, such as easting and title), except the external id, which is kept on the report.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.catalogue.answers import AnswerError, validate_answers
from server.catalogue.schemas import UnknownCategory
from server.catalogue.service import get_catalogue
from server.config import get_settings
from server.deps import Principal
from server.errors import DomainError
from server.jobs.models import Job
from server.notifications.open311 import contact_from
from server.open311 import documents
from server.open311.params import Open311Error, attributes, bad, coordinate, one
from server.open311.queries import notice
from server.reports import photos
from server.reports.models import Report
from server.reports.schemas import ReportIn
from server.reports.service import submit_report

REPORTERS = ("field_worker", "advisor", "supervisor", "admin")
EXTERNAL_ID_ATTRIBUTES = ("fixmystreet_id", "external_id")
NAMESPACE = uuid.UUID("6f1d3c0e-8a2b-5c47-9e31-4b0d2a7f1c55")
# The reporter's name, email and phone go to reporter_contacts (server/notifications), not the report.
REPORTER_FIELDS = ("account_id", "device_id")
AMBIGUOUS_M = 1500.0
_HOUSE_NUMBER = re.compile(r"^\d+[a-zA-Z]?\s+")

_STREET = text("""
    SELECT count(*) AS n, ST_MaxDistance(ST_Collect(a.geom), ST_Collect(a.geom)) AS spread,
           array_remove(array_agg(DISTINCT w.name ORDER BY w.name), NULL) AS wards,
           ST_X(ST_Transform(ST_ClosestPoint(ST_Collect(a.geom), ST_Centroid(ST_Collect(a.geom))), 4326)) AS lon,
           ST_Y(ST_Transform(ST_ClosestPoint(ST_Collect(a.geom), ST_Centroid(ST_Collect(a.geom))), 4326)) AS lat
      FROM assets a JOIN asset_layers l ON l.id = a.layer_id AND l.name = 'roads'
      LEFT JOIN areas w ON w.id = a.ward_id
     WHERE lower(a.name) = lower(:street) AND (:place = '' OR w.name ILIKE '%' || :place || '%')
""")


def client_id_for(who: Principal, external_id: str) -> uuid.UUID:
    """The intake idempotency key of an external id sent with this api_key."""
    return uuid.uuid5(NAMESPACE, f"token:{who.token_id}\x1f{external_id}")


def resolve_address(session: Session, address: str) -> tuple[float, float]:
    """(lat, lon) on the named street; "Street, Place" narrows by ward. 400 if unknown or ambiguous."""
    parts = [p.strip() for p in address.split(",") if p.strip()]
    if not parts:
        raise bad("address_string is empty; send lat and long")
    street = _HOUSE_NUMBER.sub("", parts[0])[:200]
    for place in [*parts[1:4], ""]:
        row = session.execute(_STREET, {"street": street, "place": place[:100]}).one()
        if row.n:
            break
    if not row.n:
        raise bad(f"address_string: no street named {street!r} in {get_settings().council_name}; "
                  "send lat and long")
    if row.spread > AMBIGUOUS_M:
        wards = ", ".join(row.wards[:8]) or "no ward"
        raise bad(f"address_string: {street!r} is in several places, up to {row.spread / 1000:.1f} km apart "
                  f"(wards: {wards}); add the ward after a comma, e.g. '{street}, "
                  f"{row.wards[0] if row.wards else 'ward'}', or send lat and long")
    return float(row.lat), float(row.lon)


def _location(session: Session, fields: dict[str, list[str]]) -> tuple[float, float, str]:
    lat, lon, address = one(fields, "lat"), one(fields, "long"), one(fields, "address_string")
    if lat is not None or lon is not None:
        if lat is None or lon is None:
            raise bad("lat and long must be sent together")
        return coordinate("lat", lat, 90), coordinate("long", lon, 180), "unknown"
    if address:
        return (*resolve_address(session, address), "manual")
    if one(fields, "address_id"):
        raise bad("address_id is not supported; send lat and long or address_string")
    raise bad("a location is required: lat and long, or address_string")


def _answers(category, attrs: dict) -> dict:
    known = {q.code for q in category.questions}
    try:
        return validate_answers(category, {k: v for k, v in attrs.items() if k in known}, coerce_strings=True)
    except AnswerError as exc:
        code = exc.field.removeprefix("answers.")
        raise bad(f"attribute[{code}]: {exc.reason}") from None


def _answer_of(session: Session, report_ref: str, account_id: str | None) -> documents.Document:
    job = session.execute(select(Job.reference, Job.status, Job.due_at).join(Report, Report.job_id == Job.id)
                          .where(Report.reference == report_ref)).one()
    return documents.created(report_ref, notice(job.reference, job.status, job.due_at, datetime.now(timezone.utc),
                                                None), account_id)


def _param(field: str) -> str:
    """Our field name as the GeoReport parameter a caller sent."""
    if field.startswith("answers."):
        return f"attribute[{field.removeprefix('answers.')}]"
    return {"lon": "long", "category": "service_code", "file": "media"}.get(field, field)


def _domain_to_open311(exc: DomainError) -> Open311Error:
    where = f"{', '.join(_param(f) for f in exc.fields)}: " if exc.fields else ""
    return Open311Error(exc.status if exc.status >= 500 else 400, f"{where}{exc.detail}")


def submit(session: Session, who: Principal, fields: dict[str, list[str]], media: bytes | None = None
           ) -> documents.Document:
    """Create (or replay) one service request; the POST requests answer."""
    if who.role not in REPORTERS:
        raise Open311Error(403, "this api_key may not create service requests")
    code = one(fields, "service_code")
    if not code:
        raise bad("service_code is required")
    try:
        category = get_catalogue().get(code)
    except UnknownCategory:
        raise Open311Error(404, f"service_code {code[:64]!r} not found") from None
    attrs = attributes(fields)
    external = next((str(attrs[k]) for k in EXTERNAL_ID_ATTRIBUTES if isinstance(attrs.get(k), str)), None)
    if external is not None and len(external) > 100:
        raise bad("the external id attribute must be at most 100 characters")
    account_id = one(fields, "account_id")
    client_id = client_id_for(who, external) if external else uuid.uuid4()
    existing = session.execute(select(Report.reference, Report.category_code)
                               .where(Report.client_id == client_id)).first()
    if existing is not None:
        if existing.category_code != category.code:
            raise bad(f"external id {external!r} was already used for a {existing.category_code} request")
        if media is not None:
            _attach(session, who, existing.reference, client_id, media)
        return _answer_of(session, existing.reference, account_id)
    lat, lon, provider = _location(session, fields)
    answers = _answers(category, attrs)
    if media is not None:
        try:
            photos.clean(media)  # refuse a bad image before anything is stored
        except DomainError as exc:
            raise _domain_to_open311(exc) from None
    reporter = {k: v for k in REPORTER_FIELDS if (v := one(fields, k))}
    if media_url := one(fields, "media_url"):
        reporter["media_url"] = media_url[:1000]
    try:
        data = ReportIn(client_id=client_id, category=category.code, lat=lat, lon=lon,
                        observed_at=datetime.now(timezone.utc), location_provider=provider,
                        description=one(fields, "description") or "", answers=answers,
                        contact=contact_from(fields))
    except ValidationError as exc:
        raise bad(*[f"{_field(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
    try:
        _, answer = submit_report(session, who, data, "open311", reporter=reporter, external_id=external)
    except DomainError as exc:
        if exc.code == "idempotency-conflict":  # a concurrent replay won the race
            return _answer_of(session, session.scalar(select(Report.reference)
                                                      .where(Report.client_id == client_id)), account_id)
        raise _domain_to_open311(exc) from None
    if media is not None:
        _attach(session, who, answer["reference"], client_id, media)
    return documents.created(answer["reference"], _notice_of(answer), account_id)


def _field(loc: tuple) -> str:
    return _param(str(loc[0])) if loc else "request"


def _notice_of(answer: dict) -> str:
    job = answer["job"]
    if job.get("due_in_words"):
        return f"Job {job['reference']}; target: {job['due_in_words']}"
    return f"Job {job['reference']}"


def _attach(session: Session, who: Principal, reference: str, client_id: uuid.UUID, media: bytes) -> None:
    report = session.scalar(select(Report).where(Report.reference == reference))
    try:
        photos.add_photo(session, who, report, uuid.uuid5(client_id, "media"), media)
    except DomainError as exc:
        raise _domain_to_open311(exc) from None
