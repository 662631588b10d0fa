"""Polling contractors' update feeds (the worker runs this); pushes arrive through the webhook."""
from __future__ import annotations

import logging

from sqlalchemy import select

from contractors import ContractorError
from server.db import new_session
from server.dispatch.models import Contractor
from server.inbound.service import poll_contractor
from server.outbox.handlers import adapter_for
from server.outbox.worker import DeliveryError

log = logging.getLogger("kerbside.inbound")


def poll_contractors() -> int:
    """Poll every active contractor whose adapter can be polled; one transaction (and lock) per contractor."""
    applied = 0
    with new_session() as s:
        ids = list(s.scalars(select(Contractor.id).where(Contractor.active.is_(True)).order_by(Contractor.id)))
    for cid in ids:
        with new_session() as s:
            # SKIP LOCKED: with several workers, each contractor is polled by one at a time.
            c = s.scalars(select(Contractor).where(Contractor.id == cid).with_for_update(skip_locked=True)).first()
            if c is None or not c.config.get("poll", True):
                continue
            try:
                adapter = adapter_for(c)
                if not getattr(adapter, "supports_poll", False):
                    continue
                applied += poll_contractor(s, c, adapter)
                s.commit()
            except (ContractorError, DeliveryError) as exc:
                s.rollback()
                log.warning("polling %s failed: %s", c.name, exc)
    return applied
