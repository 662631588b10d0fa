"""The reporter's contact and choice, as sent with a report (field app, contact centre, Open311)."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

# Deliberately loose (Notify does the strict check): one @, a dot in the domain, no spaces.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UK_PHONE = re.compile(r"^0[1-9][0-9]{8,9}$")
_INTL_PHONE = re.compile(r"^\+[1-9][0-9]{7,14}$")


def normalise_phone(raw: str) -> str | None:
    """A UK number as 07700900123, another country's as +E.164; None if it is not a phone number."""
    digits = re.sub(r"[\s\-().]", "", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if digits.startswith("+44"):
        digits = "0" + digits[3:]
    elif digits.startswith("44") and len(digits) in (12, 13):
        digits = "0" + digits[2:]  # Notify's inbound numbers come as 447700900123
    if _UK_PHONE.match(digits) or _INTL_PHONE.match(digits):
        return digits
    return None


class ContactIn(BaseModel):
    """Who reported it and how they want to hear back; `consent` must be true to be sent anything."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=30)
    notify: Literal["email", "sms", "both", "none"] = Field(
        "none", description="how to send updates about this report: email, sms, both or none")
    consent: StrictBool = Field(False, description="the reporter agreed to be sent updates")

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not _EMAIL.match(v):
            raise ValueError("not an email address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        phone = normalise_phone(v)
        if phone is None:
            raise ValueError("not a phone number (UK numbers like 07700 900123, others with +country code)")
        return phone

    @model_validator(mode="after")
    def _choice_is_possible(self) -> "ContactIn":
        if self.notify in ("email", "both") and not self.email:
            raise ValueError("notify by email needs an email address")
        if self.notify in ("sms", "both") and not self.phone:
            raise ValueError("notify by sms needs a phone number")
        if self.notify != "none" and not self.consent:
            raise ValueError("updates are sent only with the reporter's consent: set consent to true")
        if not (self.email or self.phone or self.first_name or self.last_name):
            raise ValueError("a contact needs at least a name, an email address or a phone number")
        return self

    def kinds(self) -> tuple[str, ...]:
        """The message kinds chosen: ('email',), ('sms',), both, or none."""
        return {"email": ("email",), "sms": ("sms",), "both": ("email", "sms"), "none": ()}[self.notify]
