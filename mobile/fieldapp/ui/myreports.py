"""My reports: what I reported from this device and how each job stands now (refreshed from the server)."""
from __future__ import annotations

from kivy.properties import ListProperty, StringProperty

from ..core.text import when
from .widgets import KScreen, load_kv

OPEN_LEVELS = {"completed": "ok", "closed": "ok", "cancelled": "none", "duplicate": "none", "triage": "warn"}


class MyReportsScreen(KScreen):
    """Sent reports with their job's current status; refreshed on entry and on demand."""

    rows = ListProperty([])
    message = StringProperty("")

    def __init__(self, **kw):
        super().__init__(name="myreports", **kw)

    def refresh(self) -> None:
        self.show()
        self.reload()

    def show(self) -> None:
        """List from the device's copy (works offline)."""
        rows = []
        cats = {c.code: c.name for c in self.app.core.cache.categories(include_removed=True)}
        for item, status in self.app.core.my_reports():
            job = (status or {}).get("job_now") or (item.result or {}).get("job") or {}
            state = job.get("status", "?")
            words = job.get("status_in_words") or state.replace("_", " ")
            due = when(job.get("due_at"))
            rows.append({"title": f"{item.reference} · {cats.get(item.payload.get('category'), 'report')}",
                         "detail": f"{words}" + (f" · due {due}" if due and state not in ("completed", "closed")
                                                 else "") + f" · job {job.get('reference', '?')}",
                         "state_text": state.replace("_", " "), "level": OPEN_LEVELS.get(state, "info"),
                         "key": item.reference or ""})
        self.rows = rows
        if not rows:
            self.message = "Nothing sent from this device yet."

    def reload(self) -> None:
        """Ask the server for each report's current state (in the background)."""
        if not self.app.core.signed_in:
            self.message = "Signed out: showing what this device last heard."
            return
        self.message = "Refreshing from the server…"
        self.app.tasks.run(self.app.core.refresh_reports, self._done, self._failed)

    def _done(self, n: int) -> None:
        self.message = f"Refreshed {n} report{'s' if n != 1 else ''} from the server."
        self.show()

    def _failed(self, exc: Exception) -> None:
        self.message = f"Could not refresh ({getattr(exc, 'message', exc)}): showing the last known state."


load_kv(__file__)
