"""Crew mode: my jobs, soonest due first (from the server, or the device's copy when offline)."""
from __future__ import annotations

from kivy.properties import ListProperty, StringProperty

from ..core.crew import effective_status
from ..core.text import ago, when
from .widgets import KScreen, load_kv

LEVELS = {"assigned": "warn", "accepted": "info", "in_progress": "info", "on_hold": "warn", "completed": "ok"}


class JobsScreen(KScreen):
    """The crew's job list; tap a job for its detail."""

    rows = ListProperty([])
    message = StringProperty("")

    def __init__(self, **kw):
        super().__init__(name="jobs", **kw)

    def refresh(self) -> None:
        self.show()
        self.reload()

    def show(self) -> None:
        """List the cached jobs with any queued moves applied."""
        core = self.app.core
        rows = []
        for job in core.cache.jobs():
            status, pending = effective_status(core.outbox, job)
            asset = job.get("asset") or {}
            where = job.get("street") or job.get("ward") or ""
            rows.append({"title": f"{job['reference']} · {job['category'].replace('_', ' ')}",
                         "detail": f"Due {when(job.get('due_at'))} · {where}" +
                                   (f" · {asset.get('ref')}" if asset.get("ref") else "") +
                                   (" · change waiting to send" if pending else ""),
                         "state_text": status.replace("_", " "), "level": LEVELS.get(status, "none"),
                         "key": job["reference"]})
        self.rows = rows

    def reload(self) -> None:
        """Fetch the list from the server in the background."""
        self.message = "Refreshing…"
        self.app.tasks.run(self.app.core.refresh_jobs, self._done, self._failed)

    def _done(self, jobs) -> None:
        self.message = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}, soonest due first." if jobs else \
            "No jobs for your crew right now."
        self.show()

    def _failed(self, exc: Exception) -> None:
        fetched = self.app.core.cache.jobs_fetched_at()
        self.message = (f"Offline ({getattr(exc, 'message', exc)}): the list is from {ago(fetched)}."
                        if fetched else f"Could not fetch your jobs: {getattr(exc, 'message', exc)}")


load_kv(__file__)
