"""Who may see which jobs: one filter used by every read path (a job you may not see is a 404)."""
from __future__ import annotations

from sqlalchemy import exists, false, select, true
from sqlalchemy.orm import Session, aliased

from server.deps import Principal
from server.errors import NotFound
from server.jobs.models import Job
from server.reports.models import Report

SEE_ALL = ("advisor", "supervisor", "admin")


def visible(p: Principal):
    """SQL condition on Job for what this principal may see (jobs.page says the same in its own SQL, for the
    token it looks up: change both; tests/security/test_access_matrix.py and tests/server/test_job_page.py
    check the job page role by role)."""
    if p.role in SEE_ALL:
        return true()
    if p.role == "contractor":
        return Job.contractor_id == p.contractor_id if p.contractor_id else false()
    if p.role == "crew":
        return Job.crew_id == p.crew_id if p.crew_id else false()
    if p.role == "field_worker":
        # An alias, so the check still correlates on Job when the outer query also selects reports.
        mine = aliased(Report)
        return exists(select(mine.id).where(mine.job_id == Job.id, mine.token_id == p.token_id).correlate(Job))
    return false()


def job_or_404(session: Session, p: Principal, reference: str, *, for_update: bool = False) -> Job:
    """The job with this reference if the caller may see it; otherwise 404 (never 403: no existence leak)."""
    q = select(Job).where(Job.reference == reference, visible(p))
    if for_update:
        q = q.with_for_update()
    job = session.scalars(q).first()
    if job is None:
        raise NotFound(f"no job {reference!r}", fields=["reference"], code="job-not-found")
    return job
