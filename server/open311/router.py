"""Open311 GeoReport v2 (+ the mySociety updates extension) at /open311/v2 — thin HTTP glue.

Every endpoint answers in .xml or .json; errors are GeoReport error lists in the same format.
Reads (discovery, services, requests, tokens, updates) are public and carry no reporter details;
an api_key, when sent, must be valid. POST requests needs a token of a reporting role or an Open311 front
end's (open311_client); POST servicerequestupdates takes a front end's citizen comments (server/open311/citizen.py)
and a contractor's status updates (server/open311/pushed.py).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from server.auth.models import OPEN311_CLIENT
from server.auth.tokens import verify
from server.catalogue.schemas import UnknownCategory
from server.catalogue.service import get_catalogue
from server.config import get_settings
from server.deps import Principal, SessionDep
from server.errors import DomainError
from server.open311 import citizen, documents, intake, pushed, queries
from server.open311.formats import FORMATS, Document, errors, render
from server.open311.params import MAX_MEDIA, Open311Error, bad, comma_list, date_range, group, one, statuses

router = APIRouter(prefix="/open311/v2", tags=["open311"])
CHANGESET = "2026-11-24T00:00:00Z"
REQUESTS_SPAN = timedelta(days=90)
UPDATES_SPAN = timedelta(days=1)


def _respond(fmt: str, build: Callable[[], Document]) -> Response:
    """Run a handler and render its document (200), or its Open311Error, in the requested format."""
    if fmt not in FORMATS:
        body, media = render(errors(404, [f"unknown format {fmt[:20]!r}; use .xml or .json"]), "xml")
        return Response(body, 404, media_type=media)
    status = 200  # also for a created request: the specification shows no other success code
    try:
        doc = build()
    except Open311Error as exc:
        doc, status = errors(exc.status, exc.descriptions), exc.status
    except DomainError as exc:  # a refusal from a shared use case: GeoReport knows only 400 for it
        status = exc.status if exc.status >= 500 else 400
        doc = errors(status, [exc.detail])
    body, media = render(doc, fmt)
    return Response(body, status, media_type=media)


def _raising(exc: Exception) -> Callable[[], Document]:
    def build() -> Document:
        raise exc
    return build


def _principal(session: Session, fields: dict[str, list[str]], *, required: bool) -> Principal | None:
    key = one(fields, "api_key")
    if key is None:
        if required:
            raise Open311Error(403, "api_key is required")
        return None
    row = verify(session, key)
    if row is None:
        raise Open311Error(403, "api_key is not valid (unknown, revoked or expired)")
    return Principal(row.id, row.name, row.role, row.contractor_id, row.crew_id)


def _jurisdiction(fields: dict[str, list[str]]) -> None:
    given = one(fields, "jurisdiction_id")
    if given is not None and given != get_settings().open311_jurisdiction_id:
        raise Open311Error(404, f"jurisdiction_id {given[:60]!r} not found")


def _query(request: Request, session: Session) -> dict[str, list[str]]:
    fields = group(request.query_params.multi_items())
    _jurisdiction(fields)
    _principal(session, fields, required=False)
    return fields


_PHOTO_FIELD = re.compile(r"^(media|photo([1-9][0-9]?))$")


async def _form(request: Request) -> tuple[dict[str, list[str]], list[tuple[str, bytes]]]:
    """The form's fields and its uploaded photos: `media`, or FixMyStreet's `photo1`…`photoN`, in that order."""
    try:
        form = await request.form()
    except Exception as exc:  # malformed multipart or urlencoding: the caller's fault
        raise bad(f"the form could not be read: {str(exc)[:200]}") from None
    items, files = [], {}
    limit = get_settings().max_photo_bytes
    for key, value in [*request.query_params.multi_items(), *form.multi_items()]:
        if isinstance(value, UploadFile):
            m = _PHOTO_FIELD.match(key)
            if m is None:
                raise bad(f"{key[:40]!r}: only photos are taken, as media or photo1, photo2…")
            if key in files:
                raise bad(f"{key} was uploaded twice; number each photo (photo1, photo2…)")
            if len(files) >= MAX_MEDIA:
                raise bad(f"at most {MAX_MEDIA} photos may be uploaded")
            files[key] = await value.read(limit + 1)
        else:
            items.append((key, value))
    order = sorted(files, key=lambda k: (k != "media", int(k[5:]) if k != "media" else 0))
    return group(items), [(k, files[k]) for k in order]


@router.get("/discovery.{fmt}", summary="Service discovery")
def discovery(fmt: str, request: Request, session: SessionDep) -> Response:
    """Where the GeoReport v2 endpoint is and which formats it speaks."""
    def build() -> Document:
        _query(request, session)
        s = get_settings()
        return documents.discovery(
            s.public_base_url.rstrip("/") + "/open311/v2", changeset=CHANGESET, contact=s.council_name,
            key_service=f"Ask {s.council_name} for an API token to create requests (api_key)",
            production=s.env == "production")
    return _respond(fmt, build)


@router.get("/services.{fmt}", summary="Service list (our categories)")
def services(fmt: str, request: Request, session: SessionDep) -> Response:
    """Every category as a service, with group and keywords."""
    def build() -> Document:
        _query(request, session)
        return documents.service_list(get_catalogue().categories)
    return _respond(fmt, build)


@router.get("/services/{service_code}.{fmt}", summary="Service definition (the category's questions)")
def service_definition(service_code: str, fmt: str, request: Request, session: SessionDep) -> Response:
    """The attributes of one service: datatypes, required flags, order and value lists."""
    def build() -> Document:
        _query(request, session)
        try:
            return documents.service_definition(get_catalogue().get(service_code))
        except UnknownCategory:
            raise Open311Error(404, f"service_code {service_code[:64]!r} not found") from None
    return _respond(fmt, build)


@router.get("/requests.{fmt}", summary="Service requests, filtered (at most 1,000, within 90 days)")
def list_requests(fmt: str, request: Request, session: SessionDep) -> Response:
    """Requests by id (comma list) or by service_code, status and requested date window."""
    def build() -> Document:
        fields = _query(request, session)
        ids = comma_list("service_request_id", one(fields, "service_request_id"))
        now = datetime.now(timezone.utc)
        # Ids override every other argument (the specification), dates included.
        start, end = (now, now) if ids else date_range(one(fields, "start_date"), one(fields, "end_date"), now=now,
                                                       default_span=REQUESTS_SPAN, tz=get_settings().timezone)
        rows = queries.find_requests(session, ids=ids, codes=comma_list("service_code", one(fields, "service_code")),
                                     statuses=statuses(one(fields, "status")), start=start, end=end)
        return documents.service_requests(rows)
    return _respond(fmt, build)


@router.post("/requests.{fmt}", summary="Create a service request (form: api_key, service_code, location…)")
async def create_request(fmt: str, request: Request, session: SessionDep) -> Response:
    """A report through the same intake as the field app; idempotent on attribute[fixmystreet_id]."""
    try:
        fields, files = await _form(request)
    except Open311Error as exc:
        return _respond(fmt, _raising(exc))

    def build() -> Document:
        _jurisdiction(fields)
        who = _principal(session, fields, required=True)
        return intake.submit(session, who, fields, files)
    return await run_in_threadpool(_respond, fmt, build)


@router.get("/requests/{service_request_id}.{fmt}", summary="One service request")
def get_request(service_request_id: str, fmt: str, request: Request, session: SessionDep) -> Response:
    """One request and its job's current state."""
    def build() -> Document:
        _query(request, session)
        return documents.service_requests([queries.one_request(session, service_request_id)])
    return _respond(fmt, build)


