"""The GeoReport v2 documents as plain data (pure: no database, no web framework)."""
from __future__ import annotations

from datetime import datetime, timezone

from server.catalogue.schemas import LIST_TYPES, CategoryDef, QuestionDef
from server.open311.formats import MEDIA_TYPES, Document, JsonOnly, Repeated

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"


def w3c(moment: datetime | None) -> str | None:
    """A W3C date-time with offset, to the second (what GeoReport clients parse)."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def discovery(url: str, *, changeset: str, contact: str, key_service: str, production: bool) -> Document:
    """The service discovery document: one GeoReport v2 endpoint in XML and JSON."""
    return Document("discovery", {
        "changeset": changeset, "contact": contact, "key_service": key_service,
        "endpoints": [{"specification": SPECIFICATION, "url": url, "changeset": changeset,
                       "type": "production" if production else "test",
                       "formats": [MEDIA_TYPES["xml"].split(";")[0], MEDIA_TYPES["json"].split(";")[0]]}],
    })


def service_list(categories: list[CategoryDef]) -> Document:
    """GET services: every category as a realtime service, with its group and keywords."""
    return Document("services", [
        {"service_code": c.code, "service_name": c.name, "description": _service_description(c),
         "metadata": bool(c.questions), "type": "realtime", "keywords": ", ".join(c.keywords), "group": c.group}
        for c in categories
    ])


def _service_description(c: CategoryDef) -> str:
    if c.layer:
        return f"{c.name} ({c.group}); reports are matched to the nearest asset on the {c.layer} layer"
    return f"{c.name} ({c.group})"


def _datatype_description(q: QuestionDef) -> str:
    if q.format == "uk_registration":
        return "A UK registration mark, for example AB12 CDE"
    if q.datatype == "number":
        bounds = [f"at least {q.min:g}" if q.min is not None else "", f"at most {q.max:g}" if q.max is not None else ""]
        return "A number " + " and ".join(b for b in bounds if b) if any(bounds) else "A number"
    if q.datatype == "datetime":
        return "A W3C date-time with an offset, for example 2026-11-05T08:15:30Z"
    if q.datatype == "multivaluelist":
        return "One or more keys, each sent as attribute[code][]"
    return ""


def service_definition(c: CategoryDef) -> Document:
    """GET services/{code}: the category's questions as GeoReport attributes, in display order."""
    attributes = []
    for order, q in enumerate(c.ordered_questions(), start=1):
        attr = {"variable": True, "code": q.code, "datatype": q.datatype, "required": q.required,
                "datatype_description": _datatype_description(q), "order": order,
                "description": f"{q.prompt} {q.description}" if q.description else q.prompt}
        if q.datatype in LIST_TYPES:
            attr["values"] = [{"key": v.key, "name": v.name} for v in q.values]
        attributes.append(attr)
    attributes.extend(hidden_attributes(c, start=len(attributes) + 1))
    return Document("service_definition", {"service_code": c.code, "attributes": attributes})


def hidden_attributes(c: CategoryDef, start: int) -> list[dict]:
    """The automated attributes a front end fills in itself, as FixMyStreet-integrated back offices declare them:
    `fixmystreet_id` (server_set: FixMyStreet sends its report id only when a service declares it; our
    idempotency key) and, on an asset layer, `asset_id` (hidden_field: the asset clicked on its map, a hint)."""
    out = [{"variable": False, "code": "fixmystreet_id", "datatype": "string", "required": False,
            "datatype_description": "", "order": start, "automated": "server_set",
            "description": "The front end's own id of the report (a re-send with it answers the original request)"}]
    if c.layer:
        out.append({"variable": True, "code": "asset_id", "datatype": "string", "required": False,
                    "datatype_description": "", "order": start + 1, "automated": "hidden_field",
                    "description": f"The id of the {c.layer.replace('_', ' ')} asset chosen on the map "
                                   "(checked against our layer; the nearest asset wins if it is not there)"})
    return out


def created(service_request_id: str, service_notice: str, account_id: str | None) -> Document:
    """The answer to POST requests (one request per POST)."""
    return Document("service_requests", [{"service_request_id": service_request_id,
                                          "service_notice": service_notice, "account_id": account_id}])


def service_requests(rows: list[dict]) -> Document:
    """GET requests and requests/{id}."""
    return Document("service_requests", rows)


def token_answer(service_request_id: str, token: str) -> Document:
    """GET tokens/{token}."""
    return Document("service_requests", [{"service_request_id": service_request_id, "token": token}])


def updates(rows: list[dict]) -> Document:
    """GET servicerequestupdates (the mySociety extension)."""
    return Document("service_request_updates", rows)


def update_accepted(update_id: str) -> Document:
    """The answer to POST servicerequestupdates."""
    return Document("service_request_updates", [{"update_id": update_id}])


def request_row(*, reference: str, status: str, status_notes: str, service_name: str, service_code: str,
                description: str, agency: str, notice: str, requested: datetime, updated: datetime,
                expected: datetime | None, address: str, lat: float, lon: float, media_urls: list[str],
                address_id: str = "") -> dict:
    """One service request in GeoReport's field order; every photo in media_url (XML repeats the element,
    JSON has the first in media_url and all of them in media_urls)."""
    return {
        "service_request_id": reference, "status": status, "status_notes": status_notes,
        "service_name": service_name, "service_code": service_code, "description": description,
        "agency_responsible": agency, "service_notice": notice, "requested_datetime": w3c(requested),
        "updated_datetime": w3c(updated), "expected_datetime": w3c(expected), "address": address,
        "address_id": address_id, "zipcode": "", "lat": round(lat, 6), "long": round(lon, 6),
        "media_url": Repeated(media_urls), "media_urls": JsonOnly(list(media_urls)),
    }


def update_row(*, update_id: str, service_request_id: str, status: str, updated: datetime, description: str,
               external_status_code: str, media_url: str = "") -> dict:
    """One update of the extension: status is in the extended set, external_status_code is ours."""
    return {"update_id": update_id, "service_request_id": service_request_id, "status": status,
            "updated_datetime": w3c(updated), "description": description, "media_url": media_url,
            "external_status_code": external_status_code}
