"""Home: the sync banner, the GPS badge and the big buttons (report, queue, my reports, crew jobs)."""
from __future__ import annotations

from kivy.properties import BooleanProperty, StringProperty

from ..core.gps import quality
from .widgets import KScreen, load_kv


class HomeScreen(KScreen):
    """What the app can do, and how the queue stands."""

    queue_text = StringProperty("Queue")
    who = StringProperty("")
    crew = BooleanProperty(False)
    gps_text = StringProperty("")
    gps_level = StringProperty("none")

    def __init__(self, **kw):
        super().__init__(name="home", **kw)

    def on_kv_post(self, base_widget) -> None:
        self.app.bind(fix=lambda *a: self._gps(), counts=lambda *a: self._queue())

    def refresh(self) -> None:
        core = self.app.core
        self.crew = core.role == "crew"
        self.who = f"{'Crew' if self.crew else 'Reporter'} on {core.server_url or '?'}"
        self.app.counts = core.outbox.counts()
        self._queue()
        self._gps()

    def _queue(self) -> None:
        c = self.app.counts
        waiting = c.get("waiting", 0) + c.get("sending", 0)
        parts = [f"{waiting} waiting"] if waiting else []
        if c.get("failed"):
            parts.append(f"{c['failed']} failed")
        self.queue_text = "Queue" + (f" ({', '.join(parts)})" if parts else "")

    def _gps(self) -> None:
        q = quality(self.app.fix, None)
        self.gps_text, self.gps_level = q.badge, ("ok" if q.level == "good" else "warn" if q.level == "poor"
                                                  else "none")

    def sign_out(self) -> None:
        """Forget the token (the queue stays) and go to sign-in."""
        self.app.core.sign_out()
        self.app.go("signin")


load_kv(__file__)
