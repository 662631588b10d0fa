"""Hypothesis strategies for contractor DTOs."""
from __future__ import annotations

from datetime import timedelta, timezone

from hypothesis import strategies as st

from contractors.base import WorkOrder

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
ident = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))])
aware = st.datetimes(timezones=zones)
answer_value = st.one_of(text, st.integers(-1000, 1000), st.booleans(), st.lists(ident, max_size=3))

work_orders = st.builds(
    WorkOrder,
    job_reference=ident, idempotency_key=ident, category=st.sampled_from(["street_light", "pothole"]),
    priority=st.sampled_from(["emergency", "urgent", "normal", "low"]), description=text,
    lat=st.floats(-90, 90), lon=st.floats(-180, 180), due_at=aware,
    asset_ref=st.none() | ident, asset_layer=st.none() | ident, street=st.none() | text, ward=st.none() | text,
    answers=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), answer_value, max_size=4),
    photos=st.lists(st.just("https://example.org/p.jpg"), max_size=2),
)
