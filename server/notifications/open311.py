"""The reporter's contact from a GeoReport v2 POST (email, phone, first_name, last_name).

GeoReport v2 has no field for a choice of updates: a CRM that has its reporter's consent says so with
`attribute[kerbside_notify]` = email, sms or both. Without it the contact is kept for advisers only.
"""
from __future__ import annotations

from pydantic import ValidationError

from server.notifications.schemas import ContactIn
from server.open311.params import attributes, bad, one

FIELDS = ("first_name", "last_name", "email", "phone")
CHOICE_ATTRIBUTE = "kerbside_notify"


def contact_from(fields: dict[str, list[str]]) -> ContactIn | None:
    """The contact a POST request carries, None without one; a GeoReport 400 naming the field if invalid."""
    values = {k: v for k in FIELDS if (v := one(fields, k))}
    choice = attributes(fields).get(CHOICE_ATTRIBUTE)
    if not values:
        return None
    notify = choice if isinstance(choice, str) and choice else "none"
    try:
        return ContactIn(**values, notify=notify, consent=notify != "none")
    except ValidationError as exc:
        where = lambda e: (f"attribute[{CHOICE_ATTRIBUTE}]" if e["loc"] == ("notify",)  # noqa: E731
                           else str(e["loc"][0]) if e["loc"] else "contact")
        raise bad(*[f"{where(e)}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]) from None
