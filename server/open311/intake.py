"""POST requests: a GeoReport v2 form through the same intake as the field app (channel "open311").

Idempotency. A request names its client: an `open311_client` token's name (e.g. "fixmystreet"), else the
token itself.
- With `attribute[fixmystreet_id]` (or `attribute[external_id]`): (client, external id) is the key; a
  re-send answers the original service_request_id and creates nothing, whatever else changed.
- Without one: the same client sending the same form (every field but api_key and jurisdiction_id, photo
  bytes included) within `open311_resend_window_hours` (default 24) gets the original back. After the
  window the same payload is a new report (then joined to the open job as a duplicate, if there is one).
Both keys become the intake's client_id (uuid5), so the reports table's unique client_id settles races.

Photos: every `media_url` (FixMyStreet's multi_photos repeats it) is kept and read back; uploaded files
`media` or `photo1`…`photoN` (its upload_files mode) are stored as the report's photos and read back as
/open311/v2/media/… URLs. Asset-id attributes (asset_id, central_asset_id, unit_number…) are a snapping
hint, used only if the asset is on the category's layer and within its radius. Attributes that are not
questions of the service are otherwise ignored (FixMyStreet sends its own, such as easting and title).
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.catalogue.answers import AnswerError, validate_answers
from server.catalogue.schemas import UnknownCategory
from server.catalogue.service import get_catalogue
from server.auth.models import OPEN311_CLIENT
from server.assets.models import Asset, AssetLayer
from server.config import get_settings
from server.deps import Principal
from server.errors import DomainError
from server.jobs.models import Job
from server.notifications.open311 import contact_from
from server.open311 import documents
from server.open311.params import Open311Error, attributes, bad, coordinate, media_urls, one
from server.open311.queries import notice
from server.reports import photos
from server.reports.models import Report
from server.reports.schemas import ReportIn
from server.reports.service import submit_report

REPORTERS = ("field_worker", "advisor", "supervisor", "admin", OPEN311_CLIENT)
EXTERNAL_ID_ATTRIBUTES = ("fixmystreet_id", "external_id")
# What councils' FixMyStreet asset layers send as the clicked asset's id (the first one given is used).
ASSET_ID_ATTRIBUTES = ("asset_id", "central_asset_id", "unit_number", "unit_id", "site_code", "feature_id",
                       "asset_resource_id", "column_id", "unitid")
NAMESPACE = uuid.UUID("6f1d3c0e-8a2b-5c47-9e31-4b0d2a7f1c55")
# The reporter's name, email and phone go to reporter_contacts (server/notifications), not the report.
REPORTER_FIELDS = ("account_id", "device_id", "address_id")
UNKEYED = ("api_key", "jurisdiction_id")
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


def client_of(who: Principal) -> str:
    """Whose requests these are: an Open311 front end by its name (any of its tokens), else the token."""
    return f"client:{who.name}" if who.role == OPEN311_CLIENT else f"token:{who.token_id}"


def client_id_for(who: Principal, external_id: str) -> uuid.UUID:
    """The intake idempotency key of an external id sent by this client."""
    return uuid.uuid5(NAMESPACE, f"{client_of(who)}\x1f{external_id}")


def fingerprint(fields: dict[str, list[str]], files: list[tuple[str, bytes]]) -> str:
    """A form's content (api_key and jurisdiction_id left out), photos by their bytes."""
    kept = {k: v for k, v in sorted(fields.items()) if k not in UNKEYED}
    kept["\x1ffiles"] = [[name, hashlib.sha256(raw).hexdigest()] for name, raw in files]
    return hashlib.sha256(json.dumps(kept, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _resend_key(session: Session, who: Principal, digest: str) -> tuple[uuid.UUID, bool]:
    """(client_id, is a re-send): the n-th use of one payload gets the n-th key; a key used within the window
    is answered as the original."""
    since = datetime.now(timezone.utc) - timedelta(hours=get_settings().open311_resend_window_hours)
    for n in range(1000):
        client_id = uuid.uuid5(NAMESPACE, f"{client_of(who)}\x1fpayload:{digest}\x1f{n}")
        received = session.scalar(select(Report.received_at).where(Report.client_id == client_id))
        if received is None:
            return client_id, False
        if received >= since:
            return client_id, True
    raise bad("this exact request has been sent too many times; add attribute[fixmystreet_id]")


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
        raise bad("address_id is kept with a request but cannot place it (this server has no address "
                  "gazetteer); send lat and long, or address_string, with it")
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


def _asset_hint(session: Session, category, attrs: dict) -> str | None:
    """The first asset-id attribute naming an asset of the category's layer; others are not trusted."""
    if not category.layer:
        return None
    for name in ASSET_ID_ATTRIBUTES:
        value = attrs.get(name)
        if isinstance(value, str) and 0 < len(value) <= 100:
            found = session.scalar(select(Asset.external_ref).join(AssetLayer, AssetLayer.id == Asset.layer_id)
                                   .where(AssetLayer.name == category.layer, Asset.external_ref == value))
            if found is not None:
                return found
    return None


def submit(session: Session, who: Principal, fields: dict[str, list[str]],
           files: list[tuple[str, bytes]] | None = None) -> documents.Document:
    """Create (or replay) one service request; the POST requests answer."""
    files = files or []
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
    urls = media_urls(fields)
    if external:
        client_id = client_id_for(who, external)
        existing = session.execute(select(Report.reference, Report.category_code)
                                   .where(Report.client_id == client_id)).first()
    else:
        client_id, resent = _resend_key(session, who, fingerprint(fields, files))
        existing = session.execute(select(Report.reference, Report.category_code)
                                   .where(Report.client_id == client_id)).first() if resent else None
    if existing is not None:
        if existing.category_code != category.code:
            raise bad(f"external id {external!r} was already used for a {existing.category_code} request")
        _attach_all(session, who, existing.reference, client_id, _check_photos(files))
        return _answer_of(session, existing.reference, account_id)
    lat, lon, provider = _location(session, fields)
    answers = _answers(category, attrs)
    checked = _check_photos(files)  # refuse a bad image before anything is stored
    reporter = {k: v[:200] for k in REPORTER_FIELDS if (v := one(fields, k))}
    if urls:
        reporter["media_url"] = urls
    if who.role == OPEN311_CLIENT:
        reporter["client"] = who.name
    try:
        data = ReportIn(client_id=client_id, category=category.code, lat=lat, lon=lon,
                        observed_at=datetime.now(timezone.utc), location_provider=provider,
                        description=one(fields, "description") or "", answers=answers,
                        asset_ref=_asset_hint(session, category, attrs), contact=contact_from(fields))
    except ValidationError as exc:
        raise bad(*[f"{_field(e['loc'])}: {e['msg']}" for e in exc.errors()]) from None
    try:
        _, answer = submit_report(session, who, data, "open311", reporter=reporter, external_id=external)
    except DomainError as exc:
        if exc.code == "idempotency-conflict":  # a concurrent replay won the race
            return _answer_of(session, session.scalar(select(Report.reference)
                                                      .where(Report.client_id == client_id)), account_id)
        raise _domain_to_open311(exc) from None
    _attach_all(session, who, answer["reference"], client_id, checked)
    return documents.created(answer["reference"], _notice_of(answer), account_id)


def _field(loc: tuple) -> str:
    return _param(str(loc[0])) if loc else "request"


def _notice_of(answer: dict) -> str:
    job = answer["job"]
    if job.get("due_in_words"):
        return f"Job {job['reference']}; target: {job['due_in_words']}"
    return f"Job {job['reference']}"


def _check_photos(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes, photos.CleanImage]]:
    """Each photo verified and cleaned (a 400 naming the first bad one), kept for storing: cleaned once."""
    checked = []
    for name, raw in files:
        try:
            checked.append((name, raw, photos.clean(raw)))
        except DomainError as exc:
            raise bad(f"{name}: {exc.detail}") from None
    return checked


def _attach_all(session: Session, who: Principal, reference: str, client_id: uuid.UUID,
                files: list[tuple[str, bytes, photos.CleanImage]]) -> None:
    """Store the uploaded photos on the report, each idempotent on (request, field name)."""
    if not files:
        return
    report = session.scalar(select(Report).where(Report.reference == reference))
    for name, raw, cleaned in files:
        try:
            photos.add_photo(session, who, report, uuid.uuid5(client_id, name), raw, cleaned=cleaned)
        except DomainError as exc:
            raise _domain_to_open311(exc) from None
