"""One job for the crew: where it is (asset and location), start it, complete it with a photo and GPS."""
from __future__ import annotations

import uuid
from pathlib import Path

from kivy.clock import Clock
from kivy.metrics import dp
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.image import Image

from ..core.crew import CrewError, can_start, effective_status
from ..core.gps import quality
from ..core.models import distance_m
from ..core.text import when
from .widgets import KScreen, load_kv


class JobScreen(KScreen):
    """Job detail with Start and Complete; moves are queued in the outbox and sent when there is signal."""

    reference = StringProperty("")
    heading = StringProperty("")
    details = StringProperty("")
    status_text = StringProperty("")
    gps_text = StringProperty("")
    gps_level = StringProperty("none")
    photos_text = StringProperty("")
    message = StringProperty("")
    message_level = StringProperty("info")
    can_start = BooleanProperty(False)
    can_complete = BooleanProperty(False)

    def __init__(self, **kw):
        super().__init__(name="job", **kw)
        self.job: dict | None = None
        self.photos: list[str] = []

    def on_kv_post(self, base_widget) -> None:
        self.app.bind(fix=lambda *a: self._show())

    def prepare(self, reference: str | None = None, **_) -> None:
        """Open a job: the cached copy at once, the server's fresh page when it arrives."""
        if reference is None:
            return
        self.reference, self.photos, self.message = reference, [], ""
        self.job = self.app.core.cache.job(reference)
        self._thumbs()
        self.app.tasks.run(lambda: self.app.core.job_detail(reference), self._loaded,
                           lambda e: setattr(self, "message", "Offline: showing the device's copy of this job."))

    def refresh(self) -> None:
        cached = self.app.core.cache.job(self.reference) if self.reference else None
        if cached is not None and (self.job is None or "timeline" in cached or "timeline" not in self.job):
            self.job = cached  # carries the status the server gave for moves sent since
        elif cached is not None:
            self.job = {**self.job, "status": cached["status"]}
        self._show()

    def _loaded(self, detail: dict) -> None:
        if detail.get("reference") == self.reference:
            self.job = detail
            self._show()

    def _show(self) -> None:
        job = self.job
        if job is None:
            return
        status, pending = effective_status(self.app.core.outbox, job)
        self.heading = f"{job['reference']} · {job['category'].replace('_', ' ')}"
        self.status_text = status.replace("_", " ") + (" (waiting to send)" if pending else "")
        asset = job.get("asset") or {}
        lat, lon = (asset.get("lat"), asset.get("lon")) if asset.get("lat") is not None else (job["lat"], job["lon"])
        lines = [f"[b]Due[/b] {when(job.get('due_at'))}" + (f" ({job['sla']['due_in_words']})"
                                                            if (job.get("sla") or {}).get("due_in_words") else ""),
                 f"[b]Priority[/b] {job.get('priority', '?')}",
                 f"[b]Where[/b] {job.get('street') or '?'}, {job.get('ward') or '?'}"]
        if asset.get("ref"):
            lines.append(f"[b]Asset[/b] {asset['ref']} {asset.get('name') or ''} ({asset.get('layer', '')})")
        lines.append(f"[b]Location[/b] {lat:.5f}, {lon:.5f}")
        fix = self.app.fix
        if fix is not None:
            lines.append(f"[b]From you[/b] {distance_m(fix.lat, fix.lon, lat, lon):.0f} m")
        if job.get("description"):
            lines.append(f"[b]Reported[/b] {job['description']}")
        self.details = "\n".join(lines)
        q = quality(fix, None)
        self.gps_text, self.gps_level = q.badge, {"good": "ok", "poor": "warn"}.get(q.level, "none")
        self.can_start = can_start(status)
        self.can_complete = status == "in_progress"
        if not pending and self.message.endswith("sending…"):
            self.message = self.message.replace("saved on the device, sending…", "sent to the server.")

    def start(self) -> None:
        """Queue accept (if needed) and start, with the current GPS fix."""
        try:
            self.app.core.start_job(self.job, self.app.fix)
        except CrewError as exc:
            self.message_level, self.message = "error", str(exc)
            return
        self.message_level, self.message = "ok", "Started: saved on the device, sending…"
        self._show()

    def take_photo(self) -> None:
        """Photograph the finished work."""
        raw = Path(self.app.core.store.photo_dir) / f"raw-{uuid.uuid4()}.jpg"
        self.photos_text = "Taking a photo…"
        self.app.camera.take(str(raw), lambda p: Clock.schedule_once(lambda dt: self._taken(p)))

    def _taken(self, path: str | None) -> None:
        if path is None:
            self.photos_text = "No photo taken."
            return

        def keep() -> str:
            kept = self.app.core.add_photo(path)
            Path(path).unlink(missing_ok=True)
            return kept
        self.app.tasks.run(keep, self._kept, lambda e: setattr(self, "photos_text", f"Photo not usable: {e}"))

    def _kept(self, path: str) -> None:
        self.photos.append(path)
        self._thumbs()

    def _thumbs(self) -> None:
        box = self.ids.thumbs
        box.clear_widgets()
        for p in self.photos:
            box.add_widget(Image(source=p, size_hint_x=None, width=dp(150), fit_mode="contain"))
        self.photos_text = f"{len(self.photos)} completion photo(s)" if self.photos else "No completion photo yet"

    def complete(self) -> None:
        """Queue the completion with the photo(s), the GPS fix and the note."""
        try:
            self.app.core.complete_job(self.job, self.app.fix, list(self.photos), self.ids.note.text.strip() or None)
        except CrewError as exc:
            self.message_level, self.message = "error", str(exc)
            return
        self.photos = []
        self._thumbs()
        self.message_level, self.message = "ok", "Completed: saved on the device, sending…"
        self._show()


load_kv(__file__)
