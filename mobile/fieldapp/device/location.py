"""Where the device is: a small interface, a plyer implementation (Android) and a scripted fake.

Callbacks may arrive on any thread; the UI wraps them with Clock before touching widgets.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

from ..core.models import Fix

log = logging.getLogger("fieldapp.location")
OnFix = Callable[[Fix], None]
OnStatus = Callable[[str], None]


class Location:
    """Location source: start() delivers fixes to on_fix until stop()."""

    def __init__(self) -> None:
        self.last: Fix | None = None
        self.status = "stopped"
        self._on_fix: OnFix | None = None
        self._on_status: OnStatus | None = None

    def start(self, on_fix: OnFix, on_status: OnStatus | None = None) -> None:
        """Begin delivering fixes."""
        self._on_fix, self._on_status = on_fix, on_status
        self._set_status("searching")

    def stop(self) -> None:
        """Stop delivering fixes (saves the battery when the app is paused)."""
        self._set_status("stopped")

    def _deliver(self, fix: Fix) -> None:
        self.last = fix
        if self._on_fix is not None:
            self._on_fix(fix)

    def _set_status(self, status: str) -> None:
        self.status = status
        if self._on_status is not None:
            self._on_status(status)


class FakeLocation(Location):
    """Desktop and tests: a fixed position, a script of fixes, or fixes pushed by a test harness."""

    def __init__(self, fixes: list[dict] | None = None, interval: float = 1.0):
        super().__init__()
        self.script = list(fixes or [])
        self.interval = interval
        self._stop = threading.Event()

    @classmethod
    def from_env(cls) -> FakeLocation:
        """KERBSIDE_FAKE_GPS='lat,lon[,accuracy[,provider[,mock]]]' or KERBSIDE_FAKE_GPS_SCRIPT=a JSON file."""
        script = os.environ.get("KERBSIDE_FAKE_GPS_SCRIPT")
        if script:
            with open(script) as fh:
                return cls(json.load(fh))
        raw = os.environ.get("KERBSIDE_FAKE_GPS", "51.3812,-2.3590,8")  # Bath city centre
        parts = [p.strip() for p in raw.split(",")]
        fix = {"lat": float(parts[0]), "lon": float(parts[1]),
               "accuracy_m": float(parts[2]) if len(parts) > 2 else 10.0,
               "provider": parts[3] if len(parts) > 3 else "gps",
               "mock": len(parts) > 4 and parts[4].lower() in ("1", "true", "mock")}
        return cls([fix])

    def start(self, on_fix: OnFix, on_status: OnStatus | None = None) -> None:
        super().start(on_fix, on_status)
        self._stop.clear()
        if self.script:
            threading.Thread(target=self._play, name="fake-gps", daemon=True).start()

    def _play(self) -> None:
        for step in self.script:
            if self._stop.wait(float(step.get("delay", 0))):
                return
            self.push(Fix(step["lat"], step["lon"], step.get("accuracy_m"), step.get("provider", "gps"),
                          bool(step.get("mock", False)), time.time() - float(step.get("age", 0))))
            self._stop.wait(self.interval)

    def push(self, fix: Fix) -> None:
        """Deliver a fix now (a test's scripted GPS)."""
        self._set_status("fix")
        self._deliver(fix)

    def stop(self) -> None:
        self._stop.set()
        super().stop()


class PlyerLocation(Location):
    """Android (and iOS) GPS through plyer; asks for the location permission first."""

    def start(self, on_fix: OnFix, on_status: OnStatus | None = None) -> None:
        super().start(on_fix, on_status)
        _request_android_permissions(["ACCESS_FINE_LOCATION", "ACCESS_COARSE_LOCATION"])
        from plyer import gps

        try:
            gps.configure(on_location=self._on_location, on_status=lambda kind, msg: self._set_status(f"{kind}: {msg}"))
            gps.start(minTime=1000, minDistance=0)
        except NotImplementedError:
            self._set_status("no GPS on this device: place the pin by hand")

    def _on_location(self, **kw) -> None:
        provider, mock = _android_fix_flags()
        accuracy = kw.get("accuracy")
        self._deliver(Fix(float(kw["lat"]), float(kw["lon"]), float(accuracy) if accuracy is not None else None,
                          provider, mock, time.time()))

    def stop(self) -> None:
        try:
            from plyer import gps

            gps.stop()
        except Exception:  # not started or no GPS: nothing to stop
            pass
        super().stop()


def _request_android_permissions(names: list[str]) -> None:
    try:
        from android.permissions import Permission, request_permissions  # type: ignore[import-not-found]
    except ImportError:
        return
    request_permissions([getattr(Permission, n) for n in names])


def _android_fix_flags() -> tuple[str, bool]:
    """(provider, mock) of the device's latest fix: plyer does not pass them, so ask Android directly."""
    try:
        from jnius import autoclass  # type: ignore[import-not-found]
    except ImportError:
        return "gps", False
    try:
        activity = autoclass("org.kivy.android.PythonActivity").mActivity
        manager = activity.getSystemService(autoclass("android.content.Context").LOCATION_SERVICE)
        best = None
        for name in ("gps", "fused", "network"):
            try:
                loc = manager.getLastKnownLocation(name)
            except Exception:
                continue
            if loc is not None and (best is None or loc.getTime() > best.getTime()):
                best = loc
        if best is None:
            return "gps", False
        mock = bool(best.isMock()) if hasattr(best, "isMock") else bool(best.isFromMockProvider())
        return str(best.getProvider()), mock
    except Exception as exc:
        log.info("could not read the provider and mock flag: %s", exc)
        return "gps", False