@router.get("/tokens/{token}.{fmt}", summary="The service request of a token (a report's client_id)")
def get_token(token: str, fmt: str, request: Request, session: SessionDep) -> Response:
    """Our requests are realtime; a report's client_id UUID serves as its token."""
    def build() -> Document:
        _query(request, session)
        return documents.token_answer(queries.token_request(session, token), token)
    return _respond(fmt, build)


@router.get("/servicerequestupdates.{fmt}", summary="Status updates of service requests (mySociety extension)")
def list_updates(fmt: str, request: Request, session: SessionDep) -> Response:
    """Job status changes between start_date and end_date (default: the last 24 hours), oldest first."""
    def build() -> Document:
        fields = _query(request, session)
        start, end = date_range(one(fields, "start_date"), one(fields, "end_date"), now=datetime.now(timezone.utc),
                                default_span=UPDATES_SPAN, tz=get_settings().timezone)
        return documents.updates(queries.find_updates(session, start, end))
    return _respond(fmt, build)


@router.post("/servicerequestupdates.{fmt}",
             summary="A citizen's comment (open311_client api_key) or a contractor's status update")
async def post_update(fmt: str, request: Request, session: SessionDep) -> Response:
    """A front end's citizen update becomes a comment on the job (never a status change; idempotent per
    update_id); a contractor's back office reports progress on one of its jobs (a repeated update_id is refused)."""
    try:
        fields, files = await _form(request)
        if files:
            raise bad("photos on an update are taken as media_url (FixMyStreet: upload_files_for_updates off)")
    except Open311Error as exc:
        return _respond(fmt, _raising(exc))

    def build() -> Document:
        _jurisdiction(fields)
        who = _principal(session, fields, required=True)
        if who.role == OPEN311_CLIENT:
            return citizen.post(session, who, fields)
        return pushed.post_update(session, who, fields)
    return await run_in_threadpool(_respond, fmt, build)


@router.get("/media/{key}.{ext}", summary="A photo uploaded with a request (the URLs in media_url)",
            response_class=FileResponse)
def media(key: str, ext: str, session: SessionDep) -> Response:
    """Public, as FixMyStreet fetches media_url with no key: only photos that came in through Open311, named by
    id and hash so names cannot be guessed."""
    try:
        path, content_type = queries.media_file(session, key)
        if ext != ("png" if content_type == "image/png" else "jpg"):
            raise Open311Error(404, "no such photo")
    except Open311Error as exc:
        return _respond("xml", _raising(exc))
    full = get_settings().photo_root / path
    if not full.is_file():
        return _respond("xml", _raising(Open311Error(404, "the photo file is missing from storage")))
    return FileResponse(full, media_type=content_type, headers={"Cache-Control": "public, max-age=86400"})


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def not_found(rest: str) -> Response:
    """Anything else under /open311/v2 is a GeoReport 404 (in JSON when the path asks for it)."""
    fmt = "json" if rest.endswith(".json") else "xml"
    return _respond(fmt, _raising(Open311Error(404, f"no such endpoint: /open311/v2/{rest[:80]}; see discovery.xml")))
