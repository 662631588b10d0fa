"""Choose the device implementations: plyer on a phone, fakes on a desktop (KERBSIDE_DEVICE overrides)."""
from __future__ import annotations

import os
import sys

from .camera import Camera, FileCamera, PlyerCamera
from .location import FakeLocation, Location, PlyerLocation


def on_android() -> bool:
    """Whether we run inside an Android app (python-for-android sets ANDROID_ARGUMENT)."""
    return "ANDROID_ARGUMENT" in os.environ or hasattr(sys, "getandroidapilevel")


def make_devices(kind: str | None = None) -> tuple[Location, Camera]:
    """(location, camera) for 'plyer' or 'fake'; default: plyer on Android, fake elsewhere."""
    kind = kind or os.environ.get("KERBSIDE_DEVICE") or ("plyer" if on_android() else "fake")
    if kind == "plyer":
        return PlyerLocation(), PlyerCamera()
    if kind == "fake":
        return FakeLocation.from_env(), FileCamera()
    raise ValueError(f"unknown device kind {kind!r}: plyer or fake")
