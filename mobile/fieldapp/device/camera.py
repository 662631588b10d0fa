"""Taking a photo: a plyer implementation (Android) and a file/desktop camera for desktops and tests."""
from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

OnPhoto = Callable[[str | None], None]  # the file written, or None if cancelled / failed


class Camera:
    """take(dest, on_done): write a photo to dest, then call on_done(dest or None), on any thread."""

    def take(self, dest: str, on_done: OnPhoto) -> None:
        """Take one photo into dest."""
        raise NotImplementedError


class FileCamera(Camera):
    """Desktop and tests: 'takes' a photo by copying a file, or draws a test card when there is none."""

    def __init__(self, source: str | None = None):
        self.source = source or os.environ.get("KERBSIDE_FAKE_PHOTO")

    def take(self, dest: str, on_done: OnPhoto) -> None:
        if self.source:
            shutil.copyfile(self.source, dest)
        else:
            _test_card(dest)
        on_done(dest)


def _test_card(dest: str) -> None:
    """A recognisable JPEG with the time on it (the desktop has no camera)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (1280, 960), (40, 90, 140))
    draw = ImageDraw.Draw(img)
    for i in range(0, 1280, 160):
        draw.rectangle([i, 0, i + 80, 960], fill=(60, 120, 170))
    draw.text((40, 40), f"Kerbside desktop camera {time.strftime('%Y-%m-%d %H:%M:%S')}", fill=(255, 255, 255))
    img.save(dest, "JPEG", quality=85)


class PlyerCamera(Camera):
    """The phone's camera app through plyer (asks for the camera permission first)."""

    def take(self, dest: str, on_done: OnPhoto) -> None:
        try:
            from android.permissions import Permission, request_permissions  # type: ignore[import-not-found]

            request_permissions([Permission.CAMERA])
        except ImportError:
            pass
        from plyer import camera

        def complete(path: str) -> bool:
            # plyer calls back once the camera app returns; an empty file means it was cancelled.
            ok = Path(path).is_file() and Path(path).stat().st_size > 0
            threading.Thread(target=on_done, args=(path if ok else None,), daemon=True).start()
            return False  # keep the file: plyer deletes it when this returns True

        try:
            camera.take_picture(filename=dest, on_complete=complete)
        except NotImplementedError:
            on_done(None)
