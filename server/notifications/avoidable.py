"""Avoidable contact: chasers (contacts about a job that already exists) per 100 jobs, and whether they came
before or after the reporter had been sent a notification, overall and by category.

A chaser is recorded when an adviser on a call opens a job for the caller, when an Open311 citizen update
arrives (a `citizen_update` job event, by trigger), or when the same person reports the same job again.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

DEFINITION = ("Chasers are contacts about a job that already exists: an adviser opening the job while on a call, "
              "an Open311 citizen update, or the same person reporting the job again. Per 100 jobs counts the "
              "jobs opened in the period. A chaser is 'after a notification' when the job's reporters had been "
              "sent at least one message before it; notified jobs are jobs with at least one message sent.")

_ROWS = text("""
    WITH j AS (SELECT id, category_code,
                      (SELECT min(n.sent_at) FROM notifications n WHERE n.job_id = jobs.id) AS first_sent
                 FROM jobs WHERE created_at >= :since AND created_at < :until),
         c AS (SELECT ch.job_id, ch.channel, ch.at, j.category_code, j.first_sent
                 FROM chasers ch JOIN j ON j.id = ch.job_id WHERE ch.at >= :since AND ch.at < :until)
    SELECT key, sum(jobs)::int AS jobs, sum(notified)::int AS notified_jobs, sum(chasers)::int AS chasers,
           sum(before)::int AS before, sum(after)::int AS after,
           sum(on_notified)::int AS on_notified
      FROM (SELECT category_code AS key, count(*) AS jobs, count(first_sent) AS notified, 0 AS chasers,
                   0 AS before, 0 AS after, 0 AS on_notified FROM j GROUP BY category_code
            UNION ALL
            SELECT category_code, 0, 0, count(*), count(*) FILTER (WHERE first_sent IS NULL OR at < first_sent),
                   count(*) FILTER (WHERE at >= first_sent), count(*) FILTER (WHERE first_sent IS NOT NULL)
              FROM c GROUP BY category_code) t
     GROUP BY key ORDER BY key
""")
_CHANNELS = text("""
    SELECT ch.channel, count(*)::int AS n FROM chasers ch JOIN jobs ON jobs.id = ch.job_id
     WHERE jobs.created_at >= :since AND jobs.created_at < :until AND ch.at >= :since AND ch.at < :until
     GROUP BY ch.channel ORDER BY ch.channel
""")


def _per100(n: int, jobs: int) -> float | None:
    return round(100.0 * n / jobs, 1) if jobs else None


def _figures(r) -> dict:
    unnotified = r["jobs"] - r["notified_jobs"]
    return {"jobs": r["jobs"], "chasers": r["chasers"], "chasers_per_100_jobs": _per100(r["chasers"], r["jobs"]),
            "before_notification": r["before"], "after_notification": r["after"],
            "notified_jobs": r["notified_jobs"],
            "per_100_notified_jobs": _per100(r["on_notified"], r["notified_jobs"]),
            "per_100_jobs_not_notified": _per100(r["chasers"] - r["on_notified"], unnotified)}


def avoidable_contact(session: Session, since: datetime, until: datetime) -> dict:
    """Chasers per 100 jobs, before and after a notification, by category and by channel."""
    rows = [dict(r._mapping) for r in session.execute(_ROWS, {"since": since, "until": until})]
    total = {k: sum(r[k] for r in rows) for k in ("jobs", "notified_jobs", "chasers", "before", "after",
                                                   "on_notified")}
    return {"overall": _figures(total),
            "by_category": [{"category": r["key"], **_figures(r)} for r in rows],
            "by_channel": [dict(r._mapping) for r in session.execute(_CHANNELS, {"since": since, "until": until})],
            "definition": DEFINITION}
