"""GET /metrics (Prometheus text format): request counts and latencies, plus gauges read from the database.

Request metrics live in this process (each API process is its own scrape target). Everything about
shared state — outbox depth and age, dead deliveries, SLA at-risk/breached open jobs, SLA sweep
timings — is read from PostgreSQL at scrape time, so every API process answers the same and several
workers need no coordination. Sweep timings are written by each worker onto its own heartbeat row
(worker_heartbeats.info), in the sweep's own transaction: no extra table, no extra port to scrape.

Access: with KERBSIDE_METRICS_TOKEN set, a matching `Authorization: Bearer` (constant-time compare);
without it, loopback callers only (Prometheus or a sidecar on the same host).
"""
from __future__ import annotations

import hmac
import ipaddress
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from server.auth import throttle
from server.config import get_settings
from server.deps import SessionDep
from server.errors import DomainError

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("kerbside_http_requests", "HTTP requests answered, by route template, method and status",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("kerbside_http_request_duration_seconds", "Time to answer HTTP requests, by route template",
                    ["method", "route"], registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
INTAKE_BATCH = Histogram("kerbside_intake_batch_reports", "Reports sent together in one intake statement (group "
                         "commit, server/reports/batch.py)", registry=REGISTRY, buckets=(1, 2, 4, 8, 16, 32))
INTAKE_DECLINED = Counter("kerbside_intake_batch_declined", "Reports the batched intake handed to the two-statement "
                          "path, by reason (retry, caller, out-of-area, snap, batch, or the SQLSTATE)", ["reason"],
                          registry=REGISTRY)
router = APIRouter(tags=["operations"])


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency (label values stay bounded: templates, known methods)."""
    method = method if method in METHODS else "other"
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def record_run(session: Session, job: str, seconds: float, now: datetime | None = None) -> None:
    """Add one run of a periodic job to this worker's heartbeat row (no row yet: nothing is recorded)."""
    from server.inbound.models import WorkerHeartbeat
    from server.worker import WORKER_NAME

    now = now or datetime.now(timezone.utc)
    info = WorkerHeartbeat.info
    runs = func.coalesce(info[job]["runs"].as_integer(), 0) + 1
    total = func.coalesce(info[job]["seconds_total"].as_float(), 0.0) + seconds
    entry = func.jsonb_build_object("runs", runs, "seconds_total", total, "last_seconds", seconds,
                                    "last_at", now.timestamp())
    merged = func.coalesce(info, func.jsonb_build_object()).op("||")(func.jsonb_build_object(job, entry))
    session.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.name == WORKER_NAME).values(info=merged))


class _Database:
    """Gauges read with one session at scrape time."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self):
        from server.inbound.models import WorkerHeartbeat
        from server.jobs.models import Job
        from server.jobs.rules import OPEN_STATUSES
        from server.outbox.models import OutboxMessage

        s, now = self.session, datetime.now(timezone.utc)
        depth = GaugeMetricFamily("kerbside_outbox_pending", "Outbox messages waiting to be delivered",
                                  labels=["destination"])
        dead = GaugeMetricFamily("kerbside_outbox_dead", "Outbox messages that gave up (dead), by destination",
                                 labels=["destination"])
        rows = s.execute(select(OutboxMessage.destination, OutboxMessage.state, func.count())
                         .where(OutboxMessage.state.in_(("pending", "dead")))
                         .group_by(OutboxMessage.destination, OutboxMessage.state)).all()
        for dest, state, n in rows:
            (depth if state == "pending" else dead).add_metric([dest], n)
        yield depth
        yield dead
        oldest = s.scalar(select(func.min(OutboxMessage.created_at)).where(OutboxMessage.state == "pending"))
        yield GaugeMetricFamily("kerbside_outbox_oldest_pending_age_seconds",
                                "Age of the oldest pending outbox message (0 when none)",
                                value=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        open_job = Job.status.in_(OPEN_STATUSES)
        at_risk, breached = s.execute(select(
            func.count().filter(and_(Job.at_risk_at.is_not(None), Job.breached_at.is_(None))),
            func.count().filter(Job.breached_at.is_not(None))).where(open_job)).one()
        yield GaugeMetricFamily("kerbside_jobs_sla_at_risk", "Open jobs flagged at risk and not yet breached",
                                value=at_risk)
        yield GaugeMetricFamily("kerbside_jobs_sla_breached", "Open jobs past their due time (flagged breached)",
                                value=breached)
        live = now - timedelta(seconds=3 * get_settings().worker_heartbeat_seconds)
        workers = s.execute(select(WorkerHeartbeat.name, WorkerHeartbeat.info)
                            .where(WorkerHeartbeat.beat_at >= live).order_by(WorkerHeartbeat.name)).all()
        summary = SummaryMetricFamily("kerbside_sla_sweep_duration_seconds", "SLA sweep run time, per live worker",
                                      labels=["worker"])
        last = GaugeMetricFamily("kerbside_sla_sweep_last_duration_seconds", "The last SLA sweep's run time",
                                 labels=["worker"])
        when = GaugeMetricFamily("kerbside_sla_sweep_last_run_timestamp_seconds", "When the last SLA sweep ran",
                                 labels=["worker"])
        for name, info in workers:
            sweep = (info or {}).get("sla_sweep")
            if not sweep:
                continue
            summary.add_metric([name], count_value=sweep["runs"], sum_value=sweep["seconds_total"])
            last.add_metric([name], sweep["last_seconds"])
            when.add_metric([name], sweep["last_at"])
        yield summary
        yield last
        yield when


def _allowed(request: Request) -> bool:
    expected = get_settings().metrics_token
    if expected:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
        if not ok and given:
            throttle.note_failure()  # a wrong metrics token counts like any failed token
        return ok
    try:
        return ipaddress.ip_address((request.client.host if request.client else "") or "").is_loopback
    except ValueError:
        return False


class _Fixed:
    """Metric families already read, in the shape generate_latest() wants (anything with collect())."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return self.families


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, session: SessionDep) -> Response:
    """Prometheus exposition: this process's request metrics and the database gauges."""
    if not _allowed(request):
        raise DomainError("metrics are served to loopback callers, or with the metrics token",
                          code="metrics-forbidden", status=403, fields=["Authorization"])
    up = GaugeMetricFamily("kerbside_database_up", "Whether the database answered this scrape")
    try:
        families = list(_Database(session).collect())
        up.add_metric([], 1)
    except Exception:  # a scrape must still say that the database is down
        session.rollback()
        families = []
        up.add_metric([], 0)
    body = generate_latest(REGISTRY) + generate_latest(_Fixed([*families, up]))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
