"""GET /metrics: Prometheus text with request counts and latencies, and gauges read from the database."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from server.config import Settings, get_settings
from server.inbound.models import WorkerHeartbeat
from server.jobs.models import Job
from server.jobs.rules import OPEN_STATUSES
from server.outbox.models import OutboxMessage
from tests.conftest import auth

LOOPBACK = ("127.0.0.1", 51000)


def scrape(app) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}, scraped from loopback."""
    r = TestClient(app, client=LOOPBACK).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_for_loopback_or_the_metrics_token_only(app, tokens, monkeypatch):
    assert TestClient(app, client=LOOPBACK).get("/metrics").status_code == 200
    assert TestClient(app, client=("::1", 1)).get("/metrics").status_code == 200
    outside = TestClient(app, client=("203.0.113.5", 1))
    assert outside.get("/metrics").status_code == 403
    assert outside.get("/metrics", headers=auth(tokens["admin"])).status_code == 403
    monkeypatch.setattr(get_settings(), "metrics_token", "p" * 40)
    assert outside.get("/metrics", headers={"Authorization": "Bearer " + "p" * 40}).status_code == 200
    assert outside.get("/metrics", headers={"Authorization": "Bearer " + "p" * 41}).status_code == 403
    # With a token configured, loopback needs it too (a local reverse proxy must not open it).
    assert TestClient(app, client=LOOPBACK).get("/metrics").status_code == 403


def test_production_refuses_a_short_metrics_token():
    good = dict(env="production", webhook_secret="w" * 40, database_url="postgresql+psycopg://k@db:5432/k",
                public_base_url="https://kerbside.example", notify_api_key="council-" + "1" * 36 + "-" + "2" * 36,
                notify_callback_token="n" * 40)
    with pytest.raises(ValueError, match="METRICS_TOKEN"):
        Settings(**good, metrics_token="short")
    assert Settings(**good, metrics_token="t" * 32).metrics_token == "t" * 32


def test_requests_are_counted_by_route_template_method_and_status(app, client, tokens):
    before = scrape(app)
    client.get("/api/v1/jobs/J-NOPE-1", headers=auth(tokens["advisor"]))
    client.get("/api/v1/jobs/J-NOPE-2", headers=auth(tokens["advisor"]))
    client.get("/api/v1/categories")
    client.get("/no/such/page/" + uuid.uuid4().hex)
    client.request("BREW", "/api/v1/categories")
    after = scrape(app)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    job = {"method": "GET", "route": "/api/v1/jobs/{reference}"}
    assert delta("kerbside_http_requests_total", **job, status="404") == 2
    assert delta("kerbside_http_request_duration_seconds_count", **job) == 2
    assert delta("kerbside_http_request_duration_seconds_bucket", **job, le="+Inf") == 2
    assert delta("kerbside_http_request_duration_seconds_sum", **job) > 0
    assert delta("kerbside_http_requests_total", method="GET", route="/api/v1/categories", status="200") == 1
    # Unknown paths and methods share one label value each: no unbounded series from scanners.
    assert delta("kerbside_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("kerbside_http_requests_total", method="other", route="/api/v1/categories", status="405") == 1
    assert not [k for k in after if "J-NOPE" in str(k) or "no/such" in str(k)]


def _message(dest: str, state: str, age: timedelta) -> OutboxMessage:
    return OutboxMessage(destination=dest, topic="test", payload={}, idempotency_key=f"m-{uuid.uuid4()}",
                         state=state, created_at=datetime.now(timezone.utc) - age)


def test_outbox_depth_age_and_dead_rows_are_read_from_the_database(app, db):
    dest = f"test:metrics-{uuid.uuid4().hex[:8]}"
    db.add_all([_message(dest, "pending", timedelta(hours=30)), _message(dest, "pending", timedelta(minutes=1)),
                _message(dest, "pending", timedelta(0)), _message(dest, "dead", timedelta(days=2)),
                _message(dest, "dead", timedelta(days=1)), _message(dest, "delivered", timedelta(days=3))])
    db.flush()
    m = scrape(app)
    assert value(m, "kerbside_outbox_pending", destination=dest) == 3
    assert value(m, "kerbside_outbox_dead", destination=dest) == 2
    assert value(m, "kerbside_outbox_oldest_pending_age_seconds") >= 30 * 3600
    total_pending = db.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state == "pending"))
    assert sum(v for (n, _), v in m.items() if n == "kerbside_outbox_pending") == total_pending
    assert value(m, "kerbside_database_up") == 1


