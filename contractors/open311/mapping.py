"""Pure translation for Open311 GeoReport v2 (+ the servicerequestupdates extension); no I/O.

Polling cursor: servicerequestupdates.json only filters by time (start_date, inclusive), and many
updates can share one second, so the cursor is the last updated_datetime seen plus the update ids
seen at exactly that time. Asking again from that time returns those ids again; they are dropped.
Within one second, updates are put in update-id order (numeric when numeric).
Limitation of the protocol: an update stamped earlier than the cursor but published later is missed.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from contractors.base import PayloadError, StatusUpdate, WorkOrder

STATUSES = ("open", "investigating", "action_scheduled", "in_progress", "fixed", "closed", "duplicate",
            "not_councils_responsibility", "no_further_action", "internal_referral")

DEFAULT_STATUS_MAP: dict[str, str] = {
    "open": "accepted",
    "investigating": "accepted",
    "action_scheduled": "scheduled",
    "in_progress": "in_progress",
    "fixed": "completed",
    "closed": "completed",
    "duplicate": "duplicate",
    # The back office will not do it: the job comes back to us to re-dispatch or close.
    "not_councils_responsibility": "rejected",
    "no_further_action": "rejected",
    "internal_referral": "rejected",
}

DESCRIPTION_MAX = 4000  # what most GeoReport servers accept


def normalise_status(value: str) -> str:
    """FixMyStreet sends FIXED, ACTION_SCHEDULED…; the spec writes them lower case."""
    return value.strip().lower().replace(" ", "_").replace("-", "_")


def request_form(order: WorkOrder, *, service_code: str, email: str, external_id_attribute: str,
                 asset_attribute: str | None = None, send_answers: bool = True) -> list[tuple[str, str]]:
    """The urlencoded fields of POST requests.json (without api_key/jurisdiction_id, which the client adds)."""
    description = order.description or order.category
    footer = f"\n\nKerbside job {order.job_reference}, due {order.due_at.isoformat()}"
    form = [
        ("service_code", service_code),
        ("lat", repr(float(order.lat))),
        ("long", repr(float(order.lon))),
        ("description", description[: DESCRIPTION_MAX - len(footer)] + footer),
        ("email", email),
        (f"attribute[{external_id_attribute}]", order.idempotency_key),
    ]
    if order.street:
        form.append(("address_string", order.street))
    if order.photos:
        form.append(("media_url", order.photos[0]))  # GeoReport v2 takes one
    if asset_attribute and order.asset_ref:
        form.append((f"attribute[{asset_attribute}]", order.asset_ref))
    if send_answers:
        for code in sorted(order.answers):
            value = order.answers[code]
            if code in (external_id_attribute, asset_attribute) or value is None:
                continue
            if isinstance(value, (list, tuple)):  # multivaluelist
                form.extend((f"attribute[{code}][]", _text(v)) for v in value)
            else:
                form.append((f"attribute[{code}]", _text(value)))
    return form


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def service_request_id(answer: Any) -> str:
    """The id in a POST requests.json answer ([{"service_request_id": ...}]); PayloadError otherwise."""
    first = answer[0] if isinstance(answer, list) and answer else answer
    if isinstance(first, Mapping) and first.get("service_request_id") not in (None, ""):
        return str(first["service_request_id"])
    raise PayloadError(f"answer has no service_request_id: {str(answer)[:200]}")


def parse_time(value: Any, naive_tz: str) -> datetime:
    """A W3C/ISO 8601 time; one without an offset is read in `naive_tz`."""
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise PayloadError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=ZoneInfo(naive_tz))


def update_from_json(item: Any, status_map: Mapping[str, str], naive_tz: str = "UTC") -> StatusUpdate:
    """One entry of servicerequestupdates as a StatusUpdate."""
    if not isinstance(item, Mapping):
        raise PayloadError("an update must be an object")
    for key in ("update_id", "service_request_id", "status", "updated_datetime"):
        if item.get(key) in (None, ""):
            raise PayloadError(f"update is missing {key!r}: {str(dict(item))[:200]}")
    status = normalise_status(str(item["status"]))
    return StatusUpdate(
        update_id=str(item["update_id"]),
        contractor_ref=str(item["service_request_id"]),
        status=status_map.get(status),
        contractor_status=status,
        occurred_at=parse_time(item["updated_datetime"], naive_tz),
        note=(str(item["description"]) or None) if item.get("description") is not None else None,
        photo_url=str(item["media_url"]) if item.get("media_url") else None,
        raw=dict(item),
    )


def updates_list(answer: Any) -> list:
    """The list inside a servicerequestupdates answer ({"service_request_updates": [...]} or a bare list)."""
    if isinstance(answer, Mapping):
        answer = answer.get("service_request_updates")
    if not isinstance(answer, list):
        raise PayloadError("servicerequestupdates answer has no list of updates")
    return answer


@dataclass(frozen=True)
class Cursor:
    """Last updated_datetime seen and the update ids seen at exactly that time."""

    after: datetime
    seen: frozenset[str]

    def encode(self) -> str:
        """Opaque string to store."""
        return json.dumps({"after": self.after.isoformat(), "seen": sorted(self.seen)}, separators=(",", ":"))

    @classmethod
    def decode(cls, value: str | None) -> Cursor | None:
        """Inverse of encode; None for None. A cursor we cannot read is a bug upstream: ValueError."""
        if not value:
            return None
        try:
            data = json.loads(value)
            after = datetime.fromisoformat(data["after"])
            seen = frozenset(str(i) for i in data["seen"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not an Open311 cursor: {value!r}") from exc
        if after.utcoffset() is None:
            raise ValueError(f"Open311 cursor time has no offset: {value!r}")
        return cls(after, seen)


def _order_key(update: StatusUpdate) -> tuple:
    # Within one second GeoReport gives no order; update ids usually count up, so they break the tie
    # (numerically when numeric, so "10" comes after "9").
    uid = update.update_id
    return (update.occurred_at, (0, int(uid), "") if uid.isdigit() else (1, 0, uid))


def select_new(cursor: Cursor | None, updates: Iterable[StatusUpdate]) -> tuple[list[StatusUpdate], Cursor | None]:
    """The updates not yet seen (oldest first, each once) and the cursor after them."""
    fresh: list[StatusUpdate] = []
    ids: set[str] = set()
    for u in updates:
        if u.update_id in ids:
            continue
        if cursor is not None and (u.occurred_at < cursor.after or (
                u.occurred_at == cursor.after and u.update_id in cursor.seen)):
            continue
        ids.add(u.update_id)
        fresh.append(u)
    if not fresh:
        return [], cursor
    fresh.sort(key=_order_key)
    last = fresh[-1].occurred_at
    seen = {u.update_id for u in fresh if u.occurred_at == last}
    if cursor is not None and cursor.after == last:
        seen |= cursor.seen
    return fresh, Cursor(last, frozenset(seen))

