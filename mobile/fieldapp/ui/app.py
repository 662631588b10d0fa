"""The Kivy app: builds the screens, owns the core and the devices, and carries sync news to the UI thread."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock, mainthread
from kivy.properties import DictProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import NoTransition, ScreenManager

from ..core.models import Fix
from ..core.service import FieldCore
from ..core.sync import AUTH, OFFLINE, SyncStatus
from ..core.tasks import Tasks
from ..device.factory import make_devices
from . import widgets  # noqa: F401  (kv rules for the shared widgets)
from .category import CategoryScreen
from .home import HomeScreen
from .job import JobScreen
from .jobs import JobsScreen
from .myreports import MyReportsScreen
from .pin import PinScreen
from .queue import QueueScreen
from .report import ReportScreen
from .signin import SignInScreen
from .today import TodayScreen

log = logging.getLogger("fieldapp")
for _noisy in ("httpx", "httpcore", "urllib3", "PIL"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)  # Kivy's logger would print every connection
SCREENS = (SignInScreen, HomeScreen, CategoryScreen, ReportScreen, PinScreen, QueueScreen, MyReportsScreen,
           JobsScreen, JobScreen, TodayScreen)
OSM_TILES = "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png"


class FieldApp(App):
    """Kerbside field app."""

    title = "Kerbside"
    fix = ObjectProperty(None, allownone=True)  # the latest GPS fix
    gps_status = StringProperty("searching")
    sync_text = StringProperty("")
    sync_level = StringProperty("ok")
    counts = DictProperty({})

    def __init__(self, data_dir: str | None = None, location=None, camera=None, map_tiles: str | None = None,
                 **kw):
        super().__init__(**kw)
        self._data_dir = data_dir or os.environ.get("KERBSIDE_APP_DATA")
        if location is None or camera is None:
            loc, cam = make_devices()
            location, camera = location or loc, camera or cam
        self.location, self.camera = location, camera
        tiles = map_tiles if map_tiles is not None else os.environ.get("KERBSIDE_MAP_TILES", OSM_TILES)
        self.map_tiles = None if tiles in ("", "off") else tiles
        self.core: FieldCore | None = None
        self.tasks: Tasks | None = None

    @property
    def data_dir(self) -> Path:
        """Where the store, photos and map tiles live (the app's private storage on Android)."""
        return Path(self._data_dir or self.user_data_dir)

    def build(self):
        self.tasks = Tasks(deliver=lambda f: Clock.schedule_once(lambda dt: f()))
        self.core = FieldCore(self.data_dir, notify=self._sync_news)
        sm = ScreenManager(transition=NoTransition())
        for cls in SCREENS:
            sm.add_widget(cls())
        sm.current = "home" if self.core.signed_in else "signin"
        self.counts = self.core.outbox.counts()
        self.location.start(self._on_fix, self._on_gps_status)
        self.core.loop.start()
        if self.core.signed_in:
            self.tasks.run(self.core.refresh_categories, error=lambda e: None)  # offline: the cache will do
        return sm

    # -- navigation ---------------------------------------------------------------------------
    def go(self, name: str, **kw) -> None:
        """Show a screen, handing it what it needs (screen.prepare(**kw))."""
        screen = self.root.get_screen(name)
        if kw or hasattr(screen, "prepare"):
            getattr(screen, "prepare", lambda **_: None)(**kw)
        if self.root.current == name:
            screen.refresh()
        self.root.current = name

    def screen(self, name: str):
        """A screen by name."""
        return self.root.get_screen(name)

    # -- devices ------------------------------------------------------------------------------
    @mainthread
    def _on_fix(self, fix: Fix) -> None:
        self.fix = fix

    @mainthread
    def _on_gps_status(self, status: str) -> None:
        self.gps_status = status

    # -- sync ---------------------------------------------------------------------------------
    def _sync_news(self, status: SyncStatus) -> None:
        """Called on the sync thread: hand over to the UI thread."""
        Clock.schedule_once(lambda dt: self.on_sync(status))

    def on_sync(self, status: SyncStatus) -> None:
        """Update the banner and whichever list is showing."""
        self.counts = status.counts
        waiting = status.counts.get("waiting", 0) + status.counts.get("sending", 0)
        failed = status.counts.get("failed", 0)
        if status.state == AUTH and self.core.signed_in:
            self.sync_level = "error"
            self.sync_text = (f"Sign in again: {status.message}. "
                              f"{waiting} item{'s' if waiting != 1 else ''} kept on the device.")
            self.core.sign_out()
            self.screen("signin").message = self.sync_text
            self.go("signin")
        elif status.state == AUTH:
            self.sync_level = "warn"
            self.sync_text = f"Signed out: {waiting} waiting on the device until you sign in." if waiting else ""
        elif status.state == OFFLINE and waiting:
            self.sync_level = "warn"
            self.sync_text = f"Offline: {waiting} waiting. {status.message}"
        elif failed:
            self.sync_level = "error"
            self.sync_text = f"{failed} refused by the server: see the queue." + (
                f" {waiting} waiting." if waiting else "")
        elif waiting:
            self.sync_level = "info"
            self.sync_text = f"Sending: {waiting} waiting."
        else:
            self.sync_level = "ok"
            self.sync_text = "Everything is sent." if status.counts.get("sent") else ""
        current = self.root.current_screen if self.root else None
        if current is None:
            return
        if current.name in ("queue", "home") or (current.name == "job" and (status.sent or status.failed)):
            current.refresh()
        elif current.name == "jobs":
            current.show()  # the list from the device; no new fetch for every sync pass

    def kick_sync(self) -> None:
        """Try sending now."""
        self.core.loop.kick()

    # -- lifecycle ----------------------------------------------------------------------------
    def on_pause(self) -> bool:
        self.location.stop()
        return True  # keep the app (and its queue) alive in the background

    def on_resume(self) -> None:
        self.location.start(self._on_fix, self._on_gps_status)
        self.core.loop.kick()

    def on_stop(self) -> None:
        self.location.stop()
        if self.tasks is not None:
            self.tasks.shutdown()
        if self.core is not None:
            self.core.close()