def test_sla_at_risk_and_breached_counts_follow_the_open_jobs(app, client, tokens, db):
    from tests.server.test_intake import body, post

    ref = post(client, tokens["field_worker"], body()).json()["job"]["reference"]
    open_job = Job.status.in_(OPEN_STATUSES)
    expected_risk = db.scalar(select(func.count()).where(open_job, Job.at_risk_at.is_not(None),
                                                         Job.breached_at.is_(None)).select_from(Job))
    expected_breach = db.scalar(select(func.count()).where(open_job, Job.breached_at.is_not(None)).select_from(Job))
    m = scrape(app)
    risk, breach = value(m, "kerbside_jobs_sla_at_risk"), value(m, "kerbside_jobs_sla_breached")
    assert (risk, breach) == (expected_risk, expected_breach)
    now = datetime.now(timezone.utc)
    db.execute(update(Job).where(Job.reference == ref).values(at_risk_at=now))
    m = scrape(app)
    assert (value(m, "kerbside_jobs_sla_at_risk"), value(m, "kerbside_jobs_sla_breached")) == (risk + 1, breach)
    db.execute(update(Job).where(Job.reference == ref).values(breached_at=now))
    m = scrape(app)
    assert (value(m, "kerbside_jobs_sla_at_risk"), value(m, "kerbside_jobs_sla_breached")) == (risk, breach + 1)
    db.execute(update(Job).where(Job.reference == ref).values(status="completed"))
    m = scrape(app)
    assert (value(m, "kerbside_jobs_sla_at_risk"), value(m, "kerbside_jobs_sla_breached")) == (risk, breach)


def test_sla_sweep_duration_is_recorded_by_the_worker_and_read_at_scrape(app, db):
    from server.jobs.scheduled import timed_sweep
    from server.worker import WORKER_NAME

    db.merge(WorkerHeartbeat(name=WORKER_NAME, beat_at=datetime.now(timezone.utc), info={"pid": 1}))
    db.flush()
    started = datetime.now(timezone.utc).timestamp()
    timed_sweep(db)
    timed_sweep(db)
    m = scrape(app)
    count = value(m, "kerbside_sla_sweep_duration_seconds_count", worker=WORKER_NAME)
    total = value(m, "kerbside_sla_sweep_duration_seconds_sum", worker=WORKER_NAME)
    last = value(m, "kerbside_sla_sweep_last_duration_seconds", worker=WORKER_NAME)
    assert count == 2 and total >= last > 0
    assert value(m, "kerbside_sla_sweep_last_run_timestamp_seconds", worker=WORKER_NAME) >= started - 1
    # The heartbeat keeps its own fields; a worker gone quiet drops out of the scrape.
    assert db.get(WorkerHeartbeat, WORKER_NAME).info["pid"] == 1
    db.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.name == WORKER_NAME)
               .values(beat_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    assert value(scrape(app), "kerbside_sla_sweep_duration_seconds_count", worker=WORKER_NAME) == 0


def test_a_sweep_outside_a_worker_records_nothing(app, db):
    from server.jobs.scheduled import timed_sweep
    from server.worker import WORKER_NAME

    assert db.get(WorkerHeartbeat, WORKER_NAME) is None
    timed_sweep(db)  # no heartbeat row of this process: nothing to add to, nothing invented
    assert db.get(WorkerHeartbeat, WORKER_NAME) is None


def test_a_scrape_still_answers_when_the_database_is_down(app):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from server.db import get_session

    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})

    def broken():
        with Session(dead) as s:
            yield s

    app.dependency_overrides[get_session] = broken
    m = scrape(app)
    assert value(m, "kerbside_database_up") == 0
    assert any(n == "kerbside_http_requests_total" for n, _ in m)
    assert not any(n.startswith("kerbside_outbox") for n, _ in m)


def test_guessing_the_metrics_token_is_throttled_like_any_token(app, monkeypatch):
    monkeypatch.setattr(get_settings(), "metrics_token", "q" * 40)
    c = TestClient(app, client=("203.0.113.6", 1))
    for i in range(20):
        assert c.get("/metrics", headers={"Authorization": f"Bearer guess-{i}"}).status_code == 403
    assert c.get("/metrics", headers={"Authorization": "Bearer " + "q" * 40}).status_code == 429
