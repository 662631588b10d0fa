"""CRM webhook subscriptions, managed by admins: URL, shared secret, event types, active."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select

from server.deps import Principal, SessionDep, require
from server.errors import NotFound
from server.outbox.models import OutboxMessage, Subscription

from server.contact_centre.urls import validated
from server.contact_centre.webhooks import DEFAULT_EVENT_TYPES, EVENT_TYPES, PREFIX

router = APIRouter(prefix="/api/v1/subscriptions", tags=["webhooks"])
Admin = Annotated[Principal, require("admin")]
PROBLEM = {"content": {"application/problem+json": {}}}
# Ids are int4: a larger number is a 422, not a database error.
SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _types(v: list[str] | None) -> list[str] | None:
    if v is None:
        return None
    unknown = sorted(set(v) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; choose from {list(EVENT_TYPES)}")
    if not v:
        raise ValueError("choose at least one event type")
    return sorted(set(v))


class SubscriptionIn(BaseModel):
    """A new CRM webhook."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str = Field(min_length=8, max_length=1000)
    secret: str = Field(min_length=16, max_length=200, description="shared HMAC-SHA256 secret, 16+ characters")
    event_types: list[str] = Field(default_factory=lambda: list(DEFAULT_EVENT_TYPES), max_length=10)
    active: bool = True

    _check_types = field_validator("event_types")(_types)


class SubscriptionPatch(BaseModel):
    """Change some fields of a webhook."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str | None = Field(None, min_length=8, max_length=1000)
    secret: str | None = Field(None, min_length=16, max_length=200)
    event_types: list[str] | None = Field(None, max_length=10)
    active: bool | None = None

    _check_types = field_validator("event_types")(_types)


def _view(session, sub: Subscription) -> dict:
    dest = f"{PREFIX}:{sub.id}"
    counts = dict(session.execute(select(OutboxMessage.state, func.count()).where(
        OutboxMessage.destination == dest).group_by(OutboxMessage.state)).all())
    return {"id": sub.id, "url": sub.url, "event_types": sub.event_types, "active": sub.active,
            "secret_set": bool(sub.secret), "created_at": sub.created_at.isoformat() if sub.created_at else None,
            "deliveries": {s: counts.get(s, 0) for s in ("pending", "delivered", "dead")}}


def _get(session, sub_id: int) -> Subscription:
    sub = session.get(Subscription, sub_id)
    if sub is None:
        raise NotFound(f"no subscription {sub_id}", fields=["subscription_id"], code="subscription-not-found")
    return sub


@router.post("", status_code=201, summary="Add a CRM webhook", responses={422: PROBLEM})
def create(body: SubscriptionIn, session: SessionDep, who: Admin) -> dict:
    """Subscribe a URL to job events (http(s) only; private addresses only when the setting allows)."""
    sub = Subscription(url=validated(body.url), secret=body.secret, event_types=body.event_types,
                       active=body.active)
    session.add(sub)
    session.commit()
    return _view(session, sub)


@router.get("", summary="CRM webhooks (secrets are never shown)")
def list_all(session: SessionDep, who: Admin) -> dict:
    """Every subscription with its delivery counts."""
    subs = session.scalars(select(Subscription).order_by(Subscription.id)).all()
    return {"items": [_view(session, s) for s in subs], "event_types": list(EVENT_TYPES)}


@router.get("/{subscription_id}", summary="One CRM webhook", responses={404: PROBLEM})
def get_one(subscription_id: SubscriptionId, session: SessionDep, who: Admin) -> dict:
    """One subscription."""
    return _view(session, _get(session, subscription_id))


@router.patch("/{subscription_id}", summary="Change a CRM webhook", responses={404: PROBLEM, 422: PROBLEM})
def patch(subscription_id: SubscriptionId, body: SubscriptionPatch, session: SessionDep, who: Admin) -> dict:
    """Change the URL, secret, event types or pause it (active=false: its pending events are skipped)."""
    sub = _get(session, subscription_id)
    if body.url is not None:
        sub.url = validated(body.url)
    if body.secret is not None:
        sub.secret = body.secret
    if body.event_types is not None:
        sub.event_types = body.event_types
    if body.active is not None:
        sub.active = body.active
    session.commit()
    return _view(session, sub)


@router.delete("/{subscription_id}", status_code=204, summary="Remove a CRM webhook", responses={404: PROBLEM})
def delete(subscription_id: SubscriptionId, session: SessionDep, who: Admin) -> Response:
    """Remove a subscription; its undelivered events are skipped."""
    session.delete(_get(session, subscription_id))
    session.commit()
    return Response(status_code=204)
